"""TcpReassembler on hand-made segments: ordering, gaps, closing, flow numbering, memory."""

from __future__ import annotations

import itertools
import random

import pytest
from capture_test_support import assert_pieces_match, collect
from hypothesis import given, settings
from hypothesis import strategies as st

from wsinspect.capture import (
    FlowClosed,
    FlowData,
    FlowGap,
    FlowItem,
    FlowNotice,
    FlowOpened,
    TcpReassembler,
    TcpSegment,
)
from wsinspect.capture import reassembly as reassembly_module
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 8765)
MASK = 0xFFFFFFFF


class Conversation:
    """Builds segments of one connection with increasing frame numbers."""

    def __init__(self, client: tuple[str, int] = CLIENT, server: tuple[str, int] = SERVER) -> None:
        self.client = client
        self.server = server
        self.number = 0

    def segment(
        self, from_client: bool, seq: int, ack: int = 0, flags: int = TCP_ACK, payload: bytes = b"", missing: int = 0
    ) -> TcpSegment:
        self.number += 1
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        return TcpSegment(
            self.number,
            float(self.number),
            src[0],
            dst[0],
            src[1],
            dst[1],
            seq & MASK,
            ack & MASK,
            flags,
            payload,
            missing,
        )

    def c(self, seq: int, ack: int = 0, flags: int = TCP_ACK, payload: bytes = b"", missing: int = 0) -> TcpSegment:
        return self.segment(True, seq, ack, flags, payload, missing)

    def s(self, seq: int, ack: int = 0, flags: int = TCP_ACK, payload: bytes = b"", missing: int = 0) -> TcpSegment:
        return self.segment(False, seq, ack, flags, payload, missing)


def run(segments: list[TcpSegment], **options: object) -> list[FlowItem]:
    reassembler = TcpReassembler(**options)  # type: ignore[arg-type]
    items: list[FlowItem] = []
    for segment in segments:
        items += reassembler.feed(segment)
    return items + reassembler.finish()


def handshake(talk: Conversation, client_isn: int = 1000, server_isn: int = 5000) -> list[TcpSegment]:
    return [
        talk.c(client_isn, flags=TCP_SYN),
        talk.s(server_isn, client_isn + 1, TCP_SYN | TCP_ACK),
        talk.c(client_isn + 1, server_isn + 1),
    ]


def test_out_of_order_segments_are_held_then_delivered_once() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, TCP_PSH | TCP_ACK, b"abc"),
        talk.c(1007, 5001, TCP_PSH | TCP_ACK, b"ghi"),
        talk.c(1010, 5001, TCP_PSH | TCP_ACK, b"jk"),
        talk.c(1004, 5001, TCP_PSH | TCP_ACK, b"def"),
    ]
    items = run(segments)
    data = [item for item in items if isinstance(item, FlowData)]
    assert [(item.packet, item.data) for item in data] == [(4, b"abc"), (7, b"defghijk")]
    assert not [item for item in items if isinstance(item, FlowGap)]


@pytest.mark.parametrize("client_isn", [0xFFFFFFFE, 0xFFFFFFFF, 0x7FFFFFFF])
def test_sequence_wraparound(client_isn: int) -> None:
    talk = Conversation()
    start = client_isn + 1
    segments = [
        *handshake(talk, client_isn),
        talk.c(start + 2, 5001, payload=b"cd"),  # out of order across the wrap
        talk.c(start, 5001, payload=b"ab"),
        talk.c(start + 4, 5001, payload=b"ef"),
        talk.c(start + 2, 5001, payload=b"cdefg"),  # overlap: only "g" is new
    ]
    flows = collect(run(segments))
    assert flows[0].data("c2s") == b"abcdefg"


def test_overlapping_retransmission_delivers_only_new_bytes() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, payload=b"hello"),
        talk.c(1001, 5001, payload=b"hello"),  # plain retransmission
        talk.c(1004, 5001, payload=b"lo world"),  # overlaps the tail
        talk.c(1020, 5001, payload=b"late"),  # ahead: held
        talk.c(1012, 5001, payload=b"12345678zz"),  # fills the hole and overlaps the held segment
    ]
    items = run(segments)
    flows = collect(items)
    # Bytes sent twice with different content are taken from the segment that starts first.
    assert flows[0].data("c2s") == b"hello world12345678zzte"


def test_fin_before_the_last_data_waits_for_it() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, payload=b"first "),
        talk.c(1013, 5001, TCP_FIN | TCP_ACK, b"third"),  # FIN with data, before "second"
        talk.c(1007, 5001, payload=b"second"),
        talk.s(5001, 1019, TCP_FIN | TCP_ACK),
        talk.c(1019, 5002),
    ]
    items = run(segments)
    flows = collect(items)
    assert flows[0].data("c2s") == b"first secondthird"
    assert flows[0].closed == FlowClosed(0, 7.0, 7, "FIN")
    assert not [item for item in items if isinstance(item, FlowGap)]


