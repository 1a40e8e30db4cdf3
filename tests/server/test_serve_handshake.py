"""Opening handshakes over raw sockets: refusals with the right status and a body naming the rule, the demo page,
the Origin policy, and the limits (header size, handshake deadline, connection count)."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import websocket
from serve_support import Server, of_type, raw_exchange, split_response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

GOOD_HEADERS = [("Host", "127.0.0.1"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]


def request(*, method: str = "GET", target: str = "/chat", version: str = "HTTP/1.1", drop: tuple[str, ...] = (),
            replace: dict[str, str] | None = None, extra: list[tuple[str, str]] | None = None,
            end: bool = True) -> bytes:
    replace = replace or {}
    headers = [(name, replace.get(name, value)) for name, value in GOOD_HEADERS if name not in drop]
    headers += extra or []
    lines = [f"{method} {target} {version}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n" + ("\r\n" if end else "")).encode("latin-1")


def findings_in_body(body: str) -> list[tuple[str, str]]:
    """(rfc, message) of each finding the refusal's body explains."""
    return [(rfc, message) for message, rfc in re.findall(r"^- (.*)\n  Rule \((RFC [\d.]+ [\d.]+)\): ", body, re.M)]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One default server for the cases below: one connection at a time, each found in the log by its number."""
    server = Server([], tmp_path_factory.mktemp("handshakes"), json_log=False)
    yield server
    try:
        assert server.stop() == 0
    finally:
        server.kill()


def exchange(server: Server, data: bytes, *, plain_http: bool = False) -> tuple[int, dict[str, str], bytes, str]:
    """Status, headers, body, and the connection's section of the live log."""
    stream = server.next_number(websocket=not plain_http)
    started = time.monotonic()
    answer = raw_exchange(server.port, data, timeout=5)
    assert time.monotonic() - started < 4, "the server did not close the connection after its answer"
    status, headers, body = split_response(answer)
    assert int(headers["content-length"]) == len(body)
    return status, headers, body, server.section(stream, plain_http=plain_http)


@dataclass(frozen=True)
class Refusal:
    name: str
    data: bytes
    status: int
    rfc: str  # the section the main finding names
    words: str  # a fragment of the main finding's message


