"""The core's fast paths decide as the general code does.

Each fast path takes the usual case and hands everything else on: a whole frame built straight from the chunk; a
piece that does not complete the frame being collected appended without parsing; one frame carrying a whole
(plain or compressed) message; a header block that arrives in one piece; a head with CRLF line ends only; short
extension lines parsed once. Each test feeds the same protocol facts in a shape the fast path takes and in one it
hands on (fragments, byte-by-byte chunks, a split head, bare LF, long lines) and expects the same verdicts.
"""

from __future__ import annotations

import zlib

import pytest

from tests.core.helpers import (
    BINARY,
    CONT,
    TEXT,
    Compressor,
    cframe,
    open_connection,
    request_bytes,
    response_bytes,
    sframe,
)
from wsinspect.core.connection import Connection, Limits, MemoryBudget
from wsinspect.core.events import Event, FrameEvent, Message, Notice, Violation
from wsinspect.core.frames import Frame, FrameParser, ParseItem, Truncated
from wsinspect.core.handshake import find_header_end, parse_extensions, parse_request, parse_response

OFFER = "permessage-deflate"


def verdicts(events: list[Event]) -> list[tuple[str, str]]:
    """What was concluded, without where: the kind and check of every violation and notice, in order."""
    return [(type(e).__name__, e.check.id) for e in events if isinstance(e, (Violation, Notice))]


def message_facts(events: list[Event]) -> list[tuple[bytes, str | None, bool, bool]]:
    return [(m.data, m.text, m.compressed, m.complete) for m in events if isinstance(m, Message)]


def compressed_fragments(stream: bytes) -> list[bytes]:
    """A compressed stream cut in two fragments: the first has RSV1 (RFC 7692 6.1), the second continues it."""
    middle = len(stream) // 2
    return [cframe(TEXT, stream[:middle], fin=False, rsv1=True), cframe(CONT, stream[middle:])]


def deflated(data: bytes) -> bytes:
    return Compressor().compress(data)


@pytest.mark.parametrize(("payload", "limits", "budget_limit", "expected"), [
    (deflated("héllo wörld ".encode() * 50), Limits(), None, []),
    (deflated(b"\xff\xfe not utf-8"), Limits(), None, [("Violation", "message.invalid-utf8")]),
    (b"\x07\x07\x07 not deflate", Limits(), None, [("Violation", "message.inflate-failed")]),
    (deflated(b"a" * 5000), Limits(max_message=1000), None, [("Violation", "message.too-big")]),
    (deflated(b"a" * 5000), Limits(), 1000, [("Notice", "capture.memory-budget")]),
])
def test_whole_compressed_message_as_fragments_would(payload: bytes, limits: Limits, budget_limit: int | None,
                                                      expected: list[tuple[str, str]]) -> None:
    """One compressed frame carrying a whole message (the fast path) and the same stream in two fragments (the
    general path): the same verdicts and the same message, and the budget given back."""
    results = []
    for frames in ([cframe(TEXT, payload, rsv1=True)], compressed_fragments(payload)):
        budget = MemoryBudget(budget_limit) if budget_limit is not None else None
        conn = Connection(1, limits=limits, budget=budget)
        conn.receive("c2s", request_bytes(extensions=OFFER), time=0.0)
        conn.receive("s2c", response_bytes(extensions=OFFER), time=0.0)
        events = [event for frame in frames for event in conn.receive("c2s", frame, time=1.0)]
        results.append((verdicts(events), message_facts(events)))
        assert budget is None or budget.held == 0
    assert results[0] == results[1]
    assert results[0][0] == expected


def test_whole_compressed_message_counts_towards_the_peak() -> None:
    budget = MemoryBudget()
    conn = Connection(1, budget=budget)
    conn.receive("c2s", request_bytes(extensions=OFFER), time=0.0)
    conn.receive("s2c", response_bytes(extensions=OFFER), time=0.0)
    conn.receive("c2s", cframe(BINARY, deflated(b"z" * 3000), rsv1=True), time=1.0)
    assert budget.held == 0 and budget.peak == 3000


