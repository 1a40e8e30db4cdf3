"""Safe defaults: loopback only unless told otherwise, and nothing from the wire reaches the terminal raw."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable

import pytest
import websocket
from serve_support import Server, of_type, raw_exchange, split_response

EVIL = "\x1b[2J\x1b]0;pwned\x07[bold red]x"
CONTROL_BYTES = bytes([0x1B, 0x07, 0x9B, 0x00, 0x08, 0x0D])  # ESC, BEL, CSI (C1, as a byte), NUL, BS, CR


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_default_bind_is_loopback_only(serve: Callable[..., Server]) -> None:
    server = serve()
    assert server.host == "127.0.0.1"
    assert f"on ws://127.0.0.1:{server.port}/" in server.stdout
    assert "warning" not in server.stdout
    if shutil.which("ss"):
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True,
                                   timeout=10, check=False).stdout
        local = [line.split()[3] for line in listening.splitlines() if line.strip()]
        assert local == [f"127.0.0.1:{server.port}"], listening
    # Another loopback address of this machine reaches nothing: the socket is bound to 127.0.0.1 alone.
    assert refused("127.0.0.2", server.port)
    assert not refused("127.0.0.1", server.port)


def test_every_interface_warns(serve: Callable[..., Server]) -> None:
    server = serve("--host", "0.0.0.0")
    assert f"on ws://0.0.0.0:{server.port}/" in server.stdout
    assert "warning: listening on every interface" in server.stdout
    assert "--host 127.0.0.1" in server.stdout
    assert not refused("127.0.0.2", server.port)  # now it answers on every (here: loopback) address


def assert_terminal_safe(output: bytes) -> None:
    for byte in CONTROL_BYTES:
        assert bytes([byte]) not in output, f"raw byte 0x{byte:02x} reached the terminal"
    text = output.decode("utf-8")  # and what is there is valid UTF-8
    for char in text:
        assert char in "\n" or char.isprintable() or char == " ", f"unprintable {char!r} in the output"


@pytest.mark.parametrize("detail", [False, True], ids=["packet-list", "detail"])
def test_untrusted_bytes_are_escaped_in_the_terminal(serve: Callable[..., Server], detail: bool) -> None:
    server = serve(*(["--detail"] if detail else []))
    # A message, a close reason and a binary payload full of control characters.
    ws = websocket.create_connection(server.url, timeout=3)
    try:
        ws.send(EVIL)
        assert ws.recv() == EVIL  # echoed intact: only the display is escaped
        ws.send_binary(EVIL.encode() + b"\x9b\x00")
        assert ws.recv() == EVIL.encode() + b"\x9b\x00"
        ws.send("right-to-left \u202e override")
        assert ws.recv() == "right-to-left \u202e override"
    finally:
        ws.close(status=4001, reason=EVIL.encode())
    server.wait_for("#0 closed (")
    # A handshake whose header values, target and subprotocol carry escapes (sent raw: libraries refuse to).
    evil_header = EVIL.encode("latin-1")
    answer = raw_exchange(server.port, b"GET /\x1b[2J HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 8\r\nX-Evil: " + evil_header + b"\r\n"
                          b"Sec-WebSocket-Protocol: \x1b[5m\r\nUser-Agent: \xe2\x80\xae\x9b2J\r\n\r\n", timeout=3)
    assert split_response(answer)[0] in (400, 426)
    server.wait_for("#1 closed (")
    # A plain HTTP request line with escapes.
    not_found = raw_exchange(server.port, b"GET /\x1b]0;title\x07 HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    server.wait_for("#-1 GET ")  # a plain request: numbered apart from the WebSocket connections
    assert server.stop() == 0

    output = server.stdout_bytes
    assert_terminal_safe(output)
    text = output.decode("utf-8")
    assert "\\x1b[2J\\x1b]0;pwned\\x07[bold red]x" in text  # shown, escaped; the markup stays literal
    assert "X-Evil" in text
    assert "right-to-left \\u202e override" in text  # a bidi override is shown, not obeyed
    assert "\\x9b2J" in text  # a C1 control in a header value (read as latin-1)
    assert "#-1 GET /\\x1b]0;title\\x07 → 404" in text
    # The HTTP bodies reflect the request escaped too: a client printing them (curl) shows the escapes.
    status, _, body = split_response(not_found)
    assert status == 404 and b"/\\x1b]0;title\\x07" in body
    status, _, body = split_response(answer)
    assert b"\\x1b[5m" in body or b"\\x1b[2J" in body  # the refusal quotes what it refuses, escaped
    for raw in (not_found, answer):
        assert not any(byte in raw for byte in CONTROL_BYTES[:3]), raw
    # The JSON log is ASCII: no raw control byte either, and the data itself is kept exactly.
    raw_json = server.json_path.read_bytes() if server.json_path else b""
    assert all(byte < 0x80 for byte in raw_json) and b"\x1b" not in raw_json and b"\x07" not in raw_json
    texts = [m["text"] for m in of_type(server.events(), "message", "c2s")]
    assert texts[0] == EVIL
