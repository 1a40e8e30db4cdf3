"""The display filter language (``-Y``): grammar, precedence, every operator, every error with its column.

The events are real decoder output: the RFC 6455 section 5.7 example frames (bytes copied from the RFC), a few
more frames encoded here by hand, fed through ``Connection`` after the section 1.3 handshake. Expected sets are
written from what those bytes mean (which packet carried which frame), never computed by the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsinspect.core import events as events_module
from wsinspect.core.connection import Connection
from wsinspect.core.events import ConnectionOpened, Event
from wsinspect.filters import EVENT_TYPES, EVENT_WORDS, FIELDS, FilterError, compile_filter, describe_fields
from wsinspect.trace import CaptureTrace
from wsinspect.views.jsonlines import to_json

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
if str(ROOT) not in sys.path:  # captures.scenarios says which captures need Decode As (--port)
    sys.path.insert(0, str(ROOT))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def masked(opcode: int, payload: bytes, key: bytes = b"\x0a\x0b\x0c\x0d", first: int = 0x80) -> bytes:
    """A client frame, encoded from the section 5.2 diagram (payloads under 126 bytes)."""
    assert len(payload) < 126
    return bytes((first | opcode, 0x80 | len(payload))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


REQUEST = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nOrigin: http://example.com\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
ACCEPT = base64.b64encode(hashlib.sha1(KEY.encode() + GUID).digest())
RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n")

# (packet number, direction, bytes). Packets 3-8 are RFC 6455 section 5.7's examples as printed there.
WIRE = [
    (1, "c2s", REQUEST),
    (2, "s2c", RESPONSE),
    (3, "s2c", bytes.fromhex("81 05 48 65 6c 6c 6f")),  # single-frame unmasked text "Hello"
    (4, "c2s", bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")),  # single-frame masked text "Hello"
    (5, "s2c", bytes.fromhex("01 03 48 65 6c")),  # fragmented unmasked text: "Hel"...
    (6, "s2c", bytes.fromhex("80 02 6c 6f")),  # ..."lo"
    (7, "s2c", bytes.fromhex("89 05 48 65 6c 6c 6f")),  # unmasked ping "Hello"
    (8, "c2s", bytes.fromhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58")),  # masked pong "Hello"
    (9, "s2c", bytes.fromhex("82 7e 01 00") + bytes(256)),  # 256 bytes binary in a single unmasked frame
    (10, "s2c", bytes.fromhex("82 7f 00 00 00 00 00 01 00 00") + bytes(65536)),  # 64 KiB binary, unmasked
    (11, "c2s", bytes((0x81, 8)) + b"unmasked"),  # a client frame without a mask: a violation (section 5.1)
    (12, "c2s", masked(0x1, b"\xff\xfe")),  # text that is not UTF-8: a violation (section 8.1), text absent
    (13, "c2s", masked(0x1, b"")),  # an empty text message: valid text, and empty
    (14, "c2s", masked(0x1, b"ERR42 disk full")),
    (15, "c2s", masked(0x8, struct.pack("!H", 1000) + b"bye")),  # close 1000 "bye", masked
    (16, "s2c", bytes((0x88, 5)) + struct.pack("!H", 1000) + b"bye"),  # the server's answer
]
END_PACKET = 17


def decode() -> list[Event]:
    connection = Connection(3)
    events: list[Event] = []
    for packet, direction, data in WIRE:
        events += connection.receive(direction, data, time=1000.0 + packet, packet=packet)  # type: ignore[arg-type]
    events += connection.end(time=1000.0 + END_PACKET, packet=END_PACKET)
    return events


EVENTS = decode()


def kind(event: Event) -> str:
    return str(to_json(event)["type"])


def matching(expression: str, events: list[Event] = EVENTS) -> set[tuple[str, int | None]]:
    test = compile_filter(expression)
    return {(kind(e), e.packet) for e in events if test(e)}


def frames(*packets: int) -> set[tuple[str, int | None]]:
    return {("frame", p) for p in packets}


def messages(*packets: int) -> set[tuple[str, int | None]]:
    return {("message", p) for p in packets}


ALL = {(kind(e), e.packet) for e in EVENTS}
FRAMES = frames(*range(3, 17))


def test_the_decoded_events_are_what_the_bytes_say() -> None:
    """The fixture itself: one frame per packet 3-16, messages where a FIN data frame ends one."""
    assert {k for k in ALL if k[0] == "frame"} == FRAMES
    assert {k for k in ALL if k[0] == "message"} == messages(3, 4, 6, 9, 10, 11, 12, 13, 14)
    assert {k for k in ALL if k[0] in ("violation", "close", "connection_closed")} == {
        ("violation", 11), ("violation", 12), ("close", 15), ("close", 16), ("connection_closed", 17)}


# ---- the examples of the issue, and each operator ---------------------------------------------------------------

CASES: list[tuple[str, set[tuple[str, int | None]]]] = [
    ("websocket.opcode == 8", frames(15, 16)),
    ("websocket.opcode == 1", frames(3, 4, 5, 11, 12, 13, 14)),
    ("websocket.payload_length > 100", frames(9, 10)),
    ("websocket.payload_length > 100 && websocket.mask", set()),
    ("websocket.payload_length < 5 && websocket.mask", frames(12, 13)),
    ("tcp.stream == 3", ALL),
    ("tcp.stream == 4", set()),
    ('direction == "s2c"', {k for k in ALL if k[1] in (2, 3, 5, 6, 7, 9, 10, 16)}),
    ('text contains "error"', set()),
    ('text contains "ll"', messages(3, 4, 6, 14)),  # "Hello" and "ERR42 disk full"
    ('text matches "^ERR[0-9]+"', messages(14)),
    ('text matches "^err[0-9]+"', messages(14)),  # case-insensitive, as in Wireshark
    ('text matches "(?-i:^err)"', set()),  # ...unless the pattern says otherwise
    ("violation", {("violation", 11), ("violation", 12)}),
    ('check == "frame.client-unmasked"', {("violation", 11)}),
    ('check != "frame.client-unmasked"', {("violation", 12)}),
    ('check contains "utf8"', {("violation", 12)}),
    # comparisons
    ("websocket.opcode != 1", frames(6, 7, 8, 9, 10, 15, 16)),  # absent field: false, as in Wireshark
    ("!(websocket.opcode == 1)", ALL - frames(3, 4, 5, 11, 12, 13, 14)),
    ("websocket.opcode < 1", frames(6)),
    ("websocket.opcode <= 1", frames(3, 4, 5, 6, 11, 12, 13, 14)),
    ("websocket.opcode > 9", frames(8)),
    ("websocket.opcode >= 9", frames(7, 8)),
    ("websocket.opcode eq 9 or websocket.opcode eq 10", frames(7, 8)),
    ("websocket.opcode ne 1 and websocket.opcode lt 3 and websocket.opcode le 2", frames(6, 9, 10)),
    ("websocket.opcode gt 8 && websocket.opcode ge 10", frames(8)),
    ("websocket.opcode == 0x8", frames(15, 16)),
    ("websocket.opcode == 0XA", frames(8)),
    ("websocket.opcode == 010", frames(15, 16)),  # a leading 0 is octal, as in Wireshark (010 is 8)
    ("websocket.opcode == 0", frames(6)),
    # sets, as in Wireshark 4.0: members and ranges, separated by commas
    ("websocket.opcode in {8, 9..10}", frames(7, 8, 15, 16)),
    ("websocket.opcode in {0x2}", frames(9, 10)),
    ("websocket.opcode in {10..8}", set()),  # an empty range
    ("websocket.opcode in {0..0, 9..10}", frames(6, 7, 8)),  # several ranges
    ("!websocket.opcode in {1, 2}", ALL - frames(3, 4, 5, 9, 10, 11, 12, 13, 14)),
    ('text in {"Hello", ""}', messages(3, 4, 6, 13)),
    ("opcode_name in {ping, PONG}", frames(7, 8)),
    ("payload in {48:65:6c, 6c:6f}", frames(5, 6)),
    ("time in {1003, 1016.5..2000}", {("frame", 3), ("message", 3), ("connection_closed", 17)}),
    # booleans
    ("websocket.fin == 0", frames(5)),
    ("websocket.fin == false", frames(5)),
    ("websocket.fin == True", FRAMES - frames(5)),
    ("!websocket.fin", ALL - FRAMES | frames(5)),
    ("websocket.mask", frames(4, 8, 12, 13, 14, 15)),
    ("websocket.mask == 1", frames(4, 8, 12, 13, 14, 15)),
    # lengths and their forms (RFC 6455 5.2: 126 means a 16-bit length follows, 127 a 64-bit one)
    ("websocket.payload_length == 65536", frames(10)),
    ("websocket.payload_length_ext_16 == 256", frames(9)),
    ("websocket.payload_length_ext_64", frames(10)),
    ("length_bits == 16", frames(9)),
    ("header_length == 10", frames(10)),  # 2 + 8 bytes of length
    ("header_length == 6", frames(4, 8, 12, 13, 14, 15)),  # 2 + 4 bytes of masking key
    # bytes: masking keys and payloads, in Wireshark's byte-string form or as quoted strings
    ("websocket.masking_key == 37:fa:21:3d", frames(4, 8)),
    ("websocket.masking_key == 37-fa-21-3d", frames(4, 8)),
    ("websocket.masking_key == 37.fa.21.3d", frames(4, 8)),
    ('websocket.masking_key == "37:fa:21:3d"', set()),  # a quoted string is its own bytes, as in Wireshark
    ('websocket.masking_key == "7\\xfa!="', frames(4, 8)),
    ("websocket.masking_key", frames(4, 8, 12, 13, 14, 15)),
    ('payload contains "ell"', frames(3, 4, 7, 8)),  # the unmasked payload
    ("payload contains 48:65:6c", frames(3, 4, 5, 7, 8)),
    ("payload contains 48", frames(3, 4, 5, 7, 8)),  # one byte, 'H'
    ('payload == ""', frames(13)),
    ('payload matches "^h.l"', frames(3, 4, 5, 7, 8)),
    ("data contains 00:00:00", messages(9, 10)),
    ('data == "Hello"', messages(3, 4, 6)),
    ('payload < "I"', frames(3, 4, 5, 7, 8, 9, 10, 13, 14, 15, 16)),  # byte order: "Hello" < "I" < "lo"
    # strings, with Wireshark's escapes
    ('text == "Hello"', messages(3, 4, 6)),
    ('text == "\\x48ello"', messages(3, 4, 6)),
    ('text == "\\110ello"', messages(3, 4, 6)),  # octal
    ('text == "\\u0048ello"', messages(3, 4, 6)),
    ('text == "\\U00000048ello"', messages(3, 4, 6)),
    ('text == r"Hello"', messages(3, 4, 6)),
    ('text matches r"^ERR\\d+ "', messages(14)),
    ('text matches "^ERR\\\\d+ "', messages(14)),
    ('text == "hello"', set()),  # text is case-sensitive
    ('text > "Hello"', messages(11)),  # "unmasked" sorts after "Hello"; "ERR42 ..." and "" before it
    ("text", messages(3, 4, 6, 11, 13, 14)),  # valid text, the empty one included; not invalid UTF-8, not binary
    ('text == ""', messages(13)),
    ("!text && message", messages(9, 10, 12)),
    ("text contains Hel", messages(3, 4, 6)),  # an unquoted word is taken literally, as in Wireshark
    # labels compare case-insensitively
    ('opcode_name == "text"', frames(3, 4, 5, 11, 12, 13, 14) | messages(3, 4, 6, 11, 12, 13, 14)),
    ('opcode_name == "PING"', frames(7)),
    ("opcode_name == Pong", frames(8)),
    ('opcode_name contains "ON"', frames(6, 8)),  # Continuation, Pong
    ('opcode_name matches "^p"', frames(7, 8)),
    ('severity == "ERROR"', {("violation", 11), ("violation", 12)}),
    ('type == "close"', {("close", 15), ("close", 16)}),
    ('type == "connection_closed" || type == "gap"', {("connection_closed", 17)}),
    # messages, closes, handshakes, the end
    ("frames > 1", messages(6)),
    ("opcode == 2 && length == 256", messages(9)),
    ("wire_length == 65536", messages(10)),
    ("first_packet == 5", messages(6)),
    ("compressed", set()),
    ("complete && opcode == 2", messages(9, 10)),
    ("close", {("close", 15), ("close", 16)}),
    ("code == 1000", {("close", 15), ("close", 16)}),
    ('reason == "bye"', {("close", 15), ("close", 16)}),
    ("initiator", {("close", 15)}),
    ("websocket.payload.close.status_code == 1000", frames(15, 16)),
    ('websocket.payload.close.reason == "bye"', frames(15, 16)),
    ("handshake", {("handshake_request", 1), ("handshake_response", 2)}),
    ("http", {("handshake_request", 1), ("handshake_response", 2)}),
    ("http.request", {("handshake_request", 1)}),
    ('http.request.method == "GET"', {("handshake_request", 1)}),
    ("method == GET", {("handshake_request", 1)}),
    ('http.request.uri == "/chat"', {("handshake_request", 1)}),
    ('target matches "^/CH"', {("handshake_request", 1)}),
    ("target == /chat", {("handshake_request", 1)}),  # an unquoted path is a word too
    ('version == "HTTP/1.1"', {("handshake_request", 1), ("handshake_response", 2)}),
    ("status == 101 && upgraded", {("handshake_response", 2)}),
    ("http.response.code == 101", {("handshake_response", 2)}),
    ('http.response.phrase == "Switching Protocols"', {("handshake_response", 2)}),
    ('reason contains "Switching"', {("handshake_response", 2)}),
    ("subprotocol", set()),
    ("connection_closed && clean", {("connection_closed", 17)}),
    # where and when
    ("frame.number == 9", {("frame", 9), ("message", 9)}),
    ("packet >= 15 && !frame", {("close", 15), ("close", 16), ("connection_closed", 17)}),
    ("time > 1015.5", {("frame", 16), ("close", 16), ("connection_closed", 17)}),
    ("frame.time_epoch <= 1001", {("handshake_request", 1)}),
    ("time == 1002.0", {("handshake_response", 2)}),
    ("stream == 3 && direction == c2s && violation", {("violation", 11), ("violation", 12)}),
    # offsets count from the start of the direction's byte stream: the first frames follow the handshake
    (f"offset == {len(RESPONSE)}", frames(3)),
    (f"offset == {len(REQUEST)}", frames(4)),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression_selects_exactly(expression: str, expected: set[tuple[str, int | None]]) -> None:
    assert matching(expression) == expected




def test_gaps_and_the_end_of_a_connection() -> None:
    connection = Connection(1)
    events = connection.receive("c2s", REQUEST, time=1.0, packet=1)
    events += connection.receive("s2c", RESPONSE, time=1.0, packet=2)
    events += connection.receive("c2s", masked(0x1, b"ab"), time=2.0, packet=3)
    events += connection.gap("c2s", 10, time=3.0, packet=4)
    events += connection.end(time=4.0, packet=5)
    assert matching("gap", events) == {("gap", 4)}
    assert matching(f"missing == 10 && offset == {len(REQUEST) + 8}", events) == {("gap", 4)}
    assert matching("connection_closed && !clean", events) == {("connection_closed", 5)}
    assert matching('reason == "end of stream"', events) == {("connection_closed", 5)}


# ---- precedence ---------------------------------------------------------------------------------------------------

PRECEDENCE = [
    # && binds tighter than ||
    ("websocket.opcode == 1 || websocket.opcode == 2 && websocket.mask", frames(3, 4, 5, 11, 12, 13, 14)),
    ("(websocket.opcode == 1 || websocket.opcode == 2) && websocket.mask", frames(4, 12, 13, 14)),
    ("websocket.mask && websocket.opcode == 9 || websocket.opcode == 2", frames(9, 10)),
    # ! binds tighter than && and ||, looser than a comparison
    ("!websocket.opcode == 1", ALL - frames(3, 4, 5, 11, 12, 13, 14)),
    ("!websocket.mask && frame", frames(3, 5, 6, 7, 9, 10, 11, 16)),
    ("!(websocket.mask && frame)", ALL - frames(4, 8, 12, 13, 14, 15)),
    ("not websocket.mask and frame or close", frames(3, 5, 6, 7, 9, 10, 11, 16) | {("close", 15), ("close", 16)}),
    ("!!websocket.mask", frames(4, 8, 12, 13, 14, 15)),
    ("((((websocket.mask))))", frames(4, 8, 12, 13, 14, 15)),
    ("websocket.opcode==9||websocket.opcode==10", frames(7, 8)),  # no spaces needed around symbols
    ("!(websocket.opcode==1)&&frame&&!websocket.mask", frames(6, 7, 9, 10, 16)),
    ("frame && websocket.mask && websocket.fin && websocket.opcode == 1 && websocket.payload_length > 0",
     frames(4, 12, 14)),
    ("close || gap || violation || handshake", {("close", 15), ("close", 16), ("violation", 11), ("violation", 12),
                                               ("handshake_request", 1), ("handshake_response", 2)}),
]


@pytest.mark.parametrize(("expression", "expected"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_precedence(expression: str, expected: set[tuple[str, int | None]]) -> None:
    assert matching(expression) == expected


# ---- errors: one line, the right column -------------------------------------------------------------------------

ERRORS = [
    ("websocket.opcode ==", 19, "expected a value after '=='"),
    ("", 0, "the filter is empty"),
    ("   ", 0, "the filter is empty"),
    ("websocket.opcod == 1", 0, "unknown field 'websocket.opcod' (did you mean websocket.opcode"),
    ("frame && websocket.opcod", 9, "unknown field 'websocket.opcod' (did you mean websocket.opcode"),
    ("xyzzy", 0, "unknown field 'xyzzy' (wsinspect read -Y help lists the fields)"),
    ("websocket.payload contains 48", 0, "no field 'websocket.payload': use payload"),
    ("websocket.opcode == 1 &&", 24, "expected a field, an event word or '(' after '&&'"),
    ("websocket.opcode == 1 or", 24, "expected a field, an event word or '(' after '||'"),
    ("!", 1, "expected a field, an event word or '(' after '!'"),
    ("== 1", 0, "expected a field, an event word or '(', not '=='"),
    ("frame && && close", 9, "expected a field, an event word or '(', not '&&'"),
    ("()", 1, "expected a field, an event word or '(', not ')'"),
    ("(websocket.mask", 15, "expected ')' to close the '(' at column 0"),
    ("websocket.opcode == 1 && (text", 30, "expected ')' to close the '(' at column 25"),
    ("websocket.mask)", 14, "this ')' closes nothing"),
    ("websocket.mask websocket.fin", 15, "expected '&&', '||' or the end, not 'websocket.fin'"),
    ("websocket.opcode == 1 == 2", 22, "expected '&&', '||' or the end, not '=='"),
    ("websocket.opcode == (1)", 20, "expected a value after '=='"),
    ("websocket.opcode = 1", 17, "unexpected character '=' (did you mean '=='?)"),
    ("websocket.mask & websocket.fin", 15, "unexpected character '&' (did you mean '&&'?)"),
    ("websocket.mask | websocket.fin", 15, "unexpected character '|' (did you mean '||'?)"),
    ("text == 'x'", 8, "unexpected character ''' (strings are in double quotes)"),
    ("text == #", 8, "unexpected character '#'"),
    ("frame == 1", 6, "'frame' is an event word, not a field: it takes no '=='"),
    ('websocket.opcode == "1"', 20, "websocket.opcode is a number, not a string"),
    ("direction == 1", 13, 'direction is a string: a number never equals it (quote it: "1")'),
    ("websocket.opcode == 1x", 20, "'1x' is not a number (the type of websocket.opcode)"),
    ("websocket.opcode == 09", 20, "'09' is not a number"),
    ("websocket.opcode == 1.5", 20, "'1.5' is not a number"),
    ("time > 1.2.3", 7, "'1.2.3' is not a time in seconds"),
    ("websocket.opcode == " + "9" * 5000, 20, "websocket.opcode is never that large"),
    ("tcp.port == 80", 0, "no field 'tcp.port': use tcp.stream for a conversation"),
    ("websocket.fin == yes", 17, "'yes' is not a boolean"),
    ("websocket.opcode contains 1", 17, "websocket.opcode is a number: 'contains' needs a string or bytes field"),
    ('websocket.mask matches "1"', 15, "websocket.mask is a boolean: 'matches' needs a string or bytes field"),
    ("payload contains zz", 17, "'zz' is not bytes: write 01:02:03 or a quoted string"),
    ("payload contains 1:2", 17, "'1:2' is not bytes"),
    ("payload contains 01:02-03", 17, "'01:02-03' is not bytes"),  # one separator throughout
    ("payload matches 41:42", 16, "'matches' needs a regular expression in quotes"),
    ('text matches "(ab"', 14, "bad regular expression: missing ), unterminated subpattern"),
    ('text matches "ab)"', 16, "bad regular expression: unbalanced parenthesis"),
    ('text matches "\\\\d("', 17, "bad regular expression"),  # the column counts the escape as written
    ('text matches r"\\d("', 17, "bad regular expression"),
    ('text matches "é("', 15, "bad regular expression"),  # columns are characters, not UTF-8 bytes
    ('payload matches "[a-"', 17, "bad regular expression"),
    ('text == "abc', 8, "this string is not closed"),
    ('text == "abc\\"', 8, "this string is not closed"),
    ('text == "\\d"', 9, "\\d is not a valid escape (write \\\\d, or use a raw string"),
    ('text == "\\x4"', 9, "\\x needs two hex digits"),
    ('text == "\\777"', 9, "\\777 is more than one byte"),
    ('text == "\\ud800"', 9, "\\u needs 4 hex digits naming a Unicode character"),
    ('text == "\\U00110000"', 9, "\\U needs 8 hex digits naming a Unicode character"),
    ('text == "ab\\xff"', 11, "this string is not valid UTF-8"),
    ('direction == "s2x"', 13, 'direction is never "s2x" (did you mean s2c?)'),
    ('opcode_name == "Tex"', 15, 'opcode_name is never "Tex" (did you mean Text'),
    ('check == "frame.client-unmask"', 9, 'check is never "frame.client-unmask" (did you mean frame.client-unmasked'),
    ('type != "frames"', 8, 'type is never "frames" (did you mean frame'),
    ("websocket.opcode in 1", 20, "expected '{' after 'in'"),
    ("websocket.opcode in {}", 21, "expected a value after '{'"),
    ("websocket.opcode in {1,}", 23, "expected a value after ','"),
    ("websocket.opcode in {1 2}", 23, "expected ',' or '}' to close the '{' at column 20"),
    ("websocket.opcode in {1", 22, "expected ',' or '}' to close the '{' at column 20"),
    ("websocket.opcode in {1..x}", 24, "'x' is not a number"),
    ("text in {a..b}", 9, "a range needs numbers, and text is a string"),
    ("direction in {c2s, s2x}", 19, 'direction is never "s2x" (did you mean s2c?)'),
    ("frame in {1}", 6, "'frame' is an event word, not a field: it takes no 'in'"),
    ("(" * 65 + "frame" + ")" * 65, 64, "nested more than 64 deep"),
    ("!" * 65 + "frame", 64, "nested more than 64 deep"),
    ("not " * 65 + "frame", 256, "nested more than 64 deep"),
]


@pytest.mark.parametrize(("expression", "column", "reason"), ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_error_points_at_its_column(expression: str, column: int, reason: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(expression)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.column, error.expression) == (column, expression)
    assert error.reason.startswith(reason)
    message = str(error)
    assert message.startswith(f"filter error at column {column}: {reason}")
    assert "\n" not in message


def test_the_example_error_of_the_issue() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter("websocket.opcode ==")
    assert str(caught.value) == "filter error at column 19: expected a value after '==' (websocket.opcode ==)"
    assert caught.value.pointer() == "websocket.opcode ==\n" + " " * 19 + "^"


def unsafe(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u202e\u2066\u200f"


@pytest.mark.parametrize("expression", ['text == "\x1b[2J" && \x1b]0;x\x07', "fr\u202eame == 1", 'xyzzy\n == "\x9b"',
                                        "\x00", 'text == "\u2066" && é"'])
def test_errors_never_carry_control_characters_to_the_terminal(expression: str) -> None:
    """An expression can come from a script or a pasted capture: escapes, bidi overrides and newlines in it are shown
    escaped, and the caret still stands under the character it points at."""
    with pytest.raises(FilterError) as caught:
        compile_filter(expression)
    error = caught.value
    assert not any(unsafe(c) for c in str(error))
    line, caret = error.pointer().split("\n")
    assert not any(unsafe(c) for c in line + caret)
    assert caret.strip() == "^"
    # everything left of the caret is the escaped form of everything left of the column
    assert line.startswith(str(FilterError("", expression[:error.column], 0)).split("(", 1)[1][:-1])
    assert len(caret) - 1 == len(str(FilterError("", expression[:error.column], 0)).split("(", 1)[1][:-1])


# ---- properties: negation is the complement, && the intersection, || the union ----------------------------------

ATOMS = [
    "websocket.opcode == 1", "websocket.mask", "websocket.fin", 'direction == "s2c"', 'text contains "ll"',
    "message", "violation", "frame.number > 6", "websocket.payload_length >= 256", "code == 1000", "close",
    'opcode_name == "TEXT"', "text", "payload contains 48:65", "websocket.opcode != 1", "frames > 1",
    'text matches "^e"', "handshake", "initiator", "websocket.rsv == 0", "websocket.opcode in {0, 8..10}",
]
PRECEDENCE_OF = {"||": 1, "&&": 2, "!": 3, "atom": 4}
SPELLINGS = {"||": ("||", " or "), "&&": ("&&", " and "), "!": ("!", "not ")}

Tree = Any  # str (an atom) | ("!", Tree) | ("&&" or "||", Tree, Tree)

trees = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(st.tuples(st.just("!"), inner),
                            st.tuples(st.sampled_from(["&&", "||"]), inner, inner)),
    max_leaves=8,
)


def parenthesized(tree: Tree) -> str:
    if isinstance(tree, str):
        return tree
    if tree[0] == "!":
        return f"!({parenthesized(tree[1])})"
    return f"({parenthesized(tree[1])}) {tree[0]} ({parenthesized(tree[2])})"


def precedence(tree: Tree) -> int:
    return PRECEDENCE_OF["atom"] if isinstance(tree, str) else PRECEDENCE_OF[tree[0]]


def minimal(tree: Tree, words: bool) -> str:
    """The same tree with only the parentheses the documented precedence needs (and the word spellings if asked)."""
    if isinstance(tree, str):
        return tree
    spelling = SPELLINGS[tree[0]][words]
    if tree[0] == "!":
        child = minimal(tree[1], words)
        return spelling + (child if precedence(tree[1]) >= PRECEDENCE_OF["!"] else f"({child})")
    left, right = (minimal(child, words) if precedence(child) >= precedence(tree) else f"({minimal(child, words)})"
                   for child in tree[1:])
    return f"{left}{spelling}{right}"


def truth(tree: Tree) -> set[tuple[str, int | None]]:
    """What a tree selects, from its atoms' sets and set algebra (the meaning of !, && and ||)."""
    if isinstance(tree, str):
        return matching(tree)
    if tree[0] == "!":
        return ALL - truth(tree[1])
    left, right = truth(tree[1]), truth(tree[2])
    return left & right if tree[0] == "&&" else left | right


