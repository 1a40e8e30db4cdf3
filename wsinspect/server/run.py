"""``wsinspect serve``: the network edge. asyncio over plain TCP; the protocol is the core's.

Each connection is an ``asyncio.Protocol`` whose ``data_received`` hands bytes to its ``ServerEndpoint`` and writes
back what the endpoint wants sent; events go to the sinks (live log, JSON lines, summary) and raw bytes to the
recorder, so the log, the JSON and the capture all describe the same bytes. What to answer is the application's
(echo, chat, push: ``server.apps``), which the transport calls with each whole message and on its timer. No task
per connection: timers (handshake deadline, close deadline, idle check, pings, the application's ticks) are
``call_later`` handles.

Theory of operation: memory and fairness. What a peer can make the server hold is bounded per connection:

- Input is decoded a chunk at a time (``--read-chunk``, fewer bytes on a connection whose chunks held more than
  ``--turn-frames`` frames, and 1/16 of it on a compressed connection, where a byte can inflate to a thousand);
  after each chunk the connection gives the event loop back, so one peer's flood of tiny frames delays the others
  by one chunk, not by its whole read.
- Output waiting for a peer is bounded by ``--max-queue``, checked as it is queued. What happens to a peer over
  the bound is the application's choice (``server.apps``, ``paces_sender``): echo stops reading from a client whose
  queue is over the bound until it drains to a quarter of it, so the client paces itself and loses nothing; chat
  and push cannot pace the other members, so a member over the bound is dropped with close 1008 and a log line,
  and the others are never held back by it.
- A message's frames (``--max-fragments``), a request's header lines (``--max-headers``), and silence
  (``--idle-timeout``) are bounded too.

And across connections: the unfinished frames and messages of all of them together are at most ``--max-memory``
(one ``MemoryBudget`` shared by every decoder, as the proxy's). A server must have a message whole to answer it, so
the client whose frame or message would go over is not shown cut short as in ``read`` or the proxy: it is closed
with 1013 (try again later: the server is busy, its message was within the limits) and a log line names the flag.
A frame is counted as it arrives; one under 64 KiB (``LET_GO_FROM``) is let finish, so the bound is overshot by at
most that much per connection (and one read).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import itertools
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console

from wsinspect.client.target import UsageError
from wsinspect.core.connection import DEFAULT_MEMORY_BUDGET, Limits, MemoryBudget
from wsinspect.core.endpoint import TRY_AGAIN_LATER, State
from wsinspect.core.events import ConnectionClosed, ConnectionOpened, Event, FrameEvent, Message
from wsinspect.outputs import JsonSink, Outputs, Recording
from wsinspect.server import misbehave, responses
from wsinspect.server.apps import Application, Member, application
from wsinspect.server.endpoint import TLS_HANDSHAKE_RECORD, ServerConfig, ServerEndpoint
from wsinspect.server.options import reachable_addresses
from wsinspect.server.tls import listening_context
from wsinspect.views.flow import FlowView
from wsinspect.views.output import Output
from wsinspect.views.packetlist import PacketList
from wsinspect.views.safe import visible
from wsinspect.views.summary import Summary

LISTEN_BACKLOG = 2048  # a classroom (or a benchmark) connecting at once should not see refused connections
MIN_CHUNK = 256  # the smallest chunk decoded at once: a chunk of tiny frames still makes progress per turn
COMPRESSED_CHUNK_SHARE = 16  # a compressed connection decodes 1/16 of --read-chunk at once (see the docstring)
SLOW_MEMBER_CLOSE = 1008  # policy violation: a member that cannot pace itself (chat, push) and is over --max-queue
IDLE_CLOSE = 1001  # going away: the server leaves a connection nobody used for --idle-timeout


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
    max_queue: int = 1 << 20
    idle_timeout: float = 300.0  # 0: never
    read_chunk: int = 16 * 1024
    turn_frames: int = 256
    close_timeout: float = 3.0  # for the client's close frame (or FIN, or its reading our last bytes) after ours
    shutdown_grace: float = 2.0  # Ctrl-C: for every connection to finish its closing handshake
    max_memory: int = DEFAULT_MEMORY_BUDGET  # unfinished frames and messages of all connections together
    tls: ssl.SSLContext | None = None  # --certfile/--keyfile: wss:// and the demo page over https://


def demo_page(mode: str, misbehaviour: misbehave.Misbehaviour | None = None) -> bytes:
    html = importlib.resources.files("wsinspect.server").joinpath("static/demo.html").read_bytes()
    return html.replace(b"__WSINSPECT_MODE__", mode.encode("ascii")).replace(
        b"__WSINSPECT_MISBEHAVE__", misbehave.page_notice(misbehaviour))


class WebSocketServer:
    """Owns the listening socket, the live connections, and where their events and bytes go."""

    def __init__(self, options: ServeOptions, config: ServerConfig, sinks: list[EventSink],
                 recorder: Recording | None = None, on_listening: Callable[[str, int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.config = config
        self.sinks = sinks
        self.recorder = recorder
        self.connections: dict[int, ServerConnection] = {}  # by a private key: numbers come later (endpoint.py)
        self._keys = itertools.count()
        # WebSocket connections are numbered 0, 1, 2, ...; everything else (page loads, favicons, connections that
        # never sent a request) -1, -2, ..., so a browser's page load does not use up a number.
        self._websocket_numbers = itertools.count()
        self._other_numbers = itertools.count(-1, -1)
        self._server: asyncio.Server | None = None
        self._on_listening = on_listening
        self._warn = warn
        self._stopping = False
        self.app: Application = application(options.mode, interval=options.interval, room=self)
        self.budget = MemoryBudget(options.max_memory)  # shared by every connection's decoder (--max-memory)
        # Connections an application sent to while another's bytes were decoded: written once that one's events
        # are logged (flush_sent), so the log shows the cause before its effects.
        self._unflushed: dict[ServerConnection, None] = {}

    def number(self, websocket: bool) -> int:
        return next(self._websocket_numbers if websocket else self._other_numbers)

    def emit(self, events: list[Event]) -> None:
        for sink in self.sinks:
            for event in events:
                sink.handle(event)

    def warn(self, line: str) -> None:
        """A line for the operator even under --quiet (a member dropped, an internal error)."""
        if self._warn is not None:
            self._warn(line)

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        # TLS (--certfile) is started by each connection once its first byte says the client speaks it: one that
        # sends plain HTTP instead gets a 400 that says so, as nginx answers (ServerConnection._first_byte).
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
        deadline = time.monotonic() + self.options.shutdown_grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections.values()):
            connection.abort("server shut down")
        if self._server is not None:
            await self._server.wait_closed()

    def members(self) -> list[Member]:
        return [connection for connection in self.connections.values()
                if connection.endpoint is not None and connection.endpoint.is_websocket]

    def queued_for(self, connection: ServerConnection) -> None:
        self._unflushed[connection] = None

    def flush_sent(self, now: float) -> None:
        """Write what the application queued, connection by connection, in the order it sent."""
        while self._unflushed:
            connection = next(iter(self._unflushed))
            del self._unflushed[connection]
            connection.flush(now)


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.key = next(server._keys)
        self.transport: asyncio.Transport | None = None
        self.endpoint: ServerEndpoint | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        # Received, not decoded yet, from offset _input_at: at most one read, since reading pauses while it is here.
        self._input = b""
        self._input_at = 0
        self._input_scheduled = False
        self._reading_paused = False
        # The client's queue went over --max-queue and the application paces it: reading waits until it drains.
        self._queue_full = False
        self._chunk = server.options.read_chunk
        # Bytes received before the connection had its number; None once the recording has started.
        self._unrecorded: list[tuple[bytes, float]] | None = []
        self._opened_at = 0.0
        self._last_heard = 0.0  # loop time of the client's last bytes
        self._probed = False  # an idle client was sent a ping to see whether it is still there
        self._before_start: list[bytes] | None = None  # while TLS is being started: what came with its end

    @property
    def stream(self) -> int | None:
        return self.endpoint.stream if self.endpoint is not None else None

    @property
    def number(self) -> int:
        """The stream number of a connection the application is told about (it is numbered by then)."""
        assert self.stream is not None
        return self.stream

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.server.options.tls is not None:
            self._await_first_byte(transport)
        else:
            self._start(transport)

    def _await_first_byte(self, transport: asyncio.Transport) -> None:
        """With --certfile: look at the client's first byte without taking it (MSG_PEEK on a duplicate of the
        socket, watched while the transport does not read), then start TLS on a ClientHello, or refuse plain HTTP."""
        loop = asyncio.get_running_loop()
        transport.pause_reading()
        peek = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        timeout = self.server.options.handshake_timeout

        def give_up() -> None:
            loop.remove_reader(peek.fileno())
            peek.close()
            transport.abort()  # nothing at all within --handshake-timeout (a browser's speculative connection)

        timer = loop.call_later(timeout, give_up)

        def readable() -> None:
            timer.cancel()
            loop.remove_reader(peek.fileno())
            try:
                first = peek.recv(1, socket.MSG_PEEK)
            except OSError:
                first = b""
            peek.close()
            if not first:
                transport.abort()
            elif first[0] == TLS_HANDSHAKE_RECORD:
                assert self.server.options.tls is not None
                self._before_start = []
                task = loop.create_task(loop.start_tls(transport, self, self.server.options.tls, server_side=True,
                                                       ssl_handshake_timeout=timeout))
                task.add_done_callback(lambda done: self._tls_started(transport, done))
            else:
                self._start(transport, plain_on_tls=True)
                transport.resume_reading()

        loop.add_reader(peek.fileno(), readable)

    def _tls_started(self, plain: asyncio.Transport, done: asyncio.Task[asyncio.Transport | None]) -> None:
        failure = None if done.cancelled() else done.exception()
        secure = None if done.cancelled() or failure is not None else done.result()
        if secure is None:
            plain.abort()  # a failed TLS handshake: what asyncio's TLS server did, and no WebSocket to log
            return
        self._start(secure)

    def _start(self, transport: asyncio.Transport, *, plain_on_tls: bool = False) -> None:
        self.transport = transport
        early, self._before_start = self._before_start or [], None
        server = self.server
        now = time.time()
        client = transport.get_extra_info("peername")[:2]
        local = transport.get_extra_info("sockname")[:2]
        if server._stopping or len(server.connections) >= server.options.max_connections:
            transport.write(responses.too_many_connections(server.options.max_connections))
            transport.close()
            self._closed = True
            stream = server.number(False)
            server.emit([
                ConnectionOpened(stream=stream, direction="c2s", time=now, client=client, server=local,
                                 how="it connected to us"),
                ConnectionClosed(stream=stream, direction="c2s", time=now, clean=False,
                                 reason=f"refused with 503: already {server.options.max_connections} connections "
                                        "(--max-connections)"),
            ])
            return
        max_queue = server.options.max_queue
        transport.set_write_buffer_limits(high=max_queue, low=max_queue // 4)
        self._opened_at = now
        self._last_heard = asyncio.get_running_loop().time()
        self.endpoint = ServerEndpoint(server.config, client=client, server=local, time=now,
                                       numbering=server.number, on_message=self._on_message,
                                       budget=server.budget, plain_on_tls=plain_on_tls)
        server.connections[self.key] = self
        self._later("handshake", server.options.handshake_timeout, self._handshake_timed_out)
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._before_start is not None:
            # Decrypted as the TLS handshake completed, before start_tls's caller heard of it: kept for _start.
            self._before_start.append(data)
            return
        if self.endpoint is None or self._closed:
            return
        self._last_heard = asyncio.get_running_loop().time()
        self._probed = False
        recorder = self.server.recorder
        if recorder is not None:
            now = time.time()
            if self._unrecorded is not None:
                self._unrecorded.append((data, now))
            elif self.endpoint.stream is not None:
                recorder.data(self.endpoint.stream, "c2s", data, now)
        if self._input_at < len(self._input):  # not expected (reading pauses first), but never lose bytes
            self._input = self._input[self._input_at :] + data
        else:
            self._input = data
        self._input_at = 0
        self._decode_input()

    def eof_received(self) -> bool | None:
        return False  # let asyncio close the transport; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint is None:
            return
        self._finish("connection reset" if exc else "the client closed the TCP connection", lost=True)

    def pause_writing(self) -> None:
        # The transport's buffer passed --max-queue (the high-water mark set in connection_made).
        if self.server.app.paces_sender:
            self._queue_full = True
            self._update_reading()

    def resume_writing(self) -> None:
        # Drained to a quarter of --max-queue: a paced client may send again.
        if self._queue_full:
            self._queue_full = False
            self._update_reading()
            self._schedule_input()

    # -- input: a chunk per turn of the event loop --------------------------------------------------------------

    def _decode_input(self) -> None:
        """Decode one chunk of what was received, then give the loop back if more is waiting."""
        self._input_scheduled = False
        endpoint = self.endpoint
        if endpoint is None or self._closed or not self._pending_input or self._queue_full:
            self._update_reading()
            return
        now = time.time()
        was_handshaking = endpoint.state is State.CONNECTING
        try:
            events = endpoint.receive(self._next_chunk(endpoint), time=now)
            while not events and self._pending_input:
                # That chunk only went into a frame still being collected: nothing is checked, unmasked or
                # inflated before the chunk that completes a frame, so it is not charged to the turn, whose bound
                # is on what is decoded. What waits is one read at most (reading pauses first), so a frame larger
                # than a chunk (a 16 KiB compressed one: 16 chunks of 1 KiB) is collected in one turn, not 16.
                events = endpoint.receive(self._next_chunk(endpoint), time=now)
        except Exception as error:  # a bug in decoding one peer's bytes must not stop the server
            self._internal_error(error)
            self.server.flush_sent(now)  # what the application sent others before the failure
            return
        self._record_numbered(now)
        self.server.emit(events)
        if endpoint.failed_over_budget:
            self.server.warn(f"#{endpoint.stream} closed with {TRY_AGAIN_LATER} (try again later): its frame or "
                             "message would take what the unfinished frames and messages of all connections hold "
                             f"past --max-memory ({self.server.options.max_memory:,} bytes)")
        self._adapt_chunk(events)
        if was_handshaking and endpoint.state is State.OPEN:
            self._cancel("handshake")
            self._opened()
        self.server.flush_sent(now)  # what the application answered, after what caused it
        self._flush(now)
        if endpoint.wants_transport_closed:
            self._finish(self._ending())
            return
        self._schedule_input()
        self._update_reading()

    def _next_chunk(self, endpoint: ServerEndpoint) -> bytes:
        """The next chunk of what was received: --read-chunk bytes (1/16 of it on a compressed connection)."""
        chunk_size = self._chunk // COMPRESSED_CHUNK_SHARE if endpoint.compression else self._chunk
        chunk_size = max(chunk_size, MIN_CHUNK)
        start = self._input_at
        end = start + chunk_size
        if len(self._input) - end < MIN_CHUNK:
            # A tail shorter than the smallest chunk goes with this one: alone it would cost a turn, a pause and a
            # resume of reading, and a copy of the frame it ends (the 8 bytes past a 16 KiB chunk of a 16 KiB
            # message's frame), for a few bytes that cannot hold the others back.
            end = len(self._input)
        chunk = self._input[start:end]  # the whole read, uncopied, when it fits in one chunk
        self._input_at = start + len(chunk)
        if self._input_at >= len(self._input):
            self._input, self._input_at = b"", 0
        return chunk

    @property
    def _pending_input(self) -> bool:
        return self._input_at < len(self._input)

    def _schedule_input(self) -> None:
        if self._pending_input and not self._input_scheduled and not self._queue_full and not self._closed:
            self._input_scheduled = True
            asyncio.get_running_loop().call_soon(self._decode_input)

    def _update_reading(self) -> None:
        """Read while nothing is waiting to be decoded and a paced client's queue is under its bound."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return
        pause = self._pending_input or self._queue_full
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause

    def _adapt_chunk(self, events: list[Event]) -> None:
        """Fewer bytes per turn where frames are tiny (each costs the same whatever its size), back up where not."""
        frames = sum(1 for event in events if type(event) is FrameEvent and event.direction == "c2s")
        turn_frames = self.server.options.turn_frames
        if frames > turn_frames:
            self._chunk = max(MIN_CHUNK, self._chunk * turn_frames // frames)
        elif self._chunk < self.server.options.read_chunk:
            self._chunk = min(self.server.options.read_chunk, self._chunk * 2)

    def _record_numbered(self, now: float) -> None:
        """Once the connection has its number, the recording starts, with the bytes that came before it."""
        recorder = self.server.recorder
        endpoint = self.endpoint
        if recorder is None or endpoint is None or endpoint.stream is None or self._unrecorded is None:
            return
        transport = self.transport
        assert transport is not None
        recorder.open(endpoint.stream, transport.get_extra_info("peername")[:2],
                      transport.get_extra_info("sockname")[:2], self._opened_at)
        for data, at in self._unrecorded:
            recorder.data(endpoint.stream, "c2s", data, at)
        self._unrecorded = None

    def _internal_error(self, error: Exception) -> None:
        what = f"{type(error).__name__}: {error}"
        self.server.warn(f"#{self.stream if self.stream is not None else '?'} internal error while decoding, "
                         f"connection dropped: {visible(what[:300])}")
        endpoint = self.endpoint
        if endpoint is not None and endpoint.state is State.OPEN:
            endpoint.fail(1011, "internal error", time=time.time())
            self._flush(time.time())
        self._finish("internal error (see the warning above)")

    # -- the application and the timers -------------------------------------------------------------------------

    def _on_message(self, message: Message, now: float) -> None:
        self.server.app.message_received(self, message, now)

    def _opened(self) -> None:
        options = self.server.options
        if self.server.app.tick_interval > 0:
            self._later("tick", self.server.app.tick_interval, self._tick)
        if options.ping_interval > 0:
            self._later("ping", options.ping_interval, self._ping)
        if options.idle_timeout > 0:
            self._later("idle", options.idle_timeout / 2, self._check_idle)

    def _tick(self) -> None:
        now = time.time()
        self.server.app.tick(self, now)
        self.server.flush_sent(now)
        self._later("tick", self.server.app.tick_interval, self._tick)

    def _ping(self) -> None:
        if self.endpoint is not None:
            now = time.time()
            self.endpoint.send_ping(f"wsinspect {now:.3f}".encode(), time=now)
            self._flush(now)
        self._later("ping", self.server.options.ping_interval, self._ping)

    def _check_idle(self) -> None:
        """Close a connection that sent nothing for --idle-timeout. Halfway there, when no --ping-interval keeps
        it alive, ping it once: a client that is still there (every browser) answers, and that counts."""
        options = self.server.options
        endpoint = self.endpoint
        if endpoint is None or endpoint.state is not State.OPEN:
            return
        silent = asyncio.get_running_loop().time() - self._last_heard
        if silent >= options.idle_timeout:
            self.server.warn(f"#{endpoint.stream} idle for {options.idle_timeout:g} s (--idle-timeout): "
                             f"closing it with {IDLE_CLOSE}")
            self.close(IDLE_CLOSE, f"idle for {options.idle_timeout:g} s")
            return
        half = options.idle_timeout / 2
        if silent >= half and options.ping_interval == 0 and not self._probed:
            self._probed = True
            now = time.time()
            endpoint.send_ping(b"wsinspect: still there?", time=now)
            self._flush(now)
        self._later("idle", (half if silent < half else options.idle_timeout) - silent, self._check_idle)

    def send(self, data: str | bytes, *, time: float, opcode: int | None = None) -> None:
        """An application's message (``Member``): queued now, written by ``WebSocketServer.flush_sent``. Dropped
        members are never queued to."""
        if self.endpoint is None or self._closed:
            return
        self.endpoint.send_message(data, time=time, opcode=opcode)
        self.server.queued_for(self)

    def flush(self, now: float) -> None:
        if self.endpoint is not None and not self._closed:
            self._flush(now)

    def close(self, code: int, reason: str) -> None:
        if self.endpoint is None or self._closed:
            return
        now = time.time()
        if self.endpoint.state is State.OPEN:
            self.endpoint.close(code, reason, time=now)
            self._flush(now)
            self._await_close_frame()
        else:
            self._finish("server shut down")

    def abort(self, reason: str) -> None:
        self._finish(reason)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        out = endpoint.data_to_send()
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)
            if self.server.recorder is not None and endpoint.stream is not None:
                self.server.recorder.data(endpoint.stream, "s2c", out, now)
        self.server.emit(endpoint.events())
        if endpoint.state is State.CLOSING and "close" not in self._timers:
            self._await_close_frame()
        if transport is not None and not self.server.app.paces_sender and endpoint.state is State.OPEN \
                and transport.get_write_buffer_size() > self.server.options.max_queue:
            self._drop_slow_member(transport.get_write_buffer_size())

    def _await_close_frame(self) -> None:
        self._later("close", self.server.options.close_timeout,
                    lambda: self._finish(f"no close frame from the client within {self.server.options.close_timeout:g} "
                                         "s (--close-timeout)", abort=True))

    def _drop_slow_member(self, queued: int) -> None:
        """A member the application does not pace (chat, push) cannot hold the others back: it is closed, not
        waited for."""
        assert self.endpoint is not None
        limit = self.server.options.max_queue
        self.server.warn(f"#{self.endpoint.stream} dropped: {queued:,} bytes waiting to be sent to it, over "
                         f"--max-queue ({limit:,}); closing it with {SLOW_MEMBER_CLOSE}")
        self.endpoint.close(SLOW_MEMBER_CLOSE, f"too slow: over {limit} bytes queued", time=time.time())
        self._flush(time.time())

    def _ending(self) -> str:
        """Why the server closes the TCP connection now, said from who started the close."""
        endpoint = self.endpoint
        assert endpoint is not None
        if endpoint.not_http is not None:
            return f"answered 400 at once: {endpoint.not_http}"
        if endpoint.close_initiator == "client":
            return "the client started the close"
        if endpoint.close_initiator == "server":
            return f"the server closed it: {endpoint.close_reason}"
        return "the server answered and closed the TCP connection"

    def _handshake_timed_out(self) -> None:
        if self.endpoint is not None and self.endpoint.state is State.CONNECTING:
            self._finish(f"no complete handshake within {self.server.options.handshake_timeout:g} s")

    def _later(self, name: str, delay: float, callback: Callable[[], Any]) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _finish(self, reason: str, *, lost: bool = False, abort: bool = False) -> None:
        """Let the connection go. ``abort``: without writing what is still queued (the client stopped answering)."""
        if self._closed:
            return
        self._closed = True
        endpoint = self.endpoint
        if endpoint is not None and endpoint.discarded + len(self._input) - self._input_at:
            # RFC 6455 7.1.7: after failing the connection its data is not processed; say how much that was.
            discarded = endpoint.discarded + len(self._input) - self._input_at
            reason += f"; {discarded:,} bytes it sent after the failing frame discarded, not decoded (RFC 6455 7.1.7)"
        self._input, self._input_at = b"", 0
        for name in list(self._timers):
            self._cancel(name)
        transport = self.transport
        if transport is not None and abort:
            transport.abort()
        elif transport is not None and not lost:
            transport.close()
            if transport.get_write_buffer_size():
                # close() waits for the buffer to be written; a peer that never reads would hold it forever.
                asyncio.get_running_loop().call_later(self.server.options.close_timeout, transport.abort)
        self.server.connections.pop(self.key, None)
        now = time.time()
        if self.endpoint is not None:
            events = self.endpoint.transport_closed(time=now, reason=reason)
            self._record_numbered(now)
            self.server.emit(events)
            if self.server.recorder is not None and self.endpoint.stream is not None:
                self.server.recorder.close(self.endpoint.stream, now)


