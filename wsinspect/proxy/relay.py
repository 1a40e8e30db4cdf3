"""``wsinspect proxy``'s network edge: every client connection gets its own connection to the upstream server, and
the bytes of both directions are relayed as they come, unchanged, while a copy of each goes through the passive
decoder that reads captures (``core.connection.Connection``): c2s is what the client sent, s2c what the upstream
sent. The views, ``--json`` and ``--record`` therefore describe exactly the bytes that crossed the proxy.

Nothing is re-framed or re-compressed: the subprotocol, permessage-deflate and its parameters are agreed between the
client and the upstream, end to end, and the proxy only watches. The one change is the opening request's Host field,
which names the upstream instead of the proxy (``with_host``; ``--keep-host`` leaves it alone): RFC 6455 4.1 (item 4)
has a client name in Host the server it connects to, 1.3 says why ("so that both the client and the server can
verify that they agree on which host is in use"), and 4.2.1 (item 2) has the server read its own authority there.
An upstream behind a virtual host or a CDN routes on it, and one reached over TLS checks it against the server name
the TLS handshake asked for, so a request still naming the proxy would be refused or misrouted. Reverse proxies do
the same by default (nginx's ``proxy_set_header Host $proxy_host``, mitmproxy's reverse mode without
``keep_host_header``). The decoder sees the request as the client sent it.

Theory of operation, per connection:

    phase       the client's bytes                                  the upstream
    REQUEST     collected until the request's header block ends     not connected yet
                (at most --max-header: else 431; --handshake-timeout)
    CONNECTING  reading paused                                      TCP (and TLS) within --open-timeout;
                                                                    failing that, the client gets 502
    RELAYING    written to the upstream as they come                written to the client as they come
    ENDED       both connections closed (what is queued is written first, for at most --close-timeout)

A connection is numbered when its first byte arrives (a browser's speculative connection that never sends anything
is not shown). Bounds: what waits to be written to either side is at most --max-queue: past it, the proxy stops
reading from the other side until a quarter is left, so a peer that does not read slows its sender through TCP
instead of growing the proxy. The decoder holds at most --max-frame and --max-message per direction, and the
unfinished messages of all connections together at most --max-memory (a shared ``MemoryBudget``); past those it
shows less, and relays everything all the same. Bytes are relayed as soon as they arrive, and decoded a chunk per
turn of the event loop (--read-chunk, 1/16 of it on a compressed connection, fewer bytes where chunks held more than
--turn-frames frames), as serve does: reading from a side waits until what it sent is decoded, so a flood of tiny
frames on one connection delays the others by one chunk, and what waits to be decoded is one read at most. Bytes
that only add to a frame still being collected are not counted against the chunk (unlike serve): nothing is checked
or inflated until the piece that completes the frame, so a frame larger than a chunk is collected in one turn.

Endings: silence in both directions for --idle-timeout ends a connection. A FIN from either side ends the relay: the
other side is closed once what is queued for it is written (RFC 6455 7.1.1: the server closes TCP first after the
closing handshake, and the client follows). Half-closed TCP is not kept open.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wsinspect.client.session import ConnectFailed, open_connection
from wsinspect.client.target import Target, describe_tls
from wsinspect.core.connection import DEFAULT_MEMORY_BUDGET, Connection, Limits, MemoryBudget
from wsinspect.core.events import ConnectionOpened, Direction, Event, FrameEvent
from wsinspect.core.handshake import find_header_end
from wsinspect.outputs import Outputs
from wsinspect.server import responses
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

LISTEN_BACKLOG = 2048  # as serve: a class connecting at once should not see refused connections
MIN_CHUNK = 256  # the smallest chunk decoded at once: a chunk of tiny frames still makes progress per turn
COMPRESSED_CHUNK_SHARE = 16  # a compressed byte can inflate to about a thousand: fewer of them per turn

# The Host field of a request's header block: the name kept as the client wrote it, the value replaced.
_HOST_FIELD = re.compile(rb"^(host[ \t]*:)[^\r\n]*", re.IGNORECASE | re.MULTILINE)


def with_host(head: bytes, authority: str) -> bytes:
    """A request's header block with each Host field's value replaced by ``authority`` (the module docstring says
    why). None is added where there was none: the upstream refuses such a request, as it should, and the decoder
    has already said why."""
    return _HOST_FIELD.sub(lambda match: match.group(1) + b" " + authority.encode("ascii"), head)


class Phase(enum.Enum):
    REQUEST = "request"
    CONNECTING = "connecting"
    RELAYING = "relaying"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    upstream: Target
    upstream_tls: ssl.SSLContext | None = None  # for a wss:// upstream
    insecure: bool = False  # the upstream's certificate is not checked (said on each connection's TLS line)
    host: str = "127.0.0.1"
    port: int = 8080
    listen_tls: ssl.SSLContext | None = None  # --certfile/--keyfile: clients connect with wss://
    keep_host: bool = False
    limits: Limits = field(default_factory=Limits)
    max_memory: int = DEFAULT_MEMORY_BUDGET
    max_queue: int = 1 << 20
    max_connections: int = 1024
    handshake_timeout: float = 10.0
    open_timeout: float = 10.0
    idle_timeout: float = 300.0  # 0: never
    close_timeout: float = 3.0
    read_chunk: int = 16 * 1024
    turn_frames: int = 256


@dataclass(frozen=True, slots=True)
class Reports:
    """Where the relay reports: decoded events, the recording, lines for the operator."""

    emit: Callable[[list[Event]], None]
    files: Outputs  # --record is written here; --json is emit's business
    show: Callable[[list[Piece]], None]  # a line for the live log (an upstream's TLS session)
    warn: Callable[[str], None]  # a line for the operator even under --quiet; already escaped


class ProxyServer:
    """The listening socket and the connections it relays."""

    def __init__(self, options: ProxyOptions, reports: Reports) -> None:
        self.options = options
        self.reports = reports
        self.budget = MemoryBudget(options.max_memory)
        self.connections: set[ProxiedConnection] = set()
        self.stopping = False
        self._numbers = itertools.count()
        self._server: asyncio.Server | None = None

    def number(self) -> int:
        return next(self._numbers)

    async def start(self) -> tuple[str, int]:
        options = self.options
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ProxiedConnection(self), options.host, options.port, reuse_address=True, backlog=LISTEN_BACKLOG,
            ssl=options.listen_tls,
            ssl_handshake_timeout=options.handshake_timeout if options.listen_tls is not None else None)
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def shutdown(self) -> None:
        """Stop listening and cut every connection: the proxy cannot close a WebSocket cleanly for either side
        without sending frames of its own, and it sends none."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.end("the proxy was stopped", abort=True)
        await asyncio.sleep(0)  # the transports' connection_lost callbacks run
        if self._server is not None:
            await self._server.wait_closed()


