"""What a finding says about a wire value: the value's own bytes, escaped once, by the view.

A message used to quote values with ``repr``, whose backslashes the view (``views.safe.visible``) then escaped again:
a real ESC byte came out as ``\\\\x1b``, like the four characters backslash, x, 1, b. Header bytes that are UTF-8 were
shown as their Latin-1 reading (``â\\x80®`` for U+202E). Repeated header names are gathered in linear time.
"""

from __future__ import annotations

import time

from wsinspect.core.handshake import (
    display_text,
    parse_request,
    parse_response,
    validate_request,
    validate_response,
)
from wsinspect.views.safe import visible

REQUEST = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n"
           b"\r\n")


def _messages(raw: bytes) -> list[str]:
    return [visible(f.message) for f in validate_request(parse_request(raw))]


def _gots(raw: bytes) -> list[str | None]:
    return [f.got for f in validate_request(parse_request(raw))]


def test_a_real_escape_and_a_literal_backslash_read_differently() -> None:
    real = _messages(REQUEST.replace(b"Version: 13", b"Version: 8\x1b[2J"))
    literal = _messages(REQUEST.replace(b"Version: 13", b"Version: 8\\x1b[2J"))
    assert "Sec-WebSocket-Version is '8\\x1b[2J'; this protocol is version 13." in real
    assert "Sec-WebSocket-Version is '8\\\\x1b[2J'; this protocol is version 13." in literal
    assert not any("\\\\x1b" in message for message in real)  # escaped once: as the header table shows it


def test_messages_keep_the_value_unescaped_for_the_view() -> None:
    findings = validate_request(parse_request(REQUEST.replace(b"GET", b"F\x1b[2J")))
    method = next(f for f in findings if f.check.id == "request.method")
    assert method.message == "The method is 'F\x1b[2J'; it must be GET."  # the view escapes it, once
    assert visible(method.message) == "The method is 'F\\x1b[2J'; it must be GET."
    assert method.got == "F\x1b[2J"


def test_utf8_header_bytes_are_shown_as_their_characters() -> None:
    raw = REQUEST.replace(b"Connection: Upgrade", b"Connection: \xc2\xa0Upgrade\xe2\x80\xae\xc3\xa9")
    messages = _messages(raw)
    assert ("The Connection header field does not include the token 'Upgrade' (it says '\\xa0Upgrade\\u202eé')."
            in messages)
    assert "\xc2\xa0Upgrade\xe2\x80\xae\xc3\xa9" not in _gots(raw)
    assert "\xa0Upgrade\u202eé" in _gots(raw)  # JSON carries the characters; the view escapes the invisible ones


def test_bytes_that_are_not_utf8_are_shown_as_hex_escapes() -> None:
    messages = _messages(REQUEST.replace(b"Connection: Upgrade", b"Connection: x\xff\xc3"))
    assert "The Connection header field does not include the token 'Upgrade' (it says 'x\\xff\\xc3')." in messages


def test_display_text() -> None:
    assert display_text("plain ascii") == "plain ascii"
    assert display_text("\xe2\x80\xae") == "\u202e"
    assert visible(display_text("a\xffb")) == "a\\xffb"
    assert display_text("\u202e already characters") == "\u202e already characters"


def test_response_messages_quote_once() -> None:
    request = parse_request(REQUEST.replace(b"Origin", b"Sec-WebSocket-Protocol: chat\r\nOrigin"))
    response = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                              b"Sec-WebSocket-Protocol: \xe2\x80\xaechat\x1b\r\n"
                              b"Sec-WebSocket-Extensions: x-\x1b[2J\r\n\r\n")
    messages = [visible(f.message) for f in validate_response(response, request)]
    assert "The server accepted extension 'x-\\x1b[2j', which the client did not offer." in messages  # lower-cased
    assert ("The server's Sec-WebSocket-Protocol '\\u202echat\\x1b' is not exactly one of those the client offered."
            in messages)
    refused = parse_response(b"HTTP/1.1 400 Bad\x1b[2J\r\n\r\n")
    assert "The server answered 400 'Bad\\x1b[2J': the connection was not upgraded." in [
        visible(f.message) for f in validate_response(refused, None)]


def test_many_repeats_of_a_header_name_parse_in_linear_time() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X-a: b\r\n" * 200_000 + b"\r\n"
    started = time.process_time()
    request = parse_request(head)
    took = time.process_time() - started
    assert request.headers.get_all("x-a") == ["b"] * 200_000
    assert took < 5, took  # (rebuilding a tuple per repeat took minutes here)


def test_repeated_names_keep_their_wire_order() -> None:
    request = parse_request(b"GET / HTTP/1.1\r\nA: 1\r\nB: x\r\na: 2\r\nB: y\r\nA: 3\r\n\r\n")
    assert request.headers.get_all("a") == ["1", "2", "3"]
    assert request.headers.get("b") == "x, y"
    assert request.headers._by_name == {"a": ("1", "2", "3"), "b": ("x", "y")}
