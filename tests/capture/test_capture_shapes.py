"""Real capture shapes at the capture edge: one direction only, conflicting retransmissions, many and endless flows.

The shipped captures come from captures/derive.py (one-sided.pcapng: real peers under a one-direction capture
filter; retransmit-conflict.pcapng: echo.pcapng with one altered retransmitted copy). What the peers sent comes
from the scenarios, never from the code under test; tshark is the reference where it has a view.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from capture_test_support import Record, collect, pcapng_bytes, tshark_streams

from wsinspect.capture import (
    CaptureError,
    CaptureFile,
    FlowClosed,
    FlowData,
    FlowItem,
    FlowNotice,
    FlowOpened,
    RawPacket,
    TcpReassembler,
    TcpSegment,
    decode_tcp,
    read_flows,
)
from wsinspect.capture.files import MAX_INTERFACES, MAX_RECORD_BYTES
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN
from wsinspect.capture.reassembly import _CONFLICTS_REPORTED, _ONE_SIDED_PACKETS
from wsinspect.capture.writer import _ethernet_ip_tcp
from wsinspect.core.events import Message, Notice, Violation
from wsinspect.trace import CaptureTrace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from captures.derive import (  # noqa: E402
    CONFLICT_ALTERED_TEXT,
    CONFLICT_ORIGINAL_TEXT,
    ONE_SIDED,
    ONE_SIDED_CLIENT_PORT,
    ONE_SIDED_SERVER_PORT,
)
from captures.scenarios import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, SCENARIOS  # noqa: E402

CAPTURES = ROOT / "captures"
ONE_SIDED_FILE = CAPTURES / "one-sided.pcapng"
CONFLICT_FILE = CAPTURES / "retransmit-conflict.pcapng"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 8765)
MASK = 0xFFFFFFFF


# -- helpers ------------------------------------------------------------------------------------------------------


def segment(number: int, from_client: bool, seq: int, ack: int = 0, flags: int = TCP_ACK, payload: bytes = b"",
            time: float | None = None, client: tuple[str, int] = CLIENT) -> TcpSegment:
    src, dst = (client, SERVER) if from_client else (SERVER, client)
    return TcpSegment(number, float(number) if time is None else time, src[0], dst[0], src[1], dst[1], seq & MASK,
                      ack & MASK, flags, payload)


def run(segments: list[TcpSegment], **options: object) -> list[FlowItem]:
    reassembler = TcpReassembler(**options)  # type: ignore[arg-type]
    items: list[FlowItem] = []
    for each in segments:
        items += reassembler.feed(each)
    return items + reassembler.finish()


def notices(items: list[FlowItem], check: str) -> list[FlowNotice]:
    return [item for item in items if isinstance(item, FlowNotice) and item.check == check]


def frames_of(stream: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each whole frame in `stream`: a plain RFC 6455 5.2 reading, for reference."""
    frames = []
    at = 0
    while at + 2 <= len(stream):
        opcode, masked, length = stream[at] & 0x0F, stream[at + 1] & 0x80, stream[at + 1] & 0x7F
        at += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", stream, at)
            at += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", stream, at)
            at += 8
        key = stream[at : at + 4] if masked else b"\0\0\0\0"
        at += 4 if masked else 0
        payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(stream[at : at + length]))
        at += length
        frames.append((opcode, payload))
    assert at == len(stream), "the stream ends inside a frame"
    return frames


def sent_frames(direction: str) -> list[tuple[int, bytes]]:
    """What the one-sided scenario's peer in `direction` was told to send, as (opcode, payload) frames."""
    connection = ONE_SIDED.connections[0]
    expected: list[tuple[int, bytes]] = []
    for event in connection.events:
        if event.direction != direction:
            continue
        kind = type(event).__name__
        if kind == "Message":
            expected.append((OP_TEXT if event.kind == "text" else OP_BINARY, event.payload))  # type: ignore[union-attr]
        elif kind in ("Ping", "Pong"):
            expected.append((OP_PING if kind == "Ping" else OP_PONG, event.payload))  # type: ignore[union-attr]
        elif kind == "Close":
            code = event.code  # type: ignore[union-attr]
            expected.append((OP_CLOSE, struct.pack("!H", code) + event.reason.encode()))  # type: ignore[union-attr]
    return expected