def test_hole_is_a_gap_when_acked_and_later_data_follows() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, payload=b"one"),
        # "two" (1004..1007) never captured
        talk.s(5001, 1007),  # the server acknowledges it: it was sent
        talk.c(1007, 5001, payload=b"three"),
    ]
    items = run(segments)
    gaps = [item for item in items if isinstance(item, FlowGap)]
    assert gaps == [FlowGap(0, 6.0, 6, "c2s", 3)]
    assert_pieces_match(collect(items)[0].pieces["c2s"], b"onetwothree")


def test_ack_stored_before_its_data_does_not_lose_the_data() -> None:
    """Merged captures can hold an ACK before the segment it acknowledges."""
    talk = Conversation()
    segments = [*handshake(talk), talk.s(5001, 1006), talk.c(1001, 5001, payload=b"hello")]
    flows = collect(run(segments))
    assert flows[0].pieces["c2s"] == [b"hello"]


def test_rst_flushes_held_data_with_a_gap() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, payload=b"aa"),
        talk.c(1005, 5001, payload=b"cc"),
        talk.s(5001, 1003, TCP_RST | TCP_ACK),
        talk.c(1007, 5001, payload=b"after the reset"),  # ignored: the connection is gone
    ]
    reassembler = TcpReassembler()
    items = [item for segment in segments for item in reassembler.feed(segment)] + reassembler.finish()
    flows = collect(items)
    assert flows[0].pieces["c2s"] == [b"aa", 2, b"cc"]
    assert flows[0].closed is not None and flows[0].closed.reason == "RST"
    assert reassembler.late_segments == 1


def test_cut_payload_is_a_gap() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, payload=b"abc", missing=7),
        talk.c(1011, 5001, payload=b"next"),
    ]
    flows = collect(run(segments))
    assert flows[0].pieces["c2s"] == [b"abc", 7, b"next"]


def test_syn_carrying_data() -> None:
    talk = Conversation()
    segments = [talk.c(1000, flags=TCP_SYN, payload=b"GET"), talk.s(5000, 1004, TCP_SYN | TCP_ACK)]
    flows = collect(run(segments))
    assert flows[0].data("c2s") == b"GET"


def test_data_after_fin_and_far_ahead_is_ignored() -> None:
    talk = Conversation()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, TCP_FIN | TCP_ACK, b"bye"),
        talk.c(1005, 5001, payload=b"after FIN"),
        talk.s(5001 + (1 << 30) + 10, 1005, payload=b"implausible"),
        talk.s(5001, 1005, payload=b"ok"),
    ]
    flows = collect(run(segments))
    assert flows[0].pieces == {"c2s": [b"bye"], "s2c": [b"ok"]}


def test_out_of_order_limit() -> None:
    talk = Conversation()
    segments = [*handshake(talk), talk.c(1001, 5001, payload=b"a")]
    segments += [talk.c(1002 + 10 + 10 * i, 5001, payload=b"x" * 10) for i in range(10)]
    # Each held segment counts its bytes plus a fixed cost for holding it at all.
    held_per_segment = 10 + reassembly_module._HELD_ENTRY_COST
    items = run(segments, max_out_of_order_bytes=5 * held_per_segment)
    gaps = [item for item in items if isinstance(item, FlowGap)]
    assert gaps[0].missing == 10 and gaps[0].packet == 4 + 6  # the 6th held segment tips it over
    assert_pieces_match(collect(items)[0].pieces["c2s"], b"a" + b"?" * 10 + b"x" * 100)


def test_who_is_the_client() -> None:
    def opened(segment: TcpSegment, server_ports: tuple[int, ...] = ()) -> FlowOpened:
        item = TcpReassembler(server_ports).feed(segment)[0]
        assert isinstance(item, FlowOpened)
        return item

    talk = Conversation()
    syn_ack = opened(talk.s(5000, 1001, TCP_SYN | TCP_ACK))
    assert (syn_ack.client, syn_ack.client_reason, syn_ack.mid_stream) == (CLIENT, "SYN-ACK", False)
    by_port = opened(talk.s(5000, 1001), (40000,))  # --port names the client's port as the server
    assert (by_port.client, by_port.client_reason) == (SERVER, "port 40000 is the server (--port)")
    guess = opened(talk.s(5000, 1001))
    assert (guess.client, guess.client_reason, guess.mid_stream) == (CLIENT, "guess: lower port is the server", True)
    same_ports = Conversation(("10.0.0.1", 7000), ("10.0.0.2", 7000))
    equal = opened(same_ports.s(5000, 1001))
    assert equal.client == ("10.0.0.2", 7000) and equal.client_reason.startswith("guess")


