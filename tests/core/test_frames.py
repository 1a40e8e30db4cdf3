"""FrameParser and build_frame: every field and byte span, limits, gaps, resynchronisation (RFC 6455 5.2).

Frames are encoded by hand (helpers.encode) or by independent libraries (websockets, websocket-client); expected
spans and values come from the section 5.2 diagram.
"""

from __future__ import annotations

import os

import pytest
from websocket import ABNF
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from wsinspect.core.connection import Connection, Limits
from wsinspect.core.events import Message
from wsinspect.core.fields import (
    EXTENDED_LENGTH_16,
    EXTENDED_LENGTH_64,
    FIN,
    MASK,
    MASKING_KEY,
    OPCODE,
    PAYLOAD,
    PAYLOAD_LENGTH,
    RSV1,
    RSV2,
    RSV3,
)
from wsinspect.core.frames import Frame, FrameParser, Resynced, Truncated, apply_mask, build_frame

from .helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    cframe,
    encode,
    hand_mask,
    messages,
    open_connection,
    violation_ids,
    violations,
)

KEY = b"\xde\xad\xbe\xef"


def feed_all(parser: FrameParser, data: bytes, step: int | None = None) -> list[object]:
    if step is None:
        return list(parser.feed(data))
    out: list[object] = []
    for i in range(0, len(data), step):
        out += parser.feed(data[i : i + step])
    return out


def only_frame(wire: bytes) -> Frame:
    items = FrameParser().feed(wire)
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0]


# -- fields and spans --------------------------------------------------------------------------------------------

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("size", SIZES)
def test_fields_and_spans(size: int, masked: bool) -> None:
    payload = os.urandom(size)
    key = KEY if masked else None
    wire = encode(BINARY, payload, fin=False, rsv2=True, key=key)
    frame = only_frame(wire)

    # RFC 6455 5.2: 7-bit length 0-125; 126 then 16 bits; 127 then 64 bits.
    bits = 7 if size <= 125 else 16 if size <= 65535 else 64
    ext_len = {7: 0, 16: 2, 64: 8}[bits]
    header_len = 2 + ext_len + (4 if masked else 0)
    assert frame.fin is False and frame.rsv1 is False and frame.rsv2 is True and frame.rsv3 is False
    assert frame.rsv == 0b010
    assert frame.opcode == BINARY
    assert frame.masked is masked
    assert frame.payload_length == size
    assert frame.length_bits == bits
    assert frame.length_is_minimal
    assert frame.masking_key == key
    assert frame.header == wire[:header_len]
    assert frame.payload == payload
    assert frame.wire_payload == wire[header_len:]
    assert frame.size == len(wire)
    assert frame.complete and frame.missing == 0

    spans = list(frame.spans())
    expected = [
        (FIN, 0, 1, False), (RSV1, 0, 1, False), (RSV2, 0, 1, True), (RSV3, 0, 1, False), (OPCODE, 0, 1, BINARY),
        (MASK, 1, 2, masked), (PAYLOAD_LENGTH, 1, 2, {7: size, 16: 126, 64: 127}[bits]),
    ]
    if bits == 16:
        expected.append((EXTENDED_LENGTH_16, 2, 4, size))
    if bits == 64:
        expected.append((EXTENDED_LENGTH_64, 2, 10, size))
    if masked:
        expected.append((MASKING_KEY, 2 + ext_len, 6 + ext_len, KEY))
    expected.append((PAYLOAD, header_len, header_len + size, payload))
    assert [(s.field, s.start, s.end, s.value) for s in spans] == expected

    # Each span's bytes on the wire really hold its value.
    by_field = {s.field: s for s in spans}
    if bits != 7:
        ext = by_field[EXTENDED_LENGTH_16 if bits == 16 else EXTENDED_LENGTH_64]
        assert int.from_bytes(wire[ext.start : ext.end], "big") == size
    if masked:
        span = by_field[MASKING_KEY]
        assert wire[span.start : span.end] == KEY
    span = by_field[PAYLOAD]
    on_wire = wire[span.start : span.end]
    assert (hand_mask(on_wire, KEY) if masked else on_wire) == payload


@pytest.mark.parametrize("opcode", [CONT, TEXT, BINARY, 0x3, 0x7, CLOSE, PING, PONG, 0xB, 0xF])
def test_every_opcode_and_bit(opcode: int) -> None:
    for fin in (False, True):
        for rsv in range(8):
            wire = encode(opcode, b"xy", fin=fin, rsv1=bool(rsv & 4), rsv2=bool(rsv & 2), rsv3=bool(rsv & 1))
            frame = only_frame(wire)
            assert (frame.fin, frame.rsv, frame.opcode, frame.payload) == (fin, rsv, opcode, b"xy")
            assert frame.is_control == (opcode >= 8)


