"""Helpers for the hostile-peer suite: raw WebSocket peers that misbehave on purpose, the server's memory, and the
check every test ends with (a good client is served, memory is back near its baseline).

The server is the real ``wsinspect serve`` as a subprocess on a loopback port (tests/server/serve_support.py).
Memory is the server process's VmRSS, read from /proc by its PID.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import websocket
from serve_support import Server

KEY = base64.b64encode(b"hostile-peer-key").decode()
MASK = b"\x37\xfa\x21\x3d"
MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakMemory:
    """Samples a process's RSS in a thread until stopped; ``peak`` is the largest sample."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss(self.pid))


def mask(payload: bytes) -> bytes:
    """XOR with MASK, whole-buffer (no per-byte loop)."""
    if not payload:
        return b""
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + MASK + mask(payload)


def upgrade_request(*, path: str = "/", extensions: str | None = None, extra: bytes = b"") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1") + extra + b"\r\n"


def read_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """The response's header block (the bytes up to the blank line)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def raw_client(port: int, *, extensions: str | None = None, receive_buffer: int | None = None,
               path: str = "/") -> tuple[socket.socket, bytes]:
    """A connected, upgraded raw socket (and the server's 101 head). A small receive buffer makes a peer that does
    not read fill up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request(extensions=extensions, path=path))
    head = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, head


def deflate_message(data: bytes, compressor: zlib._Compress) -> bytes:
    """A permessage-deflate payload: the compressed bytes with the trailing 00 00 ff ff removed (RFC 7692 7.2.1)."""
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def read_frames(sock: socket.socket, timeout: float = 5.0, until_close: bool = True, count: int | None = None
                ) -> list[tuple[int, bytes]]:
    """Server frames (opcode, payload) until a close frame, ``count`` frames, the end of the stream or
    ``timeout``."""
    deadline = time.monotonic() + timeout
    buffer = b""
    found: list[tuple[int, bytes]] = []
    while time.monotonic() < deadline:
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, start = struct.unpack("!H", buffer[2:4])[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, start = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < start + size:
                break
            found.append((buffer[0] & 0x0F, buffer[start : start + size]))
            buffer = buffer[start + size :]
            if (until_close and found[-1][0] == 8) or (count is not None and len(found) >= count):
                return found
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        buffer += chunk
    return found


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    closes = [payload for opcode, payload in frames if opcode == 8]
    return struct.unpack("!H", closes[0][:2])[0] if closes and len(closes[0]) >= 2 else None


def good_client_is_served(server: Server, text: str = "a good client after the storm", timeout: float = 10.0
                          ) -> None:
    """A well-behaved client connects, gets its echo (or, in chat, its own broadcast) and closes cleanly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = websocket.create_connection(server.url, timeout=5)
            break
        except (OSError, websocket.WebSocketException):
            assert time.monotonic() < deadline, "a good client could not connect"
            time.sleep(0.2)
    try:
        ws.send(text)
        got = ws.recv()
        assert got == text or got.endswith(f": {text}"), got  # echo, or chat's "#N: text"
    finally:
        ws.close()


def settled_rss(pid: int, ceiling: int, timeout: float = 10.0) -> int:
    """Wait (bounded) for the server's RSS to come under ``ceiling``; return the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        now = rss(pid)
        if now <= ceiling or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def send_all_or_blocked(sock: socket.socket, data: bytes, patience: float = 1.0) -> bool:
    """Send ``data``; False if the peer stopped reading (nothing could be sent for ``patience`` seconds)."""
    view = memoryview(data)
    sock.settimeout(patience)
    while view:
        try:
            sent = sock.send(view)
        except TimeoutError:
            return False
        except (BrokenPipeError, ConnectionResetError):
            return False
        view = view[sent:]
    return True


def pid_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def unread_by_server(server_port: int, client_port: int) -> int:
    """Bytes the kernel holds for the server that it has not read yet (rx_queue of the server's socket for this
    client in /proc/net/tcp): more than zero while the server has stopped reading from that client."""
    wanted_local, wanted_remote = f":{server_port:04X}", f":{client_port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted_local) and fields[2].endswith(wanted_remote):
                return int(fields[4].split(":")[1], 16)
    return 0