def test_flow_numbers_follow_wireshark_rules() -> None:
    talk = Conversation()
    reassembler = TcpReassembler()
    segments = [
        *handshake(talk),
        talk.c(1001, 5001, TCP_FIN | TCP_ACK),
        talk.s(5001, 1002, TCP_FIN | TCP_ACK),
        talk.c(1002, 5002),  # last ACK of the close: still flow 0 (dropped)
        talk.c(1000, flags=TCP_SYN),  # retransmitted SYN with the old ISN: flow 0 (dropped)
        talk.c(9000, flags=TCP_SYN),  # new ISN: flow 1
        talk.s(7000, 9001, TCP_SYN | TCP_ACK),
        talk.c(9001, 7001, payload=b"x"),
        talk.c(20000, flags=TCP_SYN),  # SYN with another ISN while flow 1 is open: flow 2
    ]
    items = [item for segment in segments for item in reassembler.feed(segment)] + reassembler.finish()
    opened = [(item.flow, item.packet) for item in items if isinstance(item, FlowOpened)]
    closed = [(item.flow, item.packet, item.reason) for item in items if isinstance(item, FlowClosed)]
    assert opened == [(0, 1), (1, 8), (2, 11)]
    assert closed == [(0, 5, "FIN"), (1, 11, "port reused by a new SYN"), (2, 11, "end of capture")]
    assert reassembler.late_segments == 2


def test_icmp_quoted_header_counts_a_connection_without_data() -> None:
    talk = Conversation()
    quoted = TcpSegment(2, 2.0, *CLIENT[:1], "10.9.9.9", CLIENT[1], 81, 1, 0, TCP_SYN, b"", 0, True)
    items = run([*handshake(talk)[:1], quoted, talk.c(1001, 0, TCP_ACK, b"data")])
    assert [type(item).__name__ for item in items] == [
        "FlowOpened",
        "FlowOpened",
        "FlowData",
        "FlowNotice",  # flow 0: the client acknowledged a server never seen (capture.one-sided)
        "FlowClosed",
        "FlowClosed",
    ]
    assert items[1] == FlowOpened(1, 2.0, 2, CLIENT, ("10.9.9.9", 81), "SYN", False)


def test_closed_flows_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reassembly_module, "_CLOSED_REMEMBERED", 50)
    reassembler = TcpReassembler()
    for port in range(1000, 3000):
        talk = Conversation((CLIENT[0], port), SERVER)
        for segment in [
            *handshake(talk),
            talk.c(1001, 5001, payload=b"hi"),
            talk.s(5001, 1003, TCP_FIN | TCP_ACK),
            talk.c(1003, 5002, TCP_RST),
        ]:
            reassembler.feed(segment)
        assert reassembler.open_flows == 0
    assert len(reassembler._closed) <= 100
    assert reassembler.finish() == []


def test_finish_without_segments() -> None:
    assert TcpReassembler().finish() == []


@settings(max_examples=150, deadline=None)
@given(
    stream=st.binary(min_size=1, max_size=400),
    isn=st.integers(0, MASK),
    cuts=st.lists(st.integers(1, 399), max_size=25),
    extra=st.lists(st.tuples(st.integers(0, 399), st.integers(1, 60)), max_size=8),
    drop=st.lists(st.booleans(), max_size=40),
    seed=st.integers(0, 2**32),
)
def test_any_segmentation_order_and_loss_gives_the_stream_with_exact_gaps(
    stream: bytes, isn: int, cuts: list[int], extra: list[tuple[int, int]], drop: list[bool], seed: int
) -> None:
    """Chunk the stream, add overlapping copies, drop some, shuffle and duplicate: the output is the
    stream with exactly the never-sent bytes as gaps, each delivered byte once and in order."""
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    pieces = list(itertools.pairwise(bounds)) + [(start, min(start + size, len(stream))) for start, size in extra]
    pieces = [(start, end) for start, end in pieces if start < end]
    kept = [piece for index, piece in enumerate(pieces) if not (index < len(drop) and drop[index])]
    shuffler = random.Random(seed)
    kept += shuffler.sample(kept, len(kept) // 3)  # duplicates
    shuffler.shuffle(kept)
    covered: set[int] = set()
    for start, end in kept:
        covered.update(range(start, end))

    talk = Conversation()
    segments = [talk.c(isn, flags=TCP_SYN), talk.s(77, isn + 1, TCP_SYN | TCP_ACK)]
    segments += [talk.c(isn + 1 + start, 78, payload=stream[start:end]) for start, end in kept]
    segments.append(talk.s(78, isn + 1 + len(stream)))  # the peer got everything
    segments.append(talk.c(isn + 1 + len(stream), 78, TCP_FIN | TCP_ACK))
    segments.append(talk.s(78, isn + 2 + len(stream), TCP_FIN | TCP_ACK))
    items = run(segments)
    flow = collect(items)[0]
    assert_pieces_match(flow.pieces["c2s"], stream)
    assert sum(flow.gaps("c2s")) == len(stream) - len(covered)
    assert flow.closed is not None and flow.closed.reason == "FIN"
    # Every copy was faithful and both sides are there: nothing to notice (no false conflict, not one-sided).
    assert not [item for item in items if isinstance(item, FlowNotice)]