@pytest.mark.parametrize(("size", "bits"), [(0, 16), (5, 16), (125, 16), (5, 64), (126, 64), (65535, 64)])
def test_non_minimal_length_is_parsed_and_flagged(size: int, bits: int) -> None:
    payload = b"q" * size
    wire = encode(BINARY, payload, length_bits=bits)
    assert build_frame(BINARY, payload, length_bits=bits) == wire
    frame = only_frame(wire)
    assert frame.length_bits == bits
    assert frame.payload == payload
    assert not frame.length_is_minimal
    # "the minimal number of bytes MUST be used to encode the length" (5.2): a 1002 on a connection.
    conn, _ = open_connection()
    events = conn.receive("s2c", wire, time=1)
    found = [v for v in violations(events) if v.check.id == "frame.length-not-minimal"]
    assert len(found) == 1 and found[0].check.close_code == 1002
    assert messages(events)[0].data == payload


def test_64_bit_length_with_msb_set_is_flagged() -> None:
    # RFC 6455 5.2: "the most significant bit MUST be 0". 2**63 + 5 can never fit in any limit either.
    header = bytes((0x82, 127)) + (2**63 + 5).to_bytes(8, "big")
    conn, _ = open_connection()
    events = conn.receive("s2c", header + b"abcde", time=1)
    got = violation_ids(events)
    assert "frame.length-msb" in got
    assert "frame.length-not-minimal" not in got


def test_minimal_lengths_are_not_flagged() -> None:
    conn, _ = open_connection()
    events = []
    for size in (0, 125, 126, 65535, 65536):
        events += conn.receive("s2c", encode(BINARY, b"m" * size), time=1)
    assert violations(events) == []
    assert [len(m.data) for m in messages(events)] == [0, 125, 126, 65535, 65536]


# -- independent encoders and decoders ------------------------------------------------------------------------

CROSS = [(op, size) for op in (TEXT, BINARY) for size in (0, 3, 125, 126, 1000, 65535, 65536)] + [
    (PING, 0), (PING, 125), (PONG, 7), (CLOSE, 2)]


def _payload(opcode: int, size: int) -> bytes:
    if opcode == TEXT:
        return ("é" * size).encode()[:size] if size % 2 == 0 else b"a" * size
    return bytes((i * 7 + 3) & 0xFF for i in range(size))


@pytest.mark.parametrize("mask", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize(("opcode", "size"), CROSS)
def test_websockets_encoder_parses(opcode: int, size: int, mask: bool) -> None:
    payload = _payload(opcode, size)
    for fin in (True, False) if opcode < 8 else (True,):
        wire = WsFrame(WsOpcode(opcode), payload, fin=fin).serialize(mask=mask, extensions=[])
        frame = only_frame(wire)
        assert (frame.opcode, frame.fin, frame.masked, frame.payload) == (opcode, fin, mask, payload)
        assert frame.length_is_minimal
        assert frame.size == len(wire)


@pytest.mark.parametrize("mask", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize(("opcode", "size"), CROSS)
def test_build_frame_decodes_with_websockets(opcode: int, size: int, mask: bool) -> None:
    payload = _payload(opcode, size)
    wire = build_frame(opcode, payload, fin=True, masking_key=os.urandom(4) if mask else None)
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parse = WsFrame.parse(reader.read_exact, mask=mask, max_size=None, extensions=None)
    with pytest.raises(StopIteration) as stop:
        next(parse)
    decoded = stop.value.value
    assert (decoded.opcode.value, decoded.fin, bytes(decoded.data)) == (opcode, True, payload)


@pytest.mark.parametrize(("opcode", "size"), CROSS)
def test_websocket_client_abnf_parses_and_matches_build_frame(opcode: int, size: int) -> None:
    payload = _payload(opcode, size)
    masked = ABNF.create_frame(payload, opcode)
    masked.get_mask_key = lambda n: KEY  # type: ignore[method-assign]
    wire = masked.format()
    frame = only_frame(wire)
    assert (frame.opcode, frame.fin, frame.masked, frame.masking_key, frame.payload) == (
        opcode, True, True, KEY, payload)
    assert build_frame(opcode, payload, masking_key=KEY) == wire
    unmasked = ABNF(0, 0, 0, 0, opcode, 0, payload).format()  # fin=0 as websocket-client writes fragments
    frame = only_frame(unmasked)
    assert (frame.opcode, frame.fin, frame.masked, frame.payload) == (opcode, False, False, payload)
    assert build_frame(opcode, payload, fin=False) == unmasked


# -- oversized frames ----------------------------------------------------------------------------------------

BIG = encode(BINARY, b"x" * 20)  # 22 bytes on the wire
NEXT = encode(TEXT, b"hi")  # 4 bytes


def _check_oversized(items: list[object]) -> None:
    assert len(items) == 2, items
    big, nxt = items
    assert isinstance(big, Frame) and isinstance(nxt, Frame)
    assert (big.opcode, big.payload_length, big.payload, big.missing, big.complete) == (BINARY, 20, b"", 20, False)
    assert big.offset == 0
    assert (nxt.opcode, nxt.payload, nxt.offset, nxt.missing) == (TEXT, b"hi", 22, 0)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 21, 22])
