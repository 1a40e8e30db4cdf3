"""One WebSocket connection, both directions: bytes in, events out. No I/O.

Theory of operation. The caller (a capture reader or the live server) hands over each direction's bytes in order
with ``receive(direction, data, time=..., packet=...)`` and gets back the events those bytes complete. Bytes the
connection cannot place yet are held with their time and packet and replayed when it can: frames the client sent
before the server's answer was seen wait for it, because only the answer says whether RSV1 means "compressed".

    phase        c2s bytes                        s2c bytes
    REQUEST      request header block             held
    RESPONSE     held                             response header block (+ body if not 101)
    OPEN         frames                           frames
    REFUSED      ignored (counted)                ignored (counted)

HTTP/1.1 connections persist (RFC 9112 9.3): after an answer that is not a 101 (a page fetched before the upgrade,
or a 401 before a retry with credentials), the same connection may carry the next request, so the phases go round
again, REQUEST after RESPONSE, once the answer's body has passed (its length from Content-Length or chunked
transfer coding, RFC 9112 6.3; the body of the request before it is passed the same way). A connection stays REFUSED
when the answer ends it (Connection: close, HTTP/1.0) or its body has no length but the connection's end; bytes the
client still sends then get one notice saying why they are not read as another request.

A handshake that came in another form than HTTP/1.1 header bytes (RFC 8441's extended CONNECT over HTTP/2, read by
``core.http2``) is given parsed and judged, with ``receive_request`` and ``receive_response``; the phases are the same.

A connection made with ``mid_stream=True`` starts OPEN with both parsers hunting for a frame boundary (a capture that
began after the handshake). Without the handshake nobody says whether permessage-deflate was agreed, so RSV1 on a
data frame is taken to mean "compressed" (the only extension in use on the web), not flagged; such messages are
inflated without the earlier window where they allow it (see ``deflate.MessageInflater``).

Every frame is checked against RFC 6455 as it arrives; a broken rule becomes a ``Violation`` and decoding goes on:
an inspector reports, it does not hang up. Each frame's ``FrameEvent`` is followed at once by what was concluded from
it (its violations, notices, and the message or close it completes), before the next frame's: ``core.endpoint``
takes a frame with its conclusions as one step and fails the connection on the peer's violations. What unfinished
messages hold is bounded per message (``Limits.max_message``) and, across the connections of a capture, by a
shared ``MemoryBudget``.
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from wsinspect.core import deflate
from wsinspect.core.checks import CHECKS
from wsinspect.core.construct import fast_constructor
from wsinspect.core.deflate import DeflateParams, MessageInflater
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    Direction,
    Event,
    FrameEvent,
    Gap,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.fields import Opcode, is_known_opcode, opcode_name
from wsinspect.core.frames import (
    DEFAULT_MAX_PAYLOAD,
    MAX_CONTROL_PAYLOAD,
    Frame,
    FrameParser,
    ParseItem,
    Resynced,
    Truncated,
    parse_close_payload,
)
from wsinspect.core.handshake import (
    Finding,
    HttpRequest,
    HttpResponse,
    ascii_number,
    find_header_end,
    parse_extensions,
    parse_request,
    parse_response,
    validate_request,
    validate_response,
)

# Made once per frame, per message, per close and per conversation: positional (every field, in the order
# core.events declares them), without the frozen __init__'s cost (see core.construct).
_new_frame_event = fast_constructor(FrameEvent)
_new_message = fast_constructor(Message)
_new_close = fast_constructor(Close)
_new_connection_closed = fast_constructor(ConnectionClosed)
_new_handshake_request = fast_constructor(HandshakeRequest)
_new_handshake_response = fast_constructor(HandshakeResponse)


class Phase(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"
    OPEN = "open"
    REFUSED = "refused"


# An enum member read through its class goes through a descriptor on Python 3.11 (about 0.3 µs, against a global
# lookup's few ns): the phase is tested for every chunk of every connection, the opcode for every frame.
_REQUEST, _RESPONSE, _OPEN, _REFUSED = Phase.REQUEST, Phase.RESPONSE, Phase.OPEN, Phase.REFUSED
_CONTINUATION, _TEXT, _BINARY, _CLOSE = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE


#: What all the unfinished messages of one capture may hold together unless told otherwise (``--max-memory``).
DEFAULT_MEMORY_BUDGET = 64 * 1024 * 1024
#: A frame still being collected is only let go past the budget if it holds this much: small ones cost little.
LET_GO_FROM = 64 * 1024
#: A header block (or a refusal's body kept for display) still being collected is let go past the budget from this
#: size: a usual handshake is smaller, and arrives whole, without being collected at all.
HEAD_LET_GO_FROM = 2 * 1024


class MemoryBudget:
    """Bytes held by unfinished messages, counted across every connection that shares this object.

    One capture can hold many conversations, each with a message still open, and ``max_message`` bounds each one
    alone: 20 open compressed messages could hold 20 x 64 MiB. A trace hands one budget to all its connections;
    a message that would take more than what is left is cut short (``complete=False``) with a notice, and its
    frames are still decoded. The budget also counts the frame each parser is collecting (up to ``max_frame``):
    past the budget, a frame holding more than ``LET_GO_FROM`` bytes stops being kept (its payload is shown
    short, with ``missing``). And the header blocks still arriving (and the start of a refusal's body kept for
    display), with the bytes a trace holds while deciding what a stream is: past the budget, one holding more than
    ``HEAD_LET_GO_FROM`` bytes is let go. Sans-I/O: just a counter.
    """

    __slots__ = ("held", "limit", "peak")

    def __init__(self, limit: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0

    def available(self) -> int:
        left = self.limit - self.held
        return left if left > 0 else 0

    def take(self, size: int) -> None:
        held = self.held = self.held + size
        if held > self.peak:
            self.peak = held

    def give_back(self, size: int) -> None:
        self.held -= size


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the wire can make the decoder hold. Each has a command-line flag."""

    max_header_bytes: int = 32 * 1024
    max_frame: int = DEFAULT_MAX_PAYLOAD
    max_message: int = DEFAULT_MAX_PAYLOAD
    max_body: int = 64 * 1024  # body of a refused handshake kept for display