REFUSALS = [
    Refusal("missing-upgrade", request(drop=("Upgrade",)), 400, "RFC 6455 4.2.1", "Upgrade"),
    Refusal("upgrade-not-websocket", request(replace={"Upgrade": "h2c"}), 400, "RFC 6455 4.2.1", "Upgrade"),
    Refusal("missing-connection", request(drop=("Connection",)), 400, "RFC 6455 4.2.1", "Connection"),
    Refusal("version-8", request(replace={"Sec-WebSocket-Version": "8"}), 426, "RFC 6455 4.4", "'8'"),
    Refusal("bad-key", request(replace={"Sec-WebSocket-Key": "not a key!"}), 400, "RFC 6455 4.2.1",
            "Sec-WebSocket-Key"),
    Refusal("key-of-15-bytes", request(replace={"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}), 400,
            "RFC 6455 4.2.1", "Sec-WebSocket-Key"),
    Refusal("missing-key", request(drop=("Sec-WebSocket-Key",)), 400, "RFC 6455 4.2.1", "Sec-WebSocket-Key"),
    Refusal("key-twice", request(extra=[("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==")]), 400,
            "RFC 6455 11.3.1", "Sec-WebSocket-Key"),
    Refusal("post", request(method="POST"), 400, "RFC 6455 4.2.1", "POST"),
    Refusal("missing-host", request(drop=("Host",)), 400, "RFC 6455 4.2.1", "Host"),
    Refusal("http-1.0", request(version="HTTP/1.0"), 400, "RFC 6455 4.2.1", "HTTP/1.0"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_bad_handshake_is_refused_with_an_explanation(default_server: Server, case: Refusal) -> None:
    status, headers, body, log = exchange(default_server, case.data)
    assert status == case.status
    assert headers["connection"].lower() == "close"
    assert headers["content-type"].startswith("text/plain")
    assert "sec-websocket-accept" not in headers and "upgrade" not in headers
    if status == 426:
        assert headers["sec-websocket-version"] == "13"  # RFC 6455 4.4: the versions the server speaks
    text = body.decode("utf-8")
    assert text.startswith(f"{status} ")
    explained = findings_in_body(text)
    assert any(rfc == case.rfc and case.words in message for rfc, message in explained), text
    # The terminal shows the same findings, each with its section, and the refusal in the title.
    assert re.search(rf"refused: {status} ", log), log
    for rfc, message in explained:
        assert f"✗ {rfc}: {message}" in log


def test_valid_raw_handshake_gets_101(default_server: Server) -> None:
    """The RFC's own example key gets the RFC's own accept value (RFC 6455 1.3)."""
    stream = default_server.next_number()
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=5) as sock:
        sock.sendall(request())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk
            answer += chunk
        status, headers, _ = split_response(answer)
        assert status == 101
        assert headers["sec-websocket-accept"] == ACCEPT
        assert headers["upgrade"].lower() == "websocket" and headers["connection"].lower() == "upgrade"
        assert "sec-websocket-extensions" not in headers  # none offered
        sock.sendall(bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2]))  # close 1000, masked
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
        assert rest == b"\x88\x02\x03\xe8"
    log = default_server.section(stream)
    assert "✓ the server's answer matches" in log
    assert "clean close" in log


@pytest.mark.parametrize("target", ["/", "/index.html", "/?from=test"])
def test_plain_get_serves_the_demo_page(default_server: Server, target: str) -> None:
    status, headers, body, log = exchange(default_server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                                          plain_http=True)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    page = body.decode("utf-8")
    assert "WebSocket" in page and "new WebSocket(" in page
    assert "__WSINSPECT_MODE__" not in page and '<b id="mode">echo</b>' in page
    assert f"GET {target} → 200 OK  (plain HTTP, not a WebSocket upgrade)" in log


def test_unknown_path_is_404(default_server: Server) -> None:
    status, _, body, log = exchange(default_server, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", plain_http=True)
    assert status == 404
    assert "/nope" in body.decode()
    assert "GET /nope → 404 Not Found" in log


def test_head_gets_no_body(default_server: Server) -> None:
    answer = raw_exchange(default_server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    status, headers, body = split_response(answer)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == b""


def test_garbage_request_is_400(default_server: Server) -> None:
    status, _, body = split_response(raw_exchange(default_server.port, b"HELLO\r\n\r\n", timeout=3))
    assert "RFC 6455 4.2.1" in body.decode()
    assert status == 400


# -- policy and limits: servers of their own --------------------------------------------------------------------


def test_origin_policy(serve: Callable[..., Server]) -> None:
    server = serve("--origin", "http://good.example")
    evil = raw_exchange(server.port, request(extra=[("Origin", "http://evil.example")]))
    status, _, body = split_response(evil)
    assert status == 403
    assert "http://evil.example" in body.decode() and "RFC 6455 10.2" in body.decode()
    log = server.section(0)
    assert "refused: 403 Forbidden" in log and "✗ RFC 6455 10.2: " in log
    # The good origin (compared case-insensitively, RFC 6455 4.2.2) is upgraded.
    ws = websocket.create_connection(server.url, timeout=3, origin="http://GOOD.example")
    try:
        ws.send("from a good origin")
        assert ws.recv() == "from a good origin"
    finally:
        ws.close()
    server.section(1)
    assert server.stop() == 0
    responses = of_type(server.events(), "handshake_response")
    assert [r["status"] for r in responses] == [403, 101]
    request_findings = [f["check"] for f in of_type(server.events(), "handshake_request")[0]["findings"]]
    assert "request.origin" in request_findings


@pytest.fixture
def small_header_server(serve: Callable[..., Server]) -> Server:
    return serve("--max-header", "2k")


def test_header_block_over_the_limit_without_end_is_431(small_header_server: Server) -> None:
    """More than --max-header bytes and still no blank line: refused as soon as the limit is passed."""
    server = small_header_server
    started = time.monotonic()
    answer = raw_exchange(server.port, request(extra=[("X-Pad", "a" * 3000)], end=False), timeout=5)
    assert time.monotonic() - started < 3
    status, _, body = split_response(answer)
    assert status == 431
    assert "RFC 6455 10.4" in body.decode()
    log = server.section(0)
    assert re.search(r"refused: 431 Request Header Fields Too Large\. RFC 6455 10\.4: .*2048 bytes", log), log


def test_header_block_under_the_limit_is_accepted(small_header_server: Server) -> None:
    data = request(extra=[("X-Pad", "a" * 1500)])
    assert len(data) < 2048
    with socket.create_connection(("127.0.0.1", small_header_server.port), timeout=5) as sock:
        sock.sendall(data)
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_complete_header_block_over_the_limit_is_431(small_header_server: Server) -> None:
    """The same when the whole oversized block, blank line included, arrives in one read."""
    answer = raw_exchange(small_header_server.port, request(extra=[("X-Pad", "a" * 3000)]), timeout=3)
    status, _, body = split_response(answer)
    assert status == 431
    assert "RFC 6455 10.4" in body.decode()
    refusal = r"refused: 431 Request Header Fields Too Large\. RFC 6455 10\.4: .*2048 bytes"
    assert re.search(refusal, small_header_server.section(0)), small_header_server.stdout


def test_slow_and_silent_clients_are_dropped_at_the_handshake_deadline(serve: Callable[..., Server]) -> None:
    """--handshake-timeout 2: a client trickling one header byte a second, and one that sends nothing, are dropped
    after about 2 s; a client that finished its handshake in time is not."""
    server = serve("--handshake-timeout", "2")
    data = request()
    dropped_after: dict[str, float] = {}

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=6) as sock:
            started = time.monotonic()
            try:
                for index in range(8):  # 8 s at most, far less than the whole request
                    sock.sendall(data[index : index + 1])
                    readable = sock.recv(4096) if _readable(sock, 1.0) else None
                    if readable is not None:
                        assert readable == b""  # dropped, not answered
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            dropped_after["trickle"] = time.monotonic() - started

    def silent() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=6) as sock:
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(4096) == b""
            dropped_after["silent"] = time.monotonic() - started

    threads = [threading.Thread(target=trickle), threading.Thread(target=silent)]
    for thread in threads:
        thread.start()
    ws = websocket.create_connection(server.url, timeout=5)  # in time: its handshake deadline is cancelled
    try:
        for thread in threads:
            thread.join(8)
        assert not any(thread.is_alive() for thread in threads)
        ws.send("still open after the deadline")
        assert ws.recv() == "still open after the deadline"
    finally:
        ws.close()
    for name, elapsed in dropped_after.items():
        assert 1.7 <= elapsed <= 3.5, (name, elapsed)
    assert set(dropped_after) == {"trickle", "silent"}
    log = server.wait_for(re.compile(r"no complete handshake within 2 s(.|\n)*no complete handshake within 2 s"))
    assert log.count("no complete handshake within 2 s") == 2


def _readable(sock: socket.socket, timeout: float) -> bool:
    import select

    return bool(select.select([sock], [], [], timeout)[0])


def test_max_connections(serve: Callable[..., Server]) -> None:
    server = serve("--max-connections", "2")
    first = websocket.create_connection(server.url, timeout=3)
    second = websocket.create_connection(server.url, timeout=3)
    try:
        third = raw_exchange(server.port, request(), timeout=3)
        status, headers, body = split_response(third)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "--max-connections" in body.decode() and "2" in body.decode()
        # The two open connections are untouched.
        first.send("one")
        assert first.recv() == "one"
        # One leaves: there is room again.
        second.close()
        server.wait_for("#1 closed (")
        again = websocket.create_connection(server.url, timeout=3)
        again.send("three")
        assert again.recv() == "three"
        again.close()
    finally:
        first.close()
        second.shutdown()
    assert server.stop() == 0


def test_503_refusal_is_logged(serve: Callable[..., Server]) -> None:
    server = serve("--max-connections", "1")
    ws = websocket.create_connection(server.url, timeout=3)
    try:
        assert split_response(raw_exchange(server.port, request(), timeout=3))[0] == 503
        time.sleep(0.2)
    finally:
        ws.close()
    assert server.stop() == 0
    assert "503" in server.stdout
