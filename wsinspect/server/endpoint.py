"""The server side of one connection, without I/O: the shared endpoint core plus the server's opening handshake.

Every byte the client sends goes into the same ``Connection`` decoder that reads captures, and so does every byte
the server sends (unless nobody is watching): the live log, the JSON lines and a recording all come from one
decoder. The duties after the handshake (pongs, close echoes, failing with the close code of a violation, bounding
fragments) and sending are ``wsinspect.core.endpoint.Endpoint``'s, with its state table. What is the server's own is
here: answering the opening handshake (101, or the refusal that names the broken rule, or the demo page), numbering
connections, and the demo page's welcome. The application (echo, chat, push) is the caller's: it sees whole
``Message`` events and calls ``send_message``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from wsinspect.core import deflate
from wsinspect.core.checks import CHECKS
from wsinspect.core.connection import Connection, Limits, MemoryBudget
from wsinspect.core.endpoint import (
    DEFAULT_MAX_FRAGMENTS,
    LIVE_LIMITS,
    Endpoint,
    MessageHandler,
    Role,
    State,
    Trigger,
)
from wsinspect.core.events import Close, ConnectionOpened, Event, FrameEvent, HandshakeRequest, Message, Violation
from wsinspect.core.fields import Opcode
from wsinspect.core.handshake import (
    Finding,
    HttpRequest,
    blocking,
    find_header_end,
    parse_extensions,
    parse_request,
    validate_request,
)
from wsinspect.server import misbehave, responses
from wsinspect.server.misbehave import Misbehaviour

DEMO_PATH = "/demo"  # the demo page connects here and is told its connection number in a first message
WELCOME = "wsinspect: you are connection #{number}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    subprotocols: tuple[str, ...] = ()
    compression: bool = True
    allowed_origins: tuple[str, ...] | None = None
    fragment_size: int = 0  # split outgoing messages into frames of at most this many bytes (0: don't)
    limits: Limits = LIVE_LIMITS
    page: bytes = b""  # the demo page served on GET /
    decode_outgoing: bool = True  # feed what we send through the decoder too (for the log and JSON)
    max_headers: int = 100  # header lines in a request; beyond it: 431 (websockets and nginx refuse about as many)
    max_fragments: int = DEFAULT_MAX_FRAGMENTS  # frames in one message; beyond it: 1009
    misbehave: Misbehaviour | None = None  # --misbehave: one rule broken on purpose, for a class (misbehave.py)


# RFC 9112 3: request-line = method SP request-target SP HTTP-version; the method is a token (RFC 9110 5.6.2).
# The target is let hold any byte but space and line ends: one with control bytes is a request all the same, and
# gets the answer that names what is wrong with it (404, a refusal), its bytes escaped.
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP/\d\.\d\r?")
TLS_HANDSHAKE_RECORD = 0x16  # a TLS record of type handshake: what a ClientHello starts with (RFC 8446 5.1)
PLAIN_ON_TLS = ("plain HTTP on the TLS port: this server is wss:// / https:// (--certfile); use https:// or "
                "wss://")
SHOWN_FIRST_BYTES = 40
MAX_LEADING_LINE_ENDS = 4  # CR and LF bytes ignored before a request line (RFC 9112 2.2 asks for at least one CRLF)
# Until the request line ends, it is checked while it is this short (a method is a short token; binary bytes and a
# ClientHello show themselves in the first byte or two), then once when its line end comes: a request trickled a
# byte at a time is not copied and scanned again for every byte.
EARLY_CHECK_BYTES = 64  # of bytes that are not a request, this many are quoted in the log


def not_a_request(held: bytes) -> str | None:
    """Why the first bytes of a connection cannot be an HTTP request, as soon as they show it; None while they
    still could be one. A TLS ClientHello (0x16 0x03) is named: a wss:// or https:// client on a plain port."""
    start = len(held) - len(held.lstrip(b"\r\n"))  # RFC 9112 2.2: empty lines before the request line are ignored
    if start > MAX_LEADING_LINE_ENDS:
        return f"not an HTTP request: {start} line-end bytes before anything else"
    if start == len(held):
        return None
    if held[start] == TLS_HANDSHAKE_RECORD and held[start + 1 : start + 2] in (b"", b"\x03"):
        return ("a TLS ClientHello: this server is plain ws:// / http://; use ws://, or start serve with "
                "--certfile/--keyfile")
    line_end = held.find(b"\n", start)
    line = held[start:] if line_end < 0 else held[start:line_end]
    method = line.split(b" ", 1)[0]
    if all(byte in _TOKEN_BYTES for byte in method) and (line_end < 0 or _REQUEST_LINE.fullmatch(line)):
        return None
    line = line.rstrip(b"\r")
    # Unescaped: the views escape it where they show it, as any wire text (escaping it here would do it twice).
    shown = line[:SHOWN_FIRST_BYTES].decode("latin-1") + ("…" if len(line) > SHOWN_FIRST_BYTES else "")
    return f"not an HTTP request: its first line '{shown}' is not 'METHOD target HTTP/x.y'"