_MAX_CHUNK_LINE = 4096  # a chunk-size line or a trailer line longer than this is not HTTP being spoken


class _BodyReader:
    """Finds where an HTTP/1.1 message body ends (RFC 9112 6.3, 7.1), counting its bytes without keeping them:
    ``length`` bytes, or chunked transfer coding when ``length`` is None. ``done`` once it ended; ``problem`` when
    the chunks stop making sense (then its end cannot be known)."""

    __slots__ = ("done", "left", "line", "problem", "state")

    def __init__(self, length: int | None) -> None:
        self.left = length or 0  # bytes of the body (or of the current chunk and its CRLF) still to come
        self.state = "length" if length is not None else "size"  # "size", "data", "trailer" for chunked
        self.line = bytearray()  # a chunk-size or trailer line being collected (bounded by _MAX_CHUNK_LINE)
        self.done = length == 0
        self.problem: str | None = None

    def feed(self, data: bytes) -> int:
        """Take the body's bytes from the start of ``data``; return how many were the body's."""
        used = 0
        end = len(data)
        while used < end and not self.done and self.problem is None:
            if self.state == "length" or self.state == "data":
                step = min(self.left, end - used)
                used += step
                self.left -= step
                if self.left == 0:
                    if self.state == "length":
                        self.done = True
                    else:
                        self.state = "size"
                continue
            newline = data.find(b"\n", used)
            stop = end if newline < 0 else newline + 1
            self.line += data[used:stop]
            used = stop
            if len(self.line) > _MAX_CHUNK_LINE:
                self.problem = f"a chunked body line is longer than {_MAX_CHUNK_LINE} bytes"
            elif newline >= 0:
                self._line(bytes(self.line).strip())
                self.line.clear()
        return used

    def _line(self, line: bytes) -> None:
        if self.state == "trailer":
            self.done = not line  # the empty line after the trailer fields ends the message
            return
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16) if 0 < len(size_text) <= 16 and size_text.isascii() else -1
        except ValueError:
            size = -1
        if size < 0:
            self.problem = "a chunk-size line is not a hexadecimal number"
        elif size == 0:
            self.state = "trailer"
        else:
            self.state, self.left = "data", size + 2  # the chunk's data, then its CRLF


def _body_of_request(request: HttpRequest) -> _BodyReader | None:
    """Where a request's body ends (RFC 9112 6.3: with neither Content-Length nor Transfer-Encoding, it has none)."""
    codings = request.headers.tokens("Transfer-Encoding")
    if codings:
        reader = _BodyReader(None)
        if codings[-1] != "chunked":
            reader.problem = (f"The client's further bytes are not read as another request: its request before has a "
                              f"body in {', '.join(codings)} transfer coding, whose end cannot be known "
                              "(RFC 9112 6.3).")
        return reader
    lengths = {value.strip() for value in request.headers.get_all("Content-Length")}
    if not lengths:
        return None
    length = ascii_number(next(iter(lengths)), 18) if len(lengths) == 1 else None
    if length is None:
        reader = _BodyReader(None)
        reader.problem = ("The client's further bytes are not read as another request: its request before has a "
                          "Content-Length that is not one number (RFC 9112 6.3).")
        return reader
    return _BodyReader(length) if length else None


# RFC 6455 7.4.1 and 7.4.2, plus 1012-1014 registered with IANA since (section 11.7's registry).
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def _usual_first_bytes(*, deflate_agreed: bool) -> bytes:
    """For each value of a frame's first byte: 1 if a data frame breaks none of the rules of ``_check_frame`` with
    it, 2 if a control frame does (provided it carries at most 125 bytes), 0 if the rules must be gone through."""
    kinds = bytearray(256)
    for first in range(256):
        opcode, reserved_bits = first & 0x0F, first & 0x70
        if not (reserved_bits == 0 or (reserved_bits == 0x40 and deflate_agreed and opcode in (1, 2))):
            continue
        if opcode <= 2:
            kinds[first] = 1
        elif opcode in (8, 9, 10) and first & 0x80:
            kinds[first] = 2
    return bytes(kinds)


# Which table a direction uses depends only on whether RSV1 may mean "compressed" there (an inflater is set).
_USUAL_FIRST_BYTES = _usual_first_bytes(deflate_agreed=False)
_USUAL_FIRST_BYTES_DEFLATE = _usual_first_bytes(deflate_agreed=True)


def close_code_is_valid(code: int) -> bool:
    return code in _VALID_CLOSE_CODES or 3000 <= code <= 4999


@dataclass(slots=True)
class _MessageInProgress:
    opcode: int
    compressed: bool
    first_packet: int | None
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    wire_length: int = 0
    frames: int = 0
    utf8: codecs.IncrementalDecoder | None = None  # validates a text message as it arrives (RFC 6455 8.1)
    text_valid: bool = True
    complete: bool = True  # False once a limit or an inflate error cut it short