class ProxiedConnection(asyncio.Protocol):
    """One client's connection (this protocol is its side) and the upstream connection made for it."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.phase = Phase.REQUEST
        self.stream: int | None = None
        self.decoder: Connection | None = None  # None until numbered, and after a bug of ours stopped decoding
        self._pending = bytearray()  # REQUEST: the request so far; CONNECTING: what the upstream is sent first
        self._scanned = 0  # bytes of the request already searched for its end (a trickled request is scanned once)
        self._connecting: asyncio.Task[None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._client_full = False  # more than --max-queue waits for the client: the upstream is not read
        # Relayed, not decoded yet, in the order the bytes arrived from either side (so the log keeps cause before
        # effect: a ping before its pong), with their arrival time; at most one read per side, since a side is not
        # read while its bytes wait here (``_waiting`` counts them).
        self._undecoded: deque[tuple[Direction, bytes | memoryview, float]] = deque()
        self._waiting: dict[Direction, int] = {"c2s": 0, "s2c": 0}
        self._turn_scheduled = False
        self._chunk = proxy.options.read_chunk
        self._upstream_full = False  # more than --max-queue waits for the upstream: the client is not read
        self._last_heard = 0.0
        self._opened_at = 0.0
        self._client_address: tuple[str, int] = ("", 0)
        self._local_address: tuple[str, int] = ("", 0)

    # -- the client's side (asyncio.Protocol) ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        proxy, options = self.proxy, self.proxy.options
        self._client_address = transport.get_extra_info("peername")[:2]
        self._local_address = transport.get_extra_info("sockname")[:2]
        if proxy.stopping or len(proxy.connections) >= options.max_connections:
            self.phase = Phase.ENDED
            transport.write(responses.too_many_connections(options.max_connections))
            transport.close()
            proxy.reports.warn(f"a connection from {visible(_address(self._client_address))} got 503: already "
                               f"{options.max_connections} connections (--max-connections)")
            return
        transport.set_write_buffer_limits(high=options.max_queue, low=options.max_queue // 4)
        proxy.connections.add(self)
        self._opened_at = time.time()
        self._last_heard = asyncio.get_running_loop().time()
        self._later("handshake", options.handshake_timeout, self._handshake_timed_out)
        if options.idle_timeout > 0:
            self._later("idle", options.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.ENDED:
            return
        now = time.time()
        self._last_heard = asyncio.get_running_loop().time()
        if self.phase is Phase.RELAYING:
            assert self.upstream is not None
            self.upstream.write(data)
            self._observe("c2s", data, now)
            return
        self._observe("c2s", data, now)
        self._pending += data
        if self.phase is Phase.REQUEST:
            self._request_received(now)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost ends the relay

    def connection_lost(self, exc: Exception | None) -> None:
        self.end("the client reset the connection" if exc else "the client closed the TCP connection")

    def pause_writing(self) -> None:
        self._client_full = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._client_full = False
        self._update_reading()

    # -- the upstream's side (called by UpstreamSide) ---------------------------------------------------------------

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.phase is not Phase.CONNECTING:  # the client left while the upstream was being reached
            transport.abort()
            return
        options = self.proxy.options
        self.upstream = transport
        transport.set_write_buffer_limits(high=options.max_queue, low=options.max_queue // 4)
        self.phase = Phase.RELAYING
        transport.write(bytes(self._pending))
        self._pending = bytearray()
        if options.upstream_tls is not None:
            self.proxy.reports.show([("muted", f"#{self.stream} upstream "), *describe_tls(transport,
                                                                                             options.insecure)])
        self._update_reading()

    def upstream_received(self, data: bytes) -> None:
        if self.phase is Phase.ENDED:
            return
        self._last_heard = asyncio.get_running_loop().time()
        assert self.client is not None
        self.client.write(data)
        self._observe("s2c", data, time.time())

    def upstream_lost(self, exc: Exception | None) -> None:
        self.end(f"the upstream reset the connection ({visible(str(exc) or type(exc).__name__)})" if exc
                 else "the upstream closed the TCP connection")

    def upstream_full(self, full: bool) -> None:
        self._upstream_full = full
        self._update_reading()

    # -- the opening request --------------------------------------------------------------------------------------

    def _request_received(self, now: float) -> None:
        """The request's bytes so far are in ``_pending``: once its header block is complete, reach the upstream."""
        options = self.proxy.options
        limit = options.limits.max_header_bytes
        end = find_header_end(self._pending, self._scanned)
        self._scanned = max(len(self._pending) - 3, 0)
        if end < 0 and len(self._pending) <= limit:
            return
        if end < 0 or end > limit:
            # The decoder has said why (http.header-too-large); the proxy answers as serve does, unasked upstream.
            self._answer(responses.header_too_large(limit), now,
                         f"refused with 431: the request's header block is over {limit} bytes (--max-header)")
            return
        self._cancel("handshake")
        self.phase = Phase.CONNECTING
        if not options.keep_host:
            self._pending[:end] = with_host(bytes(self._pending[:end]), options.upstream.authority)
        self._update_reading()
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        options = self.proxy.options
        try:
            await open_connection(options.upstream, options.upstream_tls, lambda: UpstreamSide(self),
                                  options.open_timeout)
        except ConnectFailed as failure:
            if self.phase is Phase.CONNECTING:
                self._bad_gateway(str(failure))

    def _bad_gateway(self, reason: str) -> None:
        """The upstream cannot be reached: the client gets 502 with the reason, and so does the operator."""
        self.proxy.reports.warn(f"#{self.stream} upstream {visible(self.proxy.options.upstream.url)} unreachable: "
                                f"{reason}; the client got 502 Bad Gateway")
        self._answer(responses.bad_gateway(self.proxy.options.upstream.url, reason), time.time(),
                     "the proxy answered 502 Bad Gateway: the upstream could not be reached")

    def _answer(self, response: bytes, now: float, reason: str) -> None:
        """The proxy's own answer to the client (no upstream took part): decoded and recorded like the upstream's,
        since it is what the client got."""
        self._observe("s2c", response, now)
        assert self.client is not None
        self.client.write(response)
        self.end(reason)

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _observe(self, direction: Direction, data: bytes, now: float) -> None:
        """A copy of bytes that crossed the proxy: to the recording and the decoder."""
        reports = self.proxy.reports
        if self.stream is None:
            self._number()
        stream = self.stream
        assert stream is not None
        reports.files.recording.data(stream, direction, data, now)
        if self.decoder is None:
            return
        self._undecoded.append((direction, data, now))
        self._waiting[direction] += len(data)
        self._decode_turn()

    def _decode_turn(self, *, everything: bool = False) -> None:
        """Decode one chunk of each direction's waiting bytes (``everything``: all of them, at the end), then give
        the event loop back if more is waiting, and read again from a side once its bytes are all decoded."""
        self._turn_scheduled = False
        decoder = self.decoder
        if decoder is not None and self._undecoded:
            chunk = self._chunk // COMPRESSED_CHUNK_SHARE if decoder.deflate is not None else self._chunk
            room = max(chunk, MIN_CHUNK)
            frames = 0
            while self._undecoded and (room > 0 or everything):
                direction, data, at = self._undecoded[0]
                # A tail shorter than the smallest chunk goes with this piece (as in serve): alone it would cost a
                # turn and a copy of the frame it ends, e.g. the 8 bytes past 16 KiB of a 16 KiB message's frame.
                piece: bytes
                if everything or len(data) - room < MIN_CHUNK:
                    piece = bytes(data)  # no copy when it is bytes: only a rest left by an earlier piece is a view
                    self._undecoded.popleft()
                else:  # the rest as a view: not copied again for every piece
                    view = memoryview(data)
                    piece = bytes(view[:room])
                    self._undecoded[0] = (direction, view[room:], at)
                self._waiting[direction] -= len(piece)
                try:
                    events = decoder.receive(direction, piece, time=at)
                except Exception as error:  # a bug of ours in decoding must not break the relay
                    self._decoding_failed(error)
                    break
                if events:
                    frames += sum(1 for event in events if type(event) is FrameEvent)
                    self.proxy.reports.emit(events)
                    room -= len(piece)
                # else: the piece only went into a frame still being collected (a frame is checked and inflated in
                # the piece that completes it): not charged to the turn, whose bound is on frames decoded. What
                # waits is at most one read per side, so a large frame is collected in one turn, not one per chunk.
            self._adapt_chunk(frames)
        if self._undecoded and not self._turn_scheduled and self.phase is not Phase.ENDED:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._decode_turn)
        self._update_reading()

    def _adapt_chunk(self, frames: int) -> None:
        """Fewer bytes per turn where frames are tiny (each costs the same whatever its size), back up where not."""
        turn_frames, read_chunk = self.proxy.options.turn_frames, self.proxy.options.read_chunk
        if frames > turn_frames:
            self._chunk = max(MIN_CHUNK, self._chunk * turn_frames // frames)
        elif self._chunk < read_chunk:
            self._chunk = min(read_chunk, self._chunk * 2)

    def _decoding_failed(self, error: Exception) -> None:
        self.decoder = None
        self._undecoded.clear()
        self._waiting = {"c2s": 0, "s2c": 0}
        what = f"{type(error).__name__}: {error}"
        self.proxy.reports.warn(f"#{self.stream} internal error while decoding: {visible(what[:300])}; decoding of "
                                "this connection stops, relaying goes on")

    def _number(self) -> None:
        stream = self.stream = self.proxy.number()
        self.decoder = Connection(stream, limits=self.proxy.options.limits, budget=self.proxy.budget)
        client, local, opened_at = self._client_address, self._local_address, self._opened_at
        self.proxy.reports.files.recording.open(stream, client, local, opened_at)
        self.proxy.reports.emit([ConnectionOpened(stream=stream, direction="c2s", time=opened_at, client=client,
                                                  server=local, how="it connected to the proxy")])

    def _update_reading(self) -> None:
        """Read from a side only while the other side takes what it is sent (and, from the client, only once there
        is an upstream to send it to)."""
        client, upstream = self.client, self.upstream
        if self.phase is Phase.ENDED:
            return
        if client is not None and not client.is_closing():
            if self.phase is Phase.CONNECTING or self._upstream_full or self._waiting["c2s"]:
                client.pause_reading()
            else:
                client.resume_reading()
        if upstream is not None and not upstream.is_closing():
            if self._client_full or self._waiting["s2c"]:
                upstream.pause_reading()
            else:
                upstream.resume_reading()

    def end(self, reason: str, *, abort: bool = False) -> None:
        """Let both connections go (``abort``: without writing what is still queued) and report the end once."""
        if self.phase is Phase.ENDED:
            return
        self.phase = Phase.ENDED
        for name in list(self._timers):
            self._cancel(name)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        loop = asyncio.get_running_loop()
        for transport in (self.client, self.upstream):
            if transport is None or transport.is_closing():
                continue
            if abort:
                transport.abort()
                continue
            transport.close()
            if transport.get_write_buffer_size():
                # close() writes what is queued first; a peer that never reads would hold it forever.
                loop.call_later(self.proxy.options.close_timeout, transport.abort)
        self.proxy.connections.discard(self)
        self._decode_turn(everything=True)  # at most one read per direction: bounded
        now = time.time()
        if self.decoder is not None:
            self.proxy.reports.emit(self.decoder.end(time=now, reason=reason))
        stream = self.stream
        if stream is not None:
            self.proxy.reports.files.recording.close(stream, now)

    def _handshake_timed_out(self) -> None:
        self.end(f"no complete request within {self.proxy.options.handshake_timeout:g} s (--handshake-timeout)",
                 abort=True)

    def _check_idle(self) -> None:
        idle = self.proxy.options.idle_timeout
        silent = asyncio.get_running_loop().time() - self._last_heard
        if silent < idle:
            self._later("idle", idle - silent, self._check_idle)
            return
        if self.stream is not None:
            self.proxy.reports.warn(f"#{self.stream} nothing in either direction for {idle:g} s (--idle-timeout): "
                                    "both connections closed")
        self.end(f"idle for {idle:g} s (--idle-timeout)", abort=True)

    def _later(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()


class UpstreamSide(asyncio.Protocol):
    """The upstream connection's protocol: hands everything to the ``ProxiedConnection`` it was made for."""

    def __init__(self, connection: ProxiedConnection) -> None:
        self.connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.connection.upstream_made(transport)

    def data_received(self, data: bytes) -> None:
        self.connection.upstream_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.connection.upstream_full(True)

    def resume_writing(self) -> None:
        self.connection.upstream_full(False)


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
