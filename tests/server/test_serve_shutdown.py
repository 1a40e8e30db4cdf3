"""Ctrl-C (SIGINT): every connection is closed with 1001 (going away) and the process exits 0, promptly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serve_support import WSINSPECT, Server, of_type
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def test_sigint_closes_every_client_with_1001(serve: Callable[..., Server]) -> None:
    server = serve()

    async def main() -> tuple[list[int | None], list[str | None], float]:
        clients = [await connect(server.url, proxy=None, ping_interval=None, open_timeout=5, close_timeout=5)
                   for _ in range(2)]
        for index, ws in enumerate(clients):
            await ws.send(f"client {index}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"client {index}"
        started = time.monotonic()
        os.kill(server.pid, signal.SIGINT)
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            await asyncio.wait_for(ws.wait_closed(), 5)
        rcvd = [ws.protocol.close_rcvd for ws in clients]
        return [r.code if r else None for r in rcvd], [r.reason if r else None for r in rcvd], started

    codes, reasons, signalled = asyncio.run(asyncio.wait_for(main(), 20))
    server.proc.wait(5)
    assert time.monotonic() - signalled < 3  # from SIGINT to exit
    assert codes == [1001, 1001]
    assert reasons == ["server shutting down"] * 2
    assert server.stop() == 0
    assert "stopping: closing every connection with 1001 (going away)" in server.stdout
    assert "Summary" in server.stdout
    closes = of_type(server.events(), "close")
    assert sorted((c["stream"], c["direction"], c["code"]) for c in closes) == [
        (0, "c2s", 1001), (0, "s2c", 1001), (1, "c2s", 1001), (1, "s2c", 1001)]
    # The server started each closing handshake; the clients answered.
    assert {(c["direction"], c["initiator"]) for c in closes} == {("s2c", True), ("c2s", False)}
    assert all(e["clean"] for e in of_type(server.events(), "connection_closed"))


def test_sigint_with_a_client_that_never_answers(serve: Callable[..., Server]) -> None:
    """A peer that ignores the close frame is dropped after the grace period: the exit still takes about 3 s at
    most."""
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
        started = time.monotonic()
        assert server.stop(timeout=6) == 0
        elapsed = time.monotonic() - started
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got.startswith(b"\x88") and got[2:4] == (1001).to_bytes(2, "big")
    assert elapsed < 3.5, elapsed
    assert "#0 closed (" in server.stdout


def test_sigint_with_no_client_exits_0(serve: Callable[..., Server]) -> None:
    server = serve()
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 2
    assert re.search(r"conversations +0\b", server.stdout)


def test_sigint_right_after_the_ready_line_is_graceful(tmp_path: Path) -> None:
    codes = []
    for _ in range(4):
        proc = subprocess.Popen([*WSINSPECT, "serve", "--port", "0", "--color", "never"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=tmp_path)
        try:
            assert proc.stdout is not None
            for _ in range(5):
                if b"Ctrl-C closes" in proc.stdout.readline():
                    break
            os.kill(proc.pid, signal.SIGINT)
            proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        codes.append(proc.returncode)
    assert codes == [0] * 4
