"""Other link layers through the whole pipeline: the same traffic, re-wrapped, must decode to the same frames.

The Ethernet records of ``echo.pcapng`` (IPv4) and ``ipv6.pcapng`` are rewritten here, with ``struct`` only, as
classic pcap files (global header + records) whose link layer is Linux cooked capture v1 (SLL) and v2 (SLL2), BSD
loopback (NULL, in both byte orders, and LOOP), raw IP (LINKTYPE_RAW, and the version-specific IPV4/IPV6 types) and
Ethernet itself (with microsecond timestamps). ``wsinspect read --json`` (the CLI's ``main``, run in-process) must
give exactly the frames of the original file (times included, to the resolution of the file), and tshark must find
the same WebSocket frames in the rewritten file.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .support import capture_path, json_frames, read_json_in_process, read_pcapng, run_wsinspect, shipped_json

ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
ARPHRD_LOOPBACK = 772


def _ip(ethernet: bytes) -> tuple[bytes, int]:
    ethertype = struct.unpack_from("!H", ethernet, 12)[0]
    assert ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6)
    return ethernet[14:], ethertype


def sll(ethernet: bytes, order: str) -> bytes:
    ip, ethertype = _ip(ethernet)  # packet type 0 (to us), ARPHRD, address length 6, address (8 bytes), protocol
    return struct.pack("!HHH8sH", 0, ARPHRD_LOOPBACK, 6, ethernet[6:12], ethertype) + ip


def sll2(ethernet: bytes, order: str) -> bytes:
    ip, ethertype = _ip(ethernet)  # protocol, reserved, interface index, ARPHRD, packet type, address len, address
    return struct.pack("!HHIHBB8s", ethertype, 0, 1, ARPHRD_LOOPBACK, 0, 6, ethernet[6:12]) + ip


def null(ethernet: bytes, order: str) -> bytes:
    ip, ethertype = _ip(ethernet)  # AF_ value in the byte order of the machine that wrote the file
    return struct.pack(order + "I", 2 if ethertype == ETHERTYPE_IPV4 else 24) + ip


def loop(ethernet: bytes, order: str) -> bytes:
    ip, ethertype = _ip(ethernet)  # like NULL, but always big-endian (OpenBSD); AF_INET6 is 24 there
    return struct.pack("!I", 2 if ethertype == ETHERTYPE_IPV4 else 24) + ip


def raw_ip(ethernet: bytes, order: str) -> bytes:
    return _ip(ethernet)[0]


def ethernet(frame: bytes, order: str) -> bytes:
    return frame


#: name -> (LINKTYPE_ value, rewrap function, byte order of the file, nanosecond timestamps)
LINKTYPES: dict[str, tuple[int, Callable[[bytes, str], bytes], str, bool]] = {
    "ethernet-usec": (1, ethernet, "<", False),
    "linux-sll": (113, sll, "<", True),
    "linux-sll2": (276, sll2, "<", True),
    "null-little-endian": (0, null, "<", True),
    "null-big-endian": (0, null, ">", True),
    "loop": (108, loop, "<", True),
    "raw": (101, raw_ip, "<", True),
    "raw-ip-version": (-1, raw_ip, "<", True),  # LINKTYPE_IPV4 (228) or LINKTYPE_IPV6 (229), by capture
}
SOURCES = ("echo", "ipv6")


def write_pcap(source: Path, target: Path, kind: str) -> None:
    linktype, rewrap, order, nanoseconds = LINKTYPES[kind]
    capture = read_pcapng(source)
    assert capture.linktype == 1  # Ethernet, as dumpcap recorded the loopback interface
    if linktype == -1:
        linktype = 228 if _ip(capture.packets[0].data)[1] == ETHERTYPE_IPV4 else 229
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    fraction = 1_000_000_000 if nanoseconds else 1_000_000
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for packet in capture.packets:
        seconds, rest = divmod(packet.timestamp, capture.units_per_second)
        sub = rest * fraction // capture.units_per_second
        data = rewrap(packet.data, order)
        original = packet.original_length - len(packet.data) + len(data)
        out.append(struct.pack(order + "IIII", seconds, sub, len(data), original) + data)
    target.write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    directory = tmp_path_factory.mktemp("linktypes")
    files = {}
    for source in SOURCES:
        for kind in LINKTYPES:
            files[(source, kind)] = directory / f"{source}-{kind}.pcap"
            write_pcap(capture_path(source), files[(source, kind)], kind)
    return files


@pytest.fixture(scope="module")
def decoded(rewritten: dict[tuple[str, str], Path]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``wsinspect read --json`` of every rewritten file."""
    return {key: read_json_in_process(path) for key, path in rewritten.items()}


