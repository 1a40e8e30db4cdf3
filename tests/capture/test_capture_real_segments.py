"""Reassembly of real segments from the loopback capture after reordering, duplicating, overlapping,
dropping, cutting and renumbering them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from capture_test_support import (
    ExpectedFlow,
    FlowResult,
    LiveCapture,
    Record,
    SegmentInfo,
    assert_pieces_match,
    collect,
    pcap_bytes,
    records_of,
    rewrite_tcp,
    segments_of,
)

from wsinspect.capture import read_flows
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_SYN


def flow_records(live: LiveCapture, name: str) -> tuple[list[Record], ExpectedFlow]:
    expected = next(flow for flow in live.expected if flow.name == name)
    records = []
    for record, info in zip(records_of(live.path), segments_of(records_of(live.path)), strict=True):
        if expected.client in (info.src, info.dst) and expected.server in (info.src, info.dst):
            records.append(record)
    return records, expected


def reassemble(records: list[Record], tmp_path: Path, **options: object) -> FlowResult:
    path = tmp_path / "case.pcap"
    path.write_bytes(pcap_bytes(records, 1))
    flows = collect(read_flows(path, **options))  # type: ignore[arg-type]
    assert len(flows) == 1
    return flows[0]


def data_segments(records: list[Record], expected: ExpectedFlow, direction: str) -> list[SegmentInfo]:
    sender = expected.client if direction == "c2s" else expected.server
    return [info for info in segments_of(records) if info.src == sender and info.payload]


def adjacent_pair(records: list[Record], expected: ExpectedFlow) -> int:
    """Index of a c2s data segment directly followed by the next c2s data segment."""
    segments = segments_of(records)
    for info, following in itertools.pairwise(segments):
        if info.payload and following.payload and info.src == following.src == expected.client:
            return info.index
    raise AssertionError("no two adjacent client data segments in the capture")


@pytest.fixture
def bulk(live: LiveCapture) -> tuple[list[Record], ExpectedFlow]:
    return flow_records(live, "bulk")


@pytest.fixture
def chat(live: LiveCapture) -> tuple[list[Record], ExpectedFlow]:
    return flow_records(live, "chat 127.0.0.1")


def test_swapped_segments_are_put_back_in_order(bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    records, expected = bulk
    index = adjacent_pair(records, expected)
    records[index], records[index + 1] = records[index + 1], records[index]
    flow = reassemble(records, tmp_path)
    assert flow.data("c2s") == expected.c2s
    assert flow.data("s2c") == expected.s2c


def test_retransmissions_are_dropped(chat: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    records, expected = chat
    segments = data_segments(records, expected, "c2s") + data_segments(records, expected, "s2c")
    for info in sorted(segments, key=lambda info: info.index, reverse=True):
        records.insert(info.index + 2, records[info.index])  # each data segment again, a little later
    records.insert(len(records) - 1, records[segments[0].index])  # and one very late copy
    flow = reassemble(records, tmp_path)
    assert flow.data("c2s") == expected.c2s
    assert flow.data("s2c") == expected.s2c


def test_overlapping_segments_are_trimmed(bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    records, expected = bulk
    index = adjacent_pair(records, expected)
    first, second = segments_of(records[index : index + 2])
    # Replace the pair by: the second half of `first` plus the start of `second`, sent out of order,
    # then `first` and `second` whole. Every byte arrives twice; each must come out once.
    middle = len(first.payload) // 2
    overlapping = rewrite_tcp(
        records[index].data, seq=first.seq + middle, payload=first.payload[middle:] + second.payload[:1000]
    )
    time = records[index].time
    records[index:index] = [Record(time, overlapping)]
    flow = reassemble(records, tmp_path)
    assert flow.data("c2s") == expected.c2s
    assert flow.data("s2c") == expected.s2c


def test_dropped_segment_is_a_gap_once_the_peer_acks_past_it(
    bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path
) -> None:
    records, expected = bulk
    segments = data_segments(records, expected, "c2s")
    dropped = segments[len(segments) // 2]
    del records[dropped.index]
    flow = reassemble(records, tmp_path)
    assert flow.gaps("c2s") == [len(dropped.payload)]
    assert_pieces_match(flow.pieces["c2s"], expected.c2s)
    assert flow.data("s2c") == expected.s2c
    # The gap is declared at the first ACK that covers it, not at the end of the capture.
    covering_ack = next(
        info
        for info in segments_of(records)
        if info.src == expected.server
        and info.flags & TCP_ACK
        and len(dropped.payload) <= (info.ack - dropped.seq) & 0xFFFFFFFF < 1 << 31
    )
    assert flow.gap_packets == [covering_ack.index + 1]
    assert flow.closed is not None and flow.closed.reason == "FIN"


def test_dropped_chat_message_and_bytes_after_it(chat: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    records, expected = chat
    dropped = data_segments(records, expected, "s2c")[1]
    del records[dropped.index]
    flow = reassemble(records, tmp_path)
    assert flow.gaps("s2c") == [len(dropped.payload)]
    assert_pieces_match(flow.pieces["s2c"], expected.s2c)
    assert flow.data("c2s") == expected.c2s


def test_hole_is_given_up_when_too_much_is_held(bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    """Without ACKs to prove the hole, the out-of-order limit decides (here 100 kB)."""
    records, expected = bulk
    segments = segments_of(records)
    dropped = data_segments(records, expected, "c2s")[1]
    kept = [
        record
        for record, info in zip(records, segments, strict=True)
        if info.index != dropped.index and (info.src == expected.client or info.flags & TCP_SYN)
    ]
    flow = reassemble(kept, tmp_path, max_out_of_order_bytes=100_000)
    assert flow.gaps("c2s") == [len(dropped.payload)]
    assert_pieces_match(flow.pieces["c2s"], expected.c2s)
    # Given up while data still followed, not only at the end of the capture.
    assert flow.gap_packets[0] < flow.data_packets[-1]


def test_hole_without_ack_becomes_a_gap_at_the_end_of_capture(
    bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path
) -> None:
    records, expected = bulk
    segments = segments_of(records)
    dropped = data_segments(records, expected, "c2s")[-2]
    kept = [
        record
        for record, info in zip(records, segments, strict=True)
        if info.index < dropped.index or (info.index > dropped.index and info.src == expected.client)
    ]
    kept = [record for record in kept if not segments_of([record])[0].flags & TCP_FIN]
    flow = reassemble(kept, tmp_path)
    assert flow.closed is not None and flow.closed.reason == "end of capture"
    assert flow.gaps("c2s") == [len(dropped.payload)]
    assert set(flow.gap_packets) == {len(kept)}  # declared at the end of capture
    assert_pieces_match(flow.pieces["c2s"], expected.c2s)


@pytest.mark.parametrize("initial", [0xFFFFFFFF - 100_000, 0xFFFFFFFF, 0])
def test_sequence_numbers_wrapping_around(
    initial: int, bulk: tuple[list[Record], ExpectedFlow], tmp_path: Path
) -> None:
    records, expected = bulk
    segments = segments_of(records)
    client_shift = initial - segments[0].seq  # the client's SYN gets sequence number `initial`
    server_shift = (1 << 31) + 12345
    rewritten = []
    for record, info in zip(records, segments, strict=True):
        if info.src == expected.client:
            seq, ack = info.seq + client_shift, info.ack + server_shift
        else:
            seq, ack = info.seq + server_shift, info.ack + client_shift
        if not info.flags & TCP_ACK:
            ack = 0
        rewritten.append(Record(record.time, rewrite_tcp(record.data, seq=seq, ack=ack)))
    flow = reassemble(rewritten, tmp_path)
    assert flow.data("c2s") == expected.c2s
    assert flow.data("s2c") == expected.s2c
    assert flow.closed is not None and flow.closed.reason == "FIN"


@pytest.mark.parametrize("snaplen", [54, 66, 120, 1000])
def test_records_cut_at_capture_time_give_gaps_not_data(
    snaplen: int, chat: tuple[list[Record], ExpectedFlow], tmp_path: Path
) -> None:
    records, expected = chat
    cut = [Record(record.time, record.data[:snaplen], len(record.data)) for record in records]
    flow = reassemble(cut, tmp_path)
    for direction, sent in (("c2s", expected.c2s), ("s2c", expected.s2c)):
        assert_pieces_match(flow.pieces[direction], sent)
    total_gaps = sum(flow.gaps("c2s")) + sum(flow.gaps("s2c"))
    assert total_gaps > 0
    if snaplen <= 66:  # nothing of any payload was kept (66 = Ethernet + IPv4 + TCP with timestamps)
        assert total_gaps == len(expected.c2s) + len(expected.s2c)


def test_capture_starting_mid_connection(chat: tuple[list[Record], ExpectedFlow], tmp_path: Path) -> None:
    records, expected = chat
    first_data = data_segments(records, expected, "c2s")[1].index
    flow = reassemble(records[first_data:], tmp_path, server_ports=[expected.server[1]])
    assert flow.opened.mid_stream
    assert flow.opened.client == expected.client
    assert flow.opened.client_reason == f"port {expected.server[1]} is the server (--port)"
    c2s_skipped = sum(len(info.payload) for info in segments_of(records[:first_data]) if info.src == expected.client)
    s2c_skipped = sum(len(info.payload) for info in segments_of(records[:first_data]) if info.src == expected.server)
    assert flow.data("c2s") == expected.c2s[c2s_skipped:]
    assert flow.data("s2c") == expected.s2c[s2c_skipped:]