@settings(max_examples=150, deadline=None)
@given(trees, trees)
def test_negation_conjunction_disjunction(first: Tree, second: Tree) -> None:
    e, f = parenthesized(first), parenthesized(second)
    assert matching(f"!({e})") == ALL - matching(e)
    assert matching(f"not ({e})") == ALL - matching(e)
    assert matching(f"({e}) && ({f})") == matching(e) & matching(f)
    assert matching(f"({e}) || ({f})") == matching(e) | matching(f)


@settings(max_examples=150, deadline=None)
@given(trees, st.booleans())
def test_precedence_needs_no_parentheses(tree: Tree, words: bool) -> None:
    assert matching(minimal(tree, words)) == truth(tree)


# ---- the fields are the JSON lines' fields --------------------------------------------------------------------

NOT_FILTERABLE = {"headers", "findings", "extensions", "body"}  # lists and long bodies: in --json, not in -Y


def literal(field: str, value: Any) -> str:
    """A JSON value written as a filter value, with this test's own escaping."""
    if FIELDS[field].type == "bytes":
        data = bytes.fromhex(value.replace(":", ""))
        return data.hex(":") if data else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else
                      f"\\x{ord(c):02x}" if c in '"\\' else f"\\U{ord(c):08x}" for c in value)
    return f'"{escaped}"'