def without_time(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in frame.items() if k != "time"} for frame in frames]


@pytest.mark.parametrize("kind", sorted(LINKTYPES))
@pytest.mark.parametrize("source", SOURCES)
def test_same_frames_on_every_link_layer(decoded: dict[tuple[str, str], list[dict[str, Any]]], source: str,
                                         kind: str) -> None:
    original, converted = json_frames(shipped_json(source)), json_frames(decoded[(source, kind)])
    assert original, "the source capture has frames"
    assert without_time(converted) == without_time(original)
    resolution = 1e-9 if LINKTYPES[kind][3] else 1e-6
    # (float seconds since 1970 carry ~2.4e-7 s of rounding: allow two units in the last place)
    assert all(abs(a["time"] - b["time"]) <= resolution + 5e-7
               for a, b in zip(converted, original, strict=True))
    # the rest of the story too: handshake, messages, closes
    for event in ("handshake_request", "handshake_response", "message", "close", "connection_closed"):
        assert [without_time([e]) for e in decoded[(source, kind)] if e["type"] == event] == \
               [without_time([e]) for e in shipped_json(source) if e["type"] == event], event
    opened = [e for e in decoded[(source, kind)] if e["type"] == "connection"]
    assert [e["client"] for e in opened] == [e["client"] for e in shipped_json(source) if e["type"] == "connection"]


@functools.cache
def tshark_frame_numbers(path: Path) -> list[int]:
    done = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "websocket", "-T", "fields", "-e", "frame.number"],
                          capture_output=True, timeout=60, check=True)
    return [int(line) for line in done.stdout.split()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_agrees_on_frame_count(rewritten: dict[tuple[str, str], Path],
                                      decoded: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    keys = list(rewritten)
    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = dict(zip(keys, pool.map(lambda key: tshark_frame_numbers(rewritten[key]), keys), strict=True))
    for key in keys:
        ours = [frame["packet"] for frame in json_frames(decoded[key])]
        assert len(ours) == len(theirs[key]) > 0, key
        assert sorted(ours) == theirs[key], key  # websocket frames per packet: one in these files


@pytest.mark.parametrize("cut", ["in-record-header", "in-packet-data"])
def test_truncated_classic_pcap(rewritten: dict[tuple[str, str], Path], tmp_path: Path, cut: str) -> None:
    """A pcap file cut inside record N: records 1..N-1 decoded as in the whole file, 'truncated', exit 1."""
    data = rewritten[("echo", "linux-sll")].read_bytes()
    starts, offset = [], 24
    while offset < len(data):
        starts.append(offset)
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
    whole = json_frames(shipped_json("echo"))
    record = whole[len(whole) // 2]["packet"]  # a record carrying a frame, mid-session
    end = starts[record - 1] + (7 if cut == "in-record-header" else 16 + 10)
    path = tmp_path / "echo-sll-truncated.pcap"
    path.write_bytes(data[:end])
    done = run_wsinspect(["read", path, "--json"])
    err = done.stderr.decode("utf-8")
    assert done.returncode == 3, err  # truncated: decoded up to the damage (README, Exit status)
    assert "truncated" in err and "Traceback" not in err
    lines = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert without_time(json_frames(lines)) == without_time([f for f in whole if f["packet"] < record])
