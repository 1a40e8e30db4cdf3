"""``wsinspect proxy`` between real peers on loopback: the ``websockets`` library on both sides, headless Chromium,
TLS on either side with a test CA, an upstream that refuses, and upstreams that cannot be reached.

Each peer's socket is tapped (``Tapped``: what its transport wrote and what it received), so "relayed unchanged" is
checked byte for byte between the two libraries, not against wsinspect's own account. What the proxy decoded
(``--json``, ``--record`` read back, tshark) is checked against what the test told the peers to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_server = pytest.importorskip("websockets.asyncio.server")
websockets_exceptions = pytest.importorskip("websockets.exceptions")
websockets_http11 = pytest.importorskip("websockets.http11")
websockets_datastructures = pytest.importorskip("websockets.datastructures")

ROOT = Path(__file__).resolve().parents[2]
# The browser driver and the test certificates are the server tests' (tests/server is not a package).
sys.path.insert(0, str(ROOT / "tests" / "server"))
from serve_support import raw_exchange, split_response  # noqa: E402
from tls_support import make_certificates  # noqa: E402

READY = "Ctrl-C cuts every connection and stops."
BANNER = re.compile(r"wsinspect proxy: (wss?)://127\.0\.0\.1:(\d+)/")
RUN_TIMEOUT = 30.0


# -- taps: what each library's socket really carried -----------------------------------------------------------------

@dataclass
class Tap:
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)


def tapped(base: type[Any], registry: list[Any]) -> type[Any]:
    """A ``websockets`` connection class that keeps every byte its transport wrote and every byte it received."""

    class Tapped(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.tap = Tap()
            registry.append(self)
            write = transport.write  # type: ignore[attr-defined]

            def write_and_keep(data: bytes) -> None:
                self.tap.sent += data
                write(data)

            transport.write = write_and_keep  # type: ignore[attr-defined]
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            self.tap.received += data
            super().data_received(data)

    return Tapped


# -- the upstream: a websockets server in a thread of its own --------------------------------------------------------

Handler = Callable[[Any], Awaitable[None]]


async def echo(connection: Any) -> None:
    with contextlib.suppress(websockets_exceptions.ConnectionClosed):
        async for message in connection:
            await connection.send(message)


class Upstream:
    """A ``websockets`` server on 127.0.0.1 (a free port), on its own event loop in a daemon thread; ``connections``
    are its tapped connections, in the order they were accepted."""

    def __init__(self, handler: Handler = echo, **options: Any) -> None:
        self.connections: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        factory = tapped(websockets_server.ServerConnection, self.connections)

        async def start() -> Any:
            return await websockets_server.serve(handler, "127.0.0.1", 0, create_connection=factory, **options)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, path: str = "/", *, scheme: str = "ws", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def start(handler: Handler = echo, **options: Any) -> Upstream:
        started.append(Upstream(handler, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# -- the proxy: `python -m wsinspect proxy` as a child process -------------------------------------------------------

class _Reader(threading.Thread):
    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.lock = threading.Lock()

    def run(self) -> None:
        while chunk := os.read(self.pipe.fileno(), 65536):
            with self.lock:
                self.data += chunk

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", "replace")


class Proxy:
    """One ``wsinspect proxy`` process listening on a free loopback port, stopped with SIGINT by its PID."""

    def __init__(self, upstream_url: str, *args: str, directory: Path, json_log: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.json_path = directory / "proxy.jsonl" if json_log else None
        cmd = [sys.executable, "-m", "wsinspect", "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream_url,
               "--color", "never", *(["--json", str(self.json_path)] if self.json_path else []), *args]
        environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        environment.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"})
        # cwd=ROOT: `-m wsinspect` runs this checkout, not an installed copy.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=environment, cwd=ROOT)
        self.pid = self.proc.pid
        self._out, self._err = _Reader(self.proc.stdout), _Reader(self.proc.stderr)
        self._out.start()
        self._err.start()
        self.returncode: int | None = None
        deadline = time.monotonic() + 15
        while READY not in self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the proxy did not start: {cmd}\n{self.stdout}\n{self.stderr}")
            time.sleep(0.02)
        match = BANNER.search(self.stdout)
        assert match, self.stdout
        self.scheme, self.port = match.group(1), int(match.group(2))

    @property
    def stdout(self) -> str:
        return self._out.text()

    @property
    def stderr(self) -> str:
        return self._err.text()

    @property
    def shown(self) -> str:
        """The output with line folds undone."""
        return " ".join(self.stdout.split())

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.shown:
            assert time.monotonic() < deadline, f"{text!r} not in the proxy's output:\n{self.stdout[-4000:]}"
            time.sleep(0.02)
        return self.shown

    def stop(self) -> int:
        if self.returncode is None:
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGINT)
            try:
                self.returncode = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("the proxy did not exit within 10 s of SIGINT") from None
            self._out.join(5)
            self._err.join(5)
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.returncode = self.proc.returncode

    def events(self) -> list[dict[str, Any]]:
        """The --json lines (complete once stopped)."""
        assert self.json_path is not None
        return [json.loads(line) for line in self.json_path.read_text("ascii").splitlines()]

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(upstream_url: str, *args: str, json_log: bool = True) -> Proxy:
        started.append(Proxy(upstream_url, *args, directory=tmp_path / f"proxy{len(started)}", json_log=json_log))
        return started[-1]

    yield start
    for process in started:
        if process.returncode is None:
            try:
                process.stop()
            finally:
                process.kill()


def of(events: list[dict[str, Any]], kind: str, direction: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and (direction is None or e["direction"] == direction)]


def run(coroutine: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, RUN_TIMEOUT)

    return asyncio.run(bounded())


def split_head(stream: bytes | bytearray) -> tuple[list[bytes], bytes]:
    head, blank, rest = bytes(stream).partition(b"\r\n\r\n")
    assert blank, "no complete header block"
    return head.split(b"\r\n"), rest


# -- relaying --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["deflate", None], ids=["compressed", "uncompressed"])
def test_bytes_pass_unchanged_and_extensions_are_agreed_end_to_end(
        upstream: Callable[..., Upstream], proxy: Callable[..., Proxy], compression: str | None) -> None:
    server = upstream(compression=compression)
    relay = proxy(server.url("/chat?room=1"))
    clients: list[Any] = []
    big = os.urandom(70_000)  # over 65,535 bytes: the 64-bit length form (RFC 6455 5.2)

    async def converse() -> list[Any]:
        async with websockets_client.connect(relay.url("/chat?room=1"), compression=compression,
                                             create_connection=tapped(websockets_client.ClientConnection,
                                                                      clients)) as connection:
            await connection.send("hello through the proxy")
            await connection.send(big)
            await connection.send(["frag", "mented"])  # one message in two frames
            await connection.ping(b"are you there")
            return [await connection.recv() for _ in range(3)]

    assert run(converse()) == ["hello through the proxy", big, "fragmented"]
    [client], [server_side] = clients, server.connections
    relay.wait_for("closed (")

    # Upstream to client: every byte, the 101 included.
    assert bytes(client.tap.received) == bytes(server_side.tap.sent)
    # Client to upstream: every byte but the Host field's value, which names the upstream (RFC 6455 4.1, item 4).
    sent_lines, sent_rest = split_head(client.tap.sent)
    got_lines, got_rest = split_head(server_side.tap.received)
    assert got_rest == sent_rest
    for sent, got in zip(sent_lines, got_lines, strict=True):
        if sent.lower().startswith(b"host:"):
            assert sent == f"Host: 127.0.0.1:{relay.port}".encode()
            assert got == f"Host: 127.0.0.1:{server.port}".encode()
        else:
            assert got == sent

    offered = client.request.headers.get("Sec-WebSocket-Extensions")
    agreed = client.response.headers.get("Sec-WebSocket-Extensions")
    assert server_side.request.headers.get("Sec-WebSocket-Extensions") == offered  # the client's own offer
    assert server_side.response.headers.get("Sec-WebSocket-Extensions") == agreed  # the server's own answer
    if compression:
        assert offered.startswith("permessage-deflate") and agreed.startswith("permessage-deflate")
    else:
        assert offered is None and agreed is None

    assert relay.stop() == 0
    events = relay.events()
    [request] = of(events, "handshake_request")
    assert dict(request["headers"])["Host"] == f"127.0.0.1:{relay.port}"  # decoded as the client sent it
    [response] = of(events, "handshake_response")
    assert response["upgraded"] and response["extensions"] == ([agreed] if compression else [])
    for direction in ("c2s", "s2c"):  # the client sent all three before the first echo came back
        messages = [bytes.fromhex(m["data"]) for m in of(events, "message", direction)]
        assert messages == [b"hello through the proxy", big, b"fragmented"]
    data_frames = [f for f in of(events, "frame") if f["websocket.opcode"] in (1, 2)]
    assert {f["websocket.rsv"] for f in data_frames} == ({4} if compression else {0})  # RSV1: compressed
    pings = [f for f in of(events, "frame") if f["opcode_name"] in ("Ping", "Pong")]
    assert [(f["direction"], f["opcode_name"]) for f in pings] == [("c2s", "Ping"), ("s2c", "Pong")]
    assert [(c["direction"], c["code"]) for c in of(events, "close")] == [("c2s", 1000), ("s2c", 1000)]
    assert not of(events, "violation")


def test_keep_host_sends_the_clients_host_field(upstream: Callable[..., Upstream],
                                                 proxy: Callable[..., Proxy]) -> None:
    server = upstream()
    relay = proxy(server.url(), "--keep-host")

    async def converse() -> None:
        async with websockets_client.connect(relay.url()) as connection:
            await connection.send("x")
            await connection.recv()

    run(converse())
    assert server.connections[0].request.headers["Host"] == f"127.0.0.1:{relay.port}"
    assert "--keep-host" in relay.stdout


def test_many_clients_at_once_each_with_its_own_upstream_connection(upstream: Callable[..., Upstream],
                                                                     proxy: Callable[..., Proxy]) -> None:
    received: dict[str, list[str]] = {}

    async def keep(connection: Any) -> None:
        mine = received.setdefault(connection.request.path, [])
        async for message in connection:
            mine.append(message)
            await connection.send(message)

    server = upstream(keep)
    relay = proxy(server.url(), "--compact")
    clients = 20

    async def one(number: int) -> list[str]:
        async with websockets_client.connect(relay.url(f"/client/{number}")) as connection:
            answers = []
            for turn in range(3):
                await connection.send(f"client {number} message {turn}")
                answers.append(await connection.recv())
            return answers

    async def everyone() -> list[list[str]]:
        return list(await asyncio.gather(*(one(number) for number in range(clients))))

    answers = run(everyone())
    expected = [[f"client {number} message {turn}" for turn in range(3)] for number in range(clients)]
    assert answers == expected
    assert len(server.connections) == clients
    assert received == {f"/client/{number}": expected[number] for number in range(clients)}
    assert relay.stop() == 0
    events = relay.events()
    upgraded = {e["stream"] for e in of(events, "handshake_response") if e["upgraded"]}
    assert len(upgraded) == clients
    for number in range(clients):
        [request] = [e for e in of(events, "handshake_request") if e["target"] == f"/client/{number}"]
        texts = [m["text"] for m in of(events, "message", "c2s") if m["stream"] == request["stream"]]
        assert texts == expected[number]


def _hex(data: bytes) -> str:
    return " ".join(f"{byte:02x}" for byte in data)


@pytest.mark.parametrize("view", ["--detail", "--explain", "--flow", "--compact", "-Y"])
def test_serves_views_show_the_relayed_conversation(upstream: Callable[..., Upstream], proxy: Callable[..., Proxy],
                                                     view: str) -> None:
    server = upstream(compression=None)
    relay = proxy(server.url(), *([view, "websocket.opcode == 8"] if view == "-Y" else [view]))

    async def converse() -> None:
        async with websockets_client.connect(relay.url("/views"), compression=None) as connection:
            await connection.send("hello")
            await connection.recv()

    run(converse())
    relay.wait_for("1000")  # the closing handshake's frames are decoded
    assert relay.stop() == 0
    lines = relay.stdout.splitlines()
    closes = [line for line in lines if "Close" in line and "1000" in line]
    if view == "--detail":
        # The echo as RFC 6455 5.2 lays it out: FIN and opcode 1 (0x81), length 5, unmasked, then the text.
        assert _hex(b"\x81\x05hello") in relay.stdout
    elif view == "--explain":
        assert "RFC 6455 5.3" in relay.stdout  # why the client masks, said where its first frame appears
    elif view == "--flow":
        assert len(closes) == 2 and "▶" in closes[0] and "◀" in closes[1]  # client to server, then back
    elif view == "--compact":
        [handshake] = [line for line in lines if "GET /views" in line]
        assert "101" in handshake
    else:
        rows = [line for line in lines if line.startswith("#0 ") and "→" in line]  # one per frame shown
        assert rows == closes


# -- the upstream's refusals and failures ----------------------------------------------------------------------------

def test_a_refusal_reaches_the_client_unchanged_and_is_explained(upstream: Callable[..., Upstream],
                                                                 proxy: Callable[..., Proxy]) -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(403, "no entry without a token\n")

    server = upstream(process_request=refuse)
    relay = proxy(server.url("/private"))

    async def attempt() -> Any:
        with pytest.raises(websockets_exceptions.InvalidStatus) as refused:
            async with websockets_client.connect(relay.url("/private")):
                pass
        return refused.value.response

    response = run(attempt())
    assert response.status_code == 403 and response.body == b"no entry without a token\n"
    shown = relay.wait_for("✗ refused: 403 Forbidden")
    assert "no entry without a token" in shown  # the upstream's own words
    assert relay.stop() == 0
    [answer] = of(relay.events(), "handshake_response")
    assert (answer["status"], answer["upgraded"], answer["body"]) == (403, False, "no entry without a token\n")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


UPGRADE = (b"GET / HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_an_upstream_that_is_down_gets_the_client_a_502(proxy: Callable[..., Proxy]) -> None:
    port = _closed_port()
    relay = proxy(f"ws://127.0.0.1:{port}/")
    status, headers, body = split_response(raw_exchange(relay.port, UPGRADE))
    assert status == 502 and headers["content-type"].startswith("text/plain")
    assert f"127.0.0.1:{port}" in body.decode() and "connection refused" in body.decode()
    assert "unreachable" in relay.wait_for("502 Bad Gateway")

    async def attempt() -> int:
        with pytest.raises(websockets_exceptions.InvalidStatus) as refused:
            async with websockets_client.connect(relay.url()):
                pass
        return int(refused.value.response.status_code)

    assert run(attempt()) == 502
    assert relay.stop() == 0
    assert [r["status"] for r in of(relay.events(), "handshake_response")] == [502, 502]


def test_an_upstream_name_that_does_not_resolve_gets_a_502(proxy: Callable[..., Proxy]) -> None:
    relay = proxy("ws://no-such-host.invalid/", "--open-timeout", "5")  # .invalid never resolves (RFC 2606)
    status, _, body = split_response(raw_exchange(relay.port, UPGRADE, timeout=10))
    assert status == 502 and "no-such-host.invalid" in body.decode()


def test_an_upstream_that_never_answers_tls_gets_a_502_after_the_open_timeout(proxy: Callable[..., Proxy]) -> None:
    with socket.socket() as silent:  # TCP connects (the kernel accepts into the backlog); nobody ever speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        relay = proxy(f"wss://127.0.0.1:{silent.getsockname()[1]}/", "--open-timeout", "1", "--insecure")
        started = time.monotonic()
        status, _, _ = split_response(raw_exchange(relay.port, UPGRADE, timeout=10))
        waited = time.monotonic() - started
    assert status == 502 and 0.9 <= waited < 5


# -- what a client can make the proxy hold or wait for -------------------------------------------------------------

def test_a_request_header_block_over_max_header_gets_431_and_never_reaches_the_upstream(
        upstream: Callable[..., Upstream], proxy: Callable[..., Proxy]) -> None:
    server = upstream()
    relay = proxy(server.url(), "--max-header", "4k")
    padding = b"".join(b"X-Padding-%d: %s\r\n" % (number, b"y" * 100) for number in range(60))  # about 7 KB
    status, _, body = split_response(raw_exchange(relay.port, UPGRADE.replace(b"\r\n\r\n", b"\r\n" + padding
                                                                                        + b"\r\n")))
    assert status == 431 and b"4096" in body
    assert "refused: 431" in relay.wait_for("431")
    assert server.connections == []


def test_a_request_never_finished_is_dropped_after_the_handshake_timeout(
        upstream: Callable[..., Upstream], proxy: Callable[..., Proxy]) -> None:
    server = upstream()
    relay = proxy(server.url(), "--handshake-timeout", "1")
    started = time.monotonic()
    answer = raw_exchange(relay.port, UPGRADE[:30], timeout=10)  # half a request line, then nothing
    assert answer == b"" and 0.9 <= time.monotonic() - started < 5
    assert server.connections == []
    relay.wait_for("no complete request within 1 s (--handshake-timeout)")


def test_a_connection_nothing_crosses_is_closed_after_the_idle_timeout(upstream: Callable[..., Upstream],
                                                                        proxy: Callable[..., Proxy]) -> None:
    server = upstream()
    relay = proxy(server.url(), "--idle-timeout", "1")

    async def wait_quietly() -> tuple[float, Any]:
        async with websockets_client.connect(relay.url(), ping_interval=None) as connection:
            started = time.monotonic()
            await connection.wait_closed()
            return time.monotonic() - started, connection.close_code

    waited, code = run(wait_quietly())
    assert 0.9 <= waited < 5 and code == 1006  # TCP cut without a close frame (RFC 6455 7.1.5)
    relay.wait_for("nothing in either direction for 1 s (--idle-timeout)")


def test_connections_over_max_connections_get_503(upstream: Callable[..., Upstream],
                                                  proxy: Callable[..., Proxy]) -> None:
    server = upstream()
    relay = proxy(server.url(), "--max-connections", "2")
    holders = [socket.create_connection(("127.0.0.1", relay.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted
        status, headers, _ = split_response(raw_exchange(relay.port, UPGRADE))
        assert status == 503 and headers["retry-after"] == "1"
    finally:
        for holder in holders:
            holder.close()
    assert "--max-connections" in relay.wait_for("got 503")


# -- TLS on either side ----------------------------------------------------------------------------------------------

def test_a_wss_upstream_is_checked_against_cafile(tmp_path: Path, upstream: Callable[..., Upstream],
                                                   proxy: Callable[..., Proxy]) -> None:
    certificates = make_certificates(tmp_path)
    server = upstream(ssl=certificates.server_context())

    trusted = proxy(server.url(scheme="wss", host="localhost"), "--cafile", str(certificates.ca))

    async def converse(url: str) -> str:
        async with websockets_client.connect(url) as connection:
            await connection.send("over TLS upstream")
            return str(await connection.recv())

    assert run(converse(trusted.url())) == "over TLS upstream"
    shown = trusted.wait_for("certificate checked")
    assert "upstream TLS: TLSv1.3" in shown and "localhost, issued by wsinspect test CA" in shown
    # The wss:// upstream was asked for localhost: its Host field says so (RFC 6455 4.1, item 4).
    assert server.connections[0].request.headers["Host"] == f"localhost:{server.port}"

    untrusted = proxy(server.url(scheme="wss", host="localhost"))  # the system's CAs do not know the test CA
    status, _, body = split_response(raw_exchange(untrusted.port, UPGRADE))
    assert status == 502 and "certificate was not accepted" in body.decode()
    assert "certificate was not accepted" in untrusted.wait_for("502 Bad Gateway")

    unchecked = proxy(server.url(scheme="wss", host="localhost"), "--insecure")
    assert run(converse(unchecked.url())) == "over TLS upstream"
    assert "the certificate was NOT checked (--insecure)" in unchecked.wait_for("NOT checked")


def test_a_wss_listener_with_certfile_and_keyfile(tmp_path: Path, upstream: Callable[..., Upstream],
                                                   proxy: Callable[..., Proxy]) -> None:
    certificates = make_certificates(tmp_path)
    server = upstream()
    relay = proxy(server.url(), "--certfile", str(certificates.chain), "--keyfile", str(certificates.key))
    assert relay.scheme == "wss"

    async def converse() -> str:
        async with websockets_client.connect(relay.url(host="localhost"),
                                             ssl=certificates.client_context()) as connection:
            await connection.send("over TLS to the proxy")
            return str(await connection.recv())

    assert run(converse()) == "over TLS to the proxy"
    assert relay.stop() == 0
    assert [m["text"] for m in of(relay.events(), "message")] == ["over TLS to the proxy"] * 2


def test_a_tls_handshake_never_started_is_cut_after_the_handshake_timeout(
        tmp_path: Path, upstream: Callable[..., Upstream], proxy: Callable[..., Proxy]) -> None:
    certificates = make_certificates(tmp_path)
    relay = proxy(upstream().url(), "--certfile", str(certificates.chain), "--keyfile", str(certificates.key),
                  "--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as silent:
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed by the proxy (or reset), never a byte
            assert silent.recv(1) == b""
        assert 0.9 <= time.monotonic() - started < 5


@pytest.mark.parametrize("hard", [20_000, 256])
def test_the_open_files_limit_is_raised_for_max_connections(hard: int) -> None:
    """Two descriptors a connection: 1,024 connections need over 2,048, more than a common soft limit of 1,024."""
    resource = pytest.importorskip("resource")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip(f"this process may not raise its hard limit on open files to {hard}")

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    started = subprocess.Popen([sys.executable, "-m", "wsinspect", "proxy", "--listen", "127.0.0.1:0", "--upstream",
                                "ws://127.0.0.1:1/", "--max-connections", "1024", "--color", "never"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limited)
    try:
        assert started.stdout is not None
        for line in iter(started.stdout.readline, b""):
            if READY in line.decode():
                break
        else:
            raise AssertionError("the proxy ended before it was ready")
        time.sleep(0.2)
        with open(f"/proc/{started.pid}/limits", encoding="ascii") as limits:
            soft = int(next(line for line in limits if line.startswith("Max open files")).split()[3])
    finally:
        os.kill(started.pid, signal.SIGINT)
        _, errors = started.communicate(timeout=10)
    if hard >= 2 * 1024 + 64:
        assert soft >= 2 * 1024 and b"ulimit" not in errors
    else:
        assert soft == hard and b"ulimit -n" in errors and b"beyond about" in errors


def test_bad_arguments_are_one_line_and_exit_status_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for args, said in [([], "--upstream"), (["--upstream", "http://example/"], "is an HTTP URL"),
                       (["--upstream", "ws://127.0.0.1:1/", "--certfile", str(garbage)], "not a PEM certificate"),
                       (["--upstream", "ws://127.0.0.1:1/", "--cafile", str(garbage)], "wss://"),
                       (["--upstream", "ws://127.0.0.1:1/", "--listen", "::1:80"], "brackets")]:
        done = subprocess.run([sys.executable, "-m", "wsinspect", "proxy", *args, "--color", "never"], cwd=ROOT,
                              capture_output=True, timeout=RUN_TIMEOUT, check=False)
        assert done.returncode == 2, (args, done)
        assert said in done.stderr.decode(), (args, done.stderr)


# -- what the proxy recorded, read back ------------------------------------------------------------------------------

def test_record_is_read_back_by_read_and_tshark(tmp_path: Path, upstream: Callable[..., Upstream],
                                                proxy: Callable[..., Proxy]) -> None:
    server = upstream(compression=None)
    capture = tmp_path / "proxied.pcapng"
    relay = proxy(server.url(), "--record", str(capture))
    ports: list[int] = []

    async def converse() -> None:
        async with websockets_client.connect(relay.url("/recorded"), compression=None) as connection:
            ports.append(connection.local_address[1])
            await connection.send("one")
            await connection.recv()
            await connection.send(b"\x01\x02")
            await connection.recv()

    run(converse())
    relay.wait_for("closed (")
    assert relay.stop() == 0

    done = subprocess.run([sys.executable, "-m", "wsinspect", "read", str(capture), "--json"], cwd=ROOT,
                          capture_output=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    [opened] = of(events, "connection")
    assert (opened["client"], opened["server"]) == (f"127.0.0.1:{ports[0]}", f"127.0.0.1:{relay.port}")
    assert [e["target"] for e in of(events, "handshake_request")] == ["/recorded"]
    messages = [(m["direction"], bytes.fromhex(m["data"])) for m in of(events, "message")]
    assert messages == [("c2s", b"one"), ("s2c", b"one"), ("c2s", b"\x01\x02"), ("s2c", b"\x01\x02")]
    assert [(c["direction"], c["code"]) for c in of(events, "close")] == [("c2s", 1000), ("s2c", 1000)]

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian package 'tshark'): read back by wsinspect only")
    fields = subprocess.run([tshark, "-r", str(capture), "-Y", "websocket", "-T", "fields", "-e", "tcp.srcport",
                             "-e", "websocket.opcode", "-e", "websocket.mask"], capture_output=True,
                            timeout=RUN_TIMEOUT, check=True).stdout.decode().split("\n")
    rows = [line.split("\t") for line in fields if line.strip()]
    client, proxied = str(ports[0]), str(relay.port)
    assert rows == [[client, "1", "1"], [proxied, "1", "0"], [client, "2", "1"], [proxied, "2", "0"],
                    [client, "8", "1"], [proxied, "8", "0"]]


# -- backpressure ----------------------------------------------------------------------------------------------------

MESSAGE = 1 << 20
OFFERED = 64  # messages of MESSAGE bytes: far more than the kernel's socket buffers on the way can hold


@pytest.mark.parametrize("reader", ["client", "upstream"])
def test_a_side_that_does_not_read_stops_the_other(upstream: Callable[..., Upstream], proxy: Callable[..., Proxy],
                                                   reader: str) -> None:
    """One side sends 64 MiB as fast as it may; the other reads nothing for a while. The sender must stall (the
    proxy stopped reading from it), the proxy must not hold what the sender offered, and once reading starts every
    message arrives intact."""
    offered = [bytes([number]) * MESSAGE for number in range(OFFERED)]
    progress = {"sent": 0, "received": []}
    reading = threading.Event()

    async def flood(connection: Any) -> None:
        for message in offered:
            await connection.send(message)
            progress["sent"] += 1

    async def collect(connection: Any) -> list[bytes]:
        await asyncio.to_thread(reading.wait, RUN_TIMEOUT)
        return [await connection.recv() for _ in offered]

    async def server_side(connection: Any) -> None:
        if reader == "client":
            await flood(connection)
            await connection.wait_closed()
        else:
            progress["received"] = await collect(connection)

    # max_queue=1: a websockets peer that is not asked for messages stops reading its socket after one.
    server = upstream(server_side, compression=None, max_queue=1, max_size=None)
    relay = proxy(server.url(), "--max-queue", "64k", "--quiet", json_log=False)
    baseline = relay.rss_kib()
    peaks: list[int] = []
    stalled: list[int] = []

    async def client_side() -> list[bytes]:
        async with websockets_client.connect(relay.url(), compression=None, max_queue=1,
                                             max_size=None) as connection:
            if reader == "client":
                return await collect(connection)
            await flood(connection)
            while len(progress["received"]) < OFFERED:  # type: ignore[arg-type]
                await asyncio.sleep(0.05)
            return []

    async def watch() -> list[bytes]:
        conversation = asyncio.ensure_future(client_side())
        # Stalled: nothing more sent for a whole second (polled, so a busy machine only makes it take longer).
        history: list[int] = []
        deadline = time.monotonic() + 20
        while len(history) < 11 or history[-1] != history[-11]:
            assert time.monotonic() < deadline, f"the sender never stalled: {history[-1]} MiB sent"
            history.append(progress["sent"])  # type: ignore[arg-type]
            peaks.append(relay.rss_kib())
            await asyncio.sleep(0.1)
        assert history[-1] < OFFERED // 2, f"{history[-1]} MiB went out before the sender stalled"
        stalled.append(history[-1])
        reading.set()
        return await conversation

    got = run(watch())
    print(f"reader={reader}: the sender stalled after {stalled[0]} of {OFFERED} MiB; the proxy's peak RSS "
          f"+{(max(peaks) - baseline) / 1024:.1f} MiB")  # shown with -s
    assert (got if reader == "client" else progress["received"]) == offered
    assert max(peaks) - baseline < 40 * 1024, f"the proxy grew by {(max(peaks) - baseline) // 1024} MiB"
    assert relay.stop() == 0


def test_a_flood_of_tiny_frames_does_not_hold_up_another_client(upstream: Callable[..., Upstream],
                                                                proxy: Callable[..., Proxy]) -> None:
    """30,000 empty frames in one write, each a row of the live log: decoding them takes seconds, and another
    client's echo must not wait for all of them (the flood is decoded a chunk per turn)."""
    flood, counted = 30_000, {"messages": 0}

    async def count_or_echo(connection: Any) -> None:
        async for message in connection:
            if connection.request.path == "/flood":
                counted["messages"] += 1
            else:
                await connection.send(message)

    server = upstream(count_or_echo, compression=None)
    relay = proxy(server.url(), json_log=False)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=RUN_TIMEOUT) as flooder:
        flooder.sendall(UPGRADE.replace(b"GET / ", b"GET /flood "))
        assert flooder.recv(4096).startswith(b"HTTP/1.1 101")
        flooder.sendall(b"\x81\x80\x00\x00\x00\x00" * flood)  # FIN, text, masked (RFC 6455 5.3), empty

        async def round_trip() -> float:
            started = time.monotonic()
            async with websockets_client.connect(relay.url("/meanwhile"), compression=None) as connection:
                await connection.send("not behind the flood")
                assert await connection.recv() == "not behind the flood"
            return time.monotonic() - started

        waited = run(round_trip())
        during = counted["messages"]
        deadline = time.monotonic() + 120
        while counted["messages"] < flood:
            assert time.monotonic() < deadline, f"only {counted['messages']} of {flood} messages arrived"
            time.sleep(0.1)
    print(f"another client's round trip: {waited:.2f} s, with {during} of {flood} flood messages through")
    assert during < flood, "the flood was through before the other client was served: nothing was tested"
    assert waited < 3