def test_whole_compressed_message_after_a_lost_start_of_context() -> None:
    """Mid-stream, RSV1 is taken as compression with the earlier window unknown: a message referring back into
    it is reported as such, and the next one that stands alone inflates (fast path, one frame each)."""
    compressor = Compressor()
    compressor.compress(b"repeat " * 40)  # sent before the capture began
    second, third = compressor.compress(b"repeat " * 40), compressor.compress(b"0123456789")
    conn = Connection(1, mid_stream=True)
    events = conn.receive("s2c", b"".join(sframe(TEXT, data, rsv1=True) for data in (second, third)), time=1.0)
    events += conn.end(time=2.0)
    assert verdicts(events) == [("Notice", "message.inflate-context-lost")]
    assert message_facts(events) == [(b"", None, True, False), (b"0123456789", "0123456789", True, True)]


def feed_in(parser: FrameParser, data: bytes, sizes: list[int]) -> list[ParseItem]:
    items: list[ParseItem] = []
    position = 0
    for size in sizes:
        items += parser.feed(data[position : position + size])
        position += size
    items += parser.feed(data[position:])
    return items


STREAM = b"".join((
    sframe(TEXT, b"hi"),
    sframe(BINARY, bytes(range(256)) * 20),  # 16-bit length, collected over many pieces
    sframe(BINARY, b"x" * 70_000),  # 64-bit length
    cframe(BINARY, bytes(range(256)) * 12, key=b"\x01\x02\x03\x04"),  # masked, past apply_mask's lane crossover
    cframe(TEXT, b"masked", key=b"\x01\x02\x03\x04"),
    sframe(CONT, b""),
))


@pytest.mark.parametrize("sizes", [[len(STREAM)], [1] * 200 + [7] * 300, [3, 1000, 1, 5000, 2, 70_000, 5]])
def test_parser_pieces_give_the_same_frames(sizes: list[int]) -> None:
    """A piece that does not complete the frame being collected is appended without parsing: the frames are the
    ones the whole stream gives, offsets included."""
    assert feed_in(FrameParser(), STREAM, sizes) == FrameParser().feed(STREAM)


def test_parser_collecting_then_gap_finish_and_let_go() -> None:
    """While a frame is being collected piece by piece, a gap inside its payload, the end of the stream and
    letting it go each see the frame as the general code reads it."""
    frame = sframe(BINARY, b"y" * 10_000)
    for make_end in ("gap", "finish", "let_go"):
        parser = FrameParser()
        parser.feed(frame[:100])
        parser.feed(frame[100:3000])
        if make_end == "gap":
            (cut,) = parser.gap(1000)
            after = parser.feed(frame[4000:] + sframe(TEXT, b"next"))
            assert [type(item) for item in after] == [Frame] and after[0].payload == b"next"  # type: ignore[union-attr]
        elif make_end == "finish":
            (cut,) = parser.finish()
        else:
            (cut,) = parser.let_go()
            assert parser.feed(frame[3000:] + sframe(TEXT, b"next"))[0].payload == b"next"  # type: ignore[union-attr]
        assert isinstance(cut, Frame)
        assert cut.payload == b"y" * (3000 - 4) and cut.missing == 10_000 - (3000 - 4)
    parser = FrameParser()
    parser.feed(frame[:3])  # the extended length not complete yet: nothing is known of the frame
    assert parser.gap(5) == [Truncated(0, 3)]


def test_usual_frame_table_follows_the_negotiation() -> None:
    """RSV1 on a data frame is usual only where permessage-deflate was agreed; elsewhere the rules report it."""
    plain, _ = open_connection()
    compressed, _ = open_connection(offer=OFFER, accept=OFFER)
    frame = cframe(BINARY, zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"") + b"\x00", rsv1=True)
    assert ("Violation", "frame.rsv") in verdicts(plain.receive("c2s", frame, time=1.0))
    assert ("Violation", "frame.rsv") not in verdicts(compressed.receive("c2s", frame, time=1.0))
    ping_fragment = cframe(0x9, b"", fin=False)
    assert verdicts(compressed.receive("c2s", ping_fragment, time=1.0)) == [("Violation", "control.fragmented")]
    long_ping = cframe(0x9, b"p" * 126)
    assert verdicts(compressed.receive("c2s", long_ping, time=1.0)) == [("Violation", "control.too-long")]
    short_in_16 = cframe(BINARY, b"s" * 10, length_bits=16)
    assert verdicts(compressed.receive("c2s", short_in_16, time=1.0)) == [("Violation", "frame.length-not-minimal")]
    assert verdicts(compressed.receive("c2s", sframe(BINARY, b"unmasked"), time=1.0)) == [
        ("Violation", "frame.client-unmasked")]


