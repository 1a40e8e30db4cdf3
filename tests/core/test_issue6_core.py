"""Issue 6 in the core: numbers from the wire never make ``int()`` raise; compressed messages seen without the
earlier window (mid-connection, after a gap) inflate where they can and are reported where they cannot; one memory
budget bounds the unfinished messages of many connections; an agreed window smaller than 32 KiB is the one used.

Compressed payloads come from zlib here (``helpers.Compressor``), frames are encoded by hand.
"""

from __future__ import annotations

import random
import zlib

import pytest

from wsinspect.core import deflate
from wsinspect.core.connection import Connection, Limits, MemoryBudget
from wsinspect.core.events import Message
from wsinspect.core.handshake import parse_extensions, parse_request, parse_response, validate_request

from .helpers import (
    BINARY,
    CONT,
    TEXT,
    Compressor,
    cframe,
    ids,
    messages,
    open_connection,
    request_bytes,
    sframe,
    violation_ids,
)

# ---- numbers on the wire (issue 7): a value that is not a number is a finding, never an exception -------------

NOT_NUMBERS = ["1" * 5000, "1\u00b2", "\u00b9\u00b2", "\u0661\u0662", "12\u00e9", "+9", "9.0", "", "08"]


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
@pytest.mark.parametrize("key", ["client_max_window_bits", "server_max_window_bits"])
def test_window_bits_that_are_not_numbers_are_findings(key: str, value: str) -> None:
    """RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive"."""
    (extension,) = parse_extensions([f"permessage-deflate; {key}={value}"])
    _params, findings = deflate.params_from_response(extension, extension)
    assert [f.check.id for f in findings] == ["response.deflate-params"]
    assert findings[0].got == value.strip()
    assert deflate.negotiate([extension]) is None  # the server side refuses the offer, without raising


def test_window_bits_in_a_whole_handshake_from_the_wire() -> None:
    """The same through a Connection: the response's header bytes are Latin-1 text, '²' among them."""
    conn = Connection(1)
    conn.receive("c2s", request_bytes(extensions="permessage-deflate"), time=0.0)
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=1\xb2\r\n\r\n")
    events = conn.receive("s2c", response, time=0.0)
    assert [f.check.id for e in events for f in getattr(e, "findings", ())] == ["response.deflate-params"]


@pytest.mark.parametrize("status", [b"1\xb23", b"\xb9\xb2\xb3", b"10", b"1000", b"+01"])
def test_status_codes_that_are_not_three_ascii_digits(status: bytes) -> None:
    response = parse_response(b"HTTP/1.1 " + status + b" Odd\r\n\r\n")
    assert response.status == 0 and [f.check.id for f in response.syntax] == ["http.malformed"]


@pytest.mark.parametrize("version", [b"HTTP/\xb9.1", b"HTTP/1.\xb9", b"HTTP/" + b"1" * 5000 + b".1", b"HTTP/x"])
def test_http_versions_that_are_not_numbers(version: bytes) -> None:
    request = parse_request(b"GET / " + version + b"\r\nHost: h\r\n\r\n")
    assert "request.version" in [f.check.id for f in validate_request(request)]


@pytest.mark.parametrize("length", [b"1\xb2", b"9" * 5000, b"-1", b"0x10"])
def test_content_length_that_is_not_a_number_keeps_the_body_bounded(length: bytes) -> None:
    conn = Connection(1, limits=Limits(max_body=64))
    conn.receive("c2s", request_bytes(), time=0.0)
    events = conn.receive("s2c", b"HTTP/1.1 400 Bad Request\r\nContent-Length: " + length + b"\r\n\r\n" + b"x" * 100,
                          time=0.0)
    (response,) = [e for e in events if type(e).__name__ == "HandshakeResponse"]
    assert response.response.body == b"x" * 64  # type: ignore[attr-defined]


# ---- mid-connection compressed sessions (RFC 7692 7.2.3.2) ----------------------------------------------------


def test_a_fresh_inflater_stops_at_a_reference_into_unseen_data_then_recovers() -> None:
    sender = Compressor()
    first, second = sender.compress(b"seen before the capture " * 3), sender.compress(b"seen before the capture")
    third, fourth = sender.compress(b"QQQQ new words ZZZZ"), sender.compress(b"QQQQ new words ZZZZ again")
    inflater = deflate.MessageInflater(no_context_takeover=False, context_known=False)
    del first  # never captured
    inflater.start()
    with pytest.raises(deflate.ContextMissing):
        inflater.inflate(second, 1000, final=True)  # one back-reference, 72 bytes into the uncaptured message
    results = []
    for payload in (third, fourth):
        inflater.start()
        results.append(inflater.inflate(payload, 1000, final=True))
    assert results == [b"QQQQ new words ZZZZ", b"QQQQ new words ZZZZ again"]  # the fourth refers to the third


