"""One end of a WebSocket connection, client or server, without I/O: the decoder plus the protocol's duties.

Theory of operation. An endpoint is the passive decoder (``connection.Connection``, the one ``read`` uses) fed both
directions, plus what RFC 6455 obliges the endpoint of one role to do. The caller moves bytes: ``receive(data,
time=...)`` with the peer's bytes returns the events to log, and ``data_to_send()`` returns what to write. What the
application sends (``send_message``, ``send_ping``, ``close``, ``fail``) is encoded here (masked with a fresh key
when the endpoint is the client, RFC 6455 5.3; compressed when permessage-deflate was agreed, RFC 7692 7.2.1;
fragmented when asked) and fed back through the decoder, so the log shows both directions from one decoder and
``events()`` returns what sending produced. No sockets, clocks or randomness of its own: the caller passes the time,
and the client's key and masks come from an injectable ``random_bytes``.

Duties are decided one *step* at a time. The decoder reports what it saw on the wire (a frame, a handshake message,
the end of the stream) followed at once by what it concluded from it: the frame's violations, the message or close
it completes (``connection.Connection`` keeps this order). A step is that event and its conclusions; the endpoint
takes a step whole, so its verdict on the frame is in before it acts on the frame: if the step holds a violation by
the peer that a conforming endpoint fails the connection for (``check.close_code``), the endpoint fails the
connection with that code (RFC 6455 7.1.7) and does none of the frame's other duties -- no pong for a ping that
breaks a rule, no echo of a bad close, no delivery of a message that is not valid UTF-8. Otherwise it does them.
Within one ``receive`` the log lists what the peer sent first, then the endpoint's answers (the bytes written to the
decoder while reacting are decoded, and held until the peer's events are listed).

The connection's state follows one table: CONNECTING (the opening handshake), OPEN (data may flow), CLOSING (we
sent a close frame and wait for the peer's), CLOSED (nothing more to send; the transport should go). Every change of
state is a row below, and ``_TRANSITIONS`` holds exactly these rows; a trigger with no row in the current state
leaves it unchanged (the peer's close arriving after we failed the connection).

    state       trigger                                         next        duty
    CONNECTING  server: a request with no blocking finding      OPEN        send 101 (RFC 6455 4.2.2)
    CONNECTING  server: a request that breaks a MUST, a page    CLOSED      send the refusal (4.2.1, 4.4), the page,
                load, a header block over the limit                         404, or 431 (10.4)
    CONNECTING  client: 101 with no blocking finding            OPEN        -
    CONNECTING  client: 101 with a blocking finding, any        CLOSED      none: not established, so no close
                other status, a header block over the limit                 frame (4.1, 7.1.7)
    OPEN        the peer's step breaks a rule with a close      CLOSED      send close with that code (7.1.7)
                code, or a message exceeds max_fragments                    (1009 for the fragments)
    OPEN        the decoder cannot keep the peer's frame or     CLOSED      send close 1013, try again later
                message: the shared memory budget is full                   (IANA registry, RFC 6455 11.7)
    OPEN        the peer's close                                CLOSED      send close echoing its code (5.5.1)
    OPEN        application: close()                            CLOSING     send close (7.1.2)
    OPEN        application: fail()                             CLOSED      send close (7.1.7)
    CLOSING     the peer's close                                CLOSED      -
    CLOSING     the peer's step breaks a rule; fail()           CLOSED      - (our close frame is already sent)
    CONNECTING  application: fail()                             CLOSED      -
    any         the transport closed                            CLOSED      -

Duties without a change of state: in OPEN, a ping is answered with a pong carrying its payload (5.5.2, 5.5.3) and a
whole message goes to the application (``on_message``); pings and messages in CLOSING are only logged (5.5.1: "there
is no guarantee that the endpoint that has already sent a Close frame will continue to process data").

CLOSED means "close the transport" except for one case: a client whose closing handshake took place (it sent a
close frame) waits for the server to close TCP first (RFC 6455 5.5.1, 7.1.1), so the server holds TIME_WAIT;
``awaiting_tcp_close`` says so, and the transport closes it itself after a timeout of its choosing.
``wants_transport_closed`` is True when the transport should close now.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import itertools
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from wsinspect.core.checks import Severity
from wsinspect.core.connection import Connection, Limits
from wsinspect.core.deflate import EXTENSION_NAME, DeflateParams, MessageDeflater
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Event,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.fields import Opcode
from wsinspect.core.frames import MAX_CONTROL_PAYLOAD, build_frame
from wsinspect.core.handshake import SUPPORTED_VERSION, HttpResponse, blocking

MAX_CLOSE_REASON = 123  # a close frame's payload is at most 125 bytes, 2 of them the code (RFC 6455 5.5)
#: What a live endpoint lets its peer make it hold: a frame and a message of 1 MiB (a capture reader allows 64 MiB).
LIVE_LIMITS = Limits(max_frame=1 << 20, max_message=1 << 20)
# Frames in one message; beyond it: 1009. Each frame costs the decoder a little; 65,536 lets a 1 MiB message
# come in 16-byte fragments and passes Autobahn's 9.3/9.4 cases (4 MiB in 64-byte fragments).
DEFAULT_MAX_FRAGMENTS = 65536
KEY_BYTES = 16  # the Sec-WebSocket-Key nonce (RFC 6455 4.1, item 7 of the handshake's requirements)
MASK_BYTES = 4  # a masking key (RFC 6455 5.3)
#: Close code for a peer whose frame or message would take the memory shared by all connections past its budget
#: (IANA's registry, RFC 6455 11.7: 1013 Try Again Later, "a temporary condition, e.g. it is overloaded and is
#: casting off some of its clients"). Not 1009: the message itself is within the limits, the server is busy.
TRY_AGAIN_LATER = 1013
#: The decoder's notice that a frame or message stopped being kept: the budget shared with other connections is full.
_MEMORY_BUDGET_CHECK = "capture.memory-budget"


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    CONNECTING = "connecting"  # the opening handshake is in progress
    OPEN = "open"  # data may flow
    CLOSING = "closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"  # nothing more to send; the transport should be closed (see ``awaiting_tcp_close``)


class Trigger(enum.Enum):
    """What moves the state: the rows of the table in the module docstring."""

    HANDSHAKE_SUCCEEDED = "handshake succeeded"
    HANDSHAKE_FAILED = "handshake failed"
    CLOSE_SENT = "close sent"  # we started the closing handshake
    CLOSE_RECEIVED = "close received"
    FAILED = "failed"  # we failed the connection (a violation by the peer, or the application asked)
    TRANSPORT_CLOSED = "transport closed"


_TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.CONNECTING: {
        Trigger.HANDSHAKE_SUCCEEDED: State.OPEN,
        Trigger.HANDSHAKE_FAILED: State.CLOSED,
        Trigger.FAILED: State.CLOSED,
        Trigger.TRANSPORT_CLOSED: State.CLOSED,
    },
    State.OPEN: {
        Trigger.CLOSE_SENT: State.CLOSING,
        Trigger.CLOSE_RECEIVED: State.CLOSED,
        Trigger.FAILED: State.CLOSED,
        Trigger.TRANSPORT_CLOSED: State.CLOSED,
    },
    State.CLOSING: {
        Trigger.CLOSE_RECEIVED: State.CLOSED,
        Trigger.FAILED: State.CLOSED,
        Trigger.TRANSPORT_CLOSED: State.CLOSED,
    },
    State.CLOSED: {},
}

# What the decoder concludes about the event before it; anything else starts a new step.
_CONCLUSIONS = (Violation, Notice, Message, Close)

#: Called with each whole message from the peer while the connection is open, during ``receive``, so an answer it
#: sends goes out before the close that a later bad frame in the same read causes.
MessageHandler = Callable[[Message, float], None]


def _verdict(step: list[Event]) -> Violation | None:
    """The first rule in this step that a conforming endpoint fails the connection for (RFC 6455 7.1.7)."""
    for event in step:
        if isinstance(event, Violation) and event.severity is Severity.ERROR and event.check.close_code is not None:
            return event
    return None


class Endpoint:
    """What both roles share: the state table, the duties after the handshake, and sending. See the module docstring.

    A role adds its opening handshake (``_handshake_step``).
    """

    role: Role
    #: After failing the connection, go on decoding the peer's bytes for the log (never acting on them). A client
    #: (``connect``) does: its user is inspecting that server and wants to see what it sent. A server does not (RFC
    #: 6455 7.1.7: no further data is processed): a client sending garbage would fill its log with it.
    decodes_after_failure = True

    def __init__(self, decoder: Connection, *, fragment_size: int, max_fragments: int, decode_outgoing: bool,
                 on_message: MessageHandler | None, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.decoder = decoder  # the same passive decoder read uses, fed both directions
        self.state = State.CONNECTING
        self.subprotocol: str | None = None
        # Who sent the first close frame ("client" or "server"; None while nobody has), and our reason if it was us.
        self.close_initiator: str | None = None
        self.close_reason = ""
        self.on_message = on_message
        self.fragment_size = fragment_size  # split outgoing messages into frames of at most this many bytes (0: no)
        self.max_fragments = max_fragments
        self._decode_outgoing = decode_outgoing
        self._random_bytes = random_bytes
        self._own: Direction = "c2s" if self.role is Role.CLIENT else "s2c"
        self._peer: Direction = "s2c" if self.role is Role.CLIENT else "c2s"
        self._deflater: MessageDeflater | None = None
        self._fragments = 0  # frames of the peer's message in progress
        # RFC 6455 7.1.7: once we failed the connection, the peer's further data is not processed. The stream offset
        # of the peer's bytes from which on they are discarded (None until then, and always without
        # ``decodes_after_failure``), and how many came in later reads.
        self._failed_at: int | None = None
        self._discarded_later = 0
        # The peer's frame or message did not fit in the memory budget shared with other connections (the decoder's
        # ``budget``): it was failed with TRY_AGAIN_LATER, since what it sent can no longer be delivered whole.
        self.failed_over_budget = False
        self._sent_close = False
        self._transport_gone = False
        self._outgoing = bytearray()
        self._events: list[Event] = []  # to log, in order
        self._produced: list[Event] = []  # decoded from what we sent while reacting (and peer frames it released)
        self._answers: list[Event] | None = None  # inside receive(): our answers, logged after the peer's events

    # -- state -------------------------------------------------------------------------------------------------

    def _move(self, trigger: Trigger) -> None:
        self.state = _TRANSITIONS[self.state].get(trigger, self.state)

    @property
    def compression(self) -> bool:
        """permessage-deflate was agreed: a byte from the peer can inflate to about a thousand."""
        return self._deflater is not None

    @property
    def awaiting_tcp_close(self) -> bool:
        """A client after its closing handshake: the server closes TCP first (RFC 6455 7.1.1); close it after a
        timeout if it does not."""
        return self.role is Role.CLIENT and self.state is State.CLOSED and self._sent_close \
            and not self._transport_gone

    @property
    def wants_transport_closed(self) -> bool:
        """Close the transport now."""
        return self.state is State.CLOSED and not self.awaiting_tcp_close

    # -- input -------------------------------------------------------------------------------------------------

    def receive(self, data: bytes, *, time: float) -> list[Event]:
        """The peer's bytes. Returns the events to log, in order: what the peer sent, then our answers."""
        if self._failed_at is not None:
            self._discarded_later += len(data)
            return self.events()
        return self._take_in(self.decoder.receive(self._peer, data, time=time), time)

    @property
    def discarded(self) -> int:
        """Bytes of the peer's that came after the frame we failed the connection for and were not processed
        (RFC 6455 7.1.7); 0 unless we failed it."""
        if self._failed_at is None:
            return 0
        received = self.decoder.sides[self._peer].received
        return max(received - self._failed_at, 0) + self._discarded_later

    def transport_closed(self, *, time: float, reason: str) -> list[Event]:
        """The transport is gone: report what was left unfinished."""
        self._move(Trigger.TRANSPORT_CLOSED)
        self._transport_gone = True
        return self._take_in(self.decoder.end(time=time, reason=reason), time)

    def events(self) -> list[Event]:
        """Events produced outside ``receive`` (by sending, and the client's opening request), drained; ``receive``
        returns any still waiting before its own."""
        events, self._events = self._events, []
        return events

    def _take_in(self, decoded: list[Event], time: float) -> list[Event]:
        """Act on the decoder's events a step at a time (see the module docstring); return what to log."""
        queue = deque(decoded)
        answers: list[Event] = []
        self._answers = answers
        try:
            while queue:
                step = [queue.popleft()]
                while queue and isinstance(queue[0], _CONCLUSIONS) and queue[0].direction == step[0].direction:
                    step.append(queue.popleft())
                if self._failed_at is not None and step[0].direction == self._peer:
                    if not isinstance(step[0], ConnectionClosed):
                        continue  # decoded in the same read as the frame we failed for: discarded, not logged
                    # A close among the discarded bytes does not make the ending clean: it was never processed.
                    step[0] = dataclasses.replace(step[0], clean=False)
                self._events += self._act_on(step, time) if step[0].direction == self._peer else step
                # Sending may release peer frames the decoder held until it saw our 101: they need answers too.
                for produced in self._produced:
                    (queue if produced.direction == self._peer else answers).append(produced)
                self._produced = []
        finally:
            self._answers = None
        self._events += answers
        return self.events()

    def _act_on(self, step: list[Event], time: float) -> list[Event]:
        """Do the duties one step of the peer's obliges us to; return the step as it is logged."""
        if self.state is State.CONNECTING or isinstance(step[0], (HandshakeRequest, HandshakeResponse)):
            return self._handshake_step(step, time)
        if self.state is State.CLOSED:
            return step
        verdict = _verdict(step)
        if verdict is not None:
            assert verdict.check.close_code is not None
            self._fail_after(step, verdict.check.close_code, verdict.message, time)
            return step
        if self.state is State.OPEN and any(type(event) is Notice and event.check.id == _MEMORY_BUDGET_CHECK
                                            for event in step):
            self.failed_over_budget = True
            self._fail_after(step, TRY_AGAIN_LATER, "server memory budget full, try again later", time)
            return step
        for event in step:
            if type(event) is FrameEvent:
                self._frame_duties(event, time)
            elif type(event) is Message and event.complete and self.state is State.OPEN \
                    and self.on_message is not None:
                self.on_message(event, time)
            elif isinstance(event, Close):
                self._close_received(event, time)
        return step

    def _fail_after(self, step: list[Event], code: int, reason: str, time: float) -> None:
        """Fail the connection for what this step of the peer's shows; unless ``decodes_after_failure``, what the
        peer sent after it is discarded."""
        if not self.decodes_after_failure:
            received = self.decoder.sides[self._peer].received
            first = step[0]
            if type(first) is FrameEvent:
                frame = first.frame
                self._failed_at = min(frame.offset + len(frame.header) + frame.payload_length, received)
            else:
                self._failed_at = received
        self.fail(code, reason, time=time)

    def _handshake_step(self, step: list[Event], time: float) -> list[Event]:
        raise NotImplementedError

    def _frame_duties(self, event: FrameEvent, time: float) -> None:
        frame = event.frame
        if frame.opcode < Opcode.CLOSE:
            self._count_fragment(event, time)
        elif frame.opcode == Opcode.PING and frame.complete and self.state is State.OPEN:
            self._send_frame(Opcode.PONG, frame.payload, time)  # RFC 6455 5.5.2: the pong carries the ping's data

    def _count_fragment(self, event: FrameEvent, time: float) -> None:
        """Bound the frames of one message (``max_fragments``): what the decoder holds and spends per message must
        not depend on how finely the peer cuts it (a million one-byte or empty continuation frames)."""
        frame = event.frame
        self._fragments = self._fragments + 1 if frame.opcode == Opcode.CONTINUATION else 1
        if frame.fin:
            self._fragments = 0
        elif self._fragments > self.max_fragments and self.state is State.OPEN:
            self._fail_after([event], 1009, f"message in more than {self.max_fragments} frames (--max-fragments)",
                             time)

    def _close_received(self, event: Close, time: float) -> None:
        if self.close_initiator is None:
            self.close_initiator = "server" if self.role is Role.CLIENT else "client"
        if self.state is State.OPEN:
            # Echo the status code (RFC 6455 5.5.1); a close without a code is answered without one.
            self._send_frame(Opcode.CLOSE, b"" if event.code is None else event.code.to_bytes(2, "big"), time)
            self._sent_close = True
        self._move(Trigger.CLOSE_RECEIVED)

    def _open(self, deflate: DeflateParams | None, *, sender_is_client: bool) -> None:
        """The opening handshake succeeded; compress what we send as agreed (RFC 7692 7.1)."""
        if deflate is not None:
            self._deflater = MessageDeflater(no_context_takeover=deflate.no_context_takeover(sender_is_client),
                                             max_window_bits=deflate.max_window_bits(sender_is_client))
        self._move(Trigger.HANDSHAKE_SUCCEEDED)

    # -- output ------------------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def _send_raw(self, data: bytes, time: float) -> None:
        self._outgoing += data
        if self._decode_outgoing or self.state is State.CONNECTING:
            produced = self.decoder.receive(self._own, data, time=time)
            if self._answers is None:
                self._events += produced
            else:
                self._produced += produced

    def _send_frame(self, opcode: int, payload: bytes, time: float, *, fin: bool = True, rsv1: bool = False) -> None:
        # RFC 6455 5.3: a client masks every frame with a fresh, unpredictable key; a server never masks (5.1).
        key = self._random_bytes(MASK_BYTES) if self.role is Role.CLIENT else None
        self._send_raw(build_frame(opcode, payload, fin=fin, rsv1=rsv1, masking_key=key), time)

    def _encode(self, data: bytes | str, opcode: int | None) -> tuple[int, bytes, bool]:
        """(opcode, payload, compressed) for a message: text for str, binary for bytes unless ``opcode`` says."""
        if opcode is None:
            opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        payload = data.encode("utf-8") if isinstance(data, str) else data
        deflater = self._deflater
        if deflater is not None and deflater.enabled:
            return opcode, deflater.compress(payload), True
        return opcode, payload, False

    def _send_parts(self, opcode: int, parts: list[bytes], compressed: bool, time: float) -> None:
        """One message in ``parts`` frames; RSV1 marks a compressed message on its first frame only (RFC 7692 6)."""
        for index, part in enumerate(parts):
            self._send_frame(opcode if index == 0 else Opcode.CONTINUATION, part, time,
                             fin=index == len(parts) - 1, rsv1=compressed and index == 0)

    def send_message(self, data: bytes | str, *, time: float, opcode: int | None = None) -> None:
        """Send a text (str) or binary (bytes) message, compressed if negotiated, fragmented if configured.
        Ignored unless the connection is open.

        ``opcode`` sends bytes as that kind of message: an echo sends back the received bytes without decoding and
        encoding them again (they were already checked to be UTF-8 if they are text).
        """
        if self.state is not State.OPEN:
            return
        opcode, payload, compressed = self._encode(data, opcode)
        size = self.fragment_size
        if not size or len(payload) <= size:
            self._send_frame(opcode, payload, time, rsv1=compressed)
            return
        self._send_parts(opcode, [payload[i : i + size] for i in range(0, len(payload), size)], compressed, time)

    def send_fragmented(self, data: bytes | str, parts: int, *, time: float) -> None:
        """Send one message in ``parts`` frames of nearly equal size (a text frame may end inside a character:
        only the whole message must be UTF-8, RFC 6455 5.6). Ignored unless the connection is open."""
        if parts < 1:
            raise ValueError(f"a message is sent in at least one frame, not {parts}")
        if self.state is not State.OPEN:
            return
        opcode, payload, compressed = self._encode(data, None)
        bounds = [len(payload) * index // parts for index in range(parts + 1)]
        self._send_parts(opcode, [payload[start:end] for start, end in itertools.pairwise(bounds)], compressed,
                         time)

    def send_ping(self, payload: bytes = b"", *, time: float) -> None:
        """Send a ping (RFC 6455 5.5.2); ignored unless the connection is open."""
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"a ping carries at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 5.5), not {len(payload)}")
        if self.state is State.OPEN:
            self._send_frame(Opcode.PING, payload, time)

    def close(self, code: int | None = 1000, reason: str = "", *, time: float) -> None:
        """Start the closing handshake (RFC 6455 7.1.2); ``code=None`` sends a close frame without a body.
        Ignored unless the connection is open."""
        if code is None and reason:
            raise ValueError("a close reason needs a status code before it (RFC 6455 5.5.1)")
        if self.state is State.OPEN:
            self._send_close(code, reason, time)
            self._move(Trigger.CLOSE_SENT)

    def fail(self, code: int, reason: str, *, time: float) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7): a close frame if it was open, then drop the transport."""
        if self.state is State.OPEN:
            self._send_close(code, reason, time)
        self._move(Trigger.FAILED)

    def _send_close(self, code: int | None, reason: str, time: float) -> None:
        # The reason is cut to fit the frame, at a character boundary so that it stays UTF-8 (RFC 6455 5.5.1).
        encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
        self._send_frame(Opcode.CLOSE, b"" if code is None else code.to_bytes(2, "big") + encoded, time)
        self._sent_close = True
        if self.close_initiator is None:
            self.close_initiator = self.role.value
            self.close_reason = "no status code" if code is None else f"{code} {reason}"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    host: str  # the Host header value, e.g. "example.com:8080"
    path: str = "/"  # the request target, query included
    origin: str | None = None
    subprotocols: tuple[str, ...] = ()
    compression: bool = True  # offer "permessage-deflate; client_max_window_bits"
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent in order after the required ones
    fragment_size: int = 0  # split outgoing messages into frames of at most this many bytes (0: don't)
    limits: Limits = LIVE_LIMITS
    max_fragments: int = DEFAULT_MAX_FRAGMENTS


# The offer lets the server choose the client's window (RFC 7692 7.1.2.2), which costs it nothing to honour.
DEFLATE_OFFER = f"{EXTENSION_NAME}; client_max_window_bits"


def opening_request(options: ClientOptions, key: str) -> bytes:
    """The client's opening handshake (RFC 6455 4.1): the required header fields, then the optional ones."""
    headers = [("Host", options.host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", SUPPORTED_VERSION)]
    if options.origin is not None:
        headers.append(("Origin", options.origin))
    if options.subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(options.subprotocols)))
    if options.compression:
        headers.append(("Sec-WebSocket-Extensions", DEFLATE_OFFER))
    headers += options.extra_headers
    lines = [f"GET {options.path} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers]
    for line in lines:
        if "\r" in line or "\n" in line:
            # A line break inside would end the header line early and smuggle in another one.
            raise ValueError(f"a request line or header contains CR or LF: {line!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class ClientEndpoint(Endpoint):
    """The client's duties on one connection. See the module docstring.

    The opening request is queued at once: ``data_to_send()`` returns it and ``events()`` the connection's
    ``ConnectionOpened`` and its decoded ``HandshakeRequest``.
    """

    role = Role.CLIENT

    def __init__(self, options: ClientOptions, *, client: tuple[str, int], server: tuple[str, int], time: float,
                 stream: int = 0, key: str | None = None, random_bytes: Callable[[int], bytes] = os.urandom,
                 on_message: MessageHandler | None = None) -> None:
        super().__init__(Connection(stream, limits=options.limits), fragment_size=options.fragment_size,
                         max_fragments=options.max_fragments, decode_outgoing=True, on_message=on_message,
                         random_bytes=random_bytes)
        self.options = options
        self.stream = stream
        # RFC 6455 4.1: a nonce of 16 random bytes, base64-encoded, fresh for each connection.
        self.key = key if key is not None else base64.b64encode(random_bytes(KEY_BYTES)).decode("ascii")
        self.extensions: str | None = None  # the Sec-WebSocket-Extensions the server answered, once open
        self.response: HttpResponse | None = None  # the server's answer once complete (a refusal too)
        self._events.append(ConnectionOpened(stream=stream, direction="c2s", time=time, client=client,
                                             server=server, how="we connected to it"))
        self._send_raw(opening_request(options, self.key), time)

    def _handshake_step(self, step: list[Event], time: float) -> list[Event]:
        answer = step[0]
        if isinstance(answer, HandshakeResponse):
            self.response = answer.response
        if self.state is not State.CONNECTING:
            return step
        if not isinstance(answer, HandshakeResponse):
            # The decoder reports a response header block over the limit instead of the response: give up on it.
            if any(isinstance(event, Violation) and event.check.id == "http.header-too-large" for event in step):
                self._move(Trigger.HANDSHAKE_FAILED)
            return step
        # RFC 6455 4.1: a response that is not 101, or a 101 that breaks a MUST (Upgrade, Connection, the accept
        # key, an extension or subprotocol that was not offered), fails the connection before it is established.
        if not answer.upgraded or blocking(answer.findings):
            self._move(Trigger.HANDSHAKE_FAILED)
            return step
        self.subprotocol = answer.subprotocol
        self.extensions = answer.response.headers.get("Sec-WebSocket-Extensions")
        self._open(answer.deflate, sender_is_client=True)
        return step
