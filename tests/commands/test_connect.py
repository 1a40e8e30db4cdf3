"""``wsinspect connect`` against real servers on loopback: the ``websockets`` library, Node's ``ws``, and small
hand-written servers for what a library will not do (break a rule, refuse to close).

Each test runs ``python -m wsinspect connect`` as a child process, as a user would, and reads back its ``--json``
lines, its output and its exit status. What is expected comes from what the test told the peer to do, from the RFC,
from the ``websockets`` server's own view of the conversation, or from tshark; never from wsinspect's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wsinspect.client.lines import LineError, SendBinary, SendFragmented, SendPing, SendText, StartClose, parse_line
from wsinspect.client.session import ConnectFailed, open_connection
from wsinspect.client.target import UsageError, parse_url

from .connect_peers import (
    NODE_PEER,
    ROOT,
    RUN_TIMEOUT,
    Certificates,
    Handler,
    RawServer,
    WebsocketsServer,
    connect,
    echo_and_keep,
    frames,
    ipv6_loopback,
    make_certificates,
    misbehaving_server,
    node_server,
    read_request,
    read_until_closed,
    rss_kib,
    switching_protocols,
    texts,
    unmasked_frame,
)

# -- fixtures: each peer started by a test is stopped at its end --------------------------------------------------

@pytest.fixture
def websockets_peer() -> Iterator[Callable[..., WebsocketsServer]]:
    started: list[WebsocketsServer] = []

    def start(handler: Handler | None = None, **options: Any) -> WebsocketsServer:
        server = WebsocketsServer(handler or echo_and_keep(started), **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(script: Callable[[socket.socket], None], **options: Any) -> RawServer:
        server = RawServer(script, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def tls_server(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> tuple[WebsocketsServer,
                                                                                             Certificates]:
    certificates = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.chain, certificates.key)
    return websockets_peer(ssl=context), certificates


# -- echo: text, binary, --send and --wait ----------------------------------------------------------------------------

def test_text_and_binary_echo_from_stdin(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url("/echo"), "--no-compression", stdin=b"Hello, server\n/binary 00 ff 10 7f\n",
                  tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert server.received == ["Hello, server", b"\x00\xff\x10\x7f"]  # what the server itself got
    assert texts(run, "s2c") == ["Hello, server"]
    binary = [m for m in run.of("message", "s2c") if m["opcode"] == 2]
    assert [bytes.fromhex(m["data"]) for m in binary] == [b"\x00\xff\x10\x7f"]
    # RFC 6455 5.1: the client masks every frame it sends, the server none.
    assert all(f["websocket.mask"] for f in frames(run, "c2s"))
    assert not any(f["websocket.mask"] for f in frames(run, "s2c"))
    assert server.requests[0].path == "/echo"
    assert "Hello, server" in run.out and "00 ff 10 7f" in run.out
    assert "✓ the server's answer matches" in run.shown


def test_send_and_wait_then_a_clean_close(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    started = time.monotonic()
    run = connect(server.url(), "--send", "one", "--send", "two words", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert server.received == ["one", "two words"]
    assert texts(run, "s2c") == ["one", "two words"]
    closes = run.of("close")
    # We closed first, with 1000, and the server echoed it (RFC 6455 5.5.1).
    assert [(c["direction"], c["code"], c["initiator"]) for c in closes] == [("c2s", 1000, True),
                                                                             ("s2c", 1000, False)]
    assert run.of("connection_closed")[0]["clean"] is True
    assert time.monotonic() - started < RUN_TIMEOUT
    assert "closed cleanly" in run.out


def test_stdin_is_not_read_with_send(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(), "--send", "only this", "--wait", "1", stdin=b"not this\n", tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert server.received == ["only this"]


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_literal(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer(host="::1")
    run = connect(f"ws://[::1]:{server.port}/six", "--send", "over IPv6", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert server.received == ["over IPv6"]
    # RFC 6455 4.1 item 4 of the handshake: Host is /host/ and /port/; an IPv6 address in brackets (RFC 3986 3.2.2).
    assert server.requests[0].headers["Host"] == f"[::1]:{server.port}"
    assert run.of("connection")[0]["server"] == f"::1:{server.port}"


# -- compression ------------------------------------------------------------------------------------------------------

def test_compression_negotiated_and_inflated(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    message = "compress me " * 20
    run = connect(server.url(), "--send", message, "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    request = run.of("handshake_request")[0]
    offered = [value for name, value in request["headers"] if name.lower() == "sec-websocket-extensions"]
    assert offered and offered[0].startswith("permessage-deflate")
    response = run.of("handshake_response")[0]
    assert response["extensions"] and response["extensions"][0].startswith("permessage-deflate")
    assert server.extensions[0] is not None and server.extensions[0].startswith("permessage-deflate")
    data_frames = [f for f in frames(run) if f["websocket.opcode"] == 1]
    # RFC 7692 6: RSV1 (the 4 in websocket.rsv) marks a compressed message; both sides compressed theirs.
    assert {f["direction"] for f in data_frames if f["websocket.rsv"] & 4} == {"c2s", "s2c"}
    for direction in ("c2s", "s2c"):
        (inflated,) = run.of("message", direction)
        assert inflated["compressed"] is True and inflated["text"] == message
        assert inflated["wire_length"] < len(message.encode())  # fewer bytes on the wire than in the message
    assert server.received == [message]


def test_no_compression_offers_none(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(), "--no-compression", "--send", "plain " * 20, "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    request = run.of("handshake_request")[0]
    assert not [name for name, _ in request["headers"] if name.lower() == "sec-websocket-extensions"]
    assert run.of("handshake_response")[0]["extensions"] == []
    assert server.extensions == [None]
    assert all(f["websocket.rsv"] == 0 for f in frames(run))
    assert [m["compressed"] for m in run.of("message")] == [False, False]


# -- the request's options --------------------------------------------------------------------------------------------

def test_headers_origin_and_subprotocol_reach_the_server(tmp_path: Path,
                                                        websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer(subprotocols=["chat.v2"])
    run = connect(server.url("/room?id=7"), "-H", "Authorization: Bearer abc", "-H", "X-Trace: 1",
                  "--origin", "http://example.test", "--subprotocol", "chat.v1", "--subprotocol", "chat.v2",
                  "--send", "hi", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    seen = server.requests[0]
    assert seen.path == "/room?id=7"
    assert seen.headers["Authorization"] == "Bearer abc" and seen.headers["X-Trace"] == "1"
    assert seen.headers["Origin"] == "http://example.test"
    assert seen.headers["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"
    assert run.of("handshake_response")[0]["subprotocol"] == "chat.v2"
    assert "subprotocol chat.v2" in run.out


def test_a_host_header_replaces_the_urls_authority(tmp_path: Path,
                                                    websockets_peer: Callable[..., WebsocketsServer]) -> None:
    # A server behind name-based virtual hosting, reached by its address: the request names the virtual host.
    server = websockets_peer()
    run = connect(server.url("/"), "-H", "host: chat.example", "--send", "hi", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    seen = server.requests[0]
    assert seen.headers.get_all("Host") == ["chat.example"]  # one Host field: the URL's is not sent beside it
    sent = run.of("handshake_request")[0]["headers"]
    assert [value for name, value in sent if name.lower() == "host"] == ["chat.example"]


# -- a refused handshake ---------------------------------------------------------------------------------------------

def test_refused_handshake_shows_status_headers_body_and_exits_1(
        tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    body = "no token, no entry\n"

    def refuse(connection: Any, request: Any) -> Any:
        response = connection.respond(http.HTTPStatus.FORBIDDEN, body)
        response.headers["X-Why"] = "token missing"
        return response

    server = websockets_peer(process_request=refuse)
    run = connect(server.url("/private"), "--send", "hi", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    (response,) = run.of("handshake_response")
    assert response["status"] == 403 and response["upgraded"] is False
    assert response["body"] == body
    assert ["X-Why", "token missing"] in response["headers"]
    assert not frames(run)  # nothing was sent on a connection that never opened
    assert "HTTP/1.1 403 Forbidden" in run.out
    assert "X-Why" in run.out and "token missing" in run.out
    assert "no token, no entry" in run.out
    assert "RFC 6455 4.1" in run.out  # the finding names the rule: the client needs 101 (section 4.1)
    assert "refused" in run.out and "Origin" in run.out  # the 403 explained, with what to try


def test_a_refusal_body_with_escape_sequences_is_shown_escaped(
        tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "\x1b[2J\x1b]0;pwned\x07 [bold red]x")

    server = websockets_peer(process_request=refuse)
    run = connect(server.url(), tmp_path=tmp_path)
    assert run.code == 1
    assert "\x1b" not in run.out and "\x07" not in run.out
    assert "\\x1b[2J" in run.out and "[bold red]x" in run.out


# -- what the server breaks ------------------------------------------------------------------------------------------

def test_a_masked_server_frame_is_flagged_and_the_connection_failed(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def masking_server(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        connection.sendall(unmasked_frame(0x1, b"masked by the server", mask=b"\x01\x02\x03\x04"))
        server.received += read_until_closed(connection)

    server = raw_server(masking_server)
    run = connect(server.url(), "--wait", "2", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    violations = run.of("violation", "s2c")
    assert violations and violations[0]["rfc"] == "RFC 6455 5.1"  # "A server MUST NOT mask any frames"
    # RFC 6455 7.1.7 and 7.4.1: the client fails the connection with 1002 (protocol error).
    assert [c["code"] for c in run.of("close", "c2s")] == [1002]
    assert server.received[:1] == b"\x88"  # what reached the server: a close frame (FIN + opcode 8)
    assert "RFC 6455 5.1" in run.out and "⚠" in run.out


def test_a_wrong_accept_key_fails_the_handshake(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def wrong_accept(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(switching_protocols("", accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        server.received += read_until_closed(connection)

    server = raw_server(wrong_accept)
    run = connect(server.url(), "--send", "never sent", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    (response,) = run.of("handshake_response")
    assert any(f["rfc"] == "RFC 6455 4.1" and f["got"] == "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" for f in response["findings"])
    assert not frames(run, "c2s") and server.received == b""  # RFC 6455 4.1: fail it, send nothing more
    assert "✗" in run.out


def test_a_subprotocol_that_was_not_offered_fails_the_handshake(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def picks_its_own(connection: socket.socket) -> None:
        headers = read_request(connection)
        answer = switching_protocols(headers["sec-websocket-key"])
        connection.sendall(answer[:-2] + b"Sec-WebSocket-Protocol: not-offered\r\n\r\n")
        server.received += read_until_closed(connection)

    server = raw_server(picks_its_own)
    run = connect(server.url(), "--subprotocol", "chat.v1", "--send", "never sent", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    # RFC 6455 4.1: a subprotocol the client did not offer fails the connection; nothing more is sent.
    findings = run.of("handshake_response")[0]["findings"]
    assert any(f["rfc"] == "RFC 6455 4.1" and f["got"] == "not-offered" for f in findings)
    assert server.received == b""


def test_a_server_that_never_answers_our_close(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def silent_after_101(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        server.received += read_until_closed(connection, limit=15)

    server = raw_server(silent_after_101)
    started = time.monotonic()
    run = connect(server.url(), "--wait", "0", "--close-timeout", "0.5", tmp_path=tmp_path)
    assert time.monotonic() - started < 10
    assert run.code == 1, (run.out, run.err)
    assert "--close-timeout" in run.out
    assert "RFC 6455 5.5.1" in run.out  # it MUST answer a close frame
    assert run.of("connection_closed")[0]["clean"] is False


def test_a_server_that_does_not_close_tcp_is_closed_after_the_timeout(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def keeps_tcp_open(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        data = b""
        while len(data) < 2 or len(data) < 2 + 4 + (data[1] & 0x7F):  # our close frame: header, mask, payload
            data += connection.recv(4096)
        connection.sendall(unmasked_frame(0x8, (1000).to_bytes(2, "big")))
        server.received += read_until_closed(connection)  # and wait for the client to close TCP

    server = raw_server(keeps_tcp_open)
    run = connect(server.url(), "--wait", "0", "--close-timeout", "0.5", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)  # a SHOULD (RFC 6455 7.1.1), not a broken MUST
    closed = run.of("connection_closed")[0]
    assert closed["clean"] is True and "RFC 6455 7.1.1" in closed["reason"]


def test_server_pings_are_answered_with_pongs(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    async def pinger(connection: Any) -> None:
        await connection.ping(b"still there?")
        async for message in connection:
            await connection.send(message)

    server = websockets_peer(pinger)
    run = connect(server.url(), "--send", "x", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    pings = [f for f in frames(run, "s2c") if f["websocket.opcode"] == 9]
    pongs = [f for f in frames(run, "c2s") if f["websocket.opcode"] == 10]
    # RFC 6455 5.5.3: the pong carries the ping's application data.
    assert [bytes.fromhex(p["payload"]) for p in pongs] == [bytes.fromhex(p["payload"]) for p in pings] == \
        [b"still there?"]


def test_payloads_with_escape_sequences_never_reach_the_terminal(
        tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    async def hostile(connection: Any) -> None:
        await connection.send("\x1b[2J\x1b]0;title\x07\u202e reversed [bold]")
        async for message in connection:
            await connection.send(message)

    server = websockets_peer(hostile)
    run = connect(server.url(), "--send", "hi", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0
    assert "\x1b" not in run.out and "\x07" not in run.out and "\u202e" not in run.out
    assert "\\x1b[2J" in run.out and "\\u202e" in run.out


# -- interactive lines -----------------------------------------------------------------------------------------------

def test_interactive_ping_binary_fragment_close(tmp_path: Path,
                                                websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    lines = "/ping are you there\n/binary 01:02:03\n/fragment 3 in three parts\n/nonsense\n/close 4001 done\nlate\n"
    run = connect(server.url(), "--no-compression", stdin=lines.encode(), tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    sent = frames(run, "c2s")
    assert [f["websocket.opcode"] for f in sent] == [9, 2, 1, 0, 0, 8]
    assert bytes.fromhex(sent[0]["payload"]) == b"are you there"
    pong = [f for f in frames(run, "s2c") if f["websocket.opcode"] == 10]
    assert [bytes.fromhex(p["payload"]) for p in pong] == [b"are you there"]
    assert bytes.fromhex(sent[1]["payload"]) == b"\x01\x02\x03"
    assert [f["websocket.fin"] for f in sent[2:5]] == [False, False, True]  # RFC 6455 5.4: FIN on the last only
    assert b"".join(bytes.fromhex(f["payload"]) for f in sent[2:5]) == b"in three parts"
    assert server.received == [b"\x01\x02\x03", "in three parts"]  # "late" came after the close
    assert [(c["direction"], c["code"], c["reason"]) for c in run.of("close")] == [("c2s", 4001, "done"),
                                                                                   ("s2c", 4001, "done")]
    assert "line 4: unknown command '/nonsense'" in run.err


def test_lines_after_a_close_are_neither_sent_nor_judged(tmp_path: Path,
                                                         websockets_peer: Callable[..., WebsocketsServer]) -> None:
    # Piped lines reach the client together (one read): the ones after /close must still be left alone.
    server = websockets_peer()
    run = connect(server.url(), "--no-compression", stdin=b"before\n/close\n/nonsense\nafter\n", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert server.received == ["before"]
    assert "line 3" not in run.err


def test_bad_lines_are_reported_and_nothing_is_sent(tmp_path: Path,
                                                    websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    lines = b"/binary zz\n/close 1005\n/fragment 0 x\n\xff\xfe\n/ping " + b"p" * 126 + b"\nok\n"
    run = connect(server.url(), "--wait", "1", stdin=lines, tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert server.received == ["ok"]
    assert len([line for line in run.err.splitlines() if line.startswith("wsinspect: line")]) == 5
    assert "line 2: /close: RFC 6455 7.4.1: 1005" in run.err
    assert "line 4: not UTF-8" in run.err
    assert "line 5: a ping carries at most 125 bytes" in run.err


@pytest.mark.parametrize(("line", "action"), [
    ("hello", SendText("hello")),
    ("", SendText("")),
    ("//not a command", SendText("/not a command")),
    ("/ping", SendPing(b"")),
    ("/ping a b", SendPing(b"a b")),
    ("/binary 00ff", SendBinary(b"\x00\xff")),
    ("/binary 00 FF:10", SendBinary(b"\x00\xff\x10")),
    ("/fragment 2 ab", SendFragmented("ab", 2)),
    ("/close", StartClose(1000, "")),
    ("/close 1001", StartClose(1001, "")),
    ("/close 3000 a reason", StartClose(3000, "a reason")),
])
def test_parse_line(line: str, action: object) -> None:
    assert parse_line(line) == action


@pytest.mark.parametrize(("line", "says"), [
    ("/binary", "needs the bytes in hex"),
    ("/binary 0", "not hex bytes"),
    ("/fragment x y", "needs a number of frames"),
    ("/fragment 3 ab", "at most one frame per byte"),
    ("/fragment 1001 " + "x" * 2000, "1 to 1000"),
    ("/close 999", "RFC 6455 7.4.2: status codes in the range 0-999 are not used"),
    ("/close 1006", "RFC 6455 7.4.1: 1006 is a reserved value"),
    ("/close 1015", "RFC 6455 7.4.1: 1015 is a reserved value"),
    ("/close 2000", "RFC 6455 7.4.2"),
    ("/close 5000", "RFC 6455 7.4.2"),
    ("/close abc", "not a status code"),
    ("/close 1000 " + "é" * 62, "at most 123 bytes"),
    ("/ping " + "x" * 126, "at most 125 bytes (RFC 6455 5.5"),
    ("/what", "unknown command"),
])
def test_parse_line_errors(line: str, says: str) -> None:
    with pytest.raises(LineError, match=None) as raised:
        parse_line(line)
    assert says in str(raised.value)


# -- URLs and arguments ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "secure", "host", "port", "resource", "authority"), [
    ("ws://example.com", False, "example.com", 80, "/", "example.com"),
    ("wss://example.com", True, "example.com", 443, "/", "example.com"),
    ("WS://Example.COM:80/chat", False, "example.com", 80, "/chat", "example.com"),
    ("ws://127.0.0.1:8765/a/b?x=1&y=2", False, "127.0.0.1", 8765, "/a/b?x=1&y=2", "127.0.0.1:8765"),
    ("ws://[::1]:8765/", False, "::1", 8765, "/", "[::1]:8765"),
    ("wss://[2001:db8::1]/x", True, "2001:db8::1", 443, "/x", "[2001:db8::1]"),
    ("ws://h/a%23b", False, "h", 80, "/a%23b", "h"),
    ("ws://h/caf\u00e9", False, "h", 80, "/caf%C3%A9", "h"),
    ("ws://b\u00fccher.example/", False, "xn--bcher-kva.example", 80, "/", "xn--bcher-kva.example"),
])
def test_parse_url(url: str, secure: bool, host: str, port: int, resource: str, authority: str) -> None:
    target = parse_url(url)
    assert (target.secure, target.host, target.port, target.resource, target.authority) == \
        (secure, host, port, resource, authority)


@pytest.mark.parametrize(("url", "says"), [
    ("http://example.com/", "ws://example.com/"),
    ("https://example.com/", "wss://example.com/"),
    ("example.com:8765", "starts with ws:// or wss://"),
    ("ftp://example.com/", "starts with ws:// or wss://"),
    ("ws://example.com/#top", "RFC 6455 3: fragment identifiers MUST NOT be used"),
    ("ws://user:pw@example.com/", "no user or password"),
    ("ws://example.com:99999/", "1-65535"),
    ("ws://example.com:0/", "port 0"),
    ("ws:///path", "names no host"),
    ("ws://[::1/", "IPv6"),
    ("ws://exa mple.com/", "no spaces"),
    ("ws://example.com/\x1b[2J", "\\x1b[2J"),
])
def test_parse_url_errors(url: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_url(url)
    assert says in str(raised.value)
    assert "\x1b" not in str(raised.value)


@pytest.mark.parametrize("args", [
    ["http://127.0.0.1:1/"],
    ["ws://127.0.0.1:1/", "-H", "no colon"],
    ["ws://127.0.0.1:1/", "-H", "Sec-WebSocket-Key: x"],
    ["ws://127.0.0.1:1/", "-H", "X-A: b\x1bc"],
    ["ws://127.0.0.1:1/", "-H", "Host: a.example", "-H", "host: b.example"],  # RFC 9112 3.2: one Host field
    ["ws://127.0.0.1:1/", "--subprotocol", "has space"],
    ["ws://127.0.0.1:1/", "--subprotocol", "chat", "--subprotocol", "chat"],  # RFC 6455 4.1 item 10: unique
    ["ws://127.0.0.1:1/", "-Y", "websocket.opcode =="],
    ["ws://127.0.0.1:1/", "--wait", "-1"],
    ["ws://127.0.0.1:1/", "--json", "/nonexistent-dir/x.jsonl"],
    ["ws://127.0.0.1:1/", "--record", "/nonexistent-dir/x.pcapng"],
    ["wss://127.0.0.1:1/", "--cafile", "/nonexistent-dir/ca.pem"],
    ["ws://127.0.0.1:1/", "--export", "x.doc"],
])
def test_bad_usage_exits_2_before_connecting(args: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wsinspect", "connect", *args, "--color", "never"],
                          capture_output=True, cwd=ROOT, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 2, done
    assert b"Traceback" not in done.stderr and b"\x1b" not in done.stderr


def test_a_send_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    # The byte 0xff cannot be decoded from argv: it arrives as a lone surrogate, which no text message may carry.
    done = subprocess.run([sys.executable.encode(), b"-m", b"wsinspect", b"connect", b"ws://127.0.0.1:1/",
                           b"--send", b"caf\xe9\xff", b"--color", b"never"], capture_output=True, cwd=ROOT,
                          timeout=RUN_TIMEOUT, check=False, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 2, done
    assert b"not valid UTF-8" in done.stderr and b"Traceback" not in done.stderr


def test_a_server_that_drops_tcp_without_a_close_frame(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def drops(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        connection.sendall(unmasked_frame(0x1, b"bye"))

    server = raw_server(drops)
    run = connect(server.url(), "--wait", "5", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    assert texts(run, "s2c") == ["bye"]
    assert "the server sent no close frame" in run.shown and "1006" in run.shown  # RFC 6455 7.1.5
    assert run.of("connection_closed")[0]["clean"] is False


def test_help_has_examples_and_exit_statuses() -> None:
    done = subprocess.run([sys.executable, "-m", "wsinspect", "connect", "--help"], capture_output=True, cwd=ROOT,
                          timeout=RUN_TIMEOUT, check=False, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0
    text = done.stdout.decode()
    for needed in ("--send", "--wait", "--insecure", "--cafile", "/fragment N TEXT", "exit status", "  3  could not"):
        assert needed in text


def test_the_client_does_not_import_the_capture_stack() -> None:
    # wsinspect.trace (and wsinspect.capture behind it) is only for a ws:// request answered with TLS; importing it
    # at every start was about a tenth of a one-shot run's CPU time.
    code = "import sys, wsinspect.commands.connect, wsinspect.client.run; print(sorted(m for m in sys.modules if " \
           "m == 'wsinspect.trace' or m.startswith('wsinspect.capture')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=RUN_TIMEOUT,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "[]"


# -- could not connect ------------------------------------------------------------------------------------------------

def test_connection_refused_exits_3(tmp_path: Path) -> None:
    with socket.socket() as placeholder:  # a port nothing listens on: bound, never listening
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        run = connect(f"ws://127.0.0.1:{port}/", "--send", "x", tmp_path=tmp_path)
    assert run.code == 3
    assert "connection refused" in run.err and "Traceback" not in run.err


def test_an_unknown_host_is_said_in_one_line() -> None:
    # The lookup's answer is made here, so the test never asks a real resolver (it stays on loopback).
    async def attempt() -> None:
        async def no_such_host(*args: Any, **kwargs: Any) -> Any:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        asyncio.get_running_loop().getaddrinfo = no_such_host  # type: ignore[method-assign]
        await open_connection(parse_url("ws://no-such-host.example/"), None, asyncio.Protocol, 5)

    with pytest.raises(ConnectFailed) as raised:
        asyncio.run(attempt())
    assert str(raised.value) == "cannot find the host 'no-such-host.example' (Name or service not known)"


def test_no_answer_to_the_handshake_exits_3_after_the_open_timeout(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def mute(connection: socket.socket) -> None:
        read_until_closed(connection, limit=10)

    server = raw_server(mute)
    started = time.monotonic()
    run = connect(server.url(), "--open-timeout", "1", tmp_path=tmp_path)
    assert run.code == 3
    assert time.monotonic() - started < 10
    assert "--open-timeout" in run.err


def test_a_plain_request_to_a_tls_server_is_explained(tmp_path: Path,
                                                      tls_server: tuple[WebsocketsServer, Certificates]) -> None:
    server, _ = tls_server
    run = connect(server.url(scheme="ws"), "--open-timeout", "5", tmp_path=tmp_path)
    assert run.code in (1, 3), (run.out, run.err)
    assert "wss://" in run.out + run.err


# -- answers that are not a WebSocket handshake: the verdict names what came -------------------------------------------

NOT_HTTP = bytes(range(256)) * 4 + b"\x1b[2J"  # 1,028 bytes with no CR LF in them: never a header block
TLS_HINT = "connect with wss://"


def test_an_answer_that_is_not_http_is_shown_escaped_and_counted(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def garbage(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(NOT_HTTP)

    server = raw_server(garbage)
    started = time.monotonic()
    run = connect(server.url(), "--send", "hi", "--open-timeout", "5", tmp_path=tmp_path)
    assert time.monotonic() - started < 5
    assert run.code == 1, (run.out, run.err)
    assert f"answered the opening handshake with {len(NOT_HTTP):,} bytes that are not an HTTP response" in run.shown
    assert "without answering" not in run.shown and TLS_HINT not in run.out  # bytes 00 01 02 are no TLS record
    assert f"the first 64 bytes (of {len(NOT_HTTP):,}): 00 01 02 03" in run.shown
    assert "'\\x00\\x01" in run.out and "\x00" not in run.out and "\x1b" not in run.out
    assert "server→client 1.0 KiB" in run.shown  # 1,028 bytes, not the 0 B of frames


def test_an_answer_in_tls_records_gets_the_wss_hint(tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def tls_alert(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]))  # RFC 8446 6: fatal protocol_version

    run = connect(raw_server(tls_alert).url(), "--send", "hi", "--open-timeout", "5", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    assert "answered the opening handshake with 7 bytes that are not an HTTP response" in run.shown
    assert "the server answered with TLS: it expects wss://" in run.shown


def test_an_answer_cut_short_is_named_as_such(tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    start = b"HTTP/1.1 101 Switching Pro"

    def cut(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(start)

    run = connect(raw_server(cut).url(), "--send", "hi", "--open-timeout", "5", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    assert f"in the middle of its answer to the opening handshake ({len(start)} bytes of an HTTP response" in run.shown
    assert TLS_HINT not in run.out and f"server→client {len(start)} B" in run.shown


def _header_past_the_limit(connection: socket.socket) -> None:
    read_request(connection)
    connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
    with contextlib.suppress(OSError):  # the client gives up and closes while we write
        for _ in range(10):  # 10 kB of header lines, no blank line
            connection.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
    read_until_closed(connection, limit=5)


def test_a_header_block_over_max_header_names_the_limit(tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(_header_past_the_limit)
    started = time.monotonic()
    run = connect(server.url(), "--send", "hi", "--max-header", "4k", "--open-timeout", "5", tmp_path=tmp_path)
    assert time.monotonic() - started < 5
    assert run.code == 1, (run.out, run.err)
    assert ("the server's answer had more than --max-header bytes of header (4 KiB): we gave up; raise --max-header "
            "to see it") in run.shown
    assert "without answering" not in run.shown and TLS_HINT not in run.out
    assert "we closed the TCP connection" in run.of("connection_closed")[0]["reason"]
    assert "server→client 0 B" not in run.shown


def test_the_header_limit_warning_comes_after_the_request(tmp_path: Path,
                                                          raw_server: Callable[..., RawServer]) -> None:
    run = connect(raw_server(_header_past_the_limit).url(), "--max-header", "4k", "--open-timeout", "5",
                  tmp_path=tmp_path)
    assert run.out.index("Sec-WebSocket-Key") < run.out.index("RFC 6455 10.4")


def test_wss_to_a_server_that_never_answers_tls(tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def mute(connection: socket.socket) -> None:
        read_until_closed(connection, limit=5)

    server = raw_server(mute)
    started = time.monotonic()
    run = connect(f"wss://127.0.0.1:{server.port}/chat", "--open-timeout", "1", tmp_path=tmp_path)
    assert time.monotonic() - started < 5
    assert run.code == 3, (run.out, run.err)
    assert (f"connected to 127.0.0.1:{server.port}, but no TLS answer within 1 s (--open-timeout): does it speak "
            f"plain ws://? try ws://127.0.0.1:{server.port}/chat") in run.err
    assert "could not connect" not in run.err


def test_wss_to_a_server_that_answers_in_plain_http(tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def plain_http(connection: socket.socket) -> None:
        connection.recv(4096)  # the ClientHello
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    server = raw_server(plain_http)
    run = connect(f"wss://127.0.0.1:{server.port}/", "--open-timeout", "5", tmp_path=tmp_path)
    assert run.code == 3, (run.out, run.err)
    assert f"connected to 127.0.0.1:{server.port}, but it answered our TLS ClientHello with bytes that are not TLS" \
           in run.err
    assert f"it speaks plain HTTP there; try ws://127.0.0.1:{server.port}/" in run.err


# -- wss:// -----------------------------------------------------------------------------------------------------------

def test_wss_with_cafile(tmp_path: Path, tls_server: tuple[WebsocketsServer, Certificates]) -> None:
    server, certificates = tls_server
    run = connect(server.url(scheme="wss", host="localhost"), "--cafile", str(certificates.ca), "--send", "secret",
                  "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert server.received == ["secret"] and texts(run, "s2c") == ["secret"]
    assert "certificate checked: localhost, issued by wsinspect test CA" in run.out


def test_wss_with_insecure(tmp_path: Path, tls_server: tuple[WebsocketsServer, Certificates]) -> None:
    server, _ = tls_server
    run = connect(server.url(scheme="wss"), "--insecure", "--send", "x", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert "NOT checked (--insecure)" in run.out


def test_wss_certificate_failure_exits_3_and_names_the_flags(
        tmp_path: Path, tls_server: tuple[WebsocketsServer, Certificates]) -> None:
    server, _ = tls_server
    run = connect(server.url(scheme="wss", host="localhost"), "--send", "x", tmp_path=tmp_path)
    assert run.code == 3, (run.out, run.err)
    assert "certificate" in run.err and "--cafile" in run.err and "--insecure" in run.err
    assert server.received == []


def test_wss_to_a_plain_server_exits_3(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(scheme="wss"), "--insecure", "--open-timeout", "5", tmp_path=tmp_path)
    assert run.code == 3
    assert "TLS" in run.err and "ws://" in run.err


# -- what is kept: --json and --record --------------------------------------------------------------------------------

def test_json_lines_follow_the_read_schema(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(), "--send", "hi", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0
    kinds = [e["type"] for e in run.events]
    assert kinds[:3] == ["connection", "handshake_request", "handshake_response"]
    assert kinds[-1] == "connection_closed"
    for event in run.events:
        assert {"type", "stream", "direction", "time", "packet"} <= event.keys()
        assert event["stream"] == 0 and event["direction"] in ("c2s", "s2c") and event["packet"] is None
    opened = run.of("connection")[0]
    assert opened["server"] == f"127.0.0.1:{server.port}"


def test_json_to_stdout(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    done = subprocess.run([sys.executable, "-m", "wsinspect", "connect", server.url(), "--send", "hi", "--wait",
                           "1", "--json", "-"], capture_output=True, cwd=ROOT, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert [e["text"] for e in lines if e["type"] == "message" and e["direction"] == "s2c"] == ["hi"]
    filtered = subprocess.run([sys.executable, "-m", "wsinspect", "connect", server.url(), "--send", "hi", "--wait",
                               "1", "--json", "-", "-Y", "message"], capture_output=True, cwd=ROOT,
                              timeout=RUN_TIMEOUT, check=False)
    assert filtered.returncode == 0
    kinds = {json.loads(line)["type"] for line in filtered.stdout.decode("ascii").splitlines()}
    assert kinds == {"message"}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a file that is always full)")
@pytest.mark.parametrize("flag", ["--json", "--record"])
def test_a_file_that_fills_up_is_reported_once(flag: str, tmp_path: Path,
                                              websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    done = subprocess.run([sys.executable, "-m", "wsinspect", "connect", server.url(), "--send", "still sent",
                           "--wait", "1", flag, "/dev/full", "--color", "never"], capture_output=True, cwd=ROOT,
                          timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 2
    assert done.stderr.decode().count(f"writing {flag} /dev/full failed") == 1
    assert server.received == ["still sent"]  # the conversation went on


def _read_back(capture: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "wsinspect", "read", str(capture), "--json"], capture_output=True,
                          cwd=ROOT, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]


def _wire(events: list[dict[str, Any]]) -> list[tuple[str, int, bool, str]]:
    return [(e["direction"], e["websocket.opcode"], e["websocket.fin"], e["payload"]) for e in events
            if e["type"] == "frame"]


def test_record_reads_back_to_the_same_frames(tmp_path: Path,
                                              websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    capture = tmp_path / "session.pcapng"
    run = connect(server.url(), "--record", str(capture), stdin=b"first\n/ping p\n/fragment 2 split\n/binary ab\n",
                  tmp_path=tmp_path)
    assert run.code == 0, run.err
    read_back = _read_back(capture)
    assert _wire(read_back) == _wire(run.events) and len(_wire(run.events)) >= 10
    assert [m["data"] for m in read_back if m["type"] == "message"] == [m["data"] for m in run.of("message")]
    if shutil.which("tshark") is not None:
        done = subprocess.run(["tshark", "-n", "-r", str(capture), "-d", f"tcp.port=={server.port},http", "-Y",
                               "websocket", "-T", "fields", "-e", "websocket.opcode"], capture_output=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        # One packet can hold several frames (tshark lists their opcodes with commas).
        opcodes = [int(o) for line in done.stdout.decode().split() for o in line.split(",")]
        assert opcodes == [f["websocket.opcode"] for f in frames(run)]


def test_piped_lines_go_out_in_batches_and_in_order(tmp_path: Path,
                                                    websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    capture = tmp_path / "session.pcapng"
    lines = [f"line {number:04d}" for number in range(2000)]
    piped = "".join(line + "\n" for line in lines).encode() + b"/nonsense\nlast\n"
    run = connect(server.url(), "--no-compression", "--record", str(capture), "--wait", "3", "-Y",
                  "websocket.opcode == 8", stdin=piped, tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert server.received == [*lines, "last"]
    assert texts(run, "s2c") == [*lines, "last"]
    assert "line 2001: unknown command '/nonsense'" in run.err
    # The lines one read of stdin brings are written to the socket together (the recording holds one segment a
    # write, cut at the MSS), not one system call a line: that was most of the time of a piped run.
    sent = {e["packet"] for e in _read_back(capture) if e["type"] == "frame" and e["direction"] == "c2s"}
    assert len(sent) < 200, len(sent)


def test_record_of_a_wss_conversation_is_decrypted(tmp_path: Path,
                                                   tls_server: tuple[WebsocketsServer, Certificates]) -> None:
    server, certificates = tls_server
    capture = tmp_path / "wss.pcapng"
    run = connect(server.url(scheme="wss", host="localhost"), "--cafile", str(certificates.ca), "--record",
                  str(capture), "--send", "over tls", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert [m["text"] for m in _read_back(capture) if m["type"] == "message"] == ["over tls", "over tls"]


# -- the views --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "marker"), [
    ("--flow", "client"),
    ("--compact", "101 upgraded"),
    ("--detail", "Masking-Key"),
    ("--explain", "RFC 6455 5.3"),
    ("--follow", "hello there"),
])
def test_views(flag: str, marker: str, tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(), flag, "--no-compression", "--send", "hello there", "--wait", "1",
                  tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert marker in run.out, run.out


def test_filter_shows_only_what_matches(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    run = connect(server.url(), "-Y", "websocket.opcode == 8", "--send", "hidden text", "--wait", "1",
                  tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert "Close" in run.out and "hidden text" not in run.out
    assert texts(run, "s2c") == ["hidden text"]  # -Y chooses what is shown, never what is decoded


def test_export_html(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    handout = tmp_path / "session.html"
    run = connect(server.url(), "--export", str(handout), "--send", "for the handout", "--wait", "1",
                  tmp_path=tmp_path)
    assert run.code == 0, run.err
    page = handout.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "for the handout" in page


# -- Node's ws --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Node's ``ws`` installed into a temporary directory (skipped without node and npm, or offline)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the ws peer")
    directory = tmp_path_factory.mktemp("node_ws")
    for name in ("package.json", "echo_server.js"):
        shutil.copy(NODE_PEER / name, directory / name)
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory,
                              capture_output=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of ws took over 180 s")
    if done.returncode != 0 or not (directory / "node_modules" / "ws").is_dir():
        pytest.skip(f"npm install of ws failed: {done.stderr.decode(errors='replace')[-300:]}")
    return directory


@pytest.mark.parametrize("compression", [True, False])
def test_node_ws_echo(compression: bool, node_ws: Path, tmp_path: Path) -> None:
    message = "from wsinspect to node " * 10
    with node_server(node_ws, "deflate" if compression else "plain") as port:
        run = connect(f"ws://127.0.0.1:{port}/", "--send", message, "--wait", "1",
                      stdin=b"", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    assert texts(run, "s2c") == [message]
    extensions = run.of("handshake_response")[0]["extensions"]
    echoed = run.of("message", "s2c")[0]
    if compression:
        assert extensions and extensions[0].startswith("permessage-deflate")
        assert echoed["compressed"] is True and echoed["wire_length"] < len(message)
    else:
        assert extensions == [] and echoed["compressed"] is False
    assert all(f["websocket.mask"] for f in frames(run, "c2s"))


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path,
                                                     websockets_peer: Callable[..., WebsocketsServer]) -> None:
    """``wsinspect connect URL | head -2``: the reader goes away; no traceback, no hang, status 0 (as read's)."""
    server = websockets_peer()
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "connect", server.url(), "--send", "a", "--send",
                              "b", "--wait", "1", "--color", "never"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=ROOT)
    assert child.stdout is not None and child.stderr is not None
    try:
        first = [child.stdout.readline() for _ in range(2)]
        child.stdout.close()  # what head does after its lines
        assert child.wait(RUN_TIMEOUT) == 0
        assert b"Traceback" not in child.stderr.read() and first[0].startswith(b"wsinspect connect")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stderr.close()