def shipped() -> list[tuple[Path, list[int]]]:
    """Every shipped capture but the large one, with the server ports of its connections that have no handshake."""
    from captures.scenarios import SCENARIOS

    return [(CAPTURES / scenario.file,
             sorted({c.server_port for c in scenario.connections if not c.handshake_captured}))
            for name, scenario in sorted(SCENARIOS.items()) if name != "large"]


@pytest.mark.parametrize(("path", "ports"), shipped(), ids=[p.stem for p, _ in shipped()])
def test_every_json_field_filters_to_its_value(path: Path, ports: list[int]) -> None:
    """For every event of a shipped capture and every field its JSON line has, ``field == value`` selects it and
    ``field != value`` does not (a null in JSON: the field is absent, so not even the bare field selects it).
    The first 100 events of each type per capture: budget.pcapng's thousand-odd frames say nothing new."""
    seen: set[str] = set()
    per_type: Counter[str] = Counter()
    for event in CaptureTrace(path, server_ports=ports):
        line = to_json(event)
        per_type[line["type"]] += 1
        if per_type[line["type"]] > 100:
            continue
        assert set(line) - set(FIELDS) <= NOT_FILTERABLE, line["type"]
        for name, value in line.items():
            if name in NOT_FILTERABLE:
                continue
            seen.add(name)
            if value is None:
                assert not compile_filter(name)(event), name
                continue
            written = literal(name, value)
            assert compile_filter(f"{name} == {written}")(event), (name, written)
            assert not compile_filter(f"{name} != {written}")(event), (name, written)
        if line["type"] == "frame" and "payload_missing" not in line:
            assert compile_filter("payload_missing == 0")(event)  # JSON writes it only when it is not 0
    assert {"type", "stream", "direction", "time", "packet"} <= seen


