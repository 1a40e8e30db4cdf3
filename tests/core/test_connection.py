"""Connection: messages, the rules of RFC 6455 sections 5-8 and 10.4, and permessage-deflate (RFC 7692)."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
import websocket
from websockets.sync.client import connect

from wsinspect.core.connection import Connection, Limits
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    FrameEvent,
    Gap,
    HandshakeRequest,
    HandshakeResponse,
    Notice,
)

from .helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Compressor,
    cframe,
    ids,
    messages,
    of_type,
    open_connection,
    record_session,
    request_bytes,
    response_bytes,
    sframe,
    violation_ids,
    violations,
)

OFFER = "permessage-deflate; client_max_window_bits"


def feed(conn: Connection, direction: str, *frames: bytes) -> list:  # type: ignore[type-arg]
    events: list = []  # type: ignore[type-arg]
    for data in frames:
        events += conn.receive(direction, data, time=1.0)  # type: ignore[arg-type]
    return events


def only_violation(events: list, check_id: str, close_code: int) -> None:  # type: ignore[type-arg]
    found = violations(events)
    assert [v.check.id for v in found] == [check_id], [(v.check.id, v.message) for v in found]
    assert found[0].check.close_code == close_code


# -- messages and fragmentation (RFC 6455 5.4) -----------------------------------------------------------------

@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_fragmented_text_with_ping_between_fragments(direction: str) -> None:
    make = cframe if direction == "c2s" else sframe
    conn, _ = open_connection()
    events = feed(conn, direction, make(TEXT, b"Hel", fin=False), make(PING, b"are you there"),
                  make(CONT, b"l", fin=False), make(PONG, b""), make(CONT, b"o"))
    assert violations(events) == []
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["FrameEvent"] * 5 + ["Message"]
    [message] = messages(events)
    assert (message.opcode, message.data, message.text, message.frames, message.wire_length) == (
        TEXT, b"Hello", "Hello", 3, 5)
    assert message.complete and not message.compressed and message.direction == direction


def test_utf8_character_split_across_fragments_is_valid() -> None:
    text = "café ☃ 😀"
    data = text.encode()
    conn, _ = open_connection()
    # Split after every byte: every multi-byte character straddles a boundary.
    frames = [cframe(TEXT if i == 0 else CONT, data[i : i + 1], fin=i == len(data) - 1) for i in range(len(data))]
    events = feed(conn, "c2s", *frames)
    assert violations(events) == []
    assert messages(events)[0].text == text


@pytest.mark.parametrize("bad", [
    b"\xff",  # never valid in UTF-8 (RFC 3629)
    b"\xc0\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # UTF-16 surrogate U+D800
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\x80",  # lone continuation byte
])
def test_invalid_utf8_is_1007(bad: bytes) -> None:
    conn, _ = open_connection()
    events = feed(conn, "s2c", sframe(TEXT, b"ok " + bad + b" ok"))
    only_violation(events, "message.invalid-utf8", 1007)
    [message] = messages(events)
    assert message.text is None
    # Binary messages are not UTF-8 checked.
    assert violations(feed(conn, "s2c", sframe(BINARY, bad))) == []


def test_invalid_utf8_reported_at_the_fragment_that_has_it() -> None:
    conn, _ = open_connection()
    first = sframe(TEXT, b"abc\xff", fin=False)
    events = feed(conn, "s2c", first, sframe(CONT, b"def"))
    only_violation(events, "message.invalid-utf8", 1007)
    # RFC 6455 8.1: fail as soon as invalid data arrives, i.e. on the first fragment, not at the end of the
    # message. Frame offsets are offsets in the direction's TCP byte stream, so they start after the handshake.
    base = len(response_bytes())
    assert [f.frame.offset for f in of_type(events, FrameEvent)] == [base, base + len(first)]
    assert violations(events)[0].offset == base
    assert events.index(violations(events)[0]) < events.index(of_type(events, FrameEvent)[1])


@pytest.mark.parametrize("tail", [b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3"])
def test_utf8_truncated_on_the_final_fragment_is_1007(tail: bytes) -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(TEXT, b"fine so far ", fin=False), cframe(CONT, tail))
    only_violation(events, "message.invalid-utf8", 1007)
    conn, _ = open_connection()
    only_violation(feed(conn, "c2s", cframe(TEXT, tail)), "message.invalid-utf8", 1007)


def test_continuation_without_start() -> None:
    conn, _ = open_connection()
    only_violation(feed(conn, "c2s", cframe(CONT, b"orphan")), "fragment.unexpected-continuation", 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_interleaved_data_frames(second: int) -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(TEXT, b"first ", fin=False), cframe(second, b"second"))
    only_violation(events, "fragment.interleaved", 1002)
    assert [m.data for m in messages(events)] == [b"second"]


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_fragmented_control_frame(opcode: int) -> None:
    conn, _ = open_connection()
    payload = b"\x03\xe8" if opcode == CLOSE else b"p"
    events = feed(conn, "c2s", cframe(opcode, payload, fin=False))
    assert "control.fragmented" in violation_ids(events)
    assert all(v.check.close_code == 1002 for v in violations(events))


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
@pytest.mark.parametrize("size", [126, 1000])
def test_too_long_control_frame(opcode: int, size: int) -> None:
    conn, _ = open_connection()
    payload = b"\x03\xe8" + b"r" * (size - 2)
    only_violation(feed(conn, "s2c", sframe(opcode, payload)), "control.too-long", 1002)
    conn, _ = open_connection()
    assert violation_ids(feed(conn, "s2c", sframe(opcode, payload[:125]))) == []


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode(opcode: int) -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(opcode, b"?"))
    only_violation(events, "frame.opcode-reserved", 1002)
    assert messages(events) == []


@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
def test_rsv_bits_without_extension(bit: str) -> None:
    conn, _ = open_connection()
    only_violation(feed(conn, "c2s", cframe(BINARY, b"x", **{bit: True})), "frame.rsv", 1002)
    only_violation(feed(conn, "s2c", sframe(PING, b"x", **{bit: True})), "frame.rsv", 1002)


def test_rsv2_rsv3_still_invalid_with_deflate() -> None:
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    only_violation(feed(conn, "s2c", sframe(BINARY, b"x", rsv2=True)), "frame.rsv", 1002)
    only_violation(feed(conn, "s2c", sframe(BINARY, b"x", rsv3=True)), "frame.rsv", 1002)


def test_rsv1_on_continuation_or_control_with_deflate() -> None:
    # RFC 7692 6.1: RSV1 only on the first frame of a compressed message.
    comp = Compressor()
    data = comp.compress(b"hello hello hello")
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    events = feed(conn, "c2s", cframe(TEXT, data[:3], fin=False, rsv1=True), cframe(CONT, data[3:], rsv1=True))
    only_violation(events, "frame.rsv1-continuation", 1002)
    only_violation(feed(conn, "c2s", cframe(PING, b"", rsv1=True)), "frame.rsv1-continuation", 1002)


def test_unmasked_client_frame() -> None:
    conn, _ = open_connection()
    only_violation(feed(conn, "c2s", sframe(TEXT, b"hi")), "frame.client-unmasked", 1002)


def test_masked_server_frame() -> None:
    conn, _ = open_connection()
    events = feed(conn, "s2c", cframe(TEXT, b"hi"))
    only_violation(events, "frame.server-masked", 1002)
    assert messages(events)[0].text == "hi"  # still decoded (unmasked)


# -- close (RFC 6455 5.5.1, 7.4) -------------------------------------------------------------------------------

def test_close_with_one_byte_payload() -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(CLOSE, b"\x03"))
    only_violation(events, "close.payload-one-byte", 1002)
    assert of_type(events, Close)[0].code is None


def test_empty_close_is_valid() -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(CLOSE, b""))
    assert violations(events) == []
    close = of_type(events, Close)[0]
    assert (close.code, close.reason, close.initiator) == (None, "", True)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(code: int) -> None:
    conn, _ = open_connection()
    events = feed(conn, "s2c", sframe(CLOSE, code.to_bytes(2, "big")))
    only_violation(events, "close.code-invalid", 1002)
    assert of_type(events, Close)[0].code == code


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                                  3000, 3999, 4000, 4999])
def test_valid_close_codes(code: int) -> None:
    conn, _ = open_connection()
    events = feed(conn, "s2c", sframe(CLOSE, code.to_bytes(2, "big") + "bye ✓".encode()))
    assert violations(events) == []
    close = of_type(events, Close)[0]
    assert (close.code, close.reason) == (code, "bye ✓")


def test_close_reason_invalid_utf8() -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(CLOSE, b"\x03\xe8bad \xff reason"))
    only_violation(events, "close.reason-invalid-utf8", 1007)


def test_data_after_close() -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(CLOSE, b"\x03\xe8"), cframe(TEXT, b"late"))
    only_violation(events, "close.data-after-close", 1002)
    # The other side may still send data until it sends its own close.
    assert violations(feed(conn, "s2c", sframe(TEXT, b"still fine"), sframe(CLOSE, b"\x03\xe8"))) == []


def test_clean_close_and_initiator() -> None:
    conn, _ = open_connection()
    events = feed(conn, "s2c", sframe(CLOSE, b"\x03\xe9going"))
    events += feed(conn, "c2s", cframe(CLOSE, b"\x03\xe9"))
    events += conn.end(time=2)
    assert [(c.direction, c.code, c.initiator) for c in of_type(events, Close)] == [
        ("s2c", 1001, True), ("c2s", 1001, False)]
    assert of_type(events, ConnectionClosed)[0].clean


# -- limits (RFC 6455 10.4) ------------------------------------------------------------------------------------

def test_message_over_max_message_is_1009() -> None:
    conn, _ = open_connection(limits=Limits(max_message=100))
    assert violations(feed(conn, "c2s", cframe(BINARY, b"a" * 100))) == []  # exactly the limit is fine
    only_violation(feed(conn, "c2s", cframe(BINARY, b"a" * 101)), "message.too-big", 1009)
    events = feed(conn, "c2s", cframe(TEXT, b"a" * 60, fin=False), cframe(CONT, b"b" * 41))
    only_violation(events, "message.too-big", 1009)
    assert not messages(events)[0].complete


def test_after_too_big_no_further_findings_and_data_is_a_prefix() -> None:
    text = ("a" * 8 + "éé").encode()  # valid UTF-8, 12 bytes
    conn, _ = open_connection(limits=Limits(max_message=10))
    events = feed(conn, "c2s", cframe(TEXT, text[:8], fin=False), cframe(CONT, text[8:11], fin=False),
                  cframe(CONT, text[11:]))
    assert violation_ids(events) == ["message.too-big"]
    [message] = messages(events)
    assert not message.complete
    assert text.startswith(message.data)


# -- permessage-deflate (RFC 7692) -----------------------------------------------------------------------------

def test_context_takeover_across_messages() -> None:
    comp = Compressor()
    text = b"the quick brown fox jumps over the lazy dog " * 4
    first, second = comp.compress(text), comp.compress(text)
    # Independent proof that the second message needs the first one's window (RFC 7692 7.2.1).
    with pytest.raises(zlib.error):
        zlib.decompressobj(-15).decompress(second + b"\x00\x00\xff\xff")
    assert len(second) < len(first)
    conn, events = open_connection(offer=OFFER, accept="permessage-deflate")
    assert of_type(events, HandshakeResponse)[0].deflate is not None
    events = feed(conn, "c2s", cframe(TEXT, first, rsv1=True), cframe(TEXT, second, rsv1=True))
    assert violations(events) == []
    got = [(m.data, m.compressed, m.wire_length) for m in messages(events)]
    assert got == [(text, True, len(first)), (text, True, len(second))]


@pytest.mark.parametrize(("accept", "direction"), [
    ("permessage-deflate; client_no_context_takeover", "c2s"),
    ("permessage-deflate; server_no_context_takeover", "s2c"),
])
def test_no_context_takeover(accept: str, direction: str) -> None:
    make = cframe if direction == "c2s" else sframe
    text = b"abcdefghijklmnopqrstuvwxyz0123456789" * 3
    fresh = Compressor(no_context_takeover=True)
    conn, _ = open_connection(offer=OFFER + "; client_no_context_takeover", accept=accept)
    events = feed(conn, direction, make(TEXT, fresh.compress(text), rsv1=True),
                  make(TEXT, fresh.compress(text), rsv1=True))
    assert violations(events) == []
    assert [m.data for m in messages(events)] == [text, text]
    # A sender that kept its context despite the agreement: the receiver's fresh window cannot resolve the
    # back-reference, which proves the inflater was reset.
    kept = Compressor()
    conn, _ = open_connection(offer=OFFER + "; client_no_context_takeover", accept=accept)
    events = feed(conn, direction, make(TEXT, kept.compress(text), rsv1=True),
                  make(TEXT, kept.compress(text), rsv1=True))
    only_violation(events, "message.inflate-failed", 1007)
    # The other direction keeps its context.
    other = "s2c" if direction == "c2s" else "c2s"
    make_other = sframe if direction == "c2s" else cframe
    kept = Compressor()
    events = feed(conn, other, make_other(TEXT, kept.compress(text), rsv1=True),
                  make_other(TEXT, kept.compress(text), rsv1=True))
    assert violations(events) == []


def test_fragmented_compressed_message() -> None:
    text = ("fragmented and compressed ✓ " * 20).encode()
    data = Compressor().compress(text)
    parts = [data[:1], data[1:5], data[5:]]
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    events = feed(conn, "s2c", sframe(TEXT, parts[0], fin=False, rsv1=True), sframe(PING, b"x"),
                  sframe(CONT, parts[1], fin=False), sframe(CONT, parts[2]))
    assert violations(events) == []
    [message] = messages(events)
    assert (message.text, message.frames, message.compressed, message.wire_length) == (
        text.decode(), 3, True, len(data))


def test_empty_compressed_message() -> None:
    # RFC 7692 7.2.3.6: an empty message compresses to the single byte 0x00; zlib agrees.
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert comp.compress(b"") + comp.flush(zlib.Z_SYNC_FLUSH) == b"\x00\x00\x00\xff\xff"
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    events = feed(conn, "s2c", sframe(TEXT, b"\x00", rsv1=True), sframe(BINARY, b"\x00", rsv1=True))
    assert violations(events) == []
    assert [(m.data, m.text, m.compressed) for m in messages(events)] == [(b"", "", True), (b"", None, True)]


def _bomb(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = b"".join(comp.compress(chunk) for _ in range(size >> 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


@pytest.mark.parametrize("fragments", [1, 3])
def test_compression_bomb_is_bounded(fragments: int) -> None:
    bomb = _bomb(50 << 20)  # 50 MiB of zeros
    assert len(bomb) < 100_000
    step = -(-len(bomb) // fragments)
    parts = [bomb[i : i + step] for i in range(0, len(bomb), step)]
    frames = [cframe(BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1, rsv1=i == 0)
              for i, p in enumerate(parts)]
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate", limits=Limits(max_message=1 << 20))
    tracemalloc.start()
    try:
        events = feed(conn, "c2s", *frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert violation_ids(events)[:1] == ["message.too-big"]
    assert violations(events)[0].check.close_code == 1009
    [message] = messages(events)
    assert not message.complete
    assert peak < 16 << 20, peak


def test_inflating_garbage_is_a_violation() -> None:
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    # BTYPE=11 (reserved, RFC 1951 3.2.3) in the first block header: no inflater accepts it.
    events = feed(conn, "c2s", cframe(BINARY, b"\xff\xff\xff\xff", rsv1=True))
    only_violation(events, "message.inflate-failed", 1007)
    assert not messages(events)[0].complete


def test_after_inflate_failure_later_fragments_are_not_appended_raw() -> None:
    data = random.Random(7).randbytes(3000)  # incompressible: inflated size grows with each fragment
    compressed = Compressor().compress(data)
    parts = [compressed[:1000], compressed[1000:2000], compressed[2000:2100], compressed[2100:]]
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate", limits=Limits(max_message=1500))
    frames = [cframe(BINARY if i == 0 else CONT, p, fin=i == 3, rsv1=i == 0) for i, p in enumerate(parts)]
    events = feed(conn, "c2s", *frames)
    [message] = messages(events)
    assert not message.complete
    assert data.startswith(message.data)
    assert violation_ids(events) == ["message.too-big"]


def test_client_frames_sent_before_the_101_use_the_negotiated_deflate() -> None:
    comp = Compressor()
    texts = [b"early bird " * 10, b"early bird " * 11]
    early = b"".join(cframe(TEXT, comp.compress(t), rsv1=True) for t in texts)
    conn = Connection()
    events = conn.receive("c2s", request_bytes(extensions=OFFER) + early, time=0, packet=1)
    assert [type(e) for e in events] == [HandshakeRequest]
    events = conn.receive("s2c", response_bytes(extensions="permessage-deflate; server_no_context_takeover")
                          + sframe(TEXT, Compressor(no_context_takeover=True).compress(b"server"), rsv1=True),
                          time=1, packet=2)
    assert violations(events) == []
    assert [type(e).__name__ for e in events] == [
        "HandshakeResponse", "FrameEvent", "Message", "FrameEvent", "Message", "FrameEvent", "Message"]
    got = [(m.direction, m.data, m.compressed, m.packet) for m in messages(events)]
    assert got == [("c2s", texts[0], True, 1), ("c2s", texts[1], True, 1), ("s2c", b"server", True, 2)]


def test_rsv1_before_101_without_deflate_is_a_violation() -> None:
    conn = Connection()
    conn.receive("c2s", request_bytes(extensions=OFFER) + cframe(TEXT, b"plain", rsv1=True), time=0)
    events = conn.receive("s2c", response_bytes(), time=1)
    only_violation(events, "frame.rsv", 1002)


def test_gap_in_compressed_stream_loses_context() -> None:
    comp = Compressor()
    texts = [b"message number %d " % i * 8 for i in range(4)]
    wires = [cframe(TEXT, comp.compress(t), rsv1=True) for t in texts]
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate")
    events = feed(conn, "c2s", wires[0])
    events += conn.gap("c2s", len(wires[1]), time=1)
    events += feed(conn, "c2s", wires[2], wires[3])
    assert violations(events) == []
    assert [e.check.id for e in of_type(events, Notice)] == ["message.inflate-context-lost"] * 2
    got = [(m.data, m.complete) for m in messages(events)]
    assert got == [(texts[0], True), (b"", False), (b"", False)]
    [gap] = of_type(events, Gap)
    # Offsets are in the direction's TCP byte stream: the request comes first.
    base = len(request_bytes(extensions=OFFER))
    assert (gap.direction, gap.offset, gap.missing) == ("c2s", base + len(wires[0]), len(wires[1]))


def test_gap_with_no_context_takeover_keeps_decoding() -> None:
    comp = Compressor(no_context_takeover=True)
    texts = [b"independent %d " % i * 8 for i in range(4)]
    wires = [cframe(TEXT, comp.compress(t), rsv1=True) for t in texts]
    conn, _ = open_connection(offer=OFFER, accept="permessage-deflate; client_no_context_takeover")
    events = feed(conn, "c2s", wires[0])
    events += conn.gap("c2s", len(wires[1]), time=1)
    events += feed(conn, "c2s", wires[2], wires[3])
    events += conn.end(time=2)
    assert violations(events) == [] and of_type(events, Notice) == []
    assert [m.data for m in messages(events)] == [texts[0], texts[2], texts[3]]


def test_gap_never_blames_the_sender() -> None:
    conn, _ = open_connection()
    first = cframe(TEXT, b"abcdefgh", fin=False)
    events = feed(conn, "c2s", first[:8])
    events += conn.gap("c2s", 4, time=1)  # payload bytes 2..5 of the first fragment
    events += feed(conn, "c2s", first[12:], cframe(CONT, b"ij", fin=False), cframe(CONT, b"kl"))
    assert violations(events) == []


def test_gap_while_client_frames_are_held_before_the_101() -> None:
    a, b, c, d = (cframe(TEXT, ch * n) for ch, n in ((b"A", 10), (b"B", 50), (b"C", 10), (b"D", 10)))
    conn = Connection()
    events = conn.receive("c2s", request_bytes() + a + b[:5], time=0)
    events += conn.gap("c2s", len(b) - 5, time=1)
    events += conn.receive("c2s", c + d, time=2)
    events += conn.receive("s2c", response_bytes(), time=3)
    events += conn.end(time=4)
    got = [m.data for m in messages(events) if m.complete]
    assert got == [b"A" * 10, b"C" * 10, b"D" * 10]
    assert violations(events) == []


# -- refused handshake, end of stream ------------------------------------------------------------------------

@pytest.mark.parametrize("split", [None, 10, 60])
def test_refused_handshake_keeps_the_body(split: int | None) -> None:
    body = b"Sec-WebSocket-Key is missing"
    response = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body)
    conn = Connection()
    conn.receive("c2s", request_bytes(), time=0)
    chunks = [response] if split is None else [response[:split], response[split:]]
    events = feed(conn, "s2c", *chunks)
    [refused] = of_type(events, HandshakeResponse)
    assert not refused.upgraded
    assert refused.response.status == 400
    assert refused.response.body == body
    # Nothing after a refusal is decoded as frames.
    events = feed(conn, "c2s", cframe(TEXT, b"x")) + feed(conn, "s2c", sframe(TEXT, b"y")) + conn.end(time=2)
    assert of_type(events, FrameEvent) == [] and violations(events) == []
    assert not of_type(events, ConnectionClosed)[0].clean


def test_refused_handshake_without_content_length_gets_body_at_end() -> None:
    conn = Connection()
    conn.receive("c2s", request_bytes(), time=0)
    assert feed(conn, "s2c", b"HTTP/1.1 403 Forbidden\r\n\r\nno ", b"thanks") == []
    [refused] = of_type(conn.end(time=2), HandshakeResponse)
    assert (refused.upgraded, refused.response.body) == (False, b"no thanks")


def test_refused_body_is_cut_at_content_length() -> None:
    conn = Connection()
    conn.receive("c2s", request_bytes(), time=0)
    events = feed(conn, "s2c", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 ...")
    assert of_type(events, HandshakeResponse)[0].response.body == b"hello"


def test_end_reports_truncated_frame() -> None:
    conn, _ = open_connection()
    events = feed(conn, "c2s", cframe(BINARY, b"0123456789")[:3])
    assert events == []
    events = conn.end(time=5, reason="capture ended")
    assert ids(events) == ["capture.truncated-frame"]
    closed = of_type(events, ConnectionClosed)[0]
    assert (closed.reason, closed.clean) == ("capture ended", False)
    assert conn.end(time=6) == []  # only once


def test_end_reports_cut_payload_and_unfinished_message() -> None:
    conn, _ = open_connection()
    feed(conn, "s2c", sframe(TEXT, b"one ", fin=False), sframe(CONT, b"two ", fin=False))
    feed(conn, "c2s", cframe(BINARY, b"0123456789")[:10])  # header (6) + 4 of 10 payload bytes
    events = conn.end(time=5)
    [cut] = [e.frame for e in of_type(events, FrameEvent)]
    assert (cut.payload, cut.missing) == (b"0123", 6)
    assert [m.complete for m in messages(events)] == [False]
    assert [(n.direction, n.check.id) for n in of_type(events, Notice)] == [("s2c", "capture.unfinished-message")]


# -- real peers ------------------------------------------------------------------------------------------------

def _echo(ws: object) -> None:
    for message in ws:  # type: ignore[attr-defined]
        ws.send(message)  # type: ignore[attr-defined]


SENT: list[str | bytes | list[str]] = [
    "hello", "", "é" * 100, b"\x00\x01" * 40_000, bytes(range(256)) * 300, ["frag", "ment", "ed ✓"],
    "compressible " * 1000,
]


def _expected(item: str | bytes | list[str]) -> bytes:
    if isinstance(item, list):
        return "".join(item).encode()
    return item.encode() if isinstance(item, str) else item


@pytest.mark.parametrize("compression", ["deflate", None])
def test_real_websockets_traffic(compression: str | None) -> None:
    def client(url: str) -> None:
        with connect(url, compression=compression, max_size=None) as ws:
            for item in SENT:
                ws.send(item)  # type: ignore[arg-type]
                ws.recv()
            ws.ping(b"ping!")

    chunks = record_session(client, _echo, compression=compression, max_size=None)
    conn = Connection()
    events: list = []  # type: ignore[type-arg]
    for number, (direction, data) in enumerate(chunks):
        events += conn.receive(direction, data, time=float(number), packet=number)  # type: ignore[arg-type]
    events += conn.end(time=99.0)
    assert violations(events) == []
    [response] = of_type(events, HandshakeResponse)
    assert response.upgraded and (response.deflate is not None) == (compression == "deflate")
    expected = [_expected(item) for item in SENT]
    for direction in ("c2s", "s2c"):
        got = [m.data for m in messages(events) if m.direction == direction]
        assert got == expected, direction
    if compression:
        assert any(m.compressed for m in messages(events))
    assert of_type(events, ConnectionClosed)[0].clean


def test_real_websocket_client_traffic() -> None:
    def client(url: str) -> None:
        ws = websocket.create_connection(url, timeout=5)
        ws.send("text ✓")
        ws.recv()
        ws.send_binary(b"\xff" * 70_000)
        ws.recv()
        ws.send_frame(websocket.ABNF.create_frame("frag", websocket.ABNF.OPCODE_TEXT, 0))
        ws.send_frame(websocket.ABNF.create_frame("ment", websocket.ABNF.OPCODE_CONT, 1))
        ws.recv()
        ws.close()

    chunks = record_session(client, _echo, compression=None, max_size=None)
    conn = Connection()
    events: list = []  # type: ignore[type-arg]
    for direction, data in chunks:
        events += conn.receive(direction, data, time=0.0)  # type: ignore[arg-type]
    events += conn.end(time=1.0)
    assert violations(events) == []
    expected = ["text ✓".encode(), b"\xff" * 70_000, b"fragment"]
    for direction in ("c2s", "s2c"):
        assert [m.data for m in messages(events) if m.direction == direction] == expected
    assert [m.frames for m in messages(events) if m.direction == "c2s"][2] == 2
