"""Bytes that cannot be an HTTP request get 400 as soon as they show it, not after --handshake-timeout (review
finding 17), and a TLS client on the plain port is named in the log (finding 7): raw sockets and a real TLS client
(the ssl module) on loopback."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable

import pytest
from serve_support import Server, raw_exchange, split_response


@pytest.mark.parametrize("sent, first_line", [
    (b"random garbage\n\x00\x01", "random garbage"),
    (b"\x00\x01\x02\x03", r"\x00\x01\x02\x03"),  # binary: no line end needed to judge it
    (b"HELLO\r\n\r\n", "HELLO"),
    (b"\x1b]0;pwned\x07 / HTTP/1.1\r\n", r"\x1b]0;pwned\x07 / HTTP/1.1"),  # escaped in the log, never obeyed
])
def test_bytes_that_are_not_a_request_get_400_at_once(serve: Callable[..., Server], sent: bytes,
                                                      first_line: str) -> None:
    server = serve("--handshake-timeout", "30")
    started = time.monotonic()
    status, _, body = split_response(raw_exchange(server.port, sent, timeout=10))
    took = time.monotonic() - started
    assert status == 400, body
    assert took < 3, f"answered after {took:.1f} s"
    assert b"not an HTTP request" in body
    log = server.section(-1)  # not a WebSocket connection: a negative number
    assert f"answered 400 at once: not an HTTP request: its first line '{first_line}'" in log.replace("\n  ", " ")
    assert "\x1b" not in server.stdout


def test_a_request_trickled_byte_by_byte_is_still_read(serve: Callable[..., Server]) -> None:
    server = serve()
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for index in range(len(request)):
            sock.sendall(request[index : index + 1])
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_a_tls_client_on_the_plain_port_is_told_at_once_and_named_in_the_log(serve: Callable[..., Server]) -> None:
    server = serve("--handshake-timeout", "30")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock, \
            pytest.raises(ssl.SSLError):
        context.wrap_socket(sock, server_hostname="localhost")  # the answer is plain HTTP: not a TLS record
    assert time.monotonic() - started < 3
    log = server.section(-1).replace("\n  ", " ")
    assert re.search(r"answered 400 at once: a TLS ClientHello: this server is plain ws:// / http://; use ws://, "
                     r"or start serve with --certfile/--keyfile", log), log


def test_plain_requests_do_not_use_up_websocket_numbers(serve: Callable[..., Server]) -> None:
    """README: WebSocket connections are numbered 0, 1, 2, ...; page loads and other plain requests -1, -2, ...
    (review finding 16: POST / and garbage took #0 and #1)."""
    server = serve()
    assert split_response(raw_exchange(server.port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 400
    assert split_response(raw_exchange(server.port, b"HELLO\r\n\r\n"))[0] == 400
    assert split_response(raw_exchange(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
    upgrade = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(upgrade)
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    server.wait_for("#0 connection from")
    numbers = re.findall(r"^#(-?\d+) connection from", server.stdout, re.M)
    assert numbers == ["-1", "-2", "-3", "0"], numbers


def test_a_trickled_request_line_is_checked_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging the first line must not copy and scan the bytes held again for every byte of a trickled request
    (quadratic in --max-header)."""
    from wsinspect.server import endpoint

    calls: list[int] = []
    judge = endpoint.not_a_request

    def counted(held: bytes) -> str | None:
        calls.append(len(held))
        return judge(held)

    monkeypatch.setattr(endpoint, "not_a_request", counted)
    server = endpoint.ServerEndpoint(endpoint.ServerConfig(), client=("127.0.0.1", 1), server=("127.0.0.1", 2),
                                     time=0.0, numbering=lambda websocket: -1 if not websocket else 0)
    request = b"GET /" + b"a" * 30000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for index in range(len(request)):
        server.receive(request[index : index + 1], time=0.0)
    assert server.not_http is None and server.stream == -1
    assert len(calls) <= endpoint.EARLY_CHECK_BYTES + 1, len(calls)
