"""``wsinspect serve``: the network edge. asyncio over plain TCP; the protocol is the core's.

Each connection is an ``asyncio.Protocol`` whose ``data_received`` hands bytes to its ``ServerEndpoint`` and writes
back what the endpoint wants sent; events go to the sinks (live log, JSON lines, summary) and raw bytes to the
recorder, so the log, the JSON and the capture all describe the same bytes. No task per connection: timers
(handshake deadline, close deadline, pings, push) are ``call_later`` handles.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import itertools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.text import Text

from wsinspect.capture.writer import SessionRecorder
from wsinspect.core.connection import Limits
from wsinspect.core.events import ConnectionClosed, ConnectionOpened, Event, Message
from wsinspect.server import responses
from wsinspect.server.endpoint import ServerConfig, ServerEndpoint, State
from wsinspect.views.jsonlines import JsonLinesView
from wsinspect.views.output import Output
from wsinspect.views.packetlist import PacketList
from wsinspect.views.summary import Summary

CLOSE_TIMEOUT = 3.0  # seconds to wait for the client's close frame (or its FIN) after ours
SHUTDOWN_GRACE = 2.0  # seconds Ctrl-C waits for connections to finish their closing handshake
LISTEN_BACKLOG = 2048  # a classroom (or a benchmark) connecting at once should not see refused connections
READ_PAUSE_BYTES = 4 * 1024 * 1024  # stop reading from a client while this much is waiting to be written to it


class EventSink(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    mode: str = "echo"
    interval: float = 1.0
    ping_interval: float = 0.0
    handshake_timeout: float = 10.0
    max_connections: int = 1024


def demo_page(mode: str) -> bytes:
    html = importlib.resources.files("wsinspect.server").joinpath("static/demo.html").read_bytes()
    return html.replace(b"__WSINSPECT_MODE__", mode.encode("ascii"))


class WebSocketServer:
    """Owns the listening socket, the live connections, and where their events and bytes go."""

    def __init__(self, options: ServeOptions, config: ServerConfig, sinks: list[EventSink],
                 recorder: SessionRecorder | None = None, on_listening: Callable[[str, int], None] | None = None
                 ) -> None:
        self.options = options
        self.config = config
        self.sinks = sinks
        self.recorder = recorder
        self.connections: dict[int, ServerConnection] = {}
        self._ids = itertools.count()
        self._server: asyncio.Server | None = None
        self._on_listening = on_listening
        self._stopping = False
        self.push_counter = itertools.count(1)

    def emit(self, events: list[Event]) -> None:
        for sink in self.sinks:
            for event in events:
                sink.handle(event)

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ServerConnection(self), self.options.host,
                                                self.options.port, reuse_address=True, backlog=LISTEN_BACKLOG)
        address = self._server.sockets[0].getsockname()
        if self._on_listening is not None:
            self._on_listening(address[0], address[1])
        return address[0], address[1]

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away), wait a little for the answers, then stop."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.close(1001, "server shutting down")
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections.values()):
            connection.abort("server shut down")
        if self._server is not None:
            await self._server.wait_closed()

    def broadcast(self, sender: int, message: Message) -> None:
        text = message.text if message.text is not None else f"<{len(message.data)} bytes of binary>"
        line = f"#{sender}: {text}"
        for connection in list(self.connections.values()):
            connection.send(line)


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.stream = next(server._ids)
        self.transport: asyncio.Transport | None = None
        self.endpoint: ServerEndpoint | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        self._receiving = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        if server._stopping or len(server.connections) >= server.options.max_connections:
            transport.write(responses.too_many_connections(server.options.max_connections))
            transport.close()
            self._closed = True
            now = time.time()
            client = transport.get_extra_info("peername")[:2]
            local = transport.get_extra_info("sockname")[:2]
            server.emit([
                ConnectionOpened(stream=self.stream, direction="c2s", time=now, client=client, server=local,
                                 how="it connected to us"),
                ConnectionClosed(stream=self.stream, direction="c2s", time=now, clean=False,
                                 reason=f"refused with 503: already {server.options.max_connections} connections "
                                        "(--max-connections)"),
            ])
            return
        transport.set_write_buffer_limits(high=READ_PAUSE_BYTES)
        now = time.time()
        client = transport.get_extra_info("peername")[:2]
        local = transport.get_extra_info("sockname")[:2]
        self.endpoint = ServerEndpoint(self.stream, server.config, client=client, server=local, time=now,
                                       on_message=self._on_message)
        server.connections[self.stream] = self
        if server.recorder is not None:
            server.recorder.open(self.stream, client, local, now)
        server.emit(self.endpoint.events())
        self._later("handshake", server.options.handshake_timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        endpoint = self.endpoint
        if endpoint is None or self._closed:
            return
        now = time.time()
        if self.server.recorder is not None:
            self.server.recorder.data(self.stream, "c2s", data, now)
        was_handshaking = endpoint.state is State.HANDSHAKE
        self._receiving = True
        try:
            events = endpoint.receive(data, time=now)
        finally:
            self._receiving = False
        self.server.emit(events)
        if was_handshaking and endpoint.state is State.OPEN:
            self._cancel("handshake")
            self._opened()
        self._flush(now)
        if endpoint.wants_transport_closed:
            self._finish("closed by server")

    def eof_received(self) -> bool | None:
        return False  # let asyncio close the transport; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint is None:
            return
        self._finish("connection reset" if exc else "client closed the TCP connection", lost=True)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # backpressure: don't read more than we can answer

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    # -- application ---------------------------------------------------------------------------------------------

    def _on_message(self, message: Message, now: float) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        mode = self.server.options.mode
        if mode == "echo":
            endpoint.send_message(message.data, time=now, opcode=message.opcode)
        elif mode == "chat":
            self.server.broadcast(self.stream, message)

    def _opened(self) -> None:
        options = self.server.options
        if options.mode == "push" and options.interval > 0:
            self._later("push", options.interval, self._push)
        if options.ping_interval > 0:
            self._later("ping", options.ping_interval, self._ping)

    def _push(self) -> None:
        self.send(f"push {next(self.server.push_counter)} at {time.strftime('%H:%M:%S')}")
        self._later("push", self.server.options.interval, self._push)

    def _ping(self) -> None:
        if self.endpoint is not None:
            now = time.time()
            self.endpoint.send_ping(f"wsinspect {now:.3f}".encode(), time=now)
            self._flush(now)
        self._later("ping", self.server.options.ping_interval, self._ping)

    def send(self, data: str | bytes) -> None:
        if self.endpoint is None or self._closed:
            return
        now = time.time()
        self.endpoint.send_message(data, time=now)
        if not self._receiving:  # inside data_received (a chat message to its own sender) the read's flush sends it
            self._flush(now)

    def close(self, code: int, reason: str) -> None:
        if self.endpoint is None or self._closed:
            return
        now = time.time()
        if self.endpoint.state is State.OPEN:
            self.endpoint.close(code, reason, time=now)
            self._flush(now)
            self._later("close", CLOSE_TIMEOUT, lambda: self._finish("no close frame from the client in time"))
        else:
            self._finish("server shut down")

    def abort(self, reason: str) -> None:
        self._finish(reason)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        assert self.endpoint is not None
        out = self.endpoint.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
            if self.server.recorder is not None:
                self.server.recorder.data(self.stream, "s2c", out, now)
        self.server.emit(self.endpoint.events())
        if self.endpoint.state is State.CLOSING and "close" not in self._timers:
            self._later("close", CLOSE_TIMEOUT, lambda: self._finish("no close frame from the client in time"))

    def _handshake_timed_out(self) -> None:
        if self.endpoint is not None and self.endpoint.state is State.HANDSHAKE:
            self._finish(f"no complete handshake within {self.server.options.handshake_timeout:g} s")

    def _later(self, name: str, delay: float, callback: Callable[[], Any]) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _finish(self, reason: str, *, lost: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        for name in list(self._timers):
            self._cancel(name)
        if self.transport is not None and not lost:
            self.transport.close()
        self.server.connections.pop(self.stream, None)
        now = time.time()
        if self.endpoint is not None:
            self.server.emit(self.endpoint.transport_closed(time=now, reason=reason))
        if self.server.recorder is not None:
            self.server.recorder.close(self.stream, now)


# -- the command ----------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    from wsinspect.cli import make_console, make_palette

    console: Console = make_console(args)
    output = Output(console, make_palette(args, console), live=True)
    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    watching = not args.quiet or args.json is not None
    config = ServerConfig(subprotocols=tuple(args.subprotocol), compression=not args.no_compression,
                          allowed_origins=tuple(args.origin) if args.origin else None,
                          fragment_size=args.fragment, limits=limits, page=demo_page(args.mode),
                          decode_outgoing=watching)
    options = ServeOptions(host=args.host, port=args.port, mode=args.mode, interval=args.interval,
                           ping_interval=args.ping_interval, handshake_timeout=args.handshake_timeout,
                           max_connections=args.max_connections)
    summary = Summary()
    sinks: list[EventSink] = []
    if not args.quiet:  # --quiet keeps nothing per event, not even the counts
        sinks += [summary, PacketList(output, detail=args.detail, max_bytes=args.max_bytes, live=True)]
    json_file = None
    if args.json:
        # Line-buffered, so `tail -f` on the file follows the session live.
        json_file = open(args.json, "w", encoding="ascii", buffering=1)  # noqa: SIM115 - closed in finally
        sinks.append(JsonLinesView(json_file))
    recorder = SessionRecorder(args.record) if args.record else None

    def listening(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        line = Text(f"wsinspect serve: {options.mode} mode on ws://{shown}:{port}/", style="bold")
        line.append(f"  (demo page: http://{shown}:{port}/)", style="dim")
        console.print(line)
        if host in ("0.0.0.0", "::"):
            console.print(Text("warning: listening on every interface; anyone who can reach this machine can "
                               "connect. Use --host 127.0.0.1 to stay local.", style="bold yellow"))
        console.print(Text("Ctrl-C closes every connection with 1001 and stops.", style="dim"))

    server = WebSocketServer(options, config, sinks, recorder, on_listening=listening)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before listening: a Ctrl-C at any moment closes cleanly
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except OSError as error:
            reason = f"cannot listen on {options.host}:{options.port}: {error.strerror}"
            raise SystemExit(f"wsinspect serve: {reason}") from None
        await stop.wait()
        console.print(Text("stopping: closing every connection with 1001 (going away)", style="dim"))
        await server.shutdown()

    try:
        asyncio.run(main())
    except SystemExit as exit_:
        print(exit_.code, file=sys.stderr)
        return 1
    finally:
        for sink in sinks:
            sink.close()
        if json_file is not None:
            json_file.close()
        if recorder is not None:
            recorder.finish(time.time())
    if not args.quiet:
        output.lines(summary.lines())
        output.flush()
    return 0
