"""After serve fails a connection (a close with 1002 etc. at the first bad frame) it processes nothing more the
client sent (RFC 6455 7.1.7), logs none of it as frames, and says in one line how many bytes it discarded (review
finding 15: 3000 random bytes gave 21-43 logged rows, and the server's own close came after all of them)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from serve_support import Server, frames

MASK = b"\x01\x02\x03\x04"
UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def masked(opcode: int, payload: bytes) -> bytes:
    body = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + MASK + body


def test_nothing_after_the_failing_frame_is_decoded_answered_or_logged(serve: Callable[..., Server]) -> None:
    server = serve("--no-compression")
    bad = masked(0x3, b"reserved opcode")  # RFC 6455 5.2: 0x3-0x7 are reserved: fail with 1002
    after = b"".join(masked(0x1, f"message {index}".encode()) for index in range(10)) + masked(0x8, b"\x03\xe8")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(bad + after)  # one write: the frames after the bad one arrive in the same read
        received = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    assert received[:1] == b"\x88" and received[2:4] == struct.pack("!H", 1002), received  # only the close
    assert b"message" not in received  # no echo of what came after the bad frame
    log = server.section(0).replace("\n  ", " ")
    assert "message 0" not in log
    assert f"{len(after):,} bytes it sent after the failing frame discarded, not decoded (RFC 6455 7.1.7)" in log, log
    assert "no complete close handshake" in log  # the client's close was among the discarded bytes
    server.stop()
    client_frames = frames(server.events(), "c2s")
    assert [frame["websocket.opcode"] for frame in client_frames] == [3], client_frames
