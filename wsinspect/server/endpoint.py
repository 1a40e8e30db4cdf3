"""The server side of one connection, without I/O: the decoder plus what RFC 6455 obliges a server to answer.

Every byte the client sends goes into the same ``Connection`` decoder that reads captures, and so does every byte
the server sends (unless nobody is watching): the live log, the JSON lines and a recording all come from one
decoder. The endpoint reads the decoder's events to do the protocol's duties -- answer the opening handshake (101,
or the refusal that names the broken rule), answer pings, echo a close, and fail the connection with the close code
of the first violation (RFC 6455 7.1.7) -- and leaves the application (echo, chat, push) to the caller, which sees
whole ``Message`` events and calls ``send_message``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wsinspect.core import deflate
from wsinspect.core.checks import CHECKS, Severity
from wsinspect.core.connection import Connection, Limits
from wsinspect.core.deflate import MessageDeflater
from wsinspect.core.events import (
    Close,
    ConnectionOpened,
    Event,
    FrameEvent,
    HandshakeRequest,
    Message,
    Violation,
)
from wsinspect.core.fields import Opcode
from wsinspect.core.frames import build_frame
from wsinspect.core.handshake import (
    Finding,
    HttpRequest,
    blocking,
    find_header_end,
    parse_extensions,
    parse_request,
    validate_request,
)
from wsinspect.server import responses

MAX_CLOSE_REASON = 123  # a close frame's payload is at most 125 bytes, 2 of them the code (RFC 6455 5.5)
DEMO_PATH = "/demo"  # the demo page connects here and is told its connection number in a first message
WELCOME = "wsinspect: you are connection #{number}"


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"  # we sent a close frame
    CLOSED = "closed"  # nothing more to send; the transport should go


@dataclass(frozen=True, slots=True)
class ServerConfig:
    subprotocols: tuple[str, ...] = ()
    compression: bool = True
    allowed_origins: tuple[str, ...] | None = None
    fragment_size: int = 0  # split outgoing messages into frames of at most this many bytes (0: don't)
    limits: Limits = field(default_factory=lambda: Limits(max_frame=1 << 20, max_message=1 << 20))
    page: bytes = b""  # the demo page served on GET /
    decode_outgoing: bool = True  # feed what we send through the decoder too (for the log and JSON)
    max_headers: int = 100  # header lines in a request; beyond it: 431 (websockets and nginx refuse about as many)
    # Frames in one message; beyond it: 1009. Each frame costs the decoder a little; 65,536 lets a 1 MiB message
    # come in 16-byte fragments and passes Autobahn's 9.3/9.4 cases (4 MiB in 64-byte fragments).
    max_fragments: int = 65536


#: Numbers connections: called once per connection with True for a WebSocket upgrade attempt, False for anything
#: else (a page load, a favicon, a connection that never sent a request); returns its number.
Numbering = Callable[[bool], int]


def is_page_request(request: HttpRequest) -> bool:
    """A plain HTTP request (a browser asking for the demo page), not an attempt at a WebSocket upgrade."""
    headers = request.headers
    return "Upgrade" not in headers and "Sec-WebSocket-Key" not in headers and request.method in ("GET", "HEAD")


def _fails_connection(event: Event) -> bool:
    """A rule broken by the client that a conforming server fails the connection for (RFC 6455 7.1.7)."""
    return isinstance(event, Violation) and event.direction == "c2s" and event.severity is Severity.ERROR \
        and event.check.close_code is not None


def _judged_invalid(frame_event: FrameEvent, following: deque[Event]) -> bool:
    """Does a violation about this frame follow it? (The decoder reports a frame, then what is wrong with it.)"""
    for event in following:
        if not isinstance(event, Violation) or event.offset != frame_event.frame.offset:
            return False
        if _fails_connection(event):
            return True
    return False


class ServerEndpoint:
    """The server's duties on one connection. See the module docstring.

    The connection's number is given when its request is complete: WebSocket connections are counted apart from
    page loads and favicon requests, so the number a browser page is told matches the terminal's and has no gaps.
    Until then the bytes are held (at most ``max_header_bytes`` and one read) and nothing is logged.
    """

    def __init__(self, config: ServerConfig, *, client: tuple[str, int], server: tuple[str, int], time: float,
                 numbering: Numbering, on_message: Callable[[Message, float], None] | None = None) -> None:
        self.config = config
        # The application: called with each whole message from the client, in order, while the connection is open,
        # so an echo of a valid message goes out before the close that a later bad frame in the same read causes.
        self.on_message = on_message
        self.stream: int | None = None  # the connection's number, once its request says what it is
        self.decoder: Connection | None = None
        self.state = State.HANDSHAKE
        self.subprotocol: str | None = None
        self.path = ""
        # Who sent the first close frame: "client" or "server" (None while nobody has), and the server's reason.
        self.close_initiator: str | None = None
        self.close_reason = ""
        self._numbering = numbering
        self._client, self._server, self._opened_at = client, server, time
        self._unnumbered = bytearray()  # the request's bytes until it is complete
        self._fragments = 0  # frames of the client's message in progress
        self._deflater: MessageDeflater | None = None
        self._outgoing = bytearray()
        self._produced: list[Event] = []  # decoded from what we just sent (and client frames it released)
        self._answers: list[Event] | None = None  # inside receive(): our answers, logged after the client's events
        self._events: list[Event] = []

    @property
    def compression(self) -> bool:
        """permessage-deflate was agreed: a byte from the client can inflate to about a thousand."""
        return self._deflater is not None

    @property
    def is_websocket(self) -> bool:
        """Numbered as a WebSocket connection (an upgrade attempt, accepted or not)."""
        return self.stream is not None and self.stream >= 0

    def _number(self, websocket: bool) -> Connection:
        self.stream = self._numbering(websocket)
        self.decoder = Connection(self.stream, limits=self.config.limits)
        self._events.append(ConnectionOpened(stream=self.stream, direction="c2s", time=self._opened_at,
                                             client=self._client, server=self._server, how="it connected to us"))
        return self.decoder

    def _classify(self, data: bytes) -> bytes | None:
        """Hold the request's bytes until it says what it is; then number the connection and return them all."""
        searched = max(len(self._unnumbered) - 3, 0)  # a request trickled a byte at a time is scanned once
        self._unnumbered += data
        end = find_header_end(self._unnumbered, searched)
        if end < 0 and len(self._unnumbered) <= self.config.limits.max_header_bytes:
            return None
        held = bytes(self._unnumbered)
        self._unnumbered = bytearray()
        if 0 <= end <= self.config.limits.max_header_bytes:
            websocket = not is_page_request(parse_request(held[:end]))
        else:  # too long to parse (it gets 431): an upgrade attempt if it names the headers one needs
            head = held[: self.config.limits.max_header_bytes].lower()
            websocket = b"\nupgrade:" in head or b"\nsec-websocket-key:" in head
        self._number(websocket)
        return held

    # -- input -------------------------------------------------------------------------------------------------

    def receive(self, data: bytes, *, time: float) -> list[Event]:
        """Bytes from the client. Returns the events to log, in order: what the client sent, then our answers."""
        decoder = self.decoder
        if decoder is None:
            held = self._classify(data)
            if held is None:
                return []
            decoder, data = self.decoder, held
            assert decoder is not None
        pending = deque(decoder.receive("c2s", data, time=time))
        answers: list[Event] = []
        self._answers = answers
        try:
            while pending:
                event = pending.popleft()
                if event.direction == "c2s":
                    self._react(event, pending, time)
                else:
                    self._events.append(event)
                # Sending may release client frames the decoder held until it saw our 101: they need answers too.
                for produced in self._produced:
                    (pending if produced.direction == "c2s" else answers).append(produced)
                self._produced = []
        finally:
            self._answers = None
        self._events += answers
        return self._take_events()

    def transport_closed(self, *, time: float, reason: str) -> list[Event]:
        decoder = self.decoder if self.decoder is not None else self._number(False)
        if self._unnumbered:
            self._events += decoder.receive("c2s", bytes(self._unnumbered), time=time)
            self._unnumbered = bytearray()
        self._events += decoder.end(time=time, reason=reason)
        self.state = State.CLOSED
        return self._take_events()

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _react(self, event: Event, pending: deque[Event], time: float) -> None:
        if isinstance(event, HandshakeRequest):
            # Logged with the findings this server's policy adds (Origin), before the answer it causes.
            self._events.append(self._answer_handshake(event, time))
            return
        self._events.append(event)
        if self.state is not State.OPEN and self.state is not State.CLOSING:
            if isinstance(event, Violation) and event.check.id == "http.header-too-large":
                self._send_raw(responses.header_too_large(self.config.limits.max_header_bytes), time)
                self.state = State.CLOSED
            return
        if _fails_connection(event):
            assert isinstance(event, Violation) and event.check.close_code is not None
            self.fail(event.check.close_code, event.message, time)
        elif isinstance(event, FrameEvent) and event.frame.opcode < Opcode.CLOSE:
            self._count_fragment(event, time)
        elif self.state is State.OPEN and isinstance(event, FrameEvent) and event.frame.opcode == Opcode.PING \
                and event.frame.complete and not _judged_invalid(event, pending):
            self._send_frame(Opcode.PONG, event.frame.payload, time)
        elif type(event) is Message and self.state is State.OPEN and self.on_message is not None \
                and event.complete:
            self.on_message(event, time)
        elif isinstance(event, Close):
            if self.close_initiator is None:
                self.close_initiator = "client"
            if self.state is State.OPEN:
                # Echo the status code (RFC 6455 5.5.1); a close without a code is answered without one.
                payload = b"" if event.code is None else event.code.to_bytes(2, "big")
                self._send_frame(Opcode.CLOSE, payload, time)
            # The server closes the TCP connection first (RFC 6455 7.1.1).
            self.state = State.CLOSED

    def _count_fragment(self, event: FrameEvent, time: float) -> None:
        """Bound the frames of one message (``max_fragments``): what the decoder holds and spends per message must
        not depend on how finely the client cuts it (a million one-byte or empty continuation frames)."""
        frame = event.frame
        self._fragments = self._fragments + 1 if frame.opcode == Opcode.CONTINUATION else 1
        if frame.fin:
            self._fragments = 0
        elif self._fragments > self.config.max_fragments and self.state is State.OPEN:
            self.fail(1009, f"message in more than {self.config.max_fragments} frames (--max-fragments)", time)

    # -- the opening handshake ----------------------------------------------------------------------------------

    def _answer_handshake(self, event: HandshakeRequest, time: float) -> HandshakeRequest:
        request = event.request
        self.path = request.target
        if is_page_request(request) and not event.request.syntax:
            if request.target.split("?")[0] in ("/", "/index.html"):
                self._send_raw(responses.page(self.config.page, head_only=request.method == "HEAD"), time)
            else:
                self._send_raw(responses.not_found(request.target), time)
            self.state = State.CLOSED
            return event
        findings = validate_request(request, allowed_origins=self.config.allowed_origins)
        if len(request.headers) > self.config.max_headers:
            findings.append(Finding(CHECKS["http.header-too-large"],
                                    f"The request has {len(request.headers)} header lines; this server reads at "
                                    f"most {self.config.max_headers} (--max-headers)."))
        event = dataclasses.replace(event, findings=tuple(findings))
        if blocking(findings):
            self._send_raw(responses.refusal(findings), time)
            self.state = State.CLOSED
            return event
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        self.subprotocol = next((p for p in self.config.subprotocols if p in offered), None)
        extensions = None
        if self.config.compression:
            params = deflate.negotiate(parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions")))
            if params is not None:
                extensions = params.response_value()
                self._deflater = MessageDeflater(no_context_takeover=params.server_no_context_takeover,
                                                 max_window_bits=params.server_max_window_bits)
        key = request.headers.get("Sec-WebSocket-Key") or ""
        self._send_raw(responses.switching_protocols(key, subprotocol=self.subprotocol, extensions=extensions),
                       time)
        self.state = State.OPEN
        if request.target.split("?")[0] == DEMO_PATH:
            self.send_message(WELCOME.format(number=self.stream), time=time)
        return event

    # -- output ------------------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def events(self) -> list[Event]:
        """Events produced by sending (outside ``receive``)."""
        return self._take_events()

    def _send_raw(self, data: bytes, time: float) -> None:
        self._outgoing += data
        if self.config.decode_outgoing or self.state is State.HANDSHAKE:
            assert self.decoder is not None  # nothing is sent before the request is complete
            produced = self.decoder.receive("s2c", data, time=time)
            if self._answers is None:
                self._events += produced
            else:
                self._produced += produced

    def _send_frame(self, opcode: int, payload: bytes, time: float, *, fin: bool = True, rsv1: bool = False) -> None:
        self._send_raw(build_frame(opcode, payload, fin=fin, rsv1=rsv1), time)

    def send_message(self, data: bytes | str, *, time: float, opcode: int | None = None) -> None:
        """Send a text (str) or binary (bytes) message, compressed if negotiated, fragmented if configured.

        ``opcode`` sends bytes as that kind of message: an echo sends back the received bytes without decoding and
        encoding them again (they were already checked to be UTF-8 if they are text).
        """
        if self.state is not State.OPEN:
            return
        if opcode is None:
            opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        payload = data.encode("utf-8") if isinstance(data, str) else data
        compressed = self._deflater is not None and self._deflater.enabled
        if compressed:
            assert self._deflater is not None
            payload = self._deflater.compress(payload)
        size = self.config.fragment_size
        if not size or len(payload) <= size:
            self._send_frame(opcode, payload, time, rsv1=compressed)
            return
        chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
        for index, chunk in enumerate(chunks):
            self._send_frame(opcode if index == 0 else Opcode.CONTINUATION, chunk, time,
                             fin=index == len(chunks) - 1, rsv1=compressed and index == 0)

    def send_ping(self, payload: bytes, *, time: float) -> None:
        if self.state is State.OPEN:
            self._send_frame(Opcode.PING, payload, time)

    def close(self, code: int, reason: str, *, time: float) -> None:
        """Start the closing handshake (RFC 6455 7.1.2)."""
        if self.state is State.OPEN:
            encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
            self._send_frame(Opcode.CLOSE, code.to_bytes(2, "big") + encoded, time)
            self.state = State.CLOSING
            if self.close_initiator is None:
                self.close_initiator, self.close_reason = "server", f"{code} {reason}"

    def fail(self, code: int, reason: str, time: float) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7): send a close frame, then drop the transport."""
        self.close(code, reason, time=time)
        self.state = State.CLOSED

    @property
    def wants_transport_closed(self) -> bool:
        return self.state is State.CLOSED