# -- a browser -------------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>through the proxy</title>
<script>
window.got = [];
const ws = new WebSocket(`ws://${location.host}/echo`);
ws.onopen = () => ws.send("hello from chromium through the proxy");
ws.onmessage = (event) => { window.got.push(event.data); window.extensions = ws.extensions; };
</script>"""


def test_chromium_through_the_proxy(tmp_path: Path, upstream: Callable[..., Upstream],
                                    proxy: Callable[..., Proxy]) -> None:
    from test_serve_browser import CHROMIUM, Browser  # tests/server, on the path above

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; CI installs it)")

    def page(connection: Any, request: Any) -> Any:
        if request.path != "/page":
            return None  # the WebSocket upgrade
        headers = websockets_datastructures.Headers([("Content-Type", "text/html; charset=utf-8")])
        return websockets_http11.Response(200, "OK", headers, PAGE.encode())

    server = upstream(process_request=page)
    relay = proxy(server.url())
    profile = tmp_path / "profile"
    profile.mkdir()
    chromium = Browser(relay.url("/page").replace("ws://", "http://"), profile)
    try:
        got = chromium.wait_until("window.got?.length ? window.got : null")
        extensions = chromium.evaluate("window.extensions")
    finally:
        chromium.quit()
    assert got == ["hello from chromium through the proxy"]
    assert extensions.startswith("permessage-deflate")
    assert relay.stop() == 0

    events = relay.events()
    page_answers = [e for e in of(events, "handshake_response") if not e["upgraded"]]
    assert [(e["status"], e["body"]) for e in page_answers][:1] == [(200, PAGE)]
    [upgrade] = [e for e in of(events, "handshake_response") if e["upgraded"]]
    assert upgrade["extensions"] == [extensions]  # what Chromium says it agreed is what the upstream answered
    sent = [f for f in of(events, "frame", "c2s") if f["stream"] == upgrade["stream"] and f["opcode_name"] == "Text"]
    assert len(sent) == 1 and sent[0]["websocket.mask"] and sent[0]["websocket.rsv"] == 4  # masked, compressed
    assert [m["text"] for m in of(events, "message") if m["stream"] == upgrade["stream"]] == \
        ["hello from chromium through the proxy"] * 2
    assert not of(events, "violation")


# -- decoding turns (in process: the relay's protocol objects with stand-in transports) -----------------------------


class StandInTransport(asyncio.Transport):
    """Takes what the relay writes; reading is only a flag."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def decoding_turns(frames: bytes) -> tuple[int, list[Any]]:
    """The turns of the event loop the relay takes to decode ``frames`` sent by a client of a connection that agreed
    permessage-deflate, and the frame events; the request and response are relayed first."""
    from wsinspect.client.target import parse_url
    from wsinspect.core.events import FrameEvent
    from wsinspect.core.handshake import accept_key
    from wsinspect.outputs import Outputs
    from wsinspect.proxy.relay import ProxiedConnection, ProxyOptions, ProxyServer, Reports

    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: " + key.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    events: list[Any] = []

    async def relay() -> int:
        reports = Reports(emit=events.extend, files=Outputs(json=None, record=None, command="proxy",
                                                            say=lambda line: None),
                          show=lambda line: None, warn=lambda line: None)
        server = ProxyServer(ProxyOptions(upstream=parse_url("ws://127.0.0.1:9/")), reports)
        connection = ProxiedConnection(server)
        client, upstream = StandInTransport(), StandInTransport()
        connection.connection_made(client)
        connection.data_received(request)
        assert connection._connecting is not None
        connection._connecting.cancel()  # the stand-in upstream is handed over instead
        connection.upstream_made(upstream)
        connection.upstream_received(response)
        connection.data_received(frames)
        turns = 0
        while not client.reading:  # the client is read again once what it sent is decoded
            await asyncio.sleep(0)
            turns += 1
        assert bytes(upstream.written).endswith(frames)  # relayed unchanged, as they came
        connection.end("done")
        return turns

    turns = asyncio.run(relay())
    return turns, [event for event in events if isinstance(event, FrameEvent)]