def test_midstream_connection_and_its_endpoints() -> None:
    events = list(CaptureTrace(CAPTURES / "midstream.pcapng", server_ports=[47070]))
    opened = [e for e in events if isinstance(e, ConnectionOpened)]
    assert len(opened) == 1
    assert [e for e in events if compile_filter("connection && mid_stream")(e)] == opened
    assert [e for e in events if compile_filter('server matches ":47070$"')(e)] == opened
    assert [e for e in events if compile_filter('client contains "127.0.0.1:"')(e)] == opened
    assert not any(compile_filter("handshake")(e) for e in events)  # no handshake in a capture begun mid-stream


# ---- hostile input: a filter never raises, whatever the bytes -----------------------------------------------------

def every_field_filter() -> list[str]:
    """For each field: bare, and each operator its type allows, with a value of that type."""
    value = {"integer": "0", "boolean": "true", "time": "0", "string": '"a"', "bytes": "00:ff"}
    out = []
    for name, field in FIELDS.items():
        out.append(name)
        out += [f"{name} {op} {value[field.type]}" for op in ("==", "!=", "<", "<=", ">", ">=")
                if field.values is None or op in ("<", ">")]  # labels: == with "a" is refused as a typo
        if field.type in ("string", "bytes"):
            out += [f"{name} contains {value[field.type]}", f'{name} matches "a|\\\\x00|^$"']
    return out


