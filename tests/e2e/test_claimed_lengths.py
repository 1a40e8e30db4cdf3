"""A frame whose header claims more than came (review finding 5): totals count the bytes that came, the Length
column and the notes show the claim in units that fit (up to EiB), never a 19-digit number that breaks the columns."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.core.helpers import request_bytes, response_bytes, sframe
from wsinspect.core.connection import Connection, Limits
from wsinspect.core.events import FrameEvent
from wsinspect.views.describe import size
from wsinspect.views.summary import Summary

from .support import cli_env, run_wsinspect

CLIENT, SERVER = (bytes([127, 0, 0, 1]), 40000), (bytes([127, 0, 0, 2]), 80)
REQUEST = (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
HELLO = b"\x81\x05hello"
LIE = b"\x82\x7f" + struct.pack("!Q", 2**63 - 1) + b"x" * 1000  # claims 8 EiB, 1,000 bytes follow


def _frame(source: tuple[bytes, int], target: tuple[bytes, int], seq: int, ack: int, flags: int,
           payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", source[1], target[1], seq, ack, 0x50, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, source[0], target[0])
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload


def _write(path: Path, frames: list[bytes]) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for number, frame in enumerate(frames):
            out.write(struct.pack("<IIII", 1_700_000_000, number * 1000, len(frame), len(frame)) + frame)


@pytest.fixture(scope="module")
def lie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lie") / "lie.pcap"
    c, s = 1000, 5000  # initial sequence numbers
    _write(path, [
        _frame(CLIENT, SERVER, c, 0, 0x02), _frame(SERVER, CLIENT, s, c + 1, 0x12),
        _frame(CLIENT, SERVER, c + 1, s + 1, 0x10),
        _frame(CLIENT, SERVER, c + 1, s + 1, 0x18, REQUEST),
        _frame(SERVER, CLIENT, s + 1, c + 1 + len(REQUEST), 0x18, RESPONSE),
        _frame(SERVER, CLIENT, s + 1 + len(RESPONSE), c + 1 + len(REQUEST), 0x18, HELLO),
        _frame(SERVER, CLIENT, s + 1 + len(RESPONSE) + len(HELLO), c + 1 + len(REQUEST), 0x18, LIE),
        _frame(SERVER, CLIENT, s + 1 + len(RESPONSE) + len(HELLO) + len(LIE), c + 1 + len(REQUEST), 0x11),
    ])
    return path


def test_totals_count_the_bytes_that_came_and_the_row_stays_in_its_columns(lie: Path) -> None:
    done = run_wsinspect(["read", lie, "--color", "never"], env=cli_env())
    out = done.stdout.decode("utf-8")
    assert f"server→client {len(HELLO) + len(LIE)} B" in out  # 1,017 bytes, not 8 EiB
    row = next(line for line in out.splitlines() if "Binary" in line)
    assert "8EiB Binary" in row and "9223372036854775817" not in row
    assert "claims 8.0 EiB, 0 B kept" in row
    assert "its header claims 9223372036854774807 more bytes than came" in out.replace("\n        ", " ")


def test_flow_shows_the_claim_and_what_was_kept(lie: Path) -> None:
    out = run_wsinspect(["read", lie, "--flow", "--color", "never"], env=cli_env()).stdout.decode("utf-8")
    assert "Binary claims 8.0 EiB, 0 B kept" in out and "9223372036854775807 B" not in out


def test_a_frame_let_go_whose_rest_came_is_counted_whole() -> None:
    """The rest of a frame over the limit streams past unkept: the next frame of its direction shows it came."""
    connection = Connection(1, limits=Limits(max_frame=100))
    events = connection.receive("c2s", request_bytes(), time=0.0)
    big = sframe(2, b"y" * 1000)
    events += connection.receive("s2c", response_bytes() + big + sframe(1, b"after"), time=0.1)
    summary = Summary()
    for event in events:
        summary.handle(event)
    assert [event.frame.missing for event in events if isinstance(event, FrameEvent)] == [1000, 0]
    assert summary.bytes["s2c"] == len(big) + 7


@pytest.mark.parametrize(("count", "text"), [(1023, "1023 B"), (1024, "1.0 KiB"), (5 * 2**30, "5.0 GiB"),
                                             (3 * 2**40, "3.0 TiB"), (2**50, "1.0 PiB"), (2**63 - 1, "8.0 EiB")])
def test_sizes_go_past_mib(count: int, text: str) -> None:
    assert size(count) == text