#: Numbers connections: called once per connection with True for a WebSocket upgrade attempt, False for anything
#: else (a page load, a favicon, a connection that never sent a request); returns its number.
Numbering = Callable[[bool], int]


def is_page_request(request: HttpRequest) -> bool:
    """A plain HTTP request (a browser asking for the demo page), not an attempt at a WebSocket upgrade."""
    headers = request.headers
    return "Upgrade" not in headers and "Sec-WebSocket-Key" not in headers and request.method in ("GET", "HEAD")


def is_upgrade_attempt(request: HttpRequest) -> bool:
    """A request that asks for a WebSocket connection (it may still be refused): it names Upgrade or carries a
    key. Anything else (POST /, a favicon, a page load) is a plain request, numbered -1, -2, ... (README)."""
    headers = request.headers
    return "Upgrade" in headers or "Sec-WebSocket-Key" in headers


class ServerEndpoint(Endpoint):
    """The server's duties on one connection. See the module docstring and ``wsinspect.core.endpoint``.

    The connection's number is given when its request is complete: WebSocket connections are counted apart from
    page loads and favicon requests, so the number a browser page is told matches the terminal's and has no gaps.
    Until then the bytes are held (at most ``max_header_bytes`` and one read) and nothing is logged.
    """

    role = Role.SERVER
    decodes_after_failure = False  # what a client sends after we failed it is discarded, and counted (Endpoint)

    def __init__(self, config: ServerConfig, *, client: tuple[str, int], server: tuple[str, int], time: float,
                 numbering: Numbering, on_message: MessageHandler | None = None,
                 budget: MemoryBudget | None = None, plain_on_tls: bool = False) -> None:
        # The decoder's stream number is set once the request says what the connection is (see _number). ``budget``
        # is shared by every connection of the server (--max-memory): a client whose frame or message would go past
        # it is failed with 1013 (``Endpoint``).
        super().__init__(Connection(0, limits=config.limits, budget=budget), fragment_size=config.fragment_size,
                         max_fragments=config.max_fragments, decode_outgoing=config.decode_outgoing,
                         on_message=self._answer_wrongly if config.misbehave and config.misbehave.spoils_answers
                         else on_message)
        self.config = config
        self.stream: int | None = None  # the connection's number, once its request says what it is
        self.path = ""
        self._numbering = numbering
        self._client, self._server, self._opened_at = client, server, time
        self._unnumbered = bytearray()  # the request's bytes until it is complete
        self.not_http: str | None = None  # why the first bytes cannot be an HTTP request (answered 400 at once)
        self._request_line_checked = False  # the first line ended and was found to be a request line
        # Plain bytes on a --certfile server's port, where a TLS ClientHello was due: answered 400 as nginx does.
        self._plain_on_tls = plain_on_tls

    @property
    def is_websocket(self) -> bool:
        """Numbered as a WebSocket connection (an upgrade attempt, accepted or not)."""
        return self.stream is not None and self.stream >= 0

    def _number(self, websocket: bool) -> None:
        self.stream = self.decoder.stream = self._numbering(websocket)
        self._events.append(ConnectionOpened(stream=self.stream, direction="c2s", time=self._opened_at,
                                             client=self._client, server=self._server, how="it connected to us"))

    def _classify(self, data: bytes) -> bytes | None:
        """Hold the request's bytes until it says what it is; then number the connection and return them all."""
        searched = max(len(self._unnumbered) - 3, 0)  # a request trickled a byte at a time is scanned once
        self._unnumbered += data
        if not self._request_line_checked and (len(self._unnumbered) <= EARLY_CHECK_BYTES or b"\n" in data):
            held = bytes(self._unnumbered[: self.config.limits.max_header_bytes])
            self._request_line_checked = b"\n" in held.lstrip(b"\r\n")
            self.not_http = not_a_request(held)
            if self.not_http is not None:
                self._refuse_not_http(responses.not_http(self.not_http))
                return None
        end = find_header_end(self._unnumbered, searched)
        if end < 0 and len(self._unnumbered) <= self.config.limits.max_header_bytes:
            return None
        held = bytes(self._unnumbered)
        self._unnumbered = bytearray()
        if 0 <= end <= self.config.limits.max_header_bytes:
            websocket = is_upgrade_attempt(parse_request(held[:end]))
        else:  # too long to parse (it gets 431): an upgrade attempt if it names the headers one needs
            head = held[: self.config.limits.max_header_bytes].lower()
            websocket = b"\nupgrade:" in head or b"\nsec-websocket-key:" in head
        self._number(websocket)
        return held

    def _refuse_not_http(self, answer: bytes) -> None:
        """Bytes that cannot start an HTTP request get 400 now, not after --handshake-timeout (RFC 9112 3: a
        server that receives an invalid request-line SHOULD respond with 400). Neither they nor the answer go
        through the decoder, which would wait for a header block that never comes."""
        self._number(False)
        self._unnumbered = bytearray()
        self._outgoing += answer
        self._move(Trigger.HANDSHAKE_FAILED)

    # -- input -------------------------------------------------------------------------------------------------

    def receive(self, data: bytes, *, time: float) -> list[Event]:
        """Bytes from the client. Returns the events to log, in order: what the client sent, then our answers."""
        if self.not_http is not None:
            return []  # answered 400 already; the transport closes
        if self._plain_on_tls:
            self.not_http = PLAIN_ON_TLS
            self._refuse_not_http(responses.plain_http_to_https())
            return self.events()
        if self.stream is None:
            held = self._classify(data)
            if held is None:
                return self.events()  # the connection's opening, if it was just refused as not HTTP
            data = held
        return super().receive(data, time=time)

    def transport_closed(self, *, time: float, reason: str) -> list[Event]:
        if self.stream is None:
            self._number(False)
        if self._unnumbered:
            self._events += self.decoder.receive("c2s", bytes(self._unnumbered), time=time)
            self._unnumbered = bytearray()
        return super().transport_closed(time=time, reason=reason)

    # -- the opening handshake ----------------------------------------------------------------------------------

    def _handshake_step(self, step: list[Event], time: float) -> list[Event]:
        request = step[0]
        if self.state is not State.CONNECTING:
            return step
        if isinstance(request, HandshakeRequest):
            # Logged with the findings this server's policy adds (Origin), before the answer it causes.
            return [self._answer_handshake(request, time), *step[1:]]
        if any(isinstance(event, Violation) and event.check.id == "http.header-too-large" for event in step):
            self._send_raw(responses.header_too_large(self.config.limits.max_header_bytes), time)
            self._move(Trigger.HANDSHAKE_FAILED)
        return step

    def _answer_handshake(self, event: HandshakeRequest, time: float) -> HandshakeRequest:
        request = event.request
        self.path = request.target
        if is_page_request(request) and not event.request.syntax:
            if request.target.split("?")[0] in ("/", "/index.html"):
                self._send_raw(responses.page(self.config.page, head_only=request.method == "HEAD"), time)
            else:
                self._send_raw(responses.not_found(request.target), time)
            self._move(Trigger.HANDSHAKE_FAILED)
            return event
        findings = validate_request(request, allowed_origins=self.config.allowed_origins)
        if len(request.headers) > self.config.max_headers:
            findings.append(Finding(CHECKS["http.header-too-large"],
                                    f"The request has {len(request.headers)} header lines; this server reads at "
                                    f"most {self.config.max_headers} (--max-headers)."))
        event = dataclasses.replace(event, findings=tuple(findings))
        if blocking(findings):
            self._send_raw(responses.refusal(findings), time)
            self._move(Trigger.HANDSHAKE_FAILED)
            return event
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        self.subprotocol = next((p for p in self.config.subprotocols if p in offered), None)
        params = None
        if self.config.compression:
            params = deflate.negotiate(parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions")))
        key = request.headers.get("Sec-WebSocket-Key") or ""
        response = responses.switching_protocols(key, subprotocol=self.subprotocol,
                                                 extensions=params.response_value() if params else None)
        self._send_raw(misbehave.spoil_response(self.config.misbehave, response, key) if self.config.misbehave
                       else response, time)
        self._open(params, sender_is_client=False)
        if request.target.split("?")[0] == DEMO_PATH:
            self.send_message(WELCOME.format(number=self.stream), time=time)
        return event

    # -- --misbehave: the duties this server skips or spoils on purpose (see misbehave.py) -----------------------

    def _answer_wrongly(self, message: Message, time: float) -> None:
        """Instead of the application's answer to a message: the fault."""
        kind = self.config.misbehave
        assert kind is not None
        if kind is Misbehaviour.BAD_CLOSE_CODE:
            self.close(misbehave.BAD_CLOSE_CODE, misbehave.BAD_CLOSE_REASON, time=time)
        else:
            self._send_raw(misbehave.wrong_answer(kind, message.opcode, message.data), time)

    def _frame_duties(self, event: FrameEvent, time: float) -> None:
        if self.config.misbehave is None or self.config.misbehave.answers_pings or event.frame.opcode != Opcode.PING:
            super()._frame_duties(event, time)

    def _close_received(self, event: Close, time: float) -> None:
        # no-close-reply: the client's close is left unanswered and TCP open; a close that answers ours still counts.
        if self.config.misbehave is None or self.config.misbehave.answers_close or self.state is not State.OPEN:
            super()._close_received(event, time)
