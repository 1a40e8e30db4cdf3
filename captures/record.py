#!/usr/bin/env python3
"""Record the sample captures described in captures/scenarios.py.

For each scenario: check its (fixed) server ports are free, start the real servers, start
``dumpcap -i lo -f "tcp port P ..." -w captures/NAME.pcapng`` and wait for "Capturing on", run the
real clients (every peer is driven by the scenario's event list and checks what it receives),
wait a moment, stop dumpcap with SIGINT (by PID), then check with ``tshark -r`` that the file holds
the expected number of TCP streams. Anything unexpected raises and the script exits non-zero.

Must run as root (capturing on ``lo``). Loopback only.

Examples:
    python captures/record.py              # record every capture
    python captures/record.py echo deflate # record only these
    python captures/record.py --list       # list scenario names and files
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import websocket  # noqa: E402  (websocket-client)
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from captures.scenarios import (  # noqa: E402
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    SAMPLE_KEY,
    SCENARIOS,
    Close,
    Connection,
    Frame,
    Message,
    Ping,
    Pong,
    Scenario,
)

T = 10.0  # timeout for any single network step (seconds)
log = logging.getLogger("record")


class RecordError(RuntimeError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise RecordError(msg)


# --------------------------------------------------------------------------------------------
# dumpcap / tshark
# --------------------------------------------------------------------------------------------


class Dumpcap:
    def __init__(self, ports: tuple[int, ...], out: Path) -> None:
        self.filter = " or ".join(f"tcp port {p}" for p in ports)
        self.out = out
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr: list[str] = []

    async def start(self) -> None:
        if self.out.exists():
            self.out.unlink()
        self.proc = await asyncio.create_subprocess_exec(
            "dumpcap", "-i", "lo", "-f", self.filter, "-w", str(self.out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        deadline = time.monotonic() + T
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"dumpcap did not report 'Capturing on' in {T}s: {self.stderr}")
            line = await asyncio.wait_for(self.proc.stderr.readline(), left)
            if not line:
                rc = await self.proc.wait()
                raise RecordError(f"dumpcap exited ({rc}) before capturing: {''.join(self.stderr)}")
            self.stderr.append(line.decode(errors="replace"))
            if b"Capturing on" in line:
                break
        # dumpcap prints "Capturing on" slightly before its filter is live: in tests a connection
        # made right after the line was missing from the file. Give it a second.
        await asyncio.sleep(1.0)
        log.info("dumpcap pid %d capturing %r -> %s", self.proc.pid, self.filter, self.out.name)

    async def stop(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        await asyncio.sleep(0.5)  # let the last segments reach the capture
        os.kill(self.proc.pid, signal.SIGINT)
        rest = await asyncio.wait_for(self.proc.stderr.read(), T)
        rc = await asyncio.wait_for(self.proc.wait(), T)
        self.stderr.append(rest.decode(errors="replace"))
        check(rc == 0, f"dumpcap exited with {rc}: {''.join(self.stderr)}")
        check(self.out.exists() and self.out.stat().st_size > 0, f"{self.out} missing or empty")
        self.out.chmod(0o644)  # dumpcap creates 0600 files

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)


def tshark_streams(path: Path) -> int:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return len({line for line in out.split() if line})


def ports_free(sc: Scenario) -> None:
    for port in (*sc.ports, *sc.uncaptured_ports):
        for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise RecordError(f"port {port} ({host}) is busy: {e}; scenario ports are fixed") from e
            finally:
                s.close()


# --------------------------------------------------------------------------------------------
# websockets peers (client and server share one driver: the API is symmetric)
# --------------------------------------------------------------------------------------------


def _close_code(close: Any) -> tuple[int | None, str]:
    code = None if close.code == 1005 else int(close.code)
    return code, close.reason


def _chunks(m: Message) -> list[Any]:
    assert m.fragments is not None
    check(m.fragments[-1] == 0, "websockets send(iterable) always ends with an empty frame")
    out, pos = [], 0
    for n in m.fragments[:-1]:
        out.append(m.payload[pos : pos + n])
        pos += n
    check(pos == len(m.payload), f"fragments {m.fragments} do not add up to {len(m.payload)}")
    return [c.decode() for c in out] if m.kind == "text" else out


async def expect_message(ws: Any, m: Message, who: str) -> None:
    got = await asyncio.wait_for(ws.recv(), T)
    kind = "text" if isinstance(got, str) else "binary"
    data = got.encode() if isinstance(got, str) else bytes(got)
    check(
        kind == m.kind and data == m.payload,
        f"{who}: expected {m.kind} {m.payload[:60]!r}... got {kind} {data[:60]!r}...",
    )


async def drive_websockets(ws: Any, conn: Connection, me: str, delay: float = 0.0,
                          events: tuple[Any, ...] | None = None) -> None:
    """Play ``me``'s part ("c2s" = client, "s2c" = server) of ``conn`` (or of ``events``) on a websockets
    connection."""
    who = f"{conn.name}/{'client' if me == 'c2s' else 'server'}"
    pending: list[Frame] = []
    for ev in conn.events if events is None else events:
        mine = ev.direction == me
        if mine and delay:
            await asyncio.sleep(delay)
        if isinstance(ev, Message):
            if mine:
                await ws.send(_chunks(ev) if ev.fragments else (ev.text if ev.kind == "text" else ev.payload))
            else:
                await expect_message(ws, ev, who)
        elif isinstance(ev, Ping):
            if mine:
                waiter = await ws.ping(ev.payload)
                await asyncio.wait_for(waiter, T)
        elif isinstance(ev, Pong):
            if mine and not ev.auto:
                await ws.pong(ev.payload)
        elif isinstance(ev, Close):
            if mine and not (ev.auto or ev.observed):
                await asyncio.wait_for(ws.close(ev.code, ev.reason), T)  # type: ignore[arg-type]
                # the peer's answer is the next auto Close event
                answer = next(e for e in conn.events if isinstance(e, Close) and e.auto)
                rcvd = ws.protocol.close_rcvd
                check(rcvd is not None, f"{who}: no close frame received in answer")
                check(
                    _close_code(rcvd) == (answer.code, answer.reason),
                    f"{who}: close answered with {_close_code(rcvd)}, scenario says "
                    f"{(answer.code, answer.reason)}",
                )
            elif not mine and not ev.auto:
                await asyncio.wait_for(ws.wait_closed(), T)
                rcvd = ws.protocol.close_rcvd
                check(rcvd is not None, f"{who}: connection ended without a close frame")
                check(
                    _close_code(rcvd) == (ev.code, ev.reason),
                    f"{who}: received close {_close_code(rcvd)}, scenario says {(ev.code, ev.reason)}",
                )
        elif isinstance(ev, Frame):
            check(not mine, f"{who}: websockets cannot send hand-built frames")
            if ev.violation is not None:
                # keep receiving like a real echo server: some checks (UTF-8) happen in recv()
                with contextlib.suppress(ConnectionClosed, UnicodeDecodeError):
                    while True:
                        await asyncio.wait_for(ws.recv(), T)
                await asyncio.wait_for(ws.wait_closed(), T)
                sent = ws.protocol.close_sent
                expected = next(e for e in conn.events if isinstance(e, Close) and e.observed)
                got = _close_code(sent) if sent else None
                log.info("%s: violation %r -> server sent close %s", who, ev.violation, got)
                check(
                    got == (expected.code, expected.reason),
                    f"{who}: server answered the violation with close {got}, scenario says "
                    f"{(expected.code, expected.reason)}",
                )
                return
            if ev.opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                pending.append(ev)
                if ev.fin:
                    kind = "text" if pending[0].opcode == OP_TEXT else "binary"
                    await expect_message(
                        ws, Message(ev.direction, kind, b"".join(f.payload for f in pending)), who
                    )
                    pending = []
            elif ev.opcode == OP_CLOSE:
                await asyncio.wait_for(ws.wait_closed(), T)
    if events is not None and events is not conn.events:
        return  # a part of the connection (before the capture starts): the rest follows on the same socket
    # let the closing handshake / TCP teardown finish
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ws.wait_closed(), T)


def server_extensions(compression: str) -> dict[str, Any]:
    if compression == "off":
        return {"compression": None}
    if compression in ("default", "browser"):
        return {"compression": "deflate"}
    if compression == "no-context-takeover":
        return {
            "compression": None,
            "extensions": [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                )
            ],
        }
    raise RecordError(f"unknown compression {compression!r}")


def client_extensions(compression: str) -> dict[str, Any]:
    if compression == "off":
        return {"compression": None}
    if compression == "default":
        return {"compression": "deflate"}
    if compression == "no-context-takeover":
        return {
            "compression": None,
            "extensions": [
                ClientPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                )
            ],
        }
    raise RecordError(f"unknown compression {compression!r}")


class Servers:
    """Real servers for a scenario: websockets servers (scripted by request path) and raw servers."""

    def __init__(self, sc: Scenario, certificate: Path | None = None) -> None:
        self.sc = sc
        self.by_path = {c.path: c for c in sc.connections}
        self.done: dict[str, asyncio.Future[None]] = {}
        self.errors: list[BaseException] = []
        self._stack = contextlib.AsyncExitStack()
        self.certificate = certificate  # PEM with the certificate and its key, for wss:// servers

    def future(self, path: str) -> asyncio.Future[None]:
        if path not in self.done:
            self.done[path] = asyncio.get_running_loop().create_future()
        return self.done[path]

    async def handler(self, ws: Any) -> None:
        path = ws.request.path
        conn = self.by_path.get(path)
        fut = self.future(path)
        try:
            check(conn is not None, f"server: unexpected path {path!r}")
            assert conn is not None
            ext = ws.response.headers.get("Sec-WebSocket-Extensions")
            if conn.client == "chromium":
                log.info("browser request headers:\n%s", ws.request.headers)
                log.info("browser negotiated extensions: %r", ext)
            check(
                ext == conn.extensions, f"{conn.name}: negotiated {ext!r}, scenario says {conn.extensions!r}"
            )
            await drive_websockets(ws, conn, "s2c", events=(*conn.before_capture, *conn.events))
            if not fut.done():
                fut.set_result(None)
        except BaseException as e:
            self.errors.append(e)
            if not fut.done():
                fut.set_exception(e)
            raise

    async def raw_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
            path = head.split(b" ", 2)[1].decode()
            conn = self.by_path[path]
            assert conn.response is not None
            check(f"Sec-WebSocket-Key: {SAMPLE_KEY}".encode() in head, "raw server: unexpected key")
            writer.write(conn.response)
            await writer.drain()
            # the client is expected to give up and close
            rest = await asyncio.wait_for(reader.read(), T)
            check(rest == b"", f"raw server: client sent data after the bad 101: {rest[:40]!r}")
            self.future(path).set_result(None)
        except BaseException as e:
            self.errors.append(e)
            raise
        finally:
            writer.close()

    async def raw_http_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A raw server that answers the request for its path with the scenario's exact response bytes.

        After a 101 it reads what the client sends until the client closes; after any other answer it closes
        (the responses say ``Connection: close``)."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
            path = head.split(b" ", 2)[1].decode()
            conn = self.by_path[path]
            assert conn.response is not None
            check(head == conn.request, f"{conn.name}: raw server received {head[:60]!r}...")
            writer.write(conn.response)
            await writer.drain()
            if conn.handshake_status == 101:
                received = 0
                while chunk := await asyncio.wait_for(reader.read(65536), 3 * T):
                    received += len(chunk)
                expected = sum(len(ev.wire()) for ev in conn.events if isinstance(ev, Frame))
                check(received == expected, f"{conn.name}: raw server received {received} bytes, sent {expected}")
            self.future(path).set_result(None)
        except BaseException as e:
            self.errors.append(e)
            raise
        finally:
            writer.close()

    async def __aenter__(self) -> Servers:
        ports: dict[int, list[Connection]] = {}
        for c in self.sc.connections:
            ports.setdefault(c.server_port, []).append(c)
        for port, conns in ports.items():
            kinds = {c.server for c in conns}
            comps = {c.compression for c in conns}
            hosts = {c.host for c in conns}
            check(len(kinds) == len(comps) == len(hosts) == 1, f"port {port}: mixed server configs")
            host = hosts.pop()
            tls = {c.tls for c in conns}
            check(len(tls) == 1, f"port {port}: mixed ws:// and wss://")
            if kinds == {"websockets"}:
                srv = serve(
                    self.handler, host, port, open_timeout=T, close_timeout=T, ping_interval=None,
                    max_size=2**21, ssl=self.server_tls() if tls.pop() else None, **server_extensions(comps.pop()),
                )  # fmt: skip
                await self._stack.enter_async_context(srv)
            elif kinds == {"raw-http"}:
                raw = await asyncio.start_server(self.raw_http_handler, host, port)
                await self._stack.enter_async_context(raw)
            else:
                raw = await asyncio.start_server(self.raw_handler, host, port)
                await self._stack.enter_async_context(raw)
        return self

    def server_tls(self) -> ssl.SSLContext:
        check(self.certificate is not None, "a wss:// server needs the test certificate")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.certificate))
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def raise_errors(self) -> None:
        if self.errors:
            raise RecordError(f"server side failed: {self.errors[0]!r}") from self.errors[0]


# --------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------


def url(conn: Connection) -> str:
    host = f"[{conn.host}]" if ":" in conn.host else conn.host
    return f"{'wss' if conn.tls else 'ws'}://{host}:{conn.server_port}{conn.path}"


def make_certificate(directory: Path, hostname: str) -> Path:
    """A self-signed certificate for ``hostname`` (and its key), one PEM file, made fresh for each recording."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = directory / "wss-test.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )  # fmt: skip
    return path