class _Side:
    """The state of one direction: its parser, the message being reassembled, its inflater."""

    __slots__ = (
        "arrivals",
        "charged",
        "consumed",
        "direction",
        "head",
        "head_charged",
        "held",
        "ignored",
        "inflater",
        "lost_message_start",
        "message",
        "parser",
        "received",
        "sender_is_client",
        "sent_close",
        "usual_first_bytes",
    )

    def __init__(self, direction: Direction, limits: Limits, *, in_sync: bool) -> None:
        self.direction = direction
        self.sender_is_client = direction == "c2s"
        self.parser = FrameParser(max_payload=limits.max_frame, in_sync=in_sync,
                                  expect_masked=self.sender_is_client)
        self.message: _MessageInProgress | None = None
        self.charged = 0  # bytes of the parser's unfinished frame counted in the memory budget
        self.inflater: MessageInflater | None = None  # set when RSV1 means "compressed" in this direction
        self.usual_first_bytes = _USUAL_FIRST_BYTES  # follows ``inflater``: see _usual_first_bytes
        if not in_sync:
            self.assume_deflate()
        self.sent_close = False
        # After bytes went missing, a continuation frame may belong to a message whose start was never seen:
        # that is the capture's fault, not the sender's.
        self.lost_message_start = not in_sync
        self.received = 0  # stream offset of the next byte of this direction (gaps included)
        self.arrivals: list[tuple[int, float, int | None]] = []  # (end offset, time, packet) while out of sync
        self.head = bytearray()  # handshake header block being collected
        self.head_charged = 0  # bytes of ``head`` counted in the memory budget
        self.consumed = 0  # stream offset of the end of the HTTP messages (header blocks, bodies) read so far
        # Bytes (or, as an int, a gap of that many bytes) waiting for the other side's handshake.
        self.held: list[tuple[bytes | int, float, int | None]] = []
        self.ignored = 0  # bytes after a refused handshake

    def enable_deflate(self, params: DeflateParams) -> None:
        self.parser.rsv1_allowed = True
        self.inflater = MessageInflater(no_context_takeover=params.no_context_takeover(self.sender_is_client),
                                        window_bits=params.max_window_bits(self.sender_is_client))
        self.usual_first_bytes = _USUAL_FIRST_BYTES_DEFLATE

    def assume_deflate(self) -> None:
        """The handshake was not seen: take RSV1 to mean permessage-deflate, with the earlier window unknown."""
        self.parser.rsv1_allowed = True
        self.inflater = MessageInflater(no_context_takeover=False, context_known=False)
        self.usual_first_bytes = _USUAL_FIRST_BYTES_DEFLATE