# -- one direction only ---------------------------------------------------------------------------------------------


def test_one_sided_capture_delivers_the_side_that_was_captured() -> None:
    with read_flows(ONE_SIDED_FILE) as reader:
        items = list(reader)
    flows = collect(items)
    assert len(flows) == 2
    client_only, server_only = flows[0], flows[1]
    assert client_only.opened.server[1] == ONE_SIDED_CLIENT_PORT
    assert server_only.opened.server[1] == ONE_SIDED_SERVER_PORT

    # Client to server only: the request, then every frame the client sent, whole and in order.
    assert client_only.pieces["s2c"] == []
    request, _, frames = client_only.data("c2s").partition(b"\r\n\r\n")
    assert request.startswith(b"GET /one-sided/0 HTTP/1.1\r\n")
    assert frames_of(frames) == sent_frames("c2s")
    assert client_only.closed is not None and client_only.closed.reason == "FIN from the only side captured"

    # Server to client only: the 101 answer, then every frame the server sent.
    assert server_only.pieces["c2s"] == []
    response, _, frames = server_only.data("s2c").partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert frames_of(frames) == sent_frames("s2c")

    one_sided = notices(items, "capture.one-sided")
    assert [(notice.flow, notice.direction) for notice in one_sided] == [(0, "s2c"), (1, "c2s")]
    assert "client → server" in one_sided[0].message and "server → client" in one_sided[1].message


@needs_tshark
def test_one_sided_capture_bytes_agree_with_tshark() -> None:
    with read_flows(ONE_SIDED_FILE) as reader:
        flows = collect(reader)
    by_stream: dict[int, int] = {}
    for stream, length in tshark_streams(ONE_SIDED_FILE).values():
        by_stream[stream] = by_stream.get(stream, 0) + length
    assert by_stream == {0: len(flows[0].data("c2s")), 1: len(flows[1].data("s2c"))}


def test_one_sided_capture_decodes_every_client_frame() -> None:
    events = list(CaptureTrace(ONE_SIDED_FILE))
    client_messages = [event.data for event in events if isinstance(event, Message) and event.stream == 0]
    assert client_messages == [message.payload for message in ONE_SIDED.connections[0].messages("c2s")]
    assert [event.check.id for event in events if isinstance(event, Notice) and event.stream == 0].count(
        "capture.one-sided") == 1


def test_server_only_side_decodes_without_decode_as() -> None:
    """The server's side alone: its 101 answer makes it a conversation, and every message it sent is decoded."""
    events = list(CaptureTrace(ONE_SIDED_FILE, streams=[1]))
    server_messages = [event.data for event in events if isinstance(event, Message)]
    assert server_messages == [message.payload for message in ONE_SIDED.connections[1].messages("s2c")]
    responses = [event for event in events if type(event).__name__ == "HandshakeResponse"]
    assert len(responses) == 1 and responses[0].upgraded  # type: ignore[attr-defined]


def test_server_only_side_decodes_with_decode_as() -> None:
    events = list(CaptureTrace(ONE_SIDED_FILE, server_ports=[ONE_SIDED_SERVER_PORT], streams=[1]))
    server_messages = [event.data for event in events if isinstance(event, Message)]
    assert server_messages == [message.payload for message in ONE_SIDED.connections[1].messages("s2c")]
    one_sided = [event for event in events if isinstance(event, Notice) and event.check.id == "capture.one-sided"]
    assert len(one_sided) == 1 and one_sided[0].direction == "c2s"
    assert not [event for event in events if isinstance(event, Violation)]


def client_only_segments(count: int) -> list[TcpSegment]:
    """A client's SYN, then `count - 1` data segments acknowledging a server the capture never shows."""
    segments = [segment(1, True, 1000, flags=TCP_SYN)]
    for number in range(2, count + 1):
        segments.append(segment(number, True, 1001 + (number - 2), 5001, TCP_ACK | TCP_PSH, b"x"))
    return segments