ALL_FIELD_FILTERS = [compile_filter(expression) for expression in every_field_filter()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=300)), max_size=8))
def test_filters_never_raise_on_hostile_bytes(chunks: list[tuple[str, bytes]]) -> None:
    connection = Connection(0)
    events = connection.receive("c2s", REQUEST, time=0.0) + connection.receive("s2c", RESPONSE, time=0.0)
    for direction, data in chunks:
        events += connection.receive(direction, data, time=1.0)  # type: ignore[arg-type]
    events += connection.gap("c2s", 5, time=1.5)
    events += connection.end(time=2.0)
    for event in events:
        for test in ALL_FIELD_FILTERS:
            assert test(event) in (True, False)


# ---- the listing ----------------------------------------------------------------------------------------------------

def test_every_kind_of_event_has_its_type_word() -> None:
    """A new event class must be given a name here (EVENT_TYPES), or no filter could ever select it."""
    declared = {cls for cls in vars(events_module).values()
                if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event}
    assert set(EVENT_TYPES) == declared
    assert set(EVENT_TYPES.values()) <= set(EVENT_WORDS)


def test_describe_fields_lists_every_field_once() -> None:
    listing = describe_fields().splitlines()
    names = [line.split()[0] for line in listing[1:len(FIELDS) + 1]]
    assert names == list(FIELDS)
    assert listing[0].split()[:4] == ["field", "type", "events", "Wireshark"]
    websocket_opcode = next(line for line in listing if line.startswith("websocket.opcode "))
    assert websocket_opcode.split()[1:4] == ["integer", "frame", "websocket.opcode"]
    assert any(line.startswith("event words") and "websocket" in line for line in listing)