def test_with_the_context_known_a_bad_distance_is_corrupt_data_not_missing_context() -> None:
    inflater = deflate.MessageInflater(no_context_takeover=False)
    inflater.start()
    sender = Compressor()
    sender.compress(b"abcdefgh" * 4)
    with pytest.raises(deflate.InflateError) as caught:
        inflater.inflate(sender.compress(b"abcdefgh" * 4), 1000, final=True)
    assert not isinstance(caught.value, deflate.ContextMissing)


def test_midstream_rsv1_is_compression_not_a_violation() -> None:
    sender = Compressor()
    before = sender.compress(b"hello hello hello")  # sent before the capture started
    again = sender.compress(b"hello hello hello")
    fresh = sender.compress(bytes(range(40)))
    conn = Connection(1, mid_stream=True)
    stream = cframe(TEXT, again, rsv1=True) + cframe(BINARY, fresh, rsv1=True) + cframe(TEXT, b"plain")
    events = conn.receive("c2s", stream, time=0.0) + conn.end(time=1.0)
    assert before and violation_ids(events) == []
    assert "message.inflate-context-lost" in ids(events)
    assert [(m.complete, m.compressed, m.data) for m in messages(events)] == [
        (False, True, b""), (True, True, bytes(range(40))), (True, False, b"plain")]


def test_after_a_gap_later_messages_are_tried_again() -> None:
    """Before: every compressed message after a gap was given up. Now each is inflated if it can be."""
    sender = Compressor()
    conn, _ = open_connection(offer="permessage-deflate", accept="permessage-deflate")
    events = conn.receive("s2c", sframe(TEXT, sender.compress(b"one"), rsv1=True), time=0.0)
    lost = sframe(TEXT, sender.compress(b"two two two"), rsv1=True)
    events += conn.gap("s2c", len(lost), time=1.0)
    events += conn.receive("s2c", sframe(TEXT, sender.compress(b"XYZ fresh"), rsv1=True) +
                           sframe(TEXT, sender.compress(b"XYZ fresh"), rsv1=True), time=2.0)
    events += conn.end(time=3.0)
    assert [m.data for m in messages(events) if m.complete] == [b"one", b"XYZ fresh", b"XYZ fresh"]


def test_no_context_takeover_drops_the_inflater_between_messages() -> None:
    inflater = deflate.MessageInflater(no_context_takeover=True)
    sender = Compressor(no_context_takeover=True)
    for text in (b"first message", b"first message"):
        inflater.start()
        assert inflater.inflate(sender.compress(text), 100, final=True) == text
        assert inflater._inflater is None  # nothing held while the connection idles


def test_the_agreed_window_is_used_and_a_longer_distance_is_the_senders_error() -> None:
    """RFC 7692 7.1.2.1: a server that agreed to server_max_window_bits=10 must not refer further back than 1024
    bytes. A zlib sender using a 32 KiB window anyway refers 2048 bytes back into its previous message: with the
    agreed window that is corrupt data, reported; an honest 10-bit sender's messages inflate."""
    block = random.Random(7692).randbytes(2048)  # no repeat inside it: the second copy can only refer back 2048
    for wbits, expected in ((15, ["message.inflate-failed"]), (10, [])):
        conn, _ = open_connection(offer="permessage-deflate; server_max_window_bits=10",
                                  accept="permessage-deflate; server_max_window_bits=10")
        sender = Compressor(wbits=wbits)
        events = conn.receive("s2c", sframe(BINARY, sender.compress(block), rsv1=True) +
                              sframe(BINARY, sender.compress(block), rsv1=True), time=0.0)
        assert violation_ids(events) == expected, wbits
        assert [m.data for m in messages(events) if m.complete] == [block] * (2 - len(expected))


# ---- one memory budget for many connections -------------------------------------------------------------------