def test_one_sided_is_said_once_as_soon_as_it_is_clear() -> None:
    items = run(client_only_segments(_ONE_SIDED_PACKETS + 20))
    said = notices(items, "capture.one-sided")
    assert len(said) == 1
    assert said[0].packet == _ONE_SIDED_PACKETS and said[0].direction == "s2c"
    flow = collect(items)[0]
    assert flow.data("c2s") == b"x" * (_ONE_SIDED_PACKETS + 19)  # nothing held back waiting for the server


def test_short_one_sided_flow_is_said_at_its_end() -> None:
    items = run(client_only_segments(5))
    said = notices(items, "capture.one-sided")
    assert len(said) == 1 and said[0].packet == 5
    assert items.index(said[0]) == len(items) - 2  # right before the flow's FlowClosed


def test_unanswered_syns_and_two_sided_flows_are_not_one_sided() -> None:
    syns = [segment(number, True, 1000, flags=TCP_SYN) for number in range(1, 40)]
    assert notices(run(syns), "capture.one-sided") == []
    talk = [segment(1, True, 1000, flags=TCP_SYN), segment(2, False, 5000, 1001, TCP_SYN | TCP_ACK)]
    talk += [segment(number, True, 1001 + number - 3, 5001, payload=b"y") for number in range(3, 60)]
    assert notices(run(talk), "capture.one-sided") == []


def test_one_sided_flow_ends_at_the_captured_sides_fin() -> None:
    segments = client_only_segments(4)
    segments.append(segment(5, True, 1004, 5001, TCP_FIN | TCP_ACK))
    segments.append(segment(6, True, 1005, 5002))  # its ACK of the server's FIN: a late packet, no new flow
    reassembler = TcpReassembler()
    items = [item for each in segments for item in reassembler.feed(each)]
    assert [type(item) for item in items[-2:]] == [FlowNotice, FlowClosed]
    assert items[-1] == FlowClosed(0, 5.0, 5, "FIN from the only side captured")
    assert reassembler.open_flows == 0 and reassembler.late_segments == 1


# -- conflicting retransmissions ------------------------------------------------------------------------------------


def handshake() -> list[TcpSegment]:
    return [
        segment(1, True, 1000, flags=TCP_SYN),
        segment(2, False, 5000, 1001, TCP_SYN | TCP_ACK),
        segment(3, True, 1001, 5001),
    ]


def test_conflicting_retransmission_keeps_the_first_copy_and_says_so() -> None:
    segments = [
        *handshake(),
        segment(4, True, 1001, 5001, payload=b"abcdef"),
        segment(5, True, 1001, 5001, payload=b"abcdef"),  # a faithful retransmission: nothing to say
        segment(6, True, 1003, 5001, payload=b"cXe"),  # bytes 2-4 again, one of them different
        segment(7, True, 1007, 5001, payload=b"gh"),
    ]
    items = run(segments)
    assert collect(items)[0].data("c2s") == b"abcdefgh"
    (said,) = notices(items, "capture.retransmission-conflict")
    assert (said.direction, said.packet) == ("c2s", 6)
    assert "bytes 2 to 4" in said.message
    assert "frame 4 was used (the first copy captured" in said.message and "frame 6 ignored" in said.message


def test_two_held_copies_of_the_same_range_use_the_first_captured() -> None:
    segments = [
        *handshake(),
        segment(4, True, 1004, 5001, payload=b"zzz"),  # arrives before the bytes it follows
        segment(5, True, 1004, 5001, payload=b"DEF"),  # a second, different copy of the same range
        segment(6, True, 1001, 5001, payload=b"abc"),  # the hole fills: both copies come out
    ]
    items = run(segments)
    assert collect(items)[0].data("c2s") == b"abczzz"
    (said,) = notices(items, "capture.retransmission-conflict")
    assert "frame 4 was used (the first copy captured" in said.message and "frame 5 ignored" in said.message