def test_oversized_frame_skipped_and_next_frame_parsed(step: int) -> None:
    parser = FrameParser(max_payload=10)
    items = feed_all(parser, BIG + NEXT, step)
    _check_oversized(items)
    assert parser.offset == 26 and parser.buffered == 0


# Regression: found by this suite, fixed in ac93d6b (a negative skip count lost the frames that followed).
@pytest.mark.parametrize("split", [None, 1, 23])
def test_oversized_frame_and_next_frame_in_one_chunk(split: int | None) -> None:
    parser = FrameParser(max_payload=10)
    data = BIG + NEXT + NEXT
    items: list[object] = []
    if split is None:
        items += parser.feed(data)
    else:
        items += parser.feed(data[:split])
        items += parser.feed(data[split:])
    _check_oversized(items[:2])
    assert len(items) == 3 and isinstance(items[2], Frame) and items[2].offset == 26
    assert parser.offset == 30


def test_oversized_frame_on_a_connection_gives_1009_and_decoding_goes_on() -> None:
    conn, _ = open_connection(limits=Limits(max_frame=10))
    events = conn.receive("s2c", BIG, time=1)
    events += conn.receive("s2c", NEXT, time=2)
    found = [v for v in violations(events) if v.check.id == "frame.too-big"]
    assert len(found) == 1 and found[0].check.close_code == 1009
    msgs = messages(events)
    assert [(m.opcode, m.complete) for m in msgs] == [(BINARY, False), (TEXT, True)]
    assert msgs[1].text == "hi"


# -- gaps -----------------------------------------------------------------------------------------------------

def test_gap_inside_payload_keeps_sync() -> None:
    payload = bytes(range(100, 140))  # 40 bytes
    first = encode(BINARY, payload, key=KEY)  # 6 + 40 bytes
    second = encode(TEXT, b"after", key=KEY)
    parser = FrameParser()
    assert parser.feed(first[:16]) == []  # header + 10 payload bytes
    items = parser.gap(12)  # payload bytes 10..21 never seen
    assert len(items) == 1 and isinstance(items[0], Frame)
    cut = items[0]
    assert (cut.opcode, cut.payload_length, cut.payload, cut.missing, cut.offset) == (BINARY, 40, payload[:10], 30, 0)
    items = parser.feed(first[28:] + second)
    assert len(items) == 1 and isinstance(items[0], Frame)
    assert (items[0].payload, items[0].offset) == (b"after", len(first))


def test_gap_ending_exactly_at_frame_end_keeps_sync() -> None:
    first = encode(BINARY, b"z" * 30)
    second = encode(TEXT, b"ok")
    parser = FrameParser()
    parser.feed(first[:12])
    items = parser.gap(20)
    assert [type(i) for i in items] == [Frame]
    items = parser.feed(second)
    assert [(type(i), getattr(i, "offset", None)) for i in items] == [(Frame, 32)]


def test_gap_while_skipping_an_oversized_frame_is_absorbed() -> None:
    parser = FrameParser(max_payload=10)
    assert len(parser.feed(BIG[:7])) == 1  # header + 5 of 20 payload bytes
    assert parser.gap(10) == []  # 10 more payload bytes never seen
    items = parser.feed(BIG[17:] + NEXT)
    assert [(type(i), getattr(i, "offset", None)) for i in items] == [(Frame, 22)]


def test_gap_in_a_header_loses_sync_and_resyncs() -> None:
    # Server frames; payload bytes 'z' (0x7a) have RSV2/RSV3 set, so they can never look like a header.
    a = encode(TEXT, b"A" * 10)
    b = encode(BINARY, b"z" * 200)  # 16-bit length: 4-byte header
    c = encode(TEXT, b"C")
    d = encode(PING, b"D")
    parser = FrameParser(expect_masked=False)
    items = parser.feed(a + b[:1])
    assert [type(i) for i in items] == [Frame]
    items = parser.gap(3)  # the rest of b's header
    assert items == [Truncated(len(a), 1)]
    items = parser.feed(b[4:] + c + d)
    start_c = len(a) + len(b)
    assert items[0] == Resynced(start_c, 200)
    assert [(f.opcode, f.payload, f.offset) for f in items[1:]] == [  # type: ignore[union-attr]
        (TEXT, b"C", start_c), (PING, b"D", start_c + len(c))]