# -- Ctrl-C and backpressure ------------------------------------------------------------------------------------------

def _wait_for_json(path: Path, kind: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and f'"type":"{kind}"' in path.read_text("ascii").replace(" ", ""):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event in {timeout} s")


def test_ctrl_c_closes_cleanly_and_exits_130(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    server = websockets_peer()
    json_path = tmp_path / "interrupted.jsonl"
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "connect", server.url(), "--json", str(json_path),
                              "--color", "never"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=ROOT)
    try:
        _wait_for_json(json_path, "handshake_response", 20)
        child.send_signal(signal.SIGINT)
        assert child.wait(20) == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        assert child.stdin is not None
        child.stdin.close()
    events = [json.loads(line) for line in json_path.read_text("ascii").splitlines()]
    closes = [(e["direction"], e["code"]) for e in events if e["type"] == "close"]
    assert closes == [("c2s", 1000), ("s2c", 1000)]
    assert events[-1]["type"] == "connection_closed" and events[-1]["clean"] is True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the child's memory from /proc")
def test_stdin_waits_while_the_server_does_not_read(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    done_reading = threading.Event()

    def never_reads(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        done_reading.wait(RUN_TIMEOUT * 2)

    server = raw_server(never_reads)
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "connect", server.url(), "--no-compression",
                              "--max-queue", "64k", "--compact", "--no-summary", "--color", "never"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    line = b"x" * 65535 + b"\n"
    offered = 512 * len(line)  # 32 MiB: more than the kernel's buffers and the bounds let through
    written = 0

    def feed() -> None:
        nonlocal written
        assert child.stdin is not None
        with contextlib.suppress(OSError):
            while written < offered:
                child.stdin.write(line)
                child.stdin.flush()
                written += len(line)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        last, still_since, deadline = -1, time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline and time.monotonic() - still_since < 2:
            time.sleep(0.1)
            if written != last:
                last, still_since = written, time.monotonic()
        rss = rss_kib(child.pid)
        # Stalled well short of what was offered: the pipe, 16 lines read ahead, --max-queue and the kernel's
        # socket buffers hold the rest.
        assert written < offered, "stdin was drained although the server read nothing"
        assert rss < 200 * 1024, f"{rss} KiB"
    finally:
        child.kill()
        child.wait(10)
        done_reading.set()
        feeder.join(10)


# -- against a server that breaks one rule on purpose (wsinspect serve --misbehave) -----------------------------------

@pytest.mark.parametrize(("kind", "rfc", "close_code"), [
    ("masked-frames", "RFC 6455 5.1", 1002),  # "A server MUST NOT mask any frames"; 1002: protocol error (7.4.1)
    ("invalid-utf8", "RFC 6455 8.1", 1007),  # 1007: data not consistent with the type of the message (7.4.1)
    # 7.4 (Status Codes); its 7.4.1 says 1005 "MUST NOT be set as a status code in a Close control frame"
    ("bad-close-code", "RFC 6455 7.4", 1002),
])
def test_a_rule_broken_by_the_server_is_flagged_and_answered(kind: str, rfc: str, close_code: int,
                                                             tmp_path: Path) -> None:
    with misbehaving_server(kind) as port:
        run = connect(f"ws://127.0.0.1:{port}/", "--send", "provoke", "--wait", "1", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    assert rfc in [v["rfc"] for v in run.of("violation", "s2c")]
    assert [c["code"] for c in run.of("close", "c2s")][:1] == [close_code]
    assert rfc in run.out and "the server broke" in run.out


def test_a_spoiled_101_is_refused_by_the_client(tmp_path: Path) -> None:
    with misbehaving_server("bad-accept") as port:
        run = connect(f"ws://127.0.0.1:{port}/", "--send", "never sent", tmp_path=tmp_path)
    assert run.code == 1, (run.out, run.err)
    findings = run.of("handshake_response")[0]["findings"]
    assert any(f["rfc"] == "RFC 6455 4.1" and "Sec-WebSocket-Accept" in f["message"] for f in findings)
    assert not frames(run, "c2s")


def test_no_close_reply_ends_after_the_close_timeout(tmp_path: Path) -> None:
    with misbehaving_server("no-close-reply") as port:
        started = time.monotonic()
        run = connect(f"ws://127.0.0.1:{port}/", "--send", "x", "--wait", "0", "--close-timeout", "0.5",
                      tmp_path=tmp_path)
        assert time.monotonic() - started < 15
    assert run.code == 1, (run.out, run.err)
    assert "no close frame from the server" in run.of("connection_closed")[0]["reason"]


def test_the_server_closes_first(tmp_path: Path, websockets_peer: Callable[..., WebsocketsServer]) -> None:
    async def leaves(connection: Any) -> None:
        await connection.recv()
        await connection.close(4002, "that is all")

    server = websockets_peer(leaves)
    run = connect(server.url(), "--send", "hello", "--wait", "5", tmp_path=tmp_path)
    assert run.code == 0, (run.out, run.err)
    # RFC 6455 5.5.1: the client echoes the status code; the server then closes TCP first (7.1.1).
    assert [(c["direction"], c["code"], c["initiator"]) for c in run.of("close")] == [("s2c", 4002, True),
                                                                                     ("c2s", 4002, False)]
    closed = run.of("connection_closed")[0]
    assert closed["clean"] is True and closed["reason"] == "the server closed the TCP connection"


def test_a_server_that_pings_but_never_reads_is_dropped(
        tmp_path: Path, raw_server: Callable[..., RawServer]) -> None:
    def pings_without_reading(connection: socket.socket) -> None:
        headers = read_request(connection)
        connection.sendall(switching_protocols(headers["sec-websocket-key"]))
        ping = unmasked_frame(0x9, b"p" * 125)
        with contextlib.suppress(OSError):
            for _ in range(200_000):  # 25 MiB of pings at most; the client's pongs pile up unread
                connection.sendall(ping)

    server = raw_server(pings_without_reading, receive_buffer=4096)  # a small window: the pile-up comes quickly
    run = connect(server.url(), "--max-queue", "4k", "--wait", "30", "-Y", "websocket.opcode == 8", "--compact",
                  tmp_path=tmp_path, timeout=90)
    closed = run.of("connection_closed")[0]
    assert "the server stopped reading" in closed["reason"], closed
    assert run.code == 1  # and it never answered a close: the connection just ended