def test_overlapping_held_copies_name_the_copy_that_was_used() -> None:
    segments = [
        *handshake(),
        segment(4, True, 1006, 5001, payload=b"FGHIJ"),  # bytes 5-9, captured first
        segment(5, True, 1004, 5001, payload=b"defgh"),  # bytes 3-7, captured later, starts earlier
        segment(6, True, 1001, 5001, payload=b"abc"),
    ]
    items = run(segments)
    assert collect(items)[0].data("c2s") == b"abcdefghIJ"  # stream order: the copy starting earlier came out first
    (said,) = notices(items, "capture.retransmission-conflict")
    assert "bytes 5 to 7" in said.message
    assert "frame 5 was used (it reached these bytes first)" in said.message and "frame 4 ignored" in said.message


def test_conflict_notices_per_direction_are_bounded() -> None:
    segments = [*handshake(), segment(4, True, 1001, 5001, payload=b"a")]
    segments += [segment(number, True, 1001, 5001, payload=bytes([number])) for number in range(5, 40)]
    said = notices(run(segments), "capture.retransmission-conflict")
    assert len(said) == _CONFLICTS_REPORTED
    assert "not reported" in said[-1].message and "not reported" not in said[0].message


def test_retransmit_conflict_capture_is_a_notice_not_a_violation() -> None:
    events = list(CaptureTrace(CONFLICT_FILE))
    assert not [event for event in events if isinstance(event, Violation)]
    (said,) = [event for event in events if isinstance(event, Notice)]
    assert said.check.id == "capture.retransmission-conflict" and said.direction == "c2s"
    # The first copy (the original "hello") was used: the file decodes to the echo scenario, both directions.
    echo = SCENARIOS["echo"].connections[0]
    for direction in ("c2s", "s2c"):
        decoded = [event.data for event in events if isinstance(event, Message) and event.direction == direction]
        assert decoded == [message.payload for message in echo.messages(direction)]
    assert CONFLICT_ALTERED_TEXT.encode() not in b"".join(
        event.data for event in events if isinstance(event, Message))