def test_gap_at_a_frame_boundary_then_frames() -> None:
    a, b, c = encode(TEXT, b"a"), encode(TEXT, b"bb"), encode(TEXT, b"ccc")
    parser = FrameParser(expect_masked=False)
    parser.feed(a)
    assert parser.gap(len(b)) == []
    items = parser.feed(c)
    items += parser.finish()  # a lone candidate after a gap is trusted only once nothing else can follow
    frames = [i for i in items if isinstance(i, Frame)]
    assert [(f.payload, f.offset) for f in frames] == [(b"ccc", len(a) + len(b))]
    assert all(not isinstance(i, Resynced) or i.skipped == 0 for i in items)


# -- starting mid-stream -------------------------------------------------------------------------------------

def _mid_stream_bytes() -> tuple[bytes, list[bytes]]:
    # The tail of a client frame whose masked payload bytes are 0x31 ('A' ^ 0x70): RSV2/RSV3 set, never a header.
    tail = encode(TEXT, b"A" * 40, key=b"pppp")[26:]  # 20 bytes of masked payload
    decoy = bytes((0x82, 0x81)) + b"\x00\x00\x00\x00" + b"\x00"  # plausible header, but followed by garbage
    frames = [cframe(TEXT, b"hello", key=KEY), cframe(BINARY, b"\x00" * 300, key=KEY), cframe(PING, b"", key=KEY)]
    return tail[:5] + decoy + tail[5:], frames


@pytest.mark.parametrize("step", [
    None,
    7,
    1,  # regression, fixed in ac93d6b: fed a byte at a time, the decoy's frame ended at the data's end and won
])
def test_mid_stream_start_finds_the_boundary(step: int | None) -> None:
    noise, frames = _mid_stream_bytes()
    parser = FrameParser(in_sync=False, expect_masked=True)
    items = feed_all(parser, noise + b"".join(frames), step)
    if step is not None:
        items += parser.finish()
    assert items[0] == Resynced(len(noise), len(noise))
    got = [(f.opcode, f.payload, f.offset) for f in items[1:]]  # type: ignore[union-attr]
    offsets = [len(noise) + sum(len(f) for f in frames[:i]) for i in range(3)]
    assert got == [(TEXT, b"hello", offsets[0]), (BINARY, b"\x00" * 300, offsets[1]), (PING, b"", offsets[2])]


def test_mid_stream_connection_decodes_messages() -> None:
    noise, frames = _mid_stream_bytes()
    conn = Connection(7, mid_stream=True)
    events = conn.receive("c2s", noise + b"".join(frames), time=1)
    assert [e.check.id for e in events if hasattr(e, "check")] == ["capture.resync"]
    assert [(m.opcode, m.data) for m in messages(events)] == [(TEXT, b"hello"), (BINARY, b"\x00" * 300)]
    assert all(isinstance(m, Message) and m.stream == 7 for m in messages(events))


# -- end of stream -------------------------------------------------------------------------------------------

def test_finish_reports_cut_header_and_cut_payload() -> None:
    parser = FrameParser()
    frame = encode(BINARY, b"0123456789", key=KEY)
    parser.feed(b"\x81\x05Hello" + frame[:3])
    assert parser.finish() == [Truncated(7, 3)]
    parser = FrameParser()
    parser.feed(frame[:10])
    items = parser.finish()
    assert len(items) == 1 and isinstance(items[0], Frame)
    assert (items[0].payload, items[0].missing, items[0].payload_length) == (b"0123", 6, 10)
    assert FrameParser().finish() == []


def test_offsets_accumulate_over_chunks() -> None:
    wires = [encode(TEXT, b"x" * n, key=KEY) for n in (0, 1, 125, 126, 500)]
    parser = FrameParser()
    items = feed_all(parser, b"".join(wires), 13)
    assert [f.offset for f in items] == [sum(map(len, wires[:i])) for i in range(len(wires))]  # type: ignore
    assert parser.offset == sum(map(len, wires))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 2047, 2048, 2049, 2050, 2051, 16384, 65539])
def test_apply_mask_matches_the_rfc_definition_on_both_sides_of_the_lane_crossover(size: int) -> None:
    # RFC 6455 5.3: "Octet i of the transformed data is the XOR of octet i of the original data with octet at
    # index i modulo 4 of the masking key." apply_mask switches method at 2048 bytes; both must agree with this.
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    key = b"\x37\xfa\x21\x3d"
    expected = bytes(octet ^ key[i % 4] for i, octet in enumerate(data))
    assert apply_mask(data, key) == expected
    assert apply_mask(memoryview(data), key) == expected
    assert apply_mask(expected, key) == data