# -- the command ----------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    from wsinspect.commands.arguments import make_console, make_palette

    # With --json - the JSON lines own stdout, so the live log and the banner go to stderr (as connect and proxy do).
    console: Console = make_console(args, stderr=args.json == "-")
    if args.interval is not None and args.mode != "push":
        print(f"wsinspect serve: warning: --interval applies to --mode push only; ignored in {args.mode} mode",
              file=sys.stderr)
    try:
        tls = listening_context(args.certfile, args.keyfile)
    except UsageError as failure:
        print(f"wsinspect serve: {failure}", file=sys.stderr)
        return 2
    try:
        # Before listening: a file that cannot be written is an error now, not a lost session later.
        outputs = Outputs(json=args.json, record=args.record, command="serve",
                          say=lambda line: print(line, file=sys.stderr, flush=True))
    except UsageError as failure:
        print(f"wsinspect serve: {failure}", file=sys.stderr)
        return 2
    output = Output(console, make_palette(args, console), live=True)
    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    watching = not args.quiet or args.json is not None
    # A misbehaving server sends its faults as plain frames: declining permessage-deflate keeps them readable.
    config = ServerConfig(subprotocols=tuple(args.subprotocol),
                          compression=not args.no_compression and args.misbehave is None,
                          allowed_origins=tuple(args.origin) if args.origin else None,
                          fragment_size=args.fragment, limits=limits, page=demo_page(args.mode, args.misbehave),
                          decode_outgoing=watching, max_headers=args.max_headers,
                          max_fragments=args.max_fragments, misbehave=args.misbehave)
    options = ServeOptions(host=args.host, port=args.port, mode=args.mode,
                           interval=args.interval if args.interval is not None else 1.0,
                           ping_interval=args.ping_interval, handshake_timeout=args.handshake_timeout,
                           max_connections=args.max_connections, max_queue=args.max_queue,
                           idle_timeout=args.idle_timeout, read_chunk=args.read_chunk, turn_frames=args.turn_frames,
                           close_timeout=args.close_timeout, shutdown_grace=args.shutdown_grace,
                           max_memory=args.max_memory, tls=tls)
    summary = Summary()
    sinks: list[EventSink] = []
    if not args.quiet:  # --quiet keeps nothing per event, not even the counts
        view: EventSink = (FlowView(output) if args.flow else
                           PacketList(output, detail=args.detail, max_bytes=args.max_bytes, live=True,
                                      compact=args.compact, explain=args.explain))
        sinks += [summary, view]
    if args.json:
        sinks.append(JsonSink(outputs))

    def warn(line: str) -> None:
        output.flush()  # after the log lines before it
        output.line([("warning.strong", line)])  # the theme's warning (bold red on light backgrounds, not yellow)
        output.flush()

    def listening(host: str, port: int) -> None:
        """The banner. A URL is never folded: each is alone on its line, written as it is (a terminal narrower than
        it soft-wraps it, and it still copies whole). Listening on every interface, the URLs are this machine's
        addresses, which others can open, not 0.0.0.0."""
        shown = f"[{host}]" if ":" in host else host
        secure = "s" if options.tls is not None else ""
        every_interface = host in ("0.0.0.0", "::")
        output.row([("strong", f"wsinspect serve: {options.mode} mode on ws{secure}://{shown}:{port}/"
                               + (" (every interface)" if every_interface else ""))])
        for warning in misbehave.banner(args.misbehave) if args.misbehave is not None else []:
            output.line([("error", warning)])
        if every_interface:
            output.line([("warning.strong", "warning: listening on every interface; anyone who can reach this "
                                            "machine can connect. Use --host 127.0.0.1 to stay local.")])
            output.line([("strong", "Open the demo page at:")])
            for address in reachable_addresses(host):
                shown_address = f"[{address}]" if ":" in address else address
                output.row([("accent", f"  http{secure}://{shown_address}:{port}/")])
        else:
            output.line([("plain", "Demo page:")])
            output.row([("accent", f"  http{secure}://{shown}:{port}/")])
        output.line([("muted", "Ctrl-C closes every connection with 1001 and stops.")])
        output.flush()

    server = WebSocketServer(options, config, sinks, outputs.recording if args.record else None,
                             on_listening=listening, warn=warn)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before listening: a Ctrl-C at any moment closes cleanly
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except OSError as error:
            reason = f"cannot listen on {visible(options.host)}:{options.port}: {error.strerror}"
            raise SystemExit(f"wsinspect serve: {reason}") from None
        await stop.wait()
        output.line([("muted", "stopping: closing every connection with 1001 (going away)")])
        output.flush()
        await server.shutdown()

    status = 0
    try:
        asyncio.run(main())
    except SystemExit as exit_:
        print(exit_.code, file=sys.stderr)
        status = 1
    finally:
        for sink in sinks:
            sink.close()
        outputs.finish(time.time())
    if not args.quiet:
        output.lines(summary.lines())
        output.flush()
    return outputs.exit_status(status, when_incomplete=1)