@needs_tshark
def test_tshark_sees_the_same_copy_and_flags_the_other() -> None:
    events = list(CaptureTrace(CONFLICT_FILE))
    (said,) = [event for event in events if isinstance(event, Notice)]
    copy_frame = said.packet
    assert copy_frame is not None
    hello = next(event for event in events if isinstance(event, Message) and event.data == b"hello")
    fields = subprocess.run(
        ["tshark", "-n", "-r", str(CONFLICT_FILE), "-o", "tcp.analyze_sequence_numbers:TRUE", "-T", "fields",
         "-e", "frame.number", "-e", "tcp.analysis.retransmission", "-e", "websocket.payload.text"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()
    rows = {int(row.split("\t")[0]): row.split("\t")[1:] for row in fields}
    retransmissions = [number for number, (flag, _) in rows.items() if flag]
    assert retransmissions == [copy_frame]
    assert hello.first_packet is not None and f"frame {hello.first_packet} was used" in said.message
    assert rows[hello.first_packet][1] == CONFLICT_ORIGINAL_TEXT  # tshark decoded the first copy too
    assert rows[copy_frame][1] == ""  # and not the second


# -- many flows, and flows that never end ---------------------------------------------------------------------------


def write_endless_flows(path: Path, flows: int, keep_alive_every: int) -> None:
    """Each flow: handshake and a request, never closed, 10 ms apart; flow 0 sends a byte every so often."""
    records: list[Record] = []
    server = ("192.0.2.1", 80)
    keep_alive_seq = 1001 + 5
    for flow in range(flows):
        client = (f"10.1.{flow >> 8 & 255}.{flow & 255}", 20000 + flow % 40000)
        time = 1_700_000_000 + flow * 0.01
        for source, target, seq, ack, flags, payload in [
            (client, server, 1000, 0, TCP_SYN, b""),
            (server, client, 5000, 1001, TCP_SYN | TCP_ACK, b""),
            (client, server, 1001, 5001, TCP_ACK | TCP_PSH, b"hello"),
        ]:
            frame = _ethernet_ip_tcp(source, target, seq, ack, flags, payload, from_client=source == client)
            records.append(Record(time, frame))
        if flow and flow % keep_alive_every == 0:
            frame = _ethernet_ip_tcp(("10.1.0.0", 20000), server, keep_alive_seq, 5001, TCP_ACK | TCP_PSH, b".",
                                     from_client=True)
            keep_alive_seq += 1
            records.append(Record(time, frame))
    path.write_bytes(pcapng_bytes(records, [(1, None)]))


def test_many_endless_flows_stay_within_max_open_flows(tmp_path: Path) -> None:
    path = tmp_path / "endless.pcapng"
    write_endless_flows(path, 2500, keep_alive_every=50)
    limit = 1000
    most_open = 0
    items: list[FlowItem] = []
    with read_flows(path, max_open_flows=limit) as reader:
        for item in reader:
            items.append(item)
            most_open = max(most_open, reader.reassembler.open_flows)
    assert most_open == limit and reader.reassembler.flows_let_go == 2500 - limit
    closed = [item for item in items if isinstance(item, FlowClosed)]
    let_go = [item for item in closed if item.reason == f"let go: more than {limit} conversations open"]
    assert len(let_go) == 2500 - limit
    # Least recently active first: flows in the order they went quiet; flow 0 kept talking, so it stays.
    assert [item.flow for item in let_go] == list(range(1, 2500 - limit + 1))
    assert next(item for item in closed if item.flow == 0).reason == "end of capture"
    said = notices(items, "capture.flow-let-go")
    assert [item.flow for item in said] == [item.flow for item in let_go]
    for notice in said:  # each notice comes right before the flow's end
        assert items[items.index(notice) + 1] == next(item for item in let_go if item.flow == notice.flow)
    # Every byte sent is still delivered, once: letting a flow go loses nothing that was captured.
    delivered = b"".join(item.data for item in items if isinstance(item, FlowData) and item.flow)
    assert delivered == b"hello" * 2499


def test_idle_flows_are_let_go_and_late_packets_start_a_new_flow() -> None:
    other = ("10.0.0.3", 40001)
    segments = [
        *handshake(),
        segment(4, True, 1001, 5001, payload=b"early", time=10.0),
        segment(5, True, 7000, flags=TCP_SYN, time=200.0, client=other),
        segment(6, False, 9000, 7001, TCP_SYN | TCP_ACK, time=200.0, client=other),
        segment(7, True, 7001, 9001, payload=b"busy", time=320.0, client=other),  # flow 0 idle for 310 s
        segment(8, True, 1006, 5001, payload=b"late", time=321.0),
    ]
    items = run(segments, idle_timeout=300.0)
    (said,) = notices(items, "capture.flow-let-go")
    assert (said.flow, said.packet) == (0, 7)
    closed = next(item for item in items if isinstance(item, FlowClosed))
    assert closed == FlowClosed(0, 320.0, 7, "let go: idle for 300 s (still open in the capture)")
    reopened = [item for item in items if isinstance(item, FlowOpened)][-1]
    assert (reopened.flow, reopened.packet, reopened.mid_stream, reopened.client) == (2, 8, True, CLIENT)
    flows = collect(items)
    assert flows[0].data("c2s") == b"early" and flows[2].data("c2s") == b"late"
    assert flows[1].closed is not None and flows[1].closed.reason == "end of capture"  # active: kept


def test_a_flow_idle_past_the_timeout_is_let_go_by_its_own_next_packet() -> None:
    segments = [*handshake(), segment(4, True, 1001, 5001, payload=b"a", time=5.0),
                segment(5, True, 1002, 5001, payload=b"b", time=400.0)]
    items = run(segments, idle_timeout=300.0)
    assert [item.reason for item in items if isinstance(item, FlowClosed)] == [
        "let go: idle for 300 s (still open in the capture)", "end of capture"]
    assert [item.flow for item in items if isinstance(item, FlowData)] == [0, 1]


def test_held_bytes_are_bounded_across_flows() -> None:
    limit = 4096
    reassembler = TcpReassembler(max_held_bytes=limit)
    items: list[FlowItem] = []
    number = 0
    for flow in range(20):
        client = (f"10.2.0.{flow}", 30000 + flow)
        items += reassembler.feed(segment(number + 1, True, 1000, flags=TCP_SYN, client=client))
        items += reassembler.feed(segment(number + 2, False, 5000, 1001, TCP_SYN | TCP_ACK, client=client))
        number += 2
        for hole in range(10):  # stream byte 0 never comes: every later segment is held
            number += 1
            items += reassembler.feed(segment(number, True, 1002 + hole * 100, 5001, payload=b"z" * 100,
                                              client=client))
            assert reassembler.held_bytes <= limit
    items += reassembler.finish()
    assert reassembler.held_bytes == 0
    for result in collect(items).values():  # what was held came out, the holes as gaps
        assert result.pieces["c2s"][0] == 1
        assert sum(len(piece) for piece in result.pieces["c2s"] if isinstance(piece, bytes)) == 1000


def test_segments_cut_before_their_payload_count_against_the_limit() -> None:
    reassembler = TcpReassembler(max_out_of_order_bytes=64 * 100)
    for each in handshake():
        reassembler.feed(each)
    for number in range(4, 10_000):  # far-ahead segments whose bytes were all cut at capture time
        cut = TcpSegment(number, 0.0, *CLIENT[:1], SERVER[0], CLIENT[1], SERVER[1], 1002 + number * 10, 5001,
                         TCP_ACK, b"", 10)
        reassembler.feed(cut)
        assert reassembler.held_bytes <= 64 * 100 + 100


# -- hostile captures: bounded, and never a traceback ---------------------------------------------------------------


def test_deeply_nested_ip_in_ip_is_skipped_not_a_recursion_error() -> None:
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, TCP_SYN, 65535, 0, 0)
    packet = tcp
    for _ in range(2000):  # each level an IPv4 header saying "IPv4 inside" (protocol 4)
        packet = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 4 if packet is not tcp else 6, 0,
                             b"\x0a\0\0\x01", b"\x0a\0\0\x02") + packet
    raw = RawPacket(1, 0.0, 101, packet, len(packet))
    assert decode_tcp(raw) is None


