"""The worked examples of RFC 6455, byte for byte.

Expected values are copied from the RFC text (/work/shared/rfc/rfc6455.txt), never from the code under test.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from wsinspect.core.connection import Connection
from wsinspect.core.events import Close, FrameEvent, HandshakeRequest, HandshakeResponse
from wsinspect.core.fields import EXTENDED_LENGTH_16, EXTENDED_LENGTH_64, PAYLOAD_LENGTH
from wsinspect.core.frames import Frame, FrameParser, apply_mask, build_frame
from wsinspect.core.handshake import accept_key, parse_request, parse_response, validate_request, validate_response

from .helpers import MASK, messages, violations

# RFC 6455 section 5.7, "Examples": (description, wire bytes as printed in the RFC, fin, opcode, masked, payload).
SECTION_5_7 = [
    ("single-frame unmasked text", "81 05 48 65 6c 6c 6f", True, 0x1, False, b"Hello"),
    ("single-frame masked text", "81 85 37 fa 21 3d 7f 9f 4d 51 58", True, 0x1, True, b"Hello"),
    ("fragmented unmasked text, first", "01 03 48 65 6c", False, 0x1, False, b"Hel"),
    ("fragmented unmasked text, last", "80 02 6c 6f", True, 0x0, False, b"lo"),
    ("unmasked ping", "89 05 48 65 6c 6c 6f", True, 0x9, False, b"Hello"),
    ("masked pong", "8a 85 37 fa 21 3d 7f 9f 4d 51 58", True, 0xA, True, b"Hello"),
]

# RFC 6455 section 1.3, the sample opening handshake (the response with the optional protocol line it shows next).
SECTION_1_3_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
SECTION_1_3_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"  # section 1.3: "Sec-WebSocket-Protocol: chat"
    b"\r\n"
)


def _only_frame(wire: bytes) -> Frame:
    items = FrameParser().feed(wire)
    assert len(items) == 1
    assert isinstance(items[0], Frame)
    return items[0]


@pytest.mark.parametrize(("name", "hexbytes", "fin", "opcode", "masked", "payload"), SECTION_5_7,
                         ids=[row[0] for row in SECTION_5_7])
def test_section_5_7_parse(name: str, hexbytes: str, fin: bool, opcode: int, masked: bool, payload: bytes) -> None:
    wire = bytes.fromhex(hexbytes)
    frame = _only_frame(wire)
    assert frame.fin is fin
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
    assert frame.opcode == opcode
    assert frame.masked is masked
    assert frame.payload_length == len(payload)
    assert frame.length_bits == 7
    assert frame.masking_key == (MASK if masked else None)
    header_length = 2 + (4 if masked else 0)
    assert frame.header == wire[:header_length]
    assert frame.payload == payload  # unmasked
    assert frame.wire_payload == wire[header_length:]  # as on the wire
    assert frame.offset == 0
    assert frame.missing == 0
    assert frame.size == len(wire)


@pytest.mark.parametrize(("name", "hexbytes", "fin", "opcode", "masked", "payload"), SECTION_5_7,
                         ids=[row[0] for row in SECTION_5_7])
def test_section_5_7_build(name: str, hexbytes: str, fin: bool, opcode: int, masked: bool, payload: bytes) -> None:
    wire = bytes.fromhex(hexbytes)
    assert build_frame(opcode, payload, fin=fin, masking_key=MASK if masked else None) == wire


def test_section_5_7_all_examples_in_one_stream() -> None:
    """Concatenated, the examples parse back at the right offsets (one direction of bytes, any mix)."""
    wires = [bytes.fromhex(row[1]) for row in SECTION_5_7]
    items = FrameParser().feed(b"".join(wires))
    assert [type(i) for i in items] == [Frame] * len(wires)
    offsets = [sum(len(w) for w in wires[:i]) for i in range(len(wires))]
    assert [f.offset for f in items] == offsets  # type: ignore[union-attr]
    assert [f.payload for f in items] == [row[5] for row in SECTION_5_7]  # type: ignore[union-attr]


def test_section_5_3_masking_of_the_example() -> None:
    # "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58 (section 5.7); masking is its own inverse (section 5.3).
    assert apply_mask(b"Hello", MASK) == bytes.fromhex("7f9f4d5158")
    assert apply_mask(bytes.fromhex("7f9f4d5158"), MASK) == b"Hello"
    assert apply_mask(b"", MASK) == b""


def test_section_5_7_examples_through_a_connection() -> None:
    """The server sends the unmasked examples, the client the masked ones: RFC-conforming, so no violation."""
    conn = Connection()
    events = conn.receive("c2s", SECTION_1_3_REQUEST, time=0)
    events += conn.receive("s2c", SECTION_1_3_RESPONSE, time=0)
    server = "81 05 48 65 6c 6c 6f  01 03 48 65 6c  89 05 48 65 6c 6c 6f  80 02 6c 6f"
    client = "81 85 37 fa 21 3d 7f 9f 4d 51 58  8a 85 37 fa 21 3d 7f 9f 4d 51 58"
    events += conn.receive("s2c", bytes.fromhex(server), time=1)
    events += conn.receive("c2s", bytes.fromhex(client), time=2)
    assert violations(events) == []
    got = [(m.direction, m.opcode, m.text, m.frames) for m in messages(events)]
    # The fragmented "Hel"+"lo" is one message of two frames, the ping between them does not split it (5.4).
    assert got == [("s2c", 1, "Hello", 1), ("s2c", 1, "Hello", 2), ("c2s", 1, "Hello", 1)]
    assert sum(isinstance(e, FrameEvent) for e in events) == 6


# RFC 6455 section 5.7: "256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100 [256 bytes]"
# and "64KiB binary message in a single unmasked frame: 0x82 0x7F 0x0000000000010000 [65536 bytes]".
@pytest.mark.parametrize(("size", "header_hex", "bits", "field"), [
    (256, "82 7e 01 00", 16, EXTENDED_LENGTH_16),
    (65536, "82 7f 00 00 00 00 00 01 00 00", 64, EXTENDED_LENGTH_64),
])
def test_section_5_7_long_examples(size: int, header_hex: str, bits: int, field: object) -> None:
    data = bytes(range(256)) * (size // 256)
    header = bytes.fromhex(header_hex)
    wire = header + data
    assert build_frame(0x2, data) == wire
    frame = _only_frame(wire)
    assert (frame.fin, frame.opcode, frame.masked) == (True, 0x2, False)
    assert frame.payload_length == size
    assert frame.length_bits == bits
    assert frame.length_is_minimal
    assert frame.header == header
    assert frame.payload == data
    spans = {s.field: s for s in frame.spans()}
    assert (spans[PAYLOAD_LENGTH].start, spans[PAYLOAD_LENGTH].end) == (1, 2)
    assert spans[PAYLOAD_LENGTH].value == header[1] & 0x7F
    ext = spans[field]  # type: ignore[index]
    assert (ext.start, ext.end, ext.value) == (2, len(header), size)


def test_section_1_3_accept_key() -> None:
    # Section 1.3 (and the NOTE in 4.2.2 item 5.4): the SHA-1 of key+GUID, then its base64.
    concatenated = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    digest = hashlib.sha1(concatenated.encode()).digest()
    assert digest == bytes.fromhex("b37a4f2cc0624f1690f64606cf385945b2bec4ea")
    assert base64.b64encode(digest).decode() == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    # Section 4.2.2 /key/: "minus any leading and trailing whitespace".
    assert accept_key("  dGhlIHNhbXBsZSBub25jZQ==\t") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_section_4_1_example_key_is_accepted() -> None:
    # Section 4.1 item 7's NOTE: the nonce 01..10 gives "AQIDBAUGBwgJCgsMDQ4PEC==" (16 bytes once decoded).
    raw = (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://h\r\n\r\n")
    assert validate_request(parse_request(raw)) == []


def test_section_1_3_request_parses_and_validates() -> None:
    request = parse_request(SECTION_1_3_REQUEST)
    assert (request.method, request.target, request.version) == ("GET", "/chat", "HTTP/1.1")
    assert request.start_line == "GET /chat HTTP/1.1"
    assert request.raw == SECTION_1_3_REQUEST
    assert [name for name, _ in request.headers] == [
        "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Origin", "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Version"]
    assert request.headers.get("sec-websocket-protocol") == "chat, superchat"
    assert validate_request(request) == []
    assert validate_request(request, allowed_origins=["http://example.com"]) == []


def test_section_1_3_response_parses_and_validates() -> None:
    request = parse_request(SECTION_1_3_REQUEST)
    response = parse_response(SECTION_1_3_RESPONSE)
    assert (response.version, response.status, response.reason) == ("HTTP/1.1", 101, "Switching Protocols")
    assert response.headers.get("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert validate_response(response, request) == []
    # Without the optional protocol line, as first printed in section 1.3, it is valid too.
    bare = SECTION_1_3_RESPONSE.replace(b"Sec-WebSocket-Protocol: chat\r\n", b"")
    assert validate_response(parse_response(bare), request) == []


def test_section_1_3_handshake_through_a_connection() -> None:
    conn = Connection()
    events = conn.receive("c2s", SECTION_1_3_REQUEST, time=0)
    events += conn.receive("s2c", SECTION_1_3_RESPONSE, time=1)
    assert [type(e) for e in events] == [HandshakeRequest, HandshakeResponse]
    request_event, response_event = events
    assert isinstance(request_event, HandshakeRequest) and request_event.findings == ()
    assert isinstance(response_event, HandshakeResponse)
    assert response_event.findings == ()
    assert response_event.upgraded
    assert response_event.subprotocol == "chat"
    assert response_event.deflate is None
    # A close with 1000 from each side (section 7.4.1) ends it cleanly.
    events = conn.receive("c2s", bytes.fromhex("8882") + MASK + bytes((0x03 ^ 0x37, 0xE8 ^ 0xFA)), time=2)
    events += conn.receive("s2c", bytes.fromhex("880203e8"), time=3)
    closes = [e for e in events if isinstance(e, Close)]
    assert [(c.direction, c.code, c.initiator) for c in closes] == [("c2s", 1000, True), ("s2c", 1000, False)]
    end = conn.end(time=4)
    assert end[-1].clean  # type: ignore[attr-defined]