def client_tls(conn: Connection, certificate: Path | None) -> dict[str, Any]:
    if not conn.tls:
        return {}
    check(certificate is not None and conn.sni is not None, f"{conn.name}: wss:// needs a certificate and an SNI")
    context = ssl.create_default_context(cafile=str(certificate))
    if conn.alpn:
        context.set_alpn_protocols(list(conn.alpn))
    return {"ssl": context, "server_hostname": conn.sni}


async def websockets_client(
    conn: Connection, servers: Servers, delay: float = 0.0, before: Any = None
) -> None:
    async with connect(
        url(conn), open_timeout=T, close_timeout=T, ping_interval=None, max_size=2**21,
        **client_extensions(conn.compression), **client_tls(conn, servers.certificate),
    ) as ws:  # fmt: skip
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        check(ext == conn.extensions, f"{conn.name}: negotiated {ext!r}, scenario says {conn.extensions!r}")
        if conn.before_capture:
            await drive_websockets(ws, conn, "c2s", delay, events=conn.before_capture)
        if before is not None:
            await before()
        await drive_websockets(ws, conn, "c2s", delay)
    await asyncio.wait_for(servers.future(conn.path), T)


def _websocket_client_sync(conn: Connection) -> None:
    """websocket-client peer: hand-built frames via ABNF + send_frame, fixed masking key."""
    from captures.scenarios import MASK

    ws = websocket.WebSocket()
    ws.set_mask_key(lambda n: MASK)
    header = {"Sec-WebSocket-Key": SAMPLE_KEY}
    if not conn.handshake_ok:
        try:
            ws.connect(url(conn), header=header, timeout=T)
        except websocket.WebSocketException as e:
            log.info("%s: websocket-client refused the handshake as expected: %r", conn.name, e)
            return
        finally:
            ws.close(timeout=1)
        raise RecordError(f"{conn.name}: websocket-client accepted a bad handshake")
    ws.connect(url(conn), header=header, timeout=T)
    try:
        for ev in conn.events:
            mine = ev.direction == "c2s"
            if isinstance(ev, Frame):
                check(mine, "server frames are not hand-built here")
                fr = websocket.ABNF(
                    fin=int(ev.fin), rsv1=int(ev.rsv1), opcode=ev.opcode, mask_value=1, data=ev.payload
                )
                check(ev.mask == MASK and ev.length_bits is None, "websocket-client frames: fixed mask only")
                ws.send_frame(fr)
            elif isinstance(ev, Message):
                check(not mine, "client messages are hand-built frames in this scenario")
                opcode, data = ws.recv_data()
                kind = "text" if opcode == OP_TEXT else "binary"
                check(
                    (kind, data) == (ev.kind, ev.payload),
                    f"{conn.name}/client: expected {ev.kind} {ev.payload!r}, got {kind} {data!r}",
                )
            elif isinstance(ev, Close) and mine and not ev.auto:
                check(ev.code is not None, "websocket-client always sends a code")
                ws.close(status=ev.code, reason=ev.reason.encode(), timeout=T)
    finally:
        if ws.connected:
            ws.close(timeout=1)


