"""Fuzz target 2: the frame parser on mutated real frame streams, in sync and out of sync, with a small max_payload.

Seeds: each shipped capture's directions after their handshake (rebuilt by the reassembler). The contract
(frames.py): feeding never raises; a frame keeps at most ``max_payload`` bytes of payload and never more than its
length field says; all frames together keep no more payload than was fed; frames come in stream order; and the same
bytes give the same items however they are split (extends tests/core/test_chunking.py, which builds its streams,
to mutated real ones and to the parser alone, mid-stream included).
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz_support import chunked, frame_stream_seeds, fuzz_settings, mutated
from hypothesis import given
from hypothesis import strategies as st

from wsinspect.core.frames import Frame, FrameParser, ParseItem

MAX_PAYLOADS = [0, 1, 2, 125, 126, 1000, 65536]


@dataclass(frozen=True)
class Stream:
    data: bytes
    max_payload: int
    in_sync: bool
    expect_masked: bool | None
    rsv1_allowed: bool


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    _, direction, data = draw(st.sampled_from(frame_stream_seeds()), label="seed")
    start = draw(st.integers(0, len(data)), label="start") if draw(st.booleans(), label="mid-stream") else 0
    return Stream(data=draw(mutated(data[start:], max_edits=8), label="stream"),
                  max_payload=draw(st.sampled_from(MAX_PAYLOADS), label="max_payload"),
                  in_sync=start == 0,
                  expect_masked=draw(st.sampled_from([direction == "c2s", None]), label="expect_masked"),
                  rsv1_allowed=draw(st.booleans(), label="rsv1_allowed"))


def new_parser(stream: Stream) -> FrameParser:
    parser = FrameParser(max_payload=stream.max_payload, in_sync=stream.in_sync, expect_masked=stream.expect_masked)
    parser.rsv1_allowed = stream.rsv1_allowed
    return parser


def check_items(items: list[ParseItem], stream: Stream, seen: int) -> None:
    """What any run must hold: bounded payloads, frames in order, nothing beyond the ``seen`` stream bytes."""
    frames = [item for item in items if isinstance(item, Frame)]
    assert sum(len(frame.payload) for frame in frames) <= len(stream.data)
    last_end = 0
    for frame in frames:
        assert 2 <= len(frame.header) <= 14
        assert len(frame.payload) <= min(frame.payload_length, stream.max_payload)
        assert len(frame.payload) + frame.missing <= frame.payload_length
        assert frame.offset >= last_end, "frames overlap or go backwards"
        assert frame.offset + len(frame.header) + len(frame.payload) <= seen
        last_end = frame.offset + len(frame.header)


def feed_all(stream: Stream, pieces: list[bytes | int]) -> list[ParseItem]:
    """Feed bytes, and ints as gaps of that many never-captured bytes; then finish()."""
    parser = new_parser(stream)
    items: list[ParseItem] = []
    for piece in pieces:
        if isinstance(piece, int):
            items += parser.gap(piece)
        else:
            items += parser.feed(piece)
            if parser.in_sync:  # in sync, only the frame being collected is held: header + its kept payload
                assert parser.buffered <= 14 + stream.max_payload
    return items + parser.finish()


@fuzz_settings(ci_examples=100)
@given(stream=streams(), cuts=st.lists(st.integers(0, 1 << 20), max_size=30))
def test_frame_parser_chunking_invariance(stream: Stream, cuts: list[int]) -> None:
    whole = feed_all(stream, [stream.data])
    check_items(whole, stream, len(stream.data))
    assert feed_all(stream, list(chunked(stream.data, cuts))) == whole
    if len(stream.data) <= 3000:
        assert feed_all(stream, [stream.data[i : i + 1] for i in range(len(stream.data))]) == whole


@fuzz_settings(ci_examples=100)
@given(stream=streams(), cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
       gaps=st.lists(st.tuples(st.integers(0, 1 << 20), st.sampled_from([1, 2, 13, 126, 5000, 1 << 40])), max_size=4))
def test_frame_parser_with_gaps_stays_bounded(stream: Stream, cuts: list[int], gaps: list[tuple[int, int]]) -> None:
    """Bytes never captured (``gap``) anywhere, even of absurd size: still no exception, still bounded."""
    pieces: list[bytes | int] = list(chunked(stream.data, cuts))
    for where, missing in gaps:
        pieces.insert(where % (len(pieces) + 1), missing)
    seen = len(stream.data) + sum(missing for _, missing in gaps)
    check_items(feed_all(stream, pieces), stream, seen)