def test_header_block_in_one_piece_or_split() -> None:
    """A header block that arrives whole is cut from the chunk; split anywhere, it is collected: same events."""
    head = request_bytes() + cframe(TEXT, b"early")
    answer = response_bytes() + sframe(TEXT, b"hello")
    whole = Connection(1)
    expected = whole.receive("c2s", head, time=0.0) + whole.receive("s2c", answer, time=0.0)
    for cut in (1, 10, len(request_bytes()) - 1, len(request_bytes()) + 1):
        split = Connection(1)
        events = split.receive("c2s", head[:cut], time=0.0) + split.receive("c2s", head[cut:], time=0.0)
        events += split.receive("s2c", answer[:cut], time=0.0) + split.receive("s2c", answer[cut:], time=0.0)
        assert events == expected
    assert [type(e) for e in expected].count(FrameEvent) == 2


def old_find_header_end(buffer: bytes, start: int = 0) -> int:
    crlf = buffer.find(b"\r\n\r\n", start)
    lf = buffer.find(b"\n\n", start)
    candidates = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(candidates) if candidates else -1


@pytest.mark.parametrize("data", [b"", b"a", b"a\r\n\r\nb", b"a\n\nb", b"a\r\n\nb", b"a\n\r\n\r\nb", b"\n\n\r\n\r\n",
                                  b"\r\n\r\n\n\n", b"a\r\n\r", b"x\n\r\n"])
def test_find_header_end_picks_the_first_blank_line(data: bytes) -> None:
    for start in range(len(data) + 1):
        assert find_header_end(data, start) == old_find_header_end(data, start)


@pytest.mark.parametrize("ending", ["\r\n\r\n", "\r\n\r\r\n", "\r\n\r", "\r\n"])
def test_crlf_head_reads_as_the_general_split(ending: str) -> None:
    """A head with CRLF line ends only is split at CRLF directly; with one bare LF it goes the general way: the
    lines, and so the headers, are the same, and only the bare LF is reported."""
    lines = ["GET /chat HTTP/1.1", "Host: a", "X-Odd: value\r", " folded", "Upgrade: websocket"]
    crlf = parse_request(("\r\n".join(lines) + ending).encode("latin-1"))
    bare = parse_request(("\r\n".join(lines[:-1]) + "\n" + lines[-1] + ending).encode("latin-1"))
    assert crlf.headers.items == bare.headers.items
    assert [f.check.id for f in bare.syntax] == ["http.bare-lf"] + [f.check.id for f in crlf.syntax]
    assert crlf.headers.get("x-odd") == "value\r folded"
    response = parse_response(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n")
    assert response.status == 101 and response.headers.items == (("Upgrade", "websocket"),)


def test_extension_lines_short_and_long_parse_alike() -> None:
    short = "permessage-deflate; client_max_window_bits=10, x-other; a; b=\"c\""
    long = ", ".join([short] * 20)
    assert len(long) > 256
    (first, second) = parse_extensions([short])
    assert parse_extensions([short]) == [first, second]  # memoised: the same answer again
    assert parse_extensions([long]) == [first, second] * 20
    assert parse_extensions([short, short]) == [first, second, first, second]
    assert first.params == (("client_max_window_bits", "10"),) and second.params == (("a", None), ("b", "c"))


@pytest.mark.parametrize("compressed", [False, True])
def test_whole_message_after_close_as_before_it(compressed: bool) -> None:
    """A whole message after the sender's close frame is reported, then taken as any whole message (the general
    path): a plain one is not held, so a budget smaller than it does not cut it."""
    budget = MemoryBudget(limit=10)
    conn = Connection(1, budget=budget)
    conn.receive("c2s", request_bytes(extensions=OFFER), time=0.0)
    conn.receive("s2c", response_bytes(extensions=OFFER), time=0.0)
    conn.receive("c2s", cframe(0x8, b"\x03\xe8"), time=1.0)
    data = b"after close " * 10
    frame = cframe(TEXT, deflated(data), rsv1=True) if compressed else cframe(TEXT, data)
    events = conn.receive("c2s", frame, time=2.0)
    expected = [("Violation", "close.data-after-close")] + ([("Notice", "capture.memory-budget")] if compressed else [])
    assert verdicts(events) == expected
    assert message_facts(events) == [(b"", None, True, False) if compressed else (data, data.decode(), False, True)]
    assert budget.held == 0