def test_a_large_compressed_frame_is_decoded_in_one_turn_and_tiny_frames_still_a_chunk_per_turn() -> None:
    """On a compressed connection a turn decodes 1/16 of --read-chunk (1 KiB), but bytes that only add to a frame
    still being collected are not charged: a 16 KiB frame, inflated in the piece that completes it, was decoded in
    16 turns (a pause, a resume and a copy of the rest each); it takes one. A read of tiny frames still takes
    several turns, one chunk each."""
    import random
    import zlib

    from wsinspect.core.frames import build_frame

    deflater = zlib.compressobj(wbits=-15)
    payload = random.Random(7692).randbytes(16 * 1024)
    compressed = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 7.2.1
    assert len(compressed) > 16 * 1024
    large = build_frame(2, compressed, rsv1=True, masking_key=b"\x01\x02\x03\x04")
    turns, frames = decoding_turns(large)
    assert turns == 0 and len(frames) == 1  # decoded as it arrived, in data_received's own turn

    tiny = b"".join(build_frame(1, b"tiny frame %d" % i, masking_key=b"\x01\x02\x03\x04") for i in range(400))
    turns, frames = decoding_turns(tiny)
    assert len(tiny) > 4 * 1024 and len(frames) == 400
    assert turns >= 4  # about 1 KiB of frames per turn
