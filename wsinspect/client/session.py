"""The edges of ``wsinspect connect``: ``open_connection`` (name lookup, TCP, TLS, with one-line reasons when they
fail), ``ClientSession``, an ``asyncio.Protocol`` that only moves bytes between the socket and a ``ClientEndpoint``
(core.endpoint) and keeps the clocks the sans-I/O endpoint cannot, and ``StdinReader`` for the lines to send.

After our close frame the session waits ``close_timeout`` for the server's. After the closing handshake it waits as
long again for the server to close TCP first, as RFC 6455 7.1.1 asks of a client ("it SHOULD wait for a TCP Close
from the server"), and only then closes it itself. What waits to be sent is bounded: past ``max_queue`` the
session says it is not ``writable`` (the conversation stops taking stdin lines until a quarter is left), and a
server that makes us answer (pings) but never reads the answers is dropped once ``drop_at`` bytes wait for it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError as ConcurrentCancelled
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from wsinspect.client.lines import CLOSE_NORMAL, Action, SendBinary, SendFragmented, SendPing, SendText, StartClose
from wsinspect.client.target import Target
from wsinspect.core.endpoint import ClientEndpoint, ClientOptions, State
from wsinspect.core.events import Event
from wsinspect.views.safe import visible

if TYPE_CHECKING:
    from wsinspect.outputs import Outputs

STREAM = 0  # the one connection's number in the views, the JSON lines and the recording
MAX_LINE = 1 << 20  # bytes of one stdin line: a longer one is refused, not held
FIRST_DATA_KEPT = 64  # bytes of the server's first data kept: to tell a TLS answer (a record header is 5), and
# to show what a server that did not answer in HTTP sent instead
SWITCHING_PROTOCOLS = 101
READ_SIZE = 1 << 16  # bytes of stdin read at once: the lines they complete are one batch
# OpenSSL's reasons for a first answer that is not a TLS record: a plain HTTP server's "HTTP/1.1 400" read as a
# record header gives a version it does not know (OpenSSL 1.1 and 3.0) or a record layer failure (3.2 and later).
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                             "UNKNOWN_PROTOCOL"})


@dataclass(frozen=True, slots=True)
class StdinLine:
    number: int
    text: str | None  # None: the line could not be taken (``problem`` says why)
    problem: str = ""


StdinBatch = list[StdinLine]  # the lines one read of stdin completed, in order


class StdinReader(threading.Thread):
    """Reads stdin's lines into an asyncio queue, waiting while the queue is full (that is the backpressure: the
    conversation takes more lines only when the socket can take more). ``None`` marks the end of input.

    The lines go over in batches, each the lines one read completed: a pipe or a file gives many lines a read, and
    handing them over one at a time (a wake-up of the event loop each) cost more than sending them; a terminal gives
    one line a read, so a typed line still goes at once.

    A thread, since a terminal, a pipe and a regular file can all be stdin and the event loop cannot wait on a file.
    It reads the descriptor with ``os.read``, not through ``sys.stdin``: a daemon thread blocked inside the buffered
    reader at exit would hold its lock while the interpreter shuts down.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[StdinBatch | None]) -> None:
        super().__init__(daemon=True, name="wsinspect-stdin")
        self.loop = loop
        self.queue = queue
        self._number = 0

    def run(self) -> None:
        pending = bytearray()
        skipping = False  # inside a line longer than MAX_LINE: its bytes are dropped until its end
        while True:
            try:
                chunk = os.read(sys.stdin.fileno(), READ_SIZE)
            except OSError:
                chunk = b""
            if not chunk:
                if pending and not skipping:
                    self._put([self._line(bytes(pending))])
                self._put(None)
                return
            pending += chunk
            batch: StdinBatch = []
            start = 0
            while (end := pending.find(b"\n", start)) >= 0:
                if skipping:
                    skipping = False
                else:
                    batch.append(self._line(bytes(pending[start:end])))
                start = end + 1
            del pending[:start]
            if len(pending) > MAX_LINE and not skipping:
                self._number += 1
                batch.append(StdinLine(self._number, None, f"longer than {MAX_LINE:,} bytes: not sent"))
                skipping = True
            if skipping:
                pending.clear()
            if batch:
                self._put(batch)

    def _line(self, raw: bytes) -> StdinLine:
        self._number += 1
        if raw.endswith(b"\r"):  # a line typed on Windows, or pasted from one
            raw = raw[:-1]
        try:
            return StdinLine(self._number, raw.decode("utf-8"))
        except UnicodeDecodeError:
            return StdinLine(self._number, None, "not UTF-8, so it cannot be a text message (RFC 6455 5.6); send "
                                                 "bytes with /binary HEX")

    def _put(self, item: StdinBatch | None) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop).result()
        except (RuntimeError, asyncio.CancelledError, ConcurrentCancelled):
            raise SystemExit from None  # the conversation is over: this thread has nobody to give lines to


