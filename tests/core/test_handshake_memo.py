"""The handshake parser's memos (header lines seen before, the last request parsed) change nothing but the time:
a head parses the same the first time, the second time, and with the memos emptied; they stay bounded."""

from __future__ import annotations

import wsinspect.core.handshake as handshake
from wsinspect.core.handshake import parse_request, parse_response, validate_request, validate_response

REQUEST = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n"
           b"\r\n")
RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
ODD_HEADS = [
    REQUEST,
    REQUEST.replace(b"\r\n", b"\n"),  # bare LF
    REQUEST.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\n\tfolded\r\n"),  # obs-fold after a known line
    REQUEST.replace(b"Host: example.com\r\n", b"Host: example.com\r\n Host: example.com\r\n"),  # a fold like a line
    REQUEST.replace(b"Origin", b"Origin : x\r\nOrigin"),  # malformed name
    REQUEST.replace(b"Host: example.com", b"Host:  example.com \t"),
    REQUEST.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade\r\nconnection: UPGRADE"),
]


def _fresh(raw: bytes):  # type: ignore[no-untyped-def]
    handshake._known_lines.clear()
    handshake._last_request = None
    return parse_request(raw)


def test_a_head_parses_the_same_with_and_without_the_memos() -> None:
    for raw in ODD_HEADS:
        first = _fresh(raw)
        for other in ODD_HEADS:  # fill the line memo with every other head's lines first
            parse_request(other)
            parse_response(other)
        handshake._last_request = None
        again = parse_request(raw)
        assert again == first and repr(again) == repr(first)
        assert again.headers._by_name == first.headers._by_name
        assert validate_request(again) == validate_request(first)
        handshake._known_lines.clear()
        assert parse_response(raw) == parse_response(raw)


def test_a_response_parses_and_validates_the_same_the_second_time() -> None:
    request = _fresh(REQUEST)
    first = parse_response(RESPONSE)
    second = parse_response(RESPONSE)
    assert first == second
    assert validate_response(first, request) == validate_response(second, request) == []


def test_the_line_memo_stays_bounded() -> None:
    handshake._known_lines.clear()
    for number in range(3 * handshake._KNOWN_LINES_LIMIT):
        parse_response(f"HTTP/1.1 101 OK\r\nX-Line-{number}: {number}\r\n\r\n".encode())
        assert len(handshake._known_lines) <= handshake._KNOWN_LINES_LIMIT
    parse_response(b"HTTP/1.1 101 OK\r\nX-Long: " + b"a" * 300 + b"\r\n\r\n")
    assert not any(line.startswith("X-Long") for line in handshake._known_lines)


def test_the_last_request_is_reused_only_for_the_same_bytes() -> None:
    first = _fresh(REQUEST)
    assert parse_request(REQUEST) is first
    assert parse_request(bytes(REQUEST)) is first  # equal bytes
    other = parse_request(REQUEST.replace(b"/chat", b"/other"))
    assert other.target == "/other"
    assert parse_request(REQUEST) is not first and parse_request(REQUEST) == first


def test_a_bytearray_request_keeps_its_type_and_is_not_remembered() -> None:
    handshake._last_request = None
    buffer = bytearray(REQUEST)
    request = parse_request(buffer)  # type: ignore[arg-type]
    assert type(request.raw) is bytearray
    assert handshake._last_request is None
    buffer[:3] = b"PUT"
    assert parse_request(bytes(buffer)).method == "PUT"