def fragments(count: int, size: int) -> bytes:
    """A compressed text message of ``count`` fragments of ``size`` inflated bytes each, never finished."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = b"a" * size
    frames = [cframe(TEXT if i == 0 else CONT, deflater.compress(piece) + deflater.flush(zlib.Z_SYNC_FLUSH),
                     fin=False, rsv1=i == 0) for i in range(count)]
    return b"".join(frames)


def test_connections_share_one_budget() -> None:
    budget = MemoryBudget(limit=250_000)
    first = Connection(1, mid_stream=False, budget=budget)
    second = Connection(2, budget=budget)
    for conn in (first, second):
        conn.receive("c2s", request_bytes(extensions="permessage-deflate"), time=0.0)
        conn.receive("s2c", (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                             b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"), time=0.0)
    first_events = first.receive("c2s", fragments(2, 100_000), time=1.0)
    second_events = second.receive("c2s", fragments(2, 100_000), time=2.0)
    assert ids(first_events) == [] and budget.held == 200_000
    assert ids(second_events) == ["capture.memory-budget"]  # 50,000 left: its second fragment does not fit
    assert len([e for e in second_events if type(e).__name__ == "FrameEvent"]) == 2  # frames still decoded
    finished = first.receive("c2s", cframe(CONT, b"\x03\x00", fin=True), time=3.0)  # an empty final block
    (message,) = [e for e in finished if isinstance(e, Message)]
    assert message.complete and len(message.data) == 200_000
    second_end = second.end(time=4.0)
    (cut,) = [e for e in second_end if isinstance(e, Message)] or [None]
    assert cut is None  # never finished: reported as unfinished, not as a message
    assert budget.held == 0 and budget.peak <= budget.limit


def test_frames_being_collected_count_in_the_budget() -> None:
    """Each connection's parser holds the frame it is collecting (up to max_frame, 64 MiB by default): with many
    connections mid-frame, the budget lets go of the payload of the one that needs more, keeping the stream in
    sync: the next frame is decoded, the cut one is shown with what arrived and ``missing`` the rest."""
    budget = MemoryBudget(limit=300_000)
    connections = [Connection(n, budget=budget) for n in range(3)]
    big = bytes(range(256)) * 1024  # 256 KiB
    header = 2 + 8  # RFC 6455 5.2: more than 65,535 bytes take the 64-bit length; a server frame has no key
    sent = 100_000  # payload bytes of it that have arrived on each connection
    events = []
    for conn in connections:
        conn.receive("c2s", request_bytes(), time=0.0)
        conn.receive("s2c", (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"), time=0.0)
        events.append(conn.receive("s2c", sframe(BINARY, big)[: header + sent], time=1.0))
    assert [ids(e) for e in events] == [[], [], ["capture.memory-budget"]]
    assert budget.held == 2 * (header + sent)  # the first two partial frames are still kept
    (cut,) = [e.frame for e in events[2] if type(e).__name__ == "FrameEvent"]
    assert cut.payload == big[:sent] and cut.missing == len(big) - sent
    rest = connections[2].receive("s2c", sframe(BINARY, big)[header + sent :] + sframe(TEXT, b"after"), time=2.0)
    assert [m.data for m in messages(rest)] == [b"after"]  # still in sync after the skipped payload
    finished = connections[0].receive("s2c", sframe(BINARY, big)[header + sent :], time=3.0)
    assert [m.data for m in messages(finished)] == [big]
    for conn in connections:
        conn.end(time=4.0)
    assert budget.held == 0


def test_a_message_ending_with_a_final_block_does_not_end_the_direction() -> None:
    """RFC 7692 7.2.3.4: "f3 48 cd c9 c9 07 00" is "Hello" in one block with BFINAL set. zlib's stream ends there;
    the next message of the direction (a new stream from a sender that reset) must still inflate."""
    conn, _ = open_connection(offer="permessage-deflate", accept="permessage-deflate")
    later = zlib.compressobj(6, zlib.DEFLATED, -15)
    again = later.compress(b"Hello again") + later.flush(zlib.Z_SYNC_FLUSH)
    events = conn.receive("c2s", cframe(TEXT, bytes.fromhex("f348cdc9c90700"), rsv1=True) +
                          cframe(TEXT, again[:-4], rsv1=True), time=0.0)
    assert violation_ids(events) == []
    assert [m.data for m in messages(events)] == [b"Hello", b"Hello again"]


def test_rfc_7692_final_block_example_byte_for_byte() -> None:
    """RFC 7692 7.2.3.4, the frame as the RFC prints it: 0xc1 0x08 0xf3 0x48 0xcd 0xc9 0xc9 0x07 0x00 0x00. The last
    0x00 is the header of an empty stored block (the receiver's appended 00 00 ff ff completes it), "necessary to
    allow the payload to be decompressed in the same manner" as a sync-flushed one; twice, as a sender that resets."""
    conn, _ = open_connection(offer="permessage-deflate", accept="permessage-deflate")
    frame = bytes([0xC1, 0x08, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
    events = conn.receive("s2c", frame + frame, time=0.0)
    assert violation_ids(events) == []
    assert [m.data for m in messages(events)] == [b"Hello", b"Hello"]


def test_bytes_after_a_final_block_in_the_same_message_are_reported() -> None:
    conn, _ = open_connection(offer="permessage-deflate", accept="permessage-deflate")
    events = conn.receive("c2s", cframe(TEXT, bytes.fromhex("f348cdc9c90700") + b"\x01\x02", rsv1=True), time=0.0)
    assert violation_ids(events) == ["message.inflate-failed"]