class EventSink(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _discard(events: list[Event]) -> None:
    """Where events go once nobody reads them."""


class ClientSession(asyncio.Protocol):
    """Moves bytes between the socket and the ``ClientEndpoint``, and keeps the clocks. See the module docstring."""

    def __init__(self, options: ClientOptions, *, emit: Callable[[list[Event]], None], files: Outputs,
                 close_timeout: float, max_queue: int, drop_at: int) -> None:
        loop = asyncio.get_running_loop()
        self.options = options
        self.emit = emit
        self.files = files
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.drop_at = drop_at
        self.endpoint: ClientEndpoint | None = None
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[None] = loop.create_future()  # the server answered, or the connection ended
        self.finished: asyncio.Future[None] = loop.create_future()  # the TCP connection is gone
        self.writable = asyncio.Event()  # what waits to be sent is under --max-queue
        self.writable.set()
        self.ending: str | None = None  # why we closed the TCP connection ourselves
        self.notes: list[str] = []  # things the verdict should mention (a TLS answer to a ws:// request...)
        self.output_gone = False  # the reader of stdout went away; the connection was dropped
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: State | None = None  # the state whose end the close timer waits for
        self.first_data = b""  # the start of what the server sent (decrypted over TLS)
        self.received = 0  # bytes the server sent (decrypted over TLS)
        self._plain = True  # no TLS: what the server sent is what came over TCP

    @property
    def is_open(self) -> bool:
        return self.endpoint is not None and self.endpoint.state is State.OPEN and not self.finished.done()

    # -- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._plain = transport.get_extra_info("ssl_object") is None
        transport.set_write_buffer_limits(high=self.max_queue, low=self.max_queue // 4)
        now = time.time()
        client = transport.get_extra_info("sockname")[:2]
        server = transport.get_extra_info("peername")[:2]
        self.endpoint = ClientEndpoint(self.options, client=client, server=server, time=now, stream=STREAM)
        self.files.recording.open(STREAM, client, server, now)
        self._flush(now)

    def data_received(self, data: bytes) -> None:
        endpoint = self.endpoint
        if endpoint is None or self.finished.done():
            return
        now = time.time()
        if len(self.first_data) < FIRST_DATA_KEPT:
            self.first_data += data[:FIRST_DATA_KEPT - len(self.first_data)]
        self.received += len(data)
        self.files.recording.data(STREAM, "s2c", data, now)
        self._emit(endpoint.receive(data, time=now))
        self._flush(now)

    def eof_received(self) -> bool | None:
        return None  # the server closed its side: close ours too (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        now = time.time()
        if self.ending is not None:
            reason = self.ending
        elif exc is not None:
            reason = f"the connection broke: {visible(str(exc) or type(exc).__name__)}"
        else:
            reason = "the server closed the TCP connection"
        try:
            self._note_a_tls_answer()
            if self.endpoint is not None:
                self._emit(self.endpoint.transport_closed(time=now, reason=reason))
            self.files.recording.close(STREAM, now)
        finally:  # whatever the outputs did, the conversation must learn that the connection is gone
            self.writable.set()  # nobody waits for a socket that is gone
            for future in (self.answered, self.finished):
                if not future.done():
                    future.set_result(None)

    def _note_a_tls_answer(self) -> None:
        """A ws:// request answered with TLS: say so. Checked at the end, and only when no 101 came back (a TLS
        record never reads as one), so that a normal run does not import wsinspect.trace, and the capture stack
        behind it, for this one check: that was about a tenth of a one-shot run's CPU time."""
        response = self.endpoint.response if self.endpoint is not None else None
        if not self._plain or not self.first_data or (response is not None and response.status == SWITCHING_PROTOCOLS):
            return
        from wsinspect.trace import looks_like_tls

        if looks_like_tls(self.first_data):
            self.notes.append("the server answered with TLS: it expects wss://, not ws://")

    def pause_writing(self) -> None:
        # More than --max-queue waits for the server: stdin waits too (resume_writing: a quarter is left).
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- what the conversation asks for -------------------------------------------------------------------------

    def perform(self, *actions: Action) -> None:
        """Each action in turn while the connection is open (after a close, the rest are dropped), then what they
        made is written at once: a batch of stdin's lines goes out in one write, not one system call each."""
        endpoint = self.endpoint
        if endpoint is None or not actions or not self.is_open:
            return
        now = time.time()
        for action in actions:
            if not self.is_open:
                break
            now = time.time()
            if isinstance(action, SendText):
                endpoint.send_message(action.text, time=now)
            elif isinstance(action, SendBinary):
                endpoint.send_message(action.data, time=now)
            elif isinstance(action, SendPing):
                endpoint.send_ping(action.payload, time=now)
            elif isinstance(action, SendFragmented):
                endpoint.send_fragmented(action.text, action.parts, time=now)
            elif isinstance(action, StartClose):
                endpoint.close(action.code, action.reason, time=now)
        self._flush(now)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 7.1.2); ignored unless the connection is open."""
        self.perform(StartClose(code, reason))

    def abort(self, reason: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.ending = reason
            transport.abort()

    # -- plumbing --------------------------------------------------------------------------------------------

    def _emit(self, events: list[Event]) -> None:
        try:
            self.emit(events)
        except BrokenPipeError:
            # Whoever read the output went away (`| head`): stop, as a Unix tool does, and say nothing more.
            self.output_gone = True
            self.emit = _discard
            self.abort("the reader of our output went away")

    def _flush(self, now: float) -> None:
        endpoint = self.endpoint
        transport = self.transport
        assert endpoint is not None and transport is not None
        out = endpoint.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)
            self.files.recording.data(STREAM, "c2s", out, now)
            queued = transport.get_write_buffer_size()
            if queued > self.drop_at:
                # Only answers we owe (pongs, a close) get here past the pause: the server makes us answer and
                # never reads the answers.
                self.abort(f"the server stopped reading: {queued:,} bytes waited to be sent to it (over "
                           f"{self.drop_at:,})")
        self._emit(endpoint.events())
        self._follow_state()

    def _follow_state(self) -> None:
        """Time what the endpoint waits for; close the TCP connection when the protocol says the client may."""
        endpoint = self.endpoint
        assert endpoint is not None
        state = endpoint.state
        if state is not State.CONNECTING and not self.answered.done():
            self.answered.set_result(None)
        if self.finished.done():
            return
        if state is State.CLOSING and self._waiting_for is not State.CLOSING:
            self._start_timer(State.CLOSING, f"no close frame from the server within {self.close_timeout:g} s of "
                                             "ours (--close-timeout); we closed the TCP connection")
        elif endpoint.awaiting_tcp_close and self._waiting_for is not State.CLOSED:
            self._start_timer(State.CLOSED, "the server did not close the TCP connection within "
                                            f"{self.close_timeout:g} s of the closing handshake (RFC 6455 7.1.1: "
                                            "it closes first); we closed it")
        elif endpoint.wants_transport_closed:
            self._close_transport("the handshake failed, so we closed the TCP connection")

    def _start_timer(self, waiting_for: State, reason: str) -> None:
        self._cancel_timer()
        self._waiting_for = waiting_for
        self._timer = asyncio.get_running_loop().call_later(self.close_timeout, self._close_transport, reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_transport(self, reason: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.ending = reason
        transport.close()
        if transport.get_write_buffer_size():
            # close() writes what is queued first; a server that never reads would keep us here forever.
            asyncio.get_running_loop().call_later(self.close_timeout, transport.abort)


class ConnectFailed(Exception):
    """Could not connect (exit status 3); the message says why in one line, already safe to print."""


async def open_connection(target: Target, context: ssl.SSLContext | None, factory: Callable[[], asyncio.Protocol],
                          timeout: float) -> asyncio.BaseTransport:
    """Resolve the host, then try its addresses in order until one takes the TCP connection (and TLS) within
    ``timeout`` seconds in all. Raises ConnectFailed with the reason. ``factory`` makes the protocol: connect's
    ``ClientSession``, or the proxy's upstream side."""
    loop = asyncio.get_running_loop()
    where = f"{visible(target.host)} port {target.port}"
    deadline = loop.time() + timeout
    try:
        addresses = await asyncio.wait_for(loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
                                           timeout)
    except socket.gaierror as failure:
        raise ConnectFailed(f"cannot find the host '{visible(target.host)}' ({visible(str(failure.strerror))})") \
            from None
    except asyncio.TimeoutError:
        raise ConnectFailed(f"looking up '{visible(target.host)}' took over {timeout:g} s (--open-timeout)") from None
    refused: list[str] = []
    failed: list[str] = []
    connected: list[str] = []  # the address whose TCP connection is made: asyncio builds the protocol only then

    def made_after_tcp(shown: str) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            connected.append(shown)
            return factory()
        return make

    for family, _, proto, _, address in addresses:
        left = deadline - loop.time()
        if left <= 0:
            break
        host, port = str(address[0]), int(address[1])
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        plain_url = f"ws://{shown}{target.resource}"
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(made_after_tcp(shown), host, port, family=family, proto=proto, ssl=context,
                                       server_hostname=target.host if context is not None else None,
                                       ssl_handshake_timeout=left if context is not None else None), left)
            return transport
        except ssl.SSLCertVerificationError as failure:
            reason = visible(failure.verify_message or str(failure))
            raise ConnectFailed(f"{where}: the server's TLS certificate was not accepted ({reason}); to trust a "
                                "test CA use --cafile FILE, to skip the check --insecure") from None
        except ssl.SSLError as failure:
            reason = visible(failure.reason or str(failure))
            if (failure.reason or "").upper() in NOT_TLS_REASONS:
                raise ConnectFailed(f"connected to {shown}, but it answered our TLS ClientHello with bytes that are "
                                    f"not TLS ({reason}): it speaks plain HTTP there; try {plain_url}") from None
            raise ConnectFailed(f"{where}: the TLS handshake failed ({reason}); if the server speaks plain WebSocket "
                                "there, use ws://") from None
        except asyncio.TimeoutError:
            if context is not None and shown in connected:
                raise ConnectFailed(f"connected to {shown}, but no TLS answer within {timeout:g} s (--open-timeout): "
                                    f"does it speak plain ws://? try {plain_url}") from None
            failed.append(f"{shown}: no connection within the time left")
        except ConnectionRefusedError:
            refused.append(shown)
        except (ConnectionResetError, ConnectionAbortedError):
            if context is None:
                raise ConnectFailed(f"{where} ({shown}): the server reset the connection at once") from None
            raise ConnectFailed(f"{where}: the server closed the connection during the TLS handshake; if it "
                                "speaks plain WebSocket there, use ws://") from None
        except OSError as failure:  # unreachable, no route: the next address may do better
            failed.append(f"{shown}: {visible(failure.strerror or str(failure) or type(failure).__name__)}")
    if refused and not failed:
        raise ConnectFailed(f"connection refused by {', '.join(refused)}: nothing listens on {where}")
    reasons = "; ".join([*failed, *(f"{shown}: connection refused" for shown in refused)])
    raise ConnectFailed(f"could not connect to {where} within {timeout:g} s (--open-timeout)"
                        + (f": {reasons}" if reasons else ""))
