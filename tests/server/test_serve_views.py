"""serve's live log in its other layouts: --compact for a room of browsers, --flow as a ladder, --explain for a
class, and a refusal whose findings are printed once (its body is the server's own words for them)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import websocket
from serve_support import Server


def exchange(server: Server, messages: list[str]) -> None:
    client = websocket.create_connection(server.url, timeout=5)
    try:
        for message in messages:
            client.send(message)
            assert client.recv() == message
    finally:
        client.close()


def test_compact_is_one_line_per_handshake_and_frame(serve: Callable[..., Server]) -> None:
    server = serve("--compact")
    exchange(server, ["one", "two"])
    log = server.wait_for(re.compile(r"^#0 closed \(", re.M))
    lines = [line for line in log.splitlines() if line.startswith("#0")]
    assert re.match(r"^#0 \S+ GET / → ✓ 101 upgraded", lines[0])
    frames = [line for line in lines if re.search(r" ([cs]→[cs]|client → server|server → client) +\d+ ", line)]
    assert len(frames) == 6  # two messages each way, a close each way
    assert len(lines) == 1 + len(frames) + 1  # the handshake, the frames, the end
    assert "Header" not in log and "connection from" not in log
    assert server.stop() == 0


def test_flow_draws_the_live_connection_as_a_ladder(serve: Callable[..., Server]) -> None:
    server = serve("--flow")
    exchange(server, ["ladder"])
    log = server.wait_for("connection ended")
    assert re.search(r"│─ GET / .*▶│", log) and re.search(r"│◀─+ 101 Switching Protocols ─│", log)
    assert re.search(r'│─ Text "ladder" 6 B ─+▶│', log) and re.search(r'│◀─+ Text "ladder" 6 B ─│', log)
    assert server.stop() == 0


def test_explain_annotates_once(serve: Callable[..., Server]) -> None:
    server = serve("--explain")
    exchange(server, ["a", "b"])
    exchange(server, ["c"])
    log = server.wait_for(re.compile(r"^#1 closed \(", re.M))
    assert log.count("16 random bytes in base64") == 1 and log.count("XOR key byte i") == 1
    assert server.stop() == 0


def test_a_refusal_shows_its_findings_once(serve: Callable[..., Server]) -> None:
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    log = server.wait_for("refused handshake")
    assert log.count("Sec-WebSocket-Key") >= 1
    assert log.count("There is no Sec-WebSocket-Key header field") == 1  # not again in a body line above it
    assert "no complete close handshake" not in log
    assert server.stop() == 0