def test_wire_length_beyond_any_record_does_not_become_a_huge_gap() -> None:
    frame = _ethernet_ip_tcp(CLIENT, SERVER, 1000, 0, TCP_ACK, b"x" * 20, from_client=True)
    tso = frame[:16] + b"\0\0" + frame[18:]  # IPv4 total length 0: TSO, the record's wire length is the packet's
    decoded = decode_tcp(RawPacket(1, 0.0, 1, tso, 0xFFFFFFFF))
    assert decoded is not None and decoded.payload == b"x" * 20
    assert 0 < decoded.missing <= MAX_RECORD_BYTES


def test_endless_interface_descriptions_stop_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "interfaces.pcapng"
    frame = _ethernet_ip_tcp(CLIENT, SERVER, 1000, 0, TCP_SYN, b"", from_client=True)
    path.write_bytes(pcapng_bytes([Record(1.0, frame)], [(1, None)] * (MAX_INTERFACES + 1)))
    with CaptureFile(path) as capture:
        assert list(capture) == []
        assert capture.truncated and capture.problem is not None and "interfaces" in capture.problem


def test_damaged_shipped_captures_end_cleanly(tmp_path: Path) -> None:
    """Seeded byte damage to the new captures: either not a capture (CaptureError) or decoded to the end."""
    generator = random.Random(6455)
    originals = [ONE_SIDED_FILE.read_bytes(), CONFLICT_FILE.read_bytes()]
    for index in range(120):
        content = bytearray(originals[index % 2])
        for _ in range(generator.randrange(1, 12)):
            content[generator.randrange(len(content))] = generator.randrange(256)
        path = tmp_path / f"damaged-{index}.pcapng"
        path.write_bytes(bytes(content))
        try:
            events = list(CaptureTrace(path))
        except CaptureError:
            continue
        assert len(events) < 500
