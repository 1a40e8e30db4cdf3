"""A WebSocket opened on a reused keep-alive HTTP/1.1 connection (review finding 9; RFC 9112 9.3, 6.3).

After an answer that is not a 101, the connection may carry another request: the decoder passes the answer's body
(Content-Length, chunked) and the request's, then reads the next request. Where the body's end cannot be known, or
the answer closes the connection, it stops there and (if the client sends more) says why once.
"""

from __future__ import annotations

from wsinspect.core.checks import CHECKS
from wsinspect.core.connection import Connection
from wsinspect.core.events import Event, FrameEvent, HandshakeRequest, HandshakeResponse, Message, Notice

from .helpers import TEXT, cframe, request_bytes, response_bytes, sframe

PAGE = b"<p>hello</p>"
GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)
UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\nWWW-Authenticate: Basic\r\n\r\nlogin"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"f\r\nconst socket = \r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n")  # two chunks (one extended), a trailer


def run(c2s: list[bytes], s2c: list[bytes], *, byte_by_byte: bool = False) -> tuple[Connection, list[Event]]:
    """Each direction's pieces, alternating client and server (the client's first): the order of a capture."""
    connection = Connection(1)
    events: list[Event] = []
    for index in range(max(len(c2s), len(s2c))):
        for direction, pieces in (("c2s", c2s), ("s2c", s2c)):
            if index < len(pieces):
                data = pieces[index]
                chunks = [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]
                for chunk in chunks:
                    events += connection.receive(direction, chunk, time=float(index))  # type: ignore[arg-type]
    return connection, events


def summary(events: list[Event]) -> list[str]:
    out = []
    for event in events:
        if isinstance(event, HandshakeRequest):
            out.append(f"request {event.request.method} {event.request.target}")
        elif isinstance(event, HandshakeResponse):
            out.append(f"response {event.response.status} {'upgraded' if event.upgraded else 'not upgraded'} "
                       f"{event.response.body!r}")
        elif isinstance(event, Message):
            out.append(f"{event.direction} message {event.data!r}")
        elif isinstance(event, Notice):
            out.append(f"notice {event.check.id}")
    return out


def test_a_page_then_an_upgrade_on_the_same_connection() -> None:
    for byte_by_byte in (False, True):
        _, events = run([GET, request_bytes(), cframe(TEXT, b"hi")],
                        [OK, response_bytes() + sframe(TEXT, b"yo")], byte_by_byte=byte_by_byte)
        lines = summary(events)
        assert lines[:4] == ["request GET /", f"response 200 not upgraded {PAGE!r}", "request GET /chat",
                             "response 101 upgraded b''"]
        assert sorted(lines[4:]) == ["c2s message b'hi'", "s2c message b'yo'"]


def test_frames_keep_their_stream_offsets_after_earlier_messages() -> None:
    _, events = run([GET + request_bytes() + cframe(TEXT, b"hi")], [OK + response_bytes() + sframe(TEXT, b"yo")])
    offsets = {event.direction: event.frame.offset for event in events if isinstance(event, FrameEvent)}
    assert offsets == {"c2s": len(GET) + len(request_bytes()), "s2c": len(OK) + len(response_bytes())}


def test_a_refused_upgrade_then_a_retry_with_credentials() -> None:
    """A 401 to the first upgrade, then the browser's retry with Authorization on the same connection."""
    retry = request_bytes(extra="Authorization: Basic dTpw\r\n")
    _, events = run([request_bytes(), retry, cframe(TEXT, b"in")], [UNAUTHORIZED, response_bytes()])
    assert summary(events) == ["request GET /chat", "response 401 not upgraded b'login'", "request GET /chat",
                               "response 101 upgraded b''", "c2s message b'in'"]


def test_a_pipelined_request_waits_for_the_answer_before_it() -> None:
    _, events = run([GET + request_bytes() + cframe(TEXT, b"early")], [OK, response_bytes()])
    assert summary(events)[-3:] == ["request GET /chat", "response 101 upgraded b''", "c2s message b'early'"]


def test_a_chunked_body_is_passed_to_its_last_chunk_and_trailer() -> None:
    for byte_by_byte in (False, True):
        _, events = run([GET, request_bytes()], [CHUNKED, response_bytes() + sframe(TEXT, b"yo")],
                        byte_by_byte=byte_by_byte)
        assert summary(events)[2:] == ["request GET /chat", "response 101 upgraded b''", "s2c message b'yo'"]


def test_a_request_body_is_passed_before_the_next_request() -> None:
    post = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nGET "  # a body that looks like a request
    _, events = run([post, request_bytes()], [OK, response_bytes()])
    assert summary(events)[::2] == ["request POST /form", "request GET /chat"]


def test_a_body_longer_than_what_is_kept_is_still_passed_whole() -> None:
    body = b"x" * (200 * 1024)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    _, events = run([GET, request_bytes()], [answer + body[:1000], body[1000:], response_bytes()])
    kept = [event.response.body for event in events if isinstance(event, HandshakeResponse)]
    assert len(kept[0]) == 64 * 1024 and summary(events)[-2:] == ["request GET /chat", "response 101 upgraded b''"]


def test_an_answer_that_closes_the_connection_ends_the_search_quietly() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    connection, events = run([GET, request_bytes()], [closing])
    assert summary(events) == ["request GET /", "response 200 not upgraded b'ok'"]
    assert connection.phase.value == "refused"


def test_a_body_without_a_length_ends_the_search_with_one_notice() -> None:
    until_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok"
    connection, events = run([GET, request_bytes(), cframe(TEXT, b"lost")], [until_close])
    events += connection.end(time=9.0)
    notices = [event for event in events if isinstance(event, Notice)]
    assert summary(events) == ["request GET /", "response 200 not upgraded b'ok'", "notice http.next-request-not-read"]
    assert notices[0].check is CHECKS["http.next-request-not-read"]
    assert "neither Content-Length nor chunked" in notices[0].message


def test_after_a_whole_answer_without_a_length_the_notice_comes_with_the_clients_bytes() -> None:
    until_close = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (64 * 1024)  # all that is kept for display: reported
    connection, events = run([GET, b"", request_bytes(), request_bytes()], [until_close])
    assert summary(events) == ["request GET /", f"response 200 not upgraded {b'x' * 65536!r}",
                               "notice http.next-request-not-read"]
    assert not [event for event in connection.end(time=9.0) if isinstance(event, Notice)]  # said once


def test_a_broken_chunk_size_ends_the_search_with_one_notice() -> None:
    broken = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    connection, events = run([GET, request_bytes(), request_bytes()], [broken])
    events += connection.end(time=9.0)
    notices = [event for event in events if isinstance(event, Notice)]
    assert len(notices) == 1 and "chunk-size line is not a hexadecimal number" in notices[0].message
    assert [line for line in summary(events) if line.startswith("request")] == ["request GET /"]