async def websocket_client(conn: Connection, servers: Servers) -> None:
    await asyncio.wait_for(asyncio.to_thread(_websocket_client_sync, conn), 3 * T)
    await asyncio.wait_for(servers.future(conn.path), T)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RecordError(f"raw client: EOF after {len(buf)}/{n} bytes")
        buf += chunk
    return buf


def _read_frame(sock: socket.socket) -> tuple[bool, int, bytes]:
    b0, b1 = _recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _recv_exact(sock, 8))
    check(not b1 & 0x80, "raw client: server frame is masked")
    return bool(b0 & 0x80), b0 & 0x0F, _recv_exact(sock, n)


def _raw_client_sync(conn: Connection) -> None:
    assert conn.request is not None
    with socket.create_connection((conn.host, conn.server_port), timeout=T) as sock:
        sock.sendall(conn.request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                break
            head += chunk
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
        status = int(m.group(1)) if m else None
        log.info("%s: handshake status %s", conn.name, status)
        check(
            status == conn.handshake_status,
            f"{conn.name}: status {status}, scenario says {conn.handshake_status}",
        )
        if not conn.handshake_ok or status != 101:
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            log.info("%s: response body %r", conn.name, rest[:200])
            return
        for ev in conn.events:
            if ev.direction == "c2s":
                if isinstance(ev, Frame):
                    sock.sendall(ev.wire())
                continue
            if isinstance(ev, Message):
                fin, op, data = _read_frame(sock)
                check(
                    fin and op == (OP_TEXT if ev.kind == "text" else OP_BINARY) and data == ev.payload,
                    f"{conn.name}: expected {ev.kind} {ev.payload!r}, got op {op} {data!r}",
                )
            elif isinstance(ev, Close):
                fin, op, data = _read_frame(sock)
                check(op == OP_CLOSE, f"{conn.name}: expected a close frame, got opcode {op}: {data!r}")
                code = struct.unpack("!H", data[:2])[0] if data else None
                reason = data[2:].decode("utf-8", "replace")
                log.info("%s: server close %s %r", conn.name, code, reason)
                check(
                    (code, reason) == (ev.code, ev.reason),
                    f"{conn.name}: server closed with {(code, reason)}, scenario says {(ev.code, ev.reason)}",
                )
        # the server closes TCP after the close handshake
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        check(rest == b"", f"{conn.name}: unexpected bytes after close: {rest[:60]!r}")


def _budget_clients_sync(conns: tuple[Connection, ...]) -> None:
    """Open every connection, then send their fragments interleaved, so all the messages are open at once; then
    close TCP (no close frame: the messages are never finished)."""
    socks: list[socket.socket] = []
    try:
        for conn in conns:
            assert conn.request is not None and conn.response is not None
            sock = socket.create_connection((conn.host, conn.server_port), timeout=T)
            socks.append(sock)
            sock.sendall(conn.request)
            check(_recv_exact(sock, len(conn.response)) == conn.response, f"{conn.name}: unexpected 101")
        for index in range(max(len(conn.events) for conn in conns)):
            for sock, conn in zip(socks, conns, strict=True):
                if index < len(conn.events):
                    event = conn.events[index]
                    check(isinstance(event, Frame) and event.direction == "c2s", "budget: client frames only")
                    assert isinstance(event, Frame)
                    sock.sendall(event.wire())
        for sock in socks:
            sock.shutdown(socket.SHUT_WR)
        for sock, conn in zip(socks, conns, strict=True):
            check(sock.recv(1) == b"", f"{conn.name}: the server sent bytes after its 101")
    finally:
        for sock in socks:
            sock.close()


async def budget_clients(sc: Scenario, servers: Servers) -> None:
    await asyncio.wait_for(asyncio.to_thread(_budget_clients_sync, sc.connections), 6 * T)
    for conn in sc.connections:
        await asyncio.wait_for(servers.future(conn.path), T)


async def raw_client(conn: Connection, servers: Servers) -> None:
    await asyncio.wait_for(asyncio.to_thread(_raw_client_sync, conn), 3 * T)
    if conn.handshake_ok:
        await asyncio.wait_for(servers.future(conn.path), T)


# --------------------------------------------------------------------------------------------
# chromium
# --------------------------------------------------------------------------------------------

BROWSER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsinspect capture</title></head><body>
<pre id="log">starting</pre>
<script>
const log = (s) => { document.getElementById('log').textContent += '\\n' + s; };
const ws = new WebSocket('__URL__');
ws.binaryType = 'arraybuffer';
const binary = new Uint8Array(32).map((_, i) => i);
let n = 0;
ws.onopen = () => { log('open ' + ws.extensions); ws.send('hello from chromium'); };
ws.onmessage = (e) => {
  n += 1;
  log('message ' + n);
  if (n === 1) ws.send(binary.buffer);
  else if (n === 2) ws.send('__UTF8__');
  else if (n === 3) ws.close(1000, 'done');
};
ws.onclose = (e) => { log('closed ' + e.code + ' ' + e.reason); document.title = 'done'; };
ws.onerror = () => log('error');
</script></body></html>
"""


def find_page_port(sc: Scenario) -> int:
    check(len(sc.uncaptured_ports) == 1, "browser scenario needs one page port")
    return sc.uncaptured_ports[0]


async def chromium_client(conn: Connection, servers: Servers, page_port: int) -> None:
    from captures.scenarios import BROWSER_BINARY, UTF8_SAMPLE

    check(bytes(range(32)) == BROWSER_BINARY, "page JS sends bytes 0..31")
    page = BROWSER_PAGE.replace("__URL__", url(conn)).replace("__UTF8__", UTF8_SAMPLE).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page if self.path == "/" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Handler)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    profile = tempfile.mkdtemp(prefix="wsinspect-chromium-")
    proc = subprocess.Popen(
        [
            "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-default-apps",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            f"http://127.0.0.1:{page_port}/",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        await asyncio.wait_for(servers.future(conn.path), 60)
    finally:
        # end chromium (the process we started and its own process group) and the page server
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# scenario runner
# --------------------------------------------------------------------------------------------


async def run_client(conn: Connection, servers: Servers, sc: Scenario, **kw: Any) -> None:
    if conn.client == "websockets":
        await websockets_client(conn, servers, **kw)
    elif conn.client == "websocket-client":
        await websocket_client(conn, servers)
    elif conn.client == "raw":
        await raw_client(conn, servers)
    elif conn.client == "chromium":
        await chromium_client(conn, servers, find_page_port(sc))
    else:
        raise RecordError(f"unknown client {conn.client!r}")


async def record(sc: Scenario, outdir: Path) -> Path:
    out = outdir / sc.file
    ports_free(sc)
    dump = Dumpcap(sc.ports, out)
    try:
        with tempfile.TemporaryDirectory(prefix="wsinspect-record-") as scratch:
            sni = next((c.sni for c in sc.connections if c.tls and c.sni), None)
            certificate = make_certificate(Path(scratch), sni) if sni else None
            await run_scenario(sc, dump, certificate)
        await dump.stop()
    finally:
        dump.kill()
    streams = tshark_streams(out)
    check(
        streams == sc.tcp_streams, f"{out.name}: tshark sees {streams} TCP streams, expected {sc.tcp_streams}"
    )
    log.info("%s: OK, %d bytes, %d TCP stream(s)", out.name, out.stat().st_size, streams)
    return out


async def run_scenario(sc: Scenario, dump: Dumpcap, certificate: Path | None) -> None:
    async with Servers(sc, certificate) as servers:
        if not all(c.handshake_captured for c in sc.connections):
            (conn,) = sc.connections
            await websockets_client(conn, servers, before=dump.start)
        else:
            await dump.start()
            if sc.name == "budget":
                await budget_clients(sc, servers)
            elif sc.name == "multi":
                await asyncio.gather(
                    *(
                        run_client(c, servers, sc, delay=0.03 + 0.01 * i)
                        for i, c in enumerate(sc.connections)
                    )
                )
            else:
                for c in sc.connections:
                    await run_client(c, servers, sc)
                    await asyncio.sleep(0.1)  # keep connections apart in time
        servers.raise_errors()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python captures/record.py\n  python captures/record.py echo deflate\n"
        "  python captures/record.py --list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("names", nargs="*", help="scenario names (default: all)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--outdir", type=Path, default=HERE, help="where to write the .pcapng files")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:15} {sc.file:22} ports {','.join(map(str, sc.ports))}  {sc.description}")
        return 0
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    for tool in ("dumpcap", "tshark"):
        check(shutil.which(tool) is not None, f"{tool} not found")
    check(os.geteuid() == 0, "capturing on lo needs root")
    for name in args.names or list(SCENARIOS):
        log.info("=== %s", name)
        asyncio.run(record(SCENARIOS[name], args.outdir))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RecordError as e:
        print(f"record.py: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
