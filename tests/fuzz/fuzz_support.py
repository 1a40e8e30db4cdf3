"""Seeds and mutations shared by the fuzz targets.

Seeds are real bytes: each shipped capture's TCP streams, rebuilt by the reassembler, and the header blocks at their
start; RFC 6455 1.3's example handshake is added to them. Mutations are hypothesis strategies, so a failure shrinks
to a small edit of a real input and prints as one.

Example counts: the fast default keeps the whole tests/fuzz run short enough for CI. With
``--hypothesis-profile=fuzz-long`` (registered in conftest.py) every target runs FUZZ_LONG_EXAMPLES examples.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from wsinspect.capture.reassembly import FlowData, read_flows
from wsinspect.core.handshake import find_header_end

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
CRASHES = Path(__file__).resolve().parent / "crashes"
# Each direction's seed is cut here: long enough to hold 16- and 64-bit length forms and fragmented, compressed
# messages, short enough that a mutated copy is parsed in well under a millisecond.
STREAM_SEED_BYTES = 16 * 1024
# Captures copied whole into the capture-reader target; the two big ones would make each example slow.
SMALL_CAPTURE_BYTES = 64 * 1024

FUZZ_LONG_EXAMPLES = int(os.environ.get("WSINSPECT_FUZZ_EXAMPLES", "20000"))
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
               HealthCheck.large_base_example]


def is_long_run() -> bool:
    """Was the fuzz-long profile selected? Test modules are imported after the profile is loaded."""
    return settings.default.max_examples == FUZZ_LONG_EXAMPLES


def fuzz_settings(ci_examples: int) -> settings:
    """A few examples for CI, the long profile's count under --hypothesis-profile=fuzz-long."""
    return settings(max_examples=FUZZ_LONG_EXAMPLES if is_long_run() else ci_examples, deadline=None,
                    database=settings.default.database if is_long_run() else None,
                    suppress_health_check=_SUPPRESSED, print_blob=True)


RFC_REQUEST = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
               b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n")
RFC_RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")


@dataclass(frozen=True)
class FlowSeed:
    """The first bytes of both directions of one TCP stream of a shipped capture."""

    name: str  # capture file and stream number, for reading a failure
    c2s: bytes
    s2c: bytes

    def frames_start(self, direction: str) -> int:
        """Where frames start: after the header block, or 0 for a stream with no handshake (mid-connection)."""
        data = self.c2s if direction == "c2s" else self.s2c
        end = find_header_end(data)
        return end if end >= 0 and data[:4] in (b"GET ", b"HTTP") else 0


def shipped_captures() -> list[Path]:
    return sorted(CAPTURES.glob("*.pcapng"))


@functools.cache
def flow_seeds() -> tuple[FlowSeed, ...]:
    seeds = []
    for path in shipped_captures():
        streams: dict[int, dict[str, bytearray]] = {}
        with read_flows(path) as flows:
            for item in flows:
                if isinstance(item, FlowData):
                    kept = streams.setdefault(item.flow, {"c2s": bytearray(), "s2c": bytearray()})[item.direction]
                    kept += item.data[: STREAM_SEED_BYTES - len(kept)]
        seeds += [FlowSeed(f"{path.name}#{flow}", bytes(sides["c2s"]), bytes(sides["s2c"]))
                  for flow, sides in sorted(streams.items())]
    return tuple(seeds)


@functools.cache
def handshake_seeds() -> tuple[tuple[bytes, bytes], ...]:
    """(request header block, response header block) pairs: RFC 6455 1.3's, then every shipped one."""
    pairs = [(RFC_REQUEST, RFC_RESPONSE)]
    for seed in flow_seeds():
        request_end, response_end = find_header_end(seed.c2s), find_header_end(seed.s2c)
        if seed.c2s.startswith(b"GET ") and request_end > 0:
            pairs.append((seed.c2s[:request_end], seed.s2c[:response_end] if response_end > 0 else b""))
    return tuple(dict.fromkeys(pairs))  # several streams of one capture often share a handshake


@functools.cache
def frame_stream_seeds() -> tuple[tuple[str, str, bytes], ...]:
    """(seed name, direction, bytes after the handshake) for every direction that carried frames."""
    out = []
    for seed in flow_seeds():
        for direction in ("c2s", "s2c"):
            data = seed.c2s if direction == "c2s" else seed.s2c
            frames = data[seed.frames_start(direction):]
            if frames and not frames.startswith((b"HTTP", b"GET ", b"\x16\x03")):  # not plain HTTP, not TLS
                out.append((seed.name, direction, frames))
    return tuple(out)


# -- mutations ------------------------------------------------------------------------------------------------

# Bytes that take lenient parsers off their path: line ends, NUL, and every non-ASCII byte (latin-1, UTF-8 starts).
SPECIAL_BYTES = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"\x00", b" ", b"\t", b":", b";", b",", b"=", b'"',
                 *(bytes([b]) for b in (0x80, 0x85, 0xA0, 0xB2, 0xC0, 0xE2, 0xF0, 0xFF))]


@st.composite
def mutated(draw: st.DrawFn, data: bytes, *, max_edits: int = 6, extra: st.SearchStrategy[bytes] | None = None
            ) -> bytes:
    """``data`` with a few edits: byte flips, insertions of special bytes, deletions, duplications, a cut."""
    out = bytearray(data)
    insertions = st.sampled_from(SPECIAL_BYTES) if extra is None else st.one_of(st.sampled_from(SPECIAL_BYTES), extra)
    for _ in range(draw(st.integers(0, max_edits), label="edits")):
        at = draw(st.integers(0, len(out)), label="at")
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "duplicate", "cut"]), label="edit")
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(out):
            out[at] = draw(st.sampled_from([0x00, 0x7E, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "insert":
            out[at:at] = draw(insertions)
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        elif kind == "duplicate":
            out[at:at] = out[at : at + draw(st.integers(1, 64))]
        elif kind == "cut":
            del out[at:]
    return bytes(out)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given offsets (taken modulo its length), no empty pieces."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]