def test_the_reference_documents_every_field_and_word() -> None:
    reference = (ROOT / "docs" / "filters.md").read_text(encoding="utf-8")
    for name, field in FIELDS.items():
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert f"| {field.type} |" in row and (f"`{field.wireshark}`" in row if field.wireshark else "| — |" in row)
    for word in EVENT_WORDS:
        assert f"`{word}`" in reference, word


PIECES = ["websocket.opcode", "text", "payload", "opcode_name", "frame", "==", "!=", "<", ">=", "contains", "matches",
          "&&", "||", "!", "not", "(", ")", '"', "\\", "r\"", "1", "0x", "08", "37:fa", ":", "-", ".", " ", "\x1b",
          "é", "\udcff", "\\x", "\\u12", "[", "(?", "*", "true"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(PIECES), max_size=12).map("".join)))
def test_any_text_compiles_or_is_a_filter_error(expression: str) -> None:
    """Whatever is typed, the answer is a filter or a FilterError pointing inside the expression, never a crash."""
    try:
        test = compile_filter(expression)
    except FilterError as error:
        assert 0 <= error.column <= len(expression)
        assert "\n" not in str(error)
        return
    for event in EVENTS:
        assert test(event) in (True, False)


@pytest.mark.parametrize("expression", ['r"\\\udcff', 'r"\\\ud800"', '"\ud800"', 'text == r"\\\udcff"'])
def test_lone_surrogates_in_a_raw_string_are_filter_errors(expression: str) -> None:
    """Found by hypothesis in CI: a backslash then a lone surrogate in a raw string raised UnicodeEncodeError. A byte
    that was not UTF-8 on the command line (surrogate escape) is taken back as that byte; other surrogates are not
    characters. Either way: a FilterError or a filter, never another exception."""
    try:
        compile_filter(expression)
    except FilterError as error:
        assert 0 <= error.column < len(expression)
