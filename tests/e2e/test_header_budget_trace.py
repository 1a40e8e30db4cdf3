"""Through a trace (review finding 14): streams part-way into long requests hold no more than the memory budget
while the trace decides what they are, and in their connections once decided."""

from __future__ import annotations

import struct
from pathlib import Path

from wsinspect.core.connection import HEAD_LET_GO_FROM
from wsinspect.core.events import Notice
from wsinspect.trace import CaptureTrace

LIMIT = 256 * 1024
FLOWS = 40
PAD = 30_000


def _pcap(path: Path, packets: list[bytes]) -> None:
    """A classic pcap file of Ethernet frames (struct only, independent of the reader under test)."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for number, frame in enumerate(packets):
            out.write(struct.pack("<IIII", 1_700_000_000 + number // 1000, number % 1000, len(frame), len(frame)))
            out.write(frame)


def _segment(port: int, seq: int, flags: int, payload: bytes = b"", *, to_server: bool = True) -> bytes:
    client, server = (port, 8080) if to_server else (8080, port)
    tcp = struct.pack("!HHIIBBHHH", client, server, seq, 0, 0x50, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0, 64, 6, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]) if to_server else bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload


def test_undecided_streams_with_long_partial_requests_stay_within_the_budget(tmp_path: Path) -> None:
    request = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Pad: " + b"a" * PAD  # no blank line comes
    packets = []
    for flow in range(FLOWS):
        packets += [_segment(40000 + flow, 1000, 0x02), _segment(40000 + flow, 1001, 0x18, request)]
    capture = tmp_path / "partial.pcap"
    _pcap(capture, packets)
    trace = CaptureTrace(capture, memory_budget=LIMIT)
    events = list(trace)
    # Held at once: at most the budget, plus what one stream may hold before it is let go.
    assert trace.budget.peak <= LIMIT + 2 * (len(request) + HEAD_LET_GO_FROM)
    assert trace.budget.held == 0
    notices = [event for event in events if isinstance(event, Notice) and event.check.id == "capture.memory-budget"]
    assert notices and FLOWS * 2 * len(request) > LIMIT


def test_a_pipelined_upgrade_held_with_the_first_answer_is_decoded(tmp_path: Path) -> None:
    """The client sent its plain GET and its upgrade request at once, before the first answer (pipelining): both
    are held while the stream is decided, and the frames after the 101 are still decoded."""
    from tests.core.helpers import TEXT, request_bytes, response_bytes, sframe

    get, ok = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    client, server = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])

    def frame(source: bytes, target: bytes, sport: int, dport: int, seq: int, flags: int,
              payload: bytes = b"") -> bytes:
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, source, target)
        return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload

    c2s = get + request_bytes()
    s2c = ok + response_bytes() + sframe(TEXT, b"yo")
    capture = tmp_path / "pipelined.pcap"
    _pcap(capture, [frame(client, server, 40000, 8080, 100, 0x02), frame(server, client, 8080, 40000, 500, 0x12),
                    frame(client, server, 40000, 8080, 101, 0x18, c2s),
                    frame(server, client, 8080, 40000, 501, 0x18, s2c)])
    events = list(CaptureTrace(capture))
    from wsinspect.core.events import Message

    assert [event.text for event in events if isinstance(event, Message)] == ["yo"]
