"""The peers ``tests/commands/test_connect.py`` runs ``wsinspect connect`` against, and the runner that reads back
what it did: a ``websockets`` server in a thread, hand-written servers on plain sockets (for the rules no library
breaks), test certificates for wss://, Node's ``ws`` and ``wsinspect serve --misbehave`` as child processes.

Expected values never come from here: the tests take them from the RFC, from what they told a peer to do, from the
peer's own account (``received``, ``requests``) or from tshark.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

websockets_server = pytest.importorskip("websockets.asyncio.server")
ConnectionClosed = pytest.importorskip("websockets.exceptions").ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
NODE_PEER = Path(__file__).resolve().parent / "node_ws"
RUN_TIMEOUT = 30  # seconds any one wsinspect run may take before the test fails
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3, the GUID every accept key is derived with

# wss:// uses the server tests' certificates (tests/server is not a package), re-exported for test_connect.
sys.path.insert(0, str(ROOT / "tests" / "server"))
from tls_support import Certificates as Certificates  # noqa: E402
from tls_support import make_certificates as make_certificates  # noqa: E402

# -- running wsinspect connect -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    events: list[dict[str, Any]]  # the --json lines

    @property
    def shown(self) -> str:
        """The output with line folds undone (a long line is folded at the console's width)."""
        return " ".join(self.out.split())

    def of(self, kind: str, direction: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind and (direction is None or e["direction"] == direction)]


def connect(url: str, *args: str, stdin: bytes = b"", tmp_path: Path, timeout: float = RUN_TIMEOUT) -> Run:
    """``wsinspect connect URL ARGS --json FILE --color never`` in a child process, stdin given (and then closed)."""
    json_path = tmp_path / f"connect-{time.monotonic_ns()}.jsonl"
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    environment.update({"COLUMNS": "140", "PYTHONIOENCODING": "utf-8"})
    done = subprocess.run([sys.executable, "-m", "wsinspect", "connect", url, *args, "--json", str(json_path),
                           "--color", "never"], input=stdin, capture_output=True, env=environment, cwd=ROOT,
                          timeout=timeout, check=False)
    events = [json.loads(line) for line in json_path.read_text("ascii").splitlines()] if json_path.exists() else []
    return Run(done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8"), events)


def frames(run: Run, direction: str | None = None) -> list[dict[str, Any]]:
    return run.of("frame", direction)


def texts(run: Run, direction: str) -> list[str]:
    return [m["text"] for m in run.of("message", direction) if m["text"] is not None]


# -- a websockets server in a thread ----------------------------------------------------------------------------------

Handler = Callable[[Any], Awaitable[None]]


class WebsocketsServer:
    """A ``websockets`` asyncio server on 127.0.0.1, a free port, on its own event loop in a daemon thread. It keeps
    what it received, so a test can compare the server's own account with wsinspect's."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.received: list[str | bytes] = []
        self.requests: list[Any] = []
        self.extensions: list[str | None] = []

        async def tracked(connection: Any) -> None:
            self.requests.append(connection.request)
            self.extensions.append(connection.response.headers.get("Sec-WebSocket-Extensions"))
            await handler(connection)

        async def start() -> Any:
            return await websockets_server.serve(tracked, host, 0, **options)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, path: str = "/", scheme: str = "ws", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def echo_and_keep(started: list[WebsocketsServer]) -> Handler:
    async def echo(connection: Any) -> None:
        server = next(s for s in started if connection.request in s.requests)
        async for message in connection:
            server.received.append(message)
            # A client that closes right after its last message may close before its echo goes out: the messages
            # still buffered are read all the same.
            with contextlib.suppress(ConnectionClosed):
                await connection.send(message)

    return echo


# -- a hand-written server, for what no library does ------------------------------------------------------------------

class RawServer:
    """One connection on a plain socket, served by ``script(socket)`` in a thread: for servers that break rules."""

    def __init__(self, script: Callable[[socket.socket], None], *, receive_buffer: int | None = None) -> None:
        self.listener = socket.socket()
        if receive_buffer is not None:  # set before listening, so the accepted connection has it from the start
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(RUN_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script: Callable[[socket.socket], None]) -> None:
        try:
            connection, _ = self.listener.accept()
            with connection:
                connection.settimeout(RUN_TIMEOUT)
                script(connection)
        except BaseException as error:  # kept for the test to see
            self.errors.append(error)

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.listener.close()
        self.thread.join(RUN_TIMEOUT)


def read_request(connection: socket.socket) -> dict[str, str]:
    """Read an opening request; its header fields by lower-case name."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        assert chunk, "the client closed before its request was complete"
        data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode("ascii").split("\r\n")
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}


def accept_for(key: str) -> str:
    """RFC 6455 4.2.2 item 5.4, computed here, not by wsinspect."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def switching_protocols(key: str, accept: str | None = None) -> bytes:
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept or accept_for(key)}\r\n\r\n").encode("ascii")


def unmasked_frame(opcode: int, payload: bytes, *, mask: bytes | None = None) -> bytes:
    """A server frame built by hand from RFC 6455 5.2's layout (payloads under 126 bytes)."""
    assert len(payload) < 126
    if mask is None:
        return bytes([0x80 | opcode, len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def read_until_closed(connection: socket.socket, limit: float = 10.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


# -- other peers and probes ---------------------------------------------------------------------------------------

def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def node_server(directory: Path, mode: str) -> Iterator[int]:
    process = subprocess.Popen(["node", "echo_server.js", mode], cwd=directory, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        ready = threading.Timer(20, process.kill)  # a server that never says it listens is stopped
        ready.start()
        line = process.stdout.readline().decode()
        ready.cancel()
        assert line.startswith("listening "), (line, process.stderr.read() if process.stderr else b"")
        yield int(line.split()[1])
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server exits when its stdin ends
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def misbehaving_server(kind: str) -> Iterator[int]:
    """``wsinspect serve --misbehave KIND`` on a free port; stopped with SIGINT (then killed) by its PID."""
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "serve", "--port", "0", "--quiet", "--misbehave",
                              kind, "--close-timeout", "10", "--color", "never"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    try:
        assert child.stdout is not None
        watchdog = threading.Timer(30, child.kill)  # a server that never says where it listens is stopped
        watchdog.start()
        port = None
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace")
            if "mode on ws://" in line:
                port = int(line.split("mode on ws://")[1].split("/")[0].rsplit(":", 1)[1])
                break
        watchdog.cancel()
        assert port is not None, "serve did not say where it listens"
        time.sleep(0.2)  # its SIGINT handler goes in just after that line
        yield port
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