class Connection:
    """Decodes one connection. See the module docstring."""

    # A capture can hold many thousands of open connections at once: no per-instance dict.
    __slots__ = ("_body_wanted", "_ended", "_next_body", "_request", "_request_body", "_response", "_unread",
                 "budget", "close_codes", "deflate", "limits", "mid_stream", "phase", "sides", "stream")

    def __init__(self, stream: int = 0, *, mid_stream: bool = False, limits: Limits | None = None,
                 budget: MemoryBudget | None = None) -> None:
        self.stream = stream
        self.limits = limits or Limits()
        self.budget = budget  # shared with the other connections of a trace; None: max_message alone bounds
        self.mid_stream = mid_stream
        self.phase = _OPEN if mid_stream else _REQUEST
        self.sides = {"c2s": _Side("c2s", self.limits, in_sync=not mid_stream),
                      "s2c": _Side("s2c", self.limits, in_sync=not mid_stream)}
        self._request: HttpRequest | None = None  # kept only until the response is judged against it
        self.deflate: DeflateParams | None = None
        self.close_codes: dict[Direction, int | None] = {}
        self._body_wanted = 0
        self._response: HttpResponse | None = None  # parsed when its header block is in; a refusal's body follows
        # Where a refusal's body ends, when another request may follow it on the connection (RFC 9112 9.3).
        self._next_body: _BodyReader | None = None
        self._request_body: _BodyReader | None = None  # the last request's body, passed before the next request
        self._unread: str | None = None  # why the client's bytes after a refusal are not read (said once)
        self._ended = False

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def closed_cleanly(self) -> bool:
        return len(self.close_codes) == 2

    def receive(self, direction: Direction, data: bytes, *, time: float, packet: int | None = None) -> list[Event]:
        out: list[Event] = []
        if data:
            side = self.sides[direction]
            side.received += len(data)
            if self.phase is _OPEN:
                self._frames(side, bytes(data), time, packet, out)
            else:
                self._route(direction, bytes(data), time, packet, out)
        return out

    def gap(self, direction: Direction, missing: int, *, time: float, packet: int | None = None) -> list[Event]:
        """``missing`` bytes of ``direction`` were never captured."""
        out: list[Event] = []
        side = self.sides[direction]
        offset = side.received
        side.received += missing
        self._route_gap(side, missing, offset, time, packet, out)
        return out

    def end(self, *, time: float, packet: int | None = None, reason: str = "end of stream") -> list[Event]:
        """The transport is gone (FIN/RST, end of capture, socket closed): report what was left unfinished."""
        out: list[Event] = []
        if self._ended:
            return out
        self._ended = True
        if self._response is not None:
            side = self.sides["s2c"]
            self._finish_response(bytes(side.head), time, packet, out)
        if self._unread is not None and any(not isinstance(item, int) for item, _, _ in self.sides["c2s"].held):
            # The client sent more while an answer without a known end was coming: say once why it is not read.
            out.append(Notice(stream=self.stream, direction="c2s", time=time, packet=packet,
                              check=CHECKS["http.next-request-not-read"], message=self._unread))
            self._unread = None
        for side in self.sides.values():
            side.head.clear()
            self._charge_head(side)
            if self.phase is _OPEN:
                never_came = side.parser.still_to_skip
                if never_came:  # the frame's header claimed more than the stream held (up to 8 EiB)
                    out.append(self._notice(side, "capture.truncated-frame", time, packet,
                                            f"The stream ended inside a frame: its header claims {never_came} "
                                            "more bytes than came.", side.received))
                for item in side.parser.finish():
                    self._parse_item(side, item, time, packet, out)
                if self.budget is not None:
                    self.budget.give_back(side.charged)
                    side.charged = 0
                if side.message is not None:
                    out.append(self._notice(side, "capture.unfinished-message", time, packet,
                                            f"The stream ended inside a fragmented "
                                            f"{opcode_name(side.message.opcode).lower()} message "
                                            f"({side.message.frames} frames, no final fragment)."))
                    self._drop_message(side)
        out.append(_new_connection_closed(self.stream, "c2s", time, packet, reason, self.closed_cleanly))
        return out

    def receive_request(self, request: HttpRequest, findings: Sequence[Finding], *, time: float,
                        packet: int | None = None) -> list[Event]:
        """The client's opening handshake, come in another form than HTTP/1.1 header bytes: RFC 8441's extended
        CONNECT over HTTP/2 (``core.http2``), judged by its caller against the rules of that form."""
        out: list[Event] = []
        if self.phase is _REQUEST:
            self._request = request
            out.append(HandshakeRequest(stream=self.stream, direction="c2s", time=time, packet=packet,
                                        request=request, findings=tuple(findings)))
            self.phase = _RESPONSE
            self._release_held(out)
        return out

    def receive_response(self, response: HttpResponse, findings: Sequence[Finding], *, upgraded: bool,
                         time: float, packet: int | None = None) -> list[Event]:
        """The server's answer to ``receive_request``'s handshake; ``upgraded`` says whether frames follow (RFC 8441
        5: a 2xx status, where HTTP/1.1 has 101). Its extensions are agreed as after a 101."""
        out: list[Event] = []
        if self.phase is _RESPONSE:
            self._conclude_response(response, list(findings), upgraded, time, packet, out)
            self._release_held(out)  # what the client sent before the answer was seen
        return out

    def direction_missing(self, direction: Direction, *, time: float, packet: int | None = None) -> list[Event]:
        """The capture holds nothing of ``direction`` (a capture filter, asymmetric routing): stop waiting for its
        handshake and decode the side that was captured.

        Without the server's side, the client's request is all there is: frames follow it, with the extensions
        unknown (RSV1 is read as compression when the request offered permessage-deflate). Without the client's
        side, the server's response is parsed as usual (with no request to check its accept key against), then
        its frames.
        """
        out: list[Event] = []
        if self.phase is _RESPONSE and direction == "s2c":
            self.phase = _OPEN
            offered = self._request is not None and any(
                extension.name == deflate.EXTENSION_NAME
                for extension in parse_extensions(self._request.headers.get_all("Sec-WebSocket-Extensions")))
            self._request = None
            if offered:
                for side in self.sides.values():
                    side.assume_deflate()
            self._release_held(out)
        elif self.phase is _REQUEST and direction == "c2s":
            self.phase = _RESPONSE
            self._release_held(out)
        return out

    # -- routing ---------------------------------------------------------------------------------------------

    def _is_held(self, direction: Direction) -> bool:
        """Must this direction's bytes wait for the other side's handshake?"""
        return (self.phase is _REQUEST and direction == "s2c") or \
            (self.phase is _RESPONSE and direction == "c2s")

    def _route(self, direction: Direction, data: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        side = self.sides[direction]
        phase = self.phase
        if phase is _OPEN:
            self._frames(side, data, time, packet, out)
        elif phase is _REFUSED:
            side.ignored += len(data)
            if self._unread is not None and direction == "c2s":
                out.append(Notice(stream=self.stream, direction="c2s", time=time, packet=packet,
                                  check=CHECKS["http.next-request-not-read"], message=self._unread))
                self._unread = None
        elif self._is_held(direction):
            side.held.append((data, time, packet))
        elif phase is _REQUEST:
            self._collect_request(side, data, time, packet, out)
        else:
            self._collect_response(side, data, time, packet, out)

    def _route_gap(self, side: _Side, missing: int, offset: int, time: float, packet: int | None,
                   out: list[Event]) -> None:
        if self._is_held(side.direction):
            side.held.append((missing, time, packet))
            return
        out.append(Gap(stream=self.stream, direction=side.direction, time=time, packet=packet, missing=missing,
                       offset=offset))
        if self.phase is _REFUSED:
            side.ignored += missing
            return
        if self.phase is not _OPEN:
            self._handshake_lost(side, time, packet, out)
            return
        for item in side.parser.gap(missing):
            self._parse_item(side, item, time, packet, out)
        if self.budget is not None:
            self._charge_frame(side, time, packet, out)
        side.lost_message_start = True
        if side.message is not None:
            out.append(self._notice(side, "capture.unfinished-message", time, packet,
                                    f"The {opcode_name(side.message.opcode).lower()} message in progress "
                                    f"({side.message.frames} frames so far) lost bytes in the gap; it is dropped."))
            self._drop_message(side)
        if side.inflater is not None:
            side.inflater.forget_context()

    def _handshake_lost(self, side: _Side, time: float, packet: int | None, out: list[Event]) -> None:
        """Part of a handshake header block was never captured: decode frames from the next trustworthy boundary."""
        out.append(self._notice(side, "capture.gap", time, packet,
                                "Part of the opening handshake was not captured; frames are decoded from the next "
                                "boundary the decoder can trust, without knowing the negotiated extensions."))
        self.phase = _OPEN
        self._response = None
        for each in self.sides.values():
            each.head.clear()
            self._charge_head(each)
            still_held = sum(item if isinstance(item, int) else len(item) for item, _, _ in each.held)
            each.parser = FrameParser(max_payload=self.limits.max_frame, in_sync=False,
                                      expect_masked=each.sender_is_client, offset=each.received - still_held)
            each.assume_deflate()
            each.lost_message_start = True
        self._release_held(out)

    def _release_held(self, out: list[Event]) -> None:
        for side in self.sides.values():
            held, side.held = side.held, []
            for item, time, packet in held:
                if isinstance(item, int):
                    self._route_gap(side, item, side.received - item, time, packet, out)
                else:
                    self._route(side.direction, item, time, packet, out)

    def _collect_head(self, side: _Side, data: bytes, time: float, packet: int | None,
                      out: list[Event]) -> tuple[bytes, bytes] | None:
        """Add bytes to a header block; (head, rest) once the blank line is in, within the size limit."""
        limit = self.limits.max_header_bytes
        if not side.head:
            # A whole header block in one piece (the usual handshake): cut it from ``data``, no copy into the buffer.
            end = find_header_end(data)
            if 0 <= end <= limit:
                side.consumed += end
                side.parser.offset = side.consumed  # frames follow the header block in the byte stream
                return data[:end], data[end:]
        start = max(len(side.head) - 3, 0)
        side.head += data
        end = find_header_end(side.head, start)
        if end > limit or (end < 0 and len(side.head) > limit):
            out.append(Violation(stream=self.stream, direction=side.direction, time=time, packet=packet,
                                 check=CHECKS["http.header-too-large"],
                                 message=f"The header block is longer than {limit} bytes."))
            side.ignored += len(side.head)
            side.head.clear()
            self._charge_head(side)
            self.phase = _REFUSED
            return None
        if end < 0:
            if self._charge_head(side):
                out.append(self._notice(side, "capture.memory-budget", time, packet,
                                        f"Header blocks, messages and frames still arriving in this capture hold "
                                        f"{self.budget.held if self.budget else 0} bytes, the memory budget is "
                                        f"{self.budget.limit if self.budget else 0}: this unfinished header block "
                                        f"({len(side.head)} bytes so far) stops being kept; the rest of the "
                                        "connection is not decoded."))
                side.ignored += len(side.head)
                side.head.clear()
                self._charge_head(side)
                self.phase = _REFUSED
            return None
        head, rest = bytes(side.head[:end]), bytes(side.head[end:])
        side.head.clear()
        self._charge_head(side)
        side.consumed += end
        side.parser.offset = side.consumed  # frames follow the header block in the byte stream
        return head, rest

    def _charge_head(self, side: _Side) -> bool:
        """Count ``side.head`` in the memory budget; True if the budget is exceeded and it is worth letting go."""
        budget = self.budget
        if budget is None:
            return False
        held = len(side.head)
        if held != side.head_charged:
            budget.take(held - side.head_charged)
            side.head_charged = held
        return budget.held > budget.limit and held >= HEAD_LET_GO_FROM

    def _collect_request(self, side: _Side, data: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        body = self._request_body
        if body is not None:  # the body of the request before, on a connection that goes on after a refusal
            used = body.feed(data)
            side.consumed += used
            if not body.done:
                return
            self._request_body = None
            data = data[used:]
            if not data:
                return
        complete = self._collect_head(side, data, time, packet, out)
        if complete is None:
            return
        head, rest = complete
        self._request = parse_request(head)
        self._request_body = _body_of_request(self._request)
        out.append(_new_handshake_request(self.stream, "c2s", time, packet, self._request,
                                          tuple(validate_request(self._request))))
        self.phase = _RESPONSE
        if rest:
            side.held.append((rest, time, packet))
        self._release_held(out)

    def _collect_response(self, side: _Side, data: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        if self._response is not None or self._next_body is not None:  # the body of a refusal
            self._refusal_body(side, data, time, packet, out)
            return
        complete = self._collect_head(side, data, time, packet, out)
        if complete is None:
            return
        head, rest = complete
        response = self._response = parse_response(head)
        if response.status == 101:
            self._finish_response(b"", time, packet, out)
            self._release_held(out)  # the client's early frames were sent before these
            if rest:
                self._frames(side, rest, time, packet, out)
            return
        # Not upgraded: keep the body (bounded, cut at Content-Length) for display; the rest is not WebSocket,
        # unless the connection goes on to another request.
        length = response.headers.get("Content-Length")
        declared = ascii_number(length.strip(), 18) if length is not None else None
        if declared is None:
            declared = self.limits.max_body
        self._body_wanted = min(declared, self.limits.max_body)
        self._next_body, self._unread = self._after_refusal(response)
        if self._next_body is not None and self._request_body is not None and self._request_body.problem:
            self._next_body, self._unread = None, self._request_body.problem
        self._refusal_body(side, rest, time, packet, out)

    def _refusal_body(self, side: _Side, data: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        """The body of an answer that is not a 101: its start is kept for display; where it ends (if that can be
        known), the connection goes back to looking for a request."""
        reader = self._next_body
        used = len(data)
        if reader is not None:
            used = reader.feed(data)
            side.consumed += used
            if reader.problem is not None:
                self._unread = f"The client's further bytes are not read as another request: in the server's " \
                               f"{self._status_text()}answer, {reader.problem}, so where its body " \
                               "ends cannot be known."
                self._next_body = reader = None
                if self._response is None:
                    self.phase = _REFUSED  # the answer was already reported; its body just stopped making sense
        if self._response is not None:
            room = self._body_wanted - len(side.head)
            if room > 0:
                side.head += data[:used] if reader is not None else data
            # Past the memory budget the body kept for display is cut where it is.
            if len(side.head) >= self._body_wanted or (reader is not None and reader.done) or \
                    self._charge_head(side):
                self._finish_response(bytes(side.head), time, packet, out)
                if reader is not None and not reader.done:
                    self.phase = _RESPONSE  # the rest of the body is still to pass before the next request
        if reader is not None and reader.done:
            self._next_body = None
            self.phase = _REQUEST
            rest = data[used:]
            if rest:
                side.held.append((rest, time, packet))  # the server's next answer
            self._release_held(out)  # the client's next request, if it came already

    def _status_text(self) -> str:
        return f"{self._response.status} " if self._response is not None else ""

    def _after_refusal(self, response: HttpResponse) -> tuple[_BodyReader | None, str | None]:
        """After an answer that is not a 101: where its body ends, if the connection may carry another request
        (RFC 9112 9.3, 6.3); else why not, when the client might still send one (None: the answer closes it)."""
        request = self._request
        if response.status < 200:
            return None, None  # an interim answer (RFC 9110 15.2): the real one is still to come, not read here
        closing = "close" in response.headers.tokens("Connection") or \
            (request is not None and "close" in request.headers.tokens("Connection"))
        if closing or (response.version == "HTTP/1.0" and "keep-alive" not in response.headers.tokens("Connection")):
            return None, None
        status = f"{response.status} "
        if (request is not None and request.method == "HEAD") or response.status in (204, 304):
            return _BodyReader(0), None
        codings = response.headers.tokens("Transfer-Encoding")
        if codings:
            if codings[-1] == "chunked":
                return _BodyReader(None), None
            return None, (f"The client's further bytes are not read as another request: the server's {status}answer "
                          f"has a body in {', '.join(codings)} transfer coding, not ending in chunked, so it runs to "
                          "the end of the connection (RFC 9112 6.3).")
        lengths = {value.strip() for value in response.headers.get_all("Content-Length")}
        length = ascii_number(next(iter(lengths)), 18) if len(lengths) == 1 else None
        if length is not None:
            return _BodyReader(length), None
        if lengths:
            return None, (f"The client's further bytes are not read as another request: the server's {status}"
                          "answer's Content-Length is not one number, so where its body ends cannot be known "
                          "(RFC 9112 6.3).")
        return None, (f"The client's further bytes are not read as another request: the server's {status}answer "
                      "has neither Content-Length nor chunked transfer coding, so its body runs to the end of the "
                      "connection (RFC 9112 6.3).")

    def _finish_response(self, body: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        response, self._response = self._response, None
        assert response is not None
        self.sides["s2c"].head.clear()
        self._charge_head(self.sides["s2c"])
        if body:
            response = dataclasses.replace(response, body=body[: self._body_wanted])
        self._conclude_response(response, validate_response(response, self._request), response.status == 101,
                                time, packet, out)

    def _conclude_response(self, response: HttpResponse, findings: list[Finding], upgraded: bool, time: float,
                           packet: int | None, out: list[Event]) -> None:
        """Agree permessage-deflate as the answer says, open or refuse, and report the answer."""
        extensions = tuple(parse_extensions(response.headers.get_all("Sec-WebSocket-Extensions")))
        deflate_params: DeflateParams | None = None
        for extension in extensions:
            if extension.name == deflate.EXTENSION_NAME:
                offers = parse_extensions(self._request.headers.get_all("Sec-WebSocket-Extensions")) \
                    if self._request else []
                offer = next((o for o in offers if o.name == extension.name), None)
                deflate_params, problems = deflate.params_from_response(extension, offer)
                findings += problems
        if upgraded:
            self.phase = _OPEN
            self.deflate = deflate_params
            if deflate_params is not None:
                for side in self.sides.values():
                    side.enable_deflate(deflate_params)
        else:
            self.phase = _REFUSED
        self._request = None
        out.append(_new_handshake_response(self.stream, "s2c", time, packet, response, tuple(findings), upgraded,
                                           response.headers.get("Sec-WebSocket-Protocol"), extensions,
                                           deflate_params))

    # -- frames and messages ------------------------------------------------------------------------------------

    def _frames(self, side: _Side, data: bytes, time: float, packet: int | None, out: list[Event]) -> None:
        parser = side.parser
        if parser.in_sync:
            for item in parser.feed(data):
                if type(item) is Frame:
                    self._frame(side, item, time, packet, out)
                else:
                    self._parse_item(side, item, time, packet, out)
            if self.budget is not None:
                held = parser.buffered
                # Only a change to count, or a frame large enough to let go, needs the budget's attention.
                if held != side.charged or held >= LET_GO_FROM:
                    self._charge_frame(side, time, packet, out)
            return
        # While hunting for a boundary the parser holds bytes back until the next header confirms a frame; remember
        # which packet delivered which bytes so each frame is still attributed to the packet that completed it.
        side.arrivals.append((parser.offset + len(data), time, packet))
        for item in parser.feed(data):
            item_time, item_packet = time, packet
            end = item.offset + (len(item.header) + len(item.payload) if isinstance(item, Frame) else 0)
            while side.arrivals and side.arrivals[0][0] < end:
                side.arrivals.pop(0)
            if side.arrivals:
                _, item_time, item_packet = side.arrivals[0]
            self._parse_item(side, item, item_time, item_packet, out)
        if parser.in_sync:
            side.arrivals.clear()
        if self.budget is not None:
            self._charge_frame(side, time, packet, out)

    def _charge_frame(self, side: _Side, time: float, packet: int | None, out: list[Event]) -> None:
        """Count the parser's unfinished frame in the budget; past it, stop keeping a large one's payload."""
        budget = self.budget
        assert budget is not None
        held = side.parser.buffered
        if held != side.charged:
            budget.take(held - side.charged)
            side.charged = held
        if budget.held <= budget.limit or held < LET_GO_FROM:
            return
        items = side.parser.let_go()
        if not items:
            return  # still hunting for a frame boundary: that buffer is bounded on its own (RESYNC_WINDOW)
        out.append(self._notice(side, "capture.memory-budget", time, packet,
                                f"Unfinished messages and frames of this capture hold {budget.held} bytes, the "
                                f"memory budget is {budget.limit}: the frame being received stops being kept "
                                f"after {held} bytes; the rest of it is skipped, decoding goes on.",
                                items[0].offset))
        budget.give_back(side.charged)
        side.charged = 0
        for item in items:
            self._parse_item(side, item, time, packet, out)

    def _parse_item(self, side: _Side, item: ParseItem, time: float, packet: int | None,
                    out: list[Event]) -> None:
        if isinstance(item, Frame):
            self._frame(side, item, time, packet, out)
        elif isinstance(item, Resynced):
            out.append(self._notice(side, "capture.resync", time, packet,
                                    f"Skipped {item.skipped} bytes to reach a frame boundary at stream offset "
                                    f"{item.offset}.", item.offset))
        elif isinstance(item, Truncated):
            out.append(self._notice(side, "capture.truncated-frame", time, packet,
                                    f"A frame header was cut short after {item.have} bytes.", item.offset))
        else:
            out.append(self._notice(side, "capture.resync", time, packet,
                                    f"{item.count} bytes never lined up with a frame boundary and were not decoded.",
                                    item.offset))

    def _violation(self, side: _Side, check_id: str, frame: Frame | None, time: float, packet: int | None,
                   message: str) -> Violation:
        return Violation(stream=self.stream, direction=side.direction, time=time, packet=packet,
                         check=CHECKS[check_id], message=message, offset=frame.offset if frame else None)

    def _notice(self, side: _Side, check_id: str, time: float, packet: int | None, message: str,
                offset: int | None = None) -> Notice:
        return Notice(stream=self.stream, direction=side.direction, time=time, packet=packet,
                      check=CHECKS[check_id], message=message, offset=offset)

    def _frame(self, side: _Side, frame: Frame, time: float, packet: int | None, out: list[Event]) -> None:
        """A frame's event, then what follows from it: its violations, and the message or close it completes."""
        out.append(_new_frame_event(self.stream, side.direction, time, packet, frame))
        length = frame.payload_length
        kind = side.usual_first_bytes[frame.header[0]]
        if not (kind and frame.masked == side.sender_is_client and (kind == 1 or length <= MAX_CONTROL_PAYLOAD)
                and length <= self.limits.max_frame
                and frame.length_bits == (7 if length <= 125 else 16 if length <= 0xFFFF else 64)):
            self._check_frame(side, frame, time, packet, out)  # not the usual frame: go through the rules
        opcode = frame.opcode
        if (opcode == 1 or opcode == 2) and frame.fin and side.message is None and not side.sent_close \
                and not frame.missing and length <= self.limits.max_message:
            # The common cases, without the machinery for fragments: one frame carrying a whole message.
            if not frame.rsv1:
                self._whole_message(side, frame, time, packet, out)
                return
            if side.inflater is not None:
                self._whole_compressed_message(side, frame, time, packet, out)
                return
        self._interpret(side, frame, time, packet, out)

    def _check_frame(self, side: _Side, frame: Frame, time: float, packet: int | None, out: list[Event]) -> None:
        """The rules of RFC 6455 5.1-5.5 that one frame can break on its own (``_frame`` lets the usual one by)."""
        def report(check_id: str, message: str) -> None:
            out.append(self._violation(side, check_id, frame, time, packet, message))

        if not is_known_opcode(frame.opcode):
            report("frame.opcode-reserved", f"Opcode 0x{frame.opcode:X} is reserved.")
        if frame.rsv2 or frame.rsv3 or (frame.rsv1 and side.inflater is None):
            report("frame.rsv", f"Reserved bits RSV1-3 are {frame.rsv:03b} and no negotiated extension "
                                "defines them.")
        elif frame.rsv1 and (frame.opcode == _CONTINUATION or frame.is_control):
            report("frame.rsv1-continuation", f"RSV1 is set on a {opcode_name(frame.opcode).lower()} frame.")
        if side.sender_is_client and not frame.masked:
            report("frame.client-unmasked", "The client sent an unmasked frame.")
        elif not side.sender_is_client and frame.masked:
            report("frame.server-masked", "The server sent a masked frame.")
        if frame.length_bits == 64 and frame.header[2] & 0x80:
            report("frame.length-msb", "The 64-bit payload length has its most significant bit set.")
        elif not frame.length_is_minimal:
            report("frame.length-not-minimal", f"A payload of {frame.payload_length} bytes is written with a "
                                               f"{frame.length_bits}-bit length.")
        if frame.is_control:
            if not frame.fin:
                report("control.fragmented", f"A {opcode_name(frame.opcode).lower()} frame has FIN=0.")
            if frame.payload_length > MAX_CONTROL_PAYLOAD:
                report("control.too-long", f"A {opcode_name(frame.opcode).lower()} frame carries "
                                           f"{frame.payload_length} bytes (at most 125).")
        if frame.payload_length > self.limits.max_frame:
            report("frame.too-big", f"The frame announces {frame.payload_length} bytes; the limit is "
                                    f"{self.limits.max_frame}.")

    def _interpret(self, side: _Side, frame: Frame, time: float, packet: int | None, out: list[Event]) -> None:
        opcode = frame.opcode
        if opcode == _CLOSE:
            self._close(side, frame, time, packet, out)
            return
        if opcode > _BINARY:  # a ping, a pong, or a reserved opcode: nothing to reassemble
            return
        if side.sent_close:
            out.append(self._violation(side, "close.data-after-close", frame, time, packet,
                                       f"A {opcode_name(opcode).lower()} frame after this side's close frame."))
        if frame.fin and opcode != _CONTINUATION and side.message is None and not frame.rsv1 \
                and frame.complete and frame.payload_length <= self.limits.max_message:
            self._whole_message(side, frame, time, packet, out)
            return
        if opcode == _CONTINUATION:
            if side.message is None:
                if side.lost_message_start:
                    out.append(self._notice(side, "capture.unfinished-message", time, packet,
                                            "A continuation of a message whose first frames were not captured.",
                                            frame.offset))
                else:
                    out.append(self._violation(side, "fragment.unexpected-continuation", frame, time, packet,
                                               "A continuation frame arrived with no fragmented message open."))
                return
        else:
            if side.message is not None:
                out.append(self._violation(side, "fragment.interleaved", frame, time, packet,
                                           f"A new {opcode_name(opcode).lower()} frame arrived while a "
                                           f"{side.message.frames}-frame message was still open; that message "
                                           "is dropped."))
                self._drop_message(side)
            side.lost_message_start = False
            side.message = _MessageInProgress(opcode=opcode, compressed=frame.rsv1 and side.inflater is not None,
                                              first_packet=packet)
            if opcode == _TEXT:
                side.message.utf8 = codecs.getincrementaldecoder("utf-8")("strict")
            if side.message.compressed:
                assert side.inflater is not None
                side.inflater.start()
        message = side.message
        message.frames += 1
        message.wire_length += frame.payload_length
        if not frame.complete and message.complete:
            message.complete = False
            if message.compressed and side.inflater is not None:
                side.inflater.forget_context()  # the bytes not kept were part of the window later messages use
        self._add_payload(side, message, frame, time, packet, out)
        if frame.fin:
            self._finish_message(side, message, time, packet, out)

    def _whole_message(self, side: _Side, frame: Frame, time: float, packet: int | None, out: list[Event]) -> None:
        """One uncompressed frame carrying a whole message, as ``_interpret`` would take it, without its fragment
        machinery: its payload is the message, shared, not copied."""
        side.lost_message_start = False
        text = None
        if frame.opcode == _TEXT:
            try:
                text = frame.payload.decode("utf-8")
            except UnicodeDecodeError as error:
                out.append(self._violation(side, "message.invalid-utf8", frame, time, packet,
                                           f"Invalid UTF-8 at byte {error.start} of the message: {error.reason}."))
        out.append(_new_message(self.stream, side.direction, time, packet, frame.opcode, frame.payload, text, 1,
                                frame.payload_length, False, True, packet))

    def _whole_compressed_message(self, side: _Side, frame: Frame, time: float, packet: int | None,
                                  out: list[Event]) -> None:
        """One compressed frame carrying a whole message, as ``_interpret``, ``_add_payload`` and
        ``_finish_message`` would take it, without a ``_MessageInProgress``: the same events, violations and
        budget accounting (the inflated bytes are held only while the message is built, so they count towards
        the budget's peak and are given back at once)."""
        side.lost_message_start = False
        inflater = side.inflater
        assert inflater is not None
        inflater.start()
        room = self.limits.max_message
        budget = self.budget
        budget_room = budget.available() if budget is not None else room
        try:
            data = inflater.inflate(frame.payload, min(room, budget_room), final=True)
        except (deflate.TooBig, deflate.InflateError) as error:
            message = _MessageInProgress(frame.opcode, True, packet, frames=1, wire_length=frame.payload_length)
            self._inflate_failed(side, message, frame, error, budget_room < room, time, packet, out)
            self._finish_message(side, message, time, packet, out)
            return
        if budget is not None:
            budget.take(len(data))
            budget.give_back(len(data))
        text = None
        if frame.opcode == 1:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                out.append(self._violation(side, "message.invalid-utf8", frame, time, packet,
                                           f"Invalid UTF-8 at byte {error.start} of the message: {error.reason}."))
        out.append(_new_message(self.stream, side.direction, time, packet, frame.opcode, data, text, 1,
                                frame.payload_length, True, True, packet))

    def _add_payload(self, side: _Side, message: _MessageInProgress, frame: Frame, time: float, packet: int | None,
                     out: list[Event]) -> None:
        if not message.complete:
            return  # something was already cut from it: adding more would make a message that was never sent
        data = frame.payload
        room = self.limits.max_message - message.size
        budget = self.budget
        budget_room = budget.available() if budget is not None else room
        if message.compressed:
            inflater = side.inflater
            assert inflater is not None
            try:
                data = inflater.inflate(data, min(room, budget_room), final=frame.fin)
            except (deflate.TooBig, deflate.InflateError) as error:
                self._inflate_failed(side, message, frame, error, budget_room < room, time, packet, out)
                return
        elif len(data) > room:
            out.append(self._violation(side, "message.too-big", frame, time, packet,
                                       f"The message is larger than {self.limits.max_message} bytes."))
            message.complete = False
            return
        elif len(data) > budget_room:
            self._over_budget(side, message, frame, time, packet, out)
            message.complete = False
            return
        message.parts.append(data)
        message.size += len(data)
        if budget is not None:
            budget.take(len(data))
        if message.utf8 is not None and message.text_valid:
            try:
                message.utf8.decode(data, final=frame.fin)
            except UnicodeDecodeError as error:
                message.text_valid = False
                out.append(self._violation(side, "message.invalid-utf8", frame, time, packet,
                                           f"Invalid UTF-8 at byte {message.size - len(data) + error.start} of "
                                           f"the message: {error.reason}."))

    def _inflate_failed(self, side: _Side, message: _MessageInProgress, frame: Frame,
                        error: deflate.TooBig | deflate.InflateError, budget_was_tighter: bool, time: float,
                        packet: int | None, out: list[Event]) -> None:
        """Report why a compressed fragment did not inflate; the message is cut short there."""
        if isinstance(error, deflate.TooBig):
            if budget_was_tighter:
                self._over_budget(side, message, frame, time, packet, out)
            else:
                out.append(self._violation(side, "message.too-big", frame, time, packet,
                                           f"The message inflates to more than {self.limits.max_message} bytes."))
        elif isinstance(error, deflate.ContextMissing):
            out.append(self._notice(side, "message.inflate-context-lost", time, packet,
                                    "This compressed message cannot be inflated: it refers back into earlier "
                                    "messages of this direction that the capture does not hold (context "
                                    "takeover). Its frames are shown; later messages are inflated again as soon as "
                                    "they refer only to what was seen.", frame.offset))
        else:
            out.append(self._violation(side, "message.inflate-failed", frame, time, packet,
                                       f"The compressed data does not inflate: {error}."))
        message.complete = False

    def _over_budget(self, side: _Side, message: _MessageInProgress, frame: Frame, time: float,
                     packet: int | None, out: list[Event]) -> None:
        assert self.budget is not None
        out.append(self._notice(side, "capture.memory-budget", time, packet,
                                f"The unfinished messages of this capture hold {self.budget.held} bytes, the "
                                f"memory budget is {self.budget.limit}: this "
                                f"{opcode_name(message.opcode).lower()} message is cut short after "
                                f"{message.size} bytes; its frames are still decoded.", frame.offset))
        if message.compressed and side.inflater is not None:
            side.inflater.forget_context()  # the rest of this message is not inflated, so its window is unknown

    def _drop_message(self, side: _Side) -> None:
        """Forget the message in progress (its bytes go back to the budget)."""
        if side.message is not None and self.budget is not None:
            self.budget.give_back(side.message.size)
        side.message = None

    def _finish_message(self, side: _Side, message: _MessageInProgress, time: float, packet: int | None,
                        out: list[Event]) -> None:
        self._drop_message(side)
        data = b"".join(message.parts)
        text = None
        if message.utf8 is not None and message.text_valid and message.complete:
            text = data.decode("utf-8")  # already validated piece by piece
        out.append(_new_message(self.stream, side.direction, time, packet, message.opcode, data, text,
                                message.frames, message.wire_length, message.compressed, message.complete,
                                message.first_packet))

    def _close(self, side: _Side, frame: Frame, time: float, packet: int | None, out: list[Event]) -> None:
        body = parse_close_payload(frame.payload)
        code, reason = body.code, body.reason
        if body.one_byte:
            out.append(self._violation(side, "close.payload-one-byte", frame, time, packet,
                                       "The close frame's body is 1 byte long."))
        if code is not None and not close_code_is_valid(code):
            out.append(self._violation(side, "close.code-invalid", frame, time, packet,
                                       f"Close code {code} must not be sent."))
        if not body.reason_is_utf8:
            out.append(self._violation(side, "close.reason-invalid-utf8", frame, time, packet,
                                       "The close reason is not valid UTF-8."))
        initiator = not self.close_codes
        if side.direction not in self.close_codes:
            self.close_codes[side.direction] = code
        side.sent_close = True
        out.append(_new_close(self.stream, side.direction, time, packet, code, reason, initiator))

