"""WebSocket over HTTP/2 (RFC 8441): an HTTP/2 connection in, the WebSocket events of its extended CONNECT out.

Theory of operation. A TCP stream (cleartext with prior knowledge, or TLS-decrypted with ALPN h2) that starts with
the client connection preface (RFC 9113 3.4) is handed, both directions, to an ``Http2Connection``; it has the same
``receive``/``gap``/``end``/``direction_missing`` calls as ``connection.Connection``, so the trace feeds it the same
way. Each direction is cut into frames (RFC 9113 4.1: a 9-byte header, then the payload). Every header block
(HEADERS or PUSH_PROMISE, then CONTINUATION until END_HEADERS: RFC 9113 4.3) is decoded with the HPACK decoder of its
direction, even on streams that are not WebSocket, because each block may change the dynamic table that the next
block refers to (RFC 7541 2.3.2).

A request whose pseudo-header fields say ``:method CONNECT`` and ``:protocol websocket`` (RFC 8441 4) opens a
WebSocket: its fields become a ``HandshakeRequest`` and the answer's a ``HandshakeResponse`` (``:status`` 2xx is
success, RFC 8441 5, where HTTP/1.1 had 101), given to a ``connection.Connection`` that then decodes that stream's
DATA payloads, per direction, as the WebSocket byte stream (RFC 8441 5: "as if it were the TCP connection"). What
HTTP/2 itself says (the settings, which stream, END_STREAM, RST_STREAM, GOAWAY) comes as ``h2.connection`` notices.

The conversation is the TCP stream: its ``ConnectionOpened`` is given when the first WebSocket starts (or when a
problem needs to be shown before one), unless the caller already gave one (a TLS stream). One WebSocket at a time is
decoded: an extended CONNECT while the decoded one's stream is still open is reported, not decoded (a known limit:
the events of one conversation carry one stream number); one after it closed is decoded next, in the same
conversation, with its own handshake events.

Hostile input is expected. Bounded: each frame (the receiver's SETTINGS_MAX_FRAME_SIZE, at most ``max_frame``),
each header block and its decoded list (``max_header_bytes``), the dynamic table (what the receiver advertised in
SETTINGS_HEADER_TABLE_SIZE, at most ``MAX_TABLE_SIZE``), the extended CONNECTs remembered (``MAX_PENDING_STREAMS``).
A frame-layer error stops that direction (its frame boundaries can no longer be trusted); an HPACK error stops that
direction's header decoding (RFC 9113 4.3: the compression context is lost) while DATA is still decoded.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

import hpack

from wsinspect.core.checks import CHECKS
from wsinspect.core.connection import Connection, Limits, MemoryBudget
from wsinspect.core.events import ConnectionClosed, ConnectionOpened, Direction, Event, Notice, Violation
from wsinspect.core.handshake import Finding, Headers, HttpRequest, HttpResponse, finding, parse_extensions

#: RFC 9113 3.4: the client connection preface, the first bytes a client sends on an HTTP/2 connection.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER = 9  # RFC 9113 4.1: length (24 bits), type (8), flags (8), R + stream identifier (32)
_DEFAULT_MAX_FRAME_SIZE = 2**14  # RFC 9113 6.5.2, SETTINGS_MAX_FRAME_SIZE's initial value (and least)
_LARGEST_MAX_FRAME_SIZE = 2**24 - 1  # RFC 9113 6.5.2: the largest SETTINGS_MAX_FRAME_SIZE allowed
_DEFAULT_TABLE_SIZE = 4096  # RFC 9113 6.5.2, SETTINGS_HEADER_TABLE_SIZE's initial value
#: The dynamic table a peer may ask for is bounded here whatever it advertised (RFC 7541 4.2 lets the decoder's
#: side choose; 64 KiB is 16 times the default and more than browsers use).
MAX_TABLE_SIZE = 64 * 1024
#: Extended CONNECTs whose answer is still awaited, remembered to report it; more are reported as unanswered.
MAX_PENDING_STREAMS = 128
_MAX_DEBUG_SHOWN = 256  # bytes of a GOAWAY's debug data shown


class FrameType(enum.IntEnum):
    """RFC 9113 6: the frame types of HTTP/2."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# RFC 9113 6: the flags, by the bit each sets in the frame header's flags byte.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# RFC 9113 6.5.2, and RFC 8441 3 for SETTINGS_ENABLE_CONNECT_PROTOCOL.
SETTING_NAMES = {0x1: "SETTINGS_HEADER_TABLE_SIZE", 0x2: "SETTINGS_ENABLE_PUSH",
                 0x3: "SETTINGS_MAX_CONCURRENT_STREAMS", 0x4: "SETTINGS_INITIAL_WINDOW_SIZE",
                 0x5: "SETTINGS_MAX_FRAME_SIZE", 0x6: "SETTINGS_MAX_HEADER_LIST_SIZE",
                 0x8: "SETTINGS_ENABLE_CONNECT_PROTOCOL"}
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8

# RFC 9113 7: error codes, as RST_STREAM and GOAWAY carry them.
ERROR_CODES = {0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
               0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
               0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
               0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED"}


def error_name(code: int) -> str:
    return ERROR_CODES.get(code, f"unknown error code 0x{code:x}")


@dataclass(frozen=True, slots=True)
class Http2Frame:
    """One frame as it came off the wire (RFC 9113 4.1); ``payload`` still holds any padding."""

    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def type_name(self) -> str:
        try:
            return FrameType(self.type).name
        except ValueError:
            return f"type 0x{self.type:02x}"


def _printable(raw: bytes) -> str:
    """Wire text for a message: printable ASCII kept, every other byte escaped."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


class HeaderBlockError(Exception):
    """A header block that cannot be decompressed (RFC 7541); the message says why."""


class HeaderDecoder:
    """RFC 7541 decoding of one direction's header blocks, bounded.

    The decoding itself (static table, dynamic table with size updates, integers, string literals, Huffman code) is
    python-hyper's ``hpack``; this adds the bounds and turns its errors, and any other exception garbage could
    provoke in it, into ``HeaderBlockError``. ``table_size`` is the dynamic table's size before any size update
    (RFC 9113 6.5.2: 4096); an update above what the receiver allows (``allow_table_size``) is an error (RFC 7541
    6.3), and ``max_list_size`` bounds a decoded list as RFC 7541 4.1 counts it (name, value, 32 octets each).
    """

    def __init__(self, *, max_list_size: int, table_size: int = _DEFAULT_TABLE_SIZE) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_list_size)
        self._decoder.header_table_size = min(table_size, MAX_TABLE_SIZE)
        self._decoder.max_allowed_table_size = min(table_size, MAX_TABLE_SIZE)

    def allow_table_size(self, size: int) -> None:
        """The receiver advertised SETTINGS_HEADER_TABLE_SIZE ``size``: the encoder may use up to that much."""
        self._decoder.max_allowed_table_size = min(size, MAX_TABLE_SIZE)

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return [(bytes(name), bytes(value)) for name, value in self._decoder.decode(block, raw=True)]
        except (hpack.HPACKError, IndexError, ValueError) as error:
            raise HeaderBlockError(str(error) or type(error).__name__) from error


class Stop(Exception):
    """A direction's frame boundaries can no longer be trusted: the message says why (internal to this module)."""

    def __init__(self, check_id: str, message: str) -> None:
        super().__init__(message)
        self.check_id = check_id
        self.message = message


@dataclass(slots=True)
class _Side:
    """One direction: its frame buffer, HPACK decoder, the header block being collected, the settings it sent."""

    direction: Direction
    decoder: HeaderDecoder
    buffer: bytearray = field(default_factory=bytearray)
    preface_left: int = 0  # bytes of the client preface still expected at the start of this direction
    skip: int = 0  # payload bytes of an oversized frame still to pass over
    stopped: bool = False
    headers_lost: bool = False  # an HPACK error or a dropped block: the dynamic table is no longer known
    block: bytearray | None = None  # header block fragments until END_HEADERS
    block_stream: int = 0
    block_end_stream: bool = False
    block_is_push: bool = False
    settings: dict[int, int] = field(default_factory=dict)  # the latest value of each setting this side sent
    settings_reported: bool = False


@dataclass(slots=True)
class _Pending:
    """An extended CONNECT still waiting for its answer."""

    request: HttpRequest
    decoded: bool  # its WebSocket is the one decoded (the connection's first)


class Http2Connection:
    """One HTTP/2 connection, both directions: bytes in, WebSocket events out. See the module docstring."""

    def __init__(self, opened: ConnectionOpened, *, announced: bool = False, limits: Limits | None = None,
                 budget: MemoryBudget | None = None) -> None:
        self.opened = opened  # the TCP conversation, given again (with how it was told apart) when it is announced
        self.stream = opened.stream
        self.announced = announced  # a ConnectionOpened for this stream has been given
        self.limits = limits or Limits()
        self.budget = budget
        self.sides = {d: _Side(d, HeaderDecoder(max_list_size=self.limits.max_header_bytes))
                      for d in ("c2s", "s2c")}
        self.sides["c2s"].preface_left = len(PREFACE)
        self.websocket: Connection | None = None
        self.websocket_stream = 0  # the HTTP/2 stream identifier the decoded WebSocket runs on
        self.websocket_ended: set[Direction] = set()  # the directions that sent END_STREAM on it
        self.websocket_finished = False  # its stream is closed (both END_STREAMs, RST_STREAM) or it was refused
        self.pending: dict[int, _Pending] = {}
        self.others_reported = 0  # extended CONNECTs not decoded, reported
        self._ended = False

    # -- the Connection-like API the trace calls ----------------------------------------------------------------

    def receive(self, direction: Direction, data: bytes, *, time: float, packet: int | None = None) -> list[Event]:
        out: list[Event] = []
        side = self.sides[direction]
        if side.stopped or not data:
            return out
        view = memoryview(data)
        if side.skip:
            skipped = min(side.skip, len(view))
            side.skip -= skipped
            view = view[skipped:]
        if side.preface_left:
            rest = self._preface(side, view, time, packet, out)
            if rest is None:
                return out
            view = rest
        side.buffer += view
        try:
            self._frames(side, time, packet, out)
        except Stop as stop:
            self._stop(side, stop.check_id, stop.message, time, packet, out)
        return out

    def gap(self, direction: Direction, missing: int, *, time: float, packet: int | None = None) -> list[Event]:
        """``missing`` bytes of ``direction`` were never captured: HTTP/2 frames carry no marker to find the next
        one by, so this direction is decoded no further."""
        out: list[Event] = []
        side = self.sides[direction]
        if not side.stopped:
            self._stop(side, "capture.gap", f"{missing} bytes of the HTTP/2 connection were not captured; HTTP/2 "
                       f"frames have no marker to resynchronise on (RFC 9113 4.1), so this direction is decoded no "
                       f"further.", time, packet, out)
        return out

    def end(self, *, time: float, packet: int | None = None, reason: str = "end of stream") -> list[Event]:
        out: list[Event] = []
        if self._ended:
            return out
        self._ended = True
        if self.websocket is not None:
            return self.websocket.end(time=time, packet=packet, reason=reason)
        if self.announced:
            out.append(ConnectionClosed(stream=self.stream, direction="c2s", time=time, packet=packet,
                                        reason=reason, clean=False))
        return out

    def announce(self, *, time: float, packet: int | None = None) -> list[Event]:
        """Show the conversation now (the caller has something to say about it), if it has not been shown."""
        out: list[Event] = []
        self._announce(time, packet, out)
        return out

    def direction_missing(self, direction: Direction, *, time: float, packet: int | None = None) -> list[Event]:
        if self.websocket is not None:
            return self.websocket.direction_missing(direction, time=time, packet=packet)
        return []

    # -- frames ------------------------------------------------------------------------------------------------

    def _preface(self, side: _Side, view: memoryview, time: float, packet: int | None,
                 out: list[Event]) -> memoryview | None:
        """Check the client preface (RFC 9113 3.4); the rest of the bytes, or None when nothing is left to read."""
        at = len(PREFACE) - side.preface_left
        taken = bytes(view[: side.preface_left])
        if taken != PREFACE[at : at + len(taken)]:
            self._stop(side, "h2.frame", f"The client's first bytes are not the HTTP/2 connection preface "
                       f"(RFC 9113 3.4): {_printable(taken[:32])!s}", time, packet, out)
            return None
        side.preface_left -= len(taken)
        return view[len(taken) :] if len(view) > len(taken) else None

    def _max_frame(self, side: _Side) -> int:
        """RFC 9113 4.2: a frame may be as large as its receiver's SETTINGS_MAX_FRAME_SIZE."""
        receiver = self.sides["s2c" if side.direction == "c2s" else "c2s"]
        advertised = receiver.settings.get(SETTINGS_MAX_FRAME_SIZE, _DEFAULT_MAX_FRAME_SIZE)
        return min(max(advertised, _DEFAULT_MAX_FRAME_SIZE), _LARGEST_MAX_FRAME_SIZE, self.limits.max_frame)

    def _frames(self, side: _Side, time: float, packet: int | None, out: list[Event]) -> None:
        buffer = side.buffer
        start = 0
        while len(buffer) - start >= _FRAME_HEADER:
            length = int.from_bytes(buffer[start : start + 3], "big")
            if length > self._max_frame(side):
                # Past the limit the payload is passed over; the next frame header is found by the length.
                frame_type = buffer[start + 3]
                self._notice(side, "h2.frame", time, packet, out,
                             f"A frame of type 0x{frame_type:02x} with {length} bytes of payload is larger than "
                             f"SETTINGS_MAX_FRAME_SIZE allows ({self._max_frame(side)}; RFC 9113 4.2: "
                             f"FRAME_SIZE_ERROR); it is skipped.", violation=True)
                stream_id = int.from_bytes(buffer[start + 5 : start + 9], "big") & 0x7FFF_FFFF
                if frame_type == FrameType.DATA and self._is_websocket(stream_id) and self.websocket is not None:
                    # The WebSocket loses those bytes (its padding too, unknown: the length is an upper bound).
                    out += self.websocket.gap(side.direction, length, time=time, packet=packet)
                available = len(buffer) - start - _FRAME_HEADER
                skipped = min(available, length)
                side.skip = length - skipped
                start += _FRAME_HEADER + skipped
                if side.skip:
                    break
                continue
            if len(buffer) - start < _FRAME_HEADER + length:
                break
            frame = Http2Frame(buffer[start + 3], buffer[start + 4],
                               int.from_bytes(buffer[start + 5 : start + 9], "big") & 0x7FFF_FFFF,
                               bytes(buffer[start + _FRAME_HEADER : start + _FRAME_HEADER + length]))
            start += _FRAME_HEADER + length
            self._frame(side, frame, time, packet, out)
            if side.stopped:
                return
        del buffer[:start]

    def _frame(self, side: _Side, frame: Http2Frame, time: float, packet: int | None, out: list[Event]) -> None:
        kind = frame.type
        if side.block is not None and (kind != FrameType.CONTINUATION or frame.stream_id != side.block_stream):
            raise Stop("h2.frame", f"A {frame.type_name} frame came where a CONTINUATION of stream "
                                   f"{side.block_stream}'s header block was due (RFC 9113 6.10: PROTOCOL_ERROR).")
        if kind == FrameType.DATA:
            self._data(side, frame, time, packet, out)
        elif kind in (FrameType.HEADERS, FrameType.PUSH_PROMISE):
            self._headers(side, frame, time, packet, out)
        elif kind == FrameType.CONTINUATION:
            if side.block is None:
                raise Stop("h2.frame", f"A CONTINUATION frame on stream {frame.stream_id} follows no header block "
                                       f"(RFC 9113 6.10: PROTOCOL_ERROR).")
            self._fragment(side, frame.payload, frame.flags, time, packet, out)
        elif kind == FrameType.SETTINGS:
            self._settings(side, frame, time, packet, out)
        elif kind == FrameType.RST_STREAM:
            if frame.stream_id in self.pending or self._is_websocket(frame.stream_id):
                code = int.from_bytes(frame.payload[:4], "big")
                self._notice(side, "h2.connection", time, packet, out,
                             f"RST_STREAM on stream {frame.stream_id} ({error_name(code)}): the stream, and the "
                             f"WebSocket on it, ends at once (RFC 9113 6.4; RFC 8441 5).")
                self.pending.pop(frame.stream_id, None)
                if self._is_websocket(frame.stream_id):
                    self.websocket_finished = True
        elif kind == FrameType.GOAWAY:
            last, code = int.from_bytes(frame.payload[:4], "big") & 0x7FFF_FFFF, int.from_bytes(frame.payload[4:8],
                                                                                                   "big")
            debug = frame.payload[8 : 8 + _MAX_DEBUG_SHOWN]
            said = f'; debug data "{_printable(debug)}"' if debug else ""
            self._notice(side, "h2.connection", time, packet, out,
                         f"GOAWAY ({error_name(code)}, last stream {last}{said}): the sender closes the HTTP/2 "
                         f"connection (RFC 9113 6.8).")
        # PRIORITY, PING, WINDOW_UPDATE and unknown types (RFC 9113 5.5: ignored) say nothing about the WebSocket.

    def _unpad(self, frame: Http2Frame, extra: int) -> bytes:
        """A DATA, HEADERS or PUSH_PROMISE payload without its padding (RFC 9113 6.1, 6.2, 6.6) and the ``extra``
        fixed fields that follow the pad length (priority, promised stream)."""
        payload = frame.payload
        pad = 0
        if frame.flags & PADDED:
            if not payload:
                raise Stop("h2.frame", f"A padded {frame.type_name} frame on stream {frame.stream_id} has no Pad "
                                       f"Length (RFC 9113 6.1: FRAME_SIZE_ERROR).")
            pad, payload = payload[0], payload[1:]
        if pad + extra > len(payload):
            raise Stop("h2.frame", f"The padding of a {frame.type_name} frame on stream {frame.stream_id} is longer "
                                   f"than the frame (RFC 9113 6.1: PROTOCOL_ERROR).")
        return payload[extra : len(payload) - pad]

    def _data(self, side: _Side, frame: Http2Frame, time: float, packet: int | None, out: list[Event]) -> None:
        if frame.stream_id == 0:
            raise Stop("h2.frame", "A DATA frame on stream 0 (RFC 9113 6.1: PROTOCOL_ERROR).")
        data = self._unpad(frame, 0)
        if not self._is_websocket(frame.stream_id) or self.websocket is None:
            return
        out += self.websocket.receive(side.direction, data, time=time, packet=packet)
        if frame.flags & END_STREAM:
            self._end_stream(side, frame.stream_id, time, packet, out)

    def _end_stream(self, side: _Side, stream_id: int, time: float, packet: int | None, out: list[Event]) -> None:
        self.websocket_ended.add(side.direction)
        if len(self.websocket_ended) == 2:  # RFC 9113 5.1: closed
            self.websocket_finished = True
        self._notice(side, "h2.connection", time, packet, out,
                     f"END_STREAM on stream {stream_id}: this side will send no more (RFC 9113 5.1); RFC 8441 5 "
                     f"makes it the WebSocket's TCP FIN.")

    def _is_websocket(self, stream_id: int) -> bool:
        return self.websocket is not None and stream_id == self.websocket_stream

    def _settings(self, side: _Side, frame: Http2Frame, time: float, packet: int | None, out: list[Event]) -> None:
        if frame.stream_id != 0 or (frame.flags & ACK and frame.payload) or len(frame.payload) % 6:
            raise Stop("h2.frame", "A malformed SETTINGS frame: not on stream 0, an ACK with a payload, or a "
                                   "length that is not a multiple of 6 (RFC 9113 6.5: PROTOCOL_ERROR or "
                                   "FRAME_SIZE_ERROR).")
        if frame.flags & ACK:
            return
        payload = frame.payload
        for at in range(0, len(payload), 6):
            side.settings[int.from_bytes(payload[at : at + 2], "big")] = int.from_bytes(payload[at + 2 : at + 6],
                                                                                        "big")
        # RFC 7541 4.2: the other side's encoder may grow its dynamic table up to what this side advertised.
        other = self.sides["s2c" if side.direction == "c2s" else "c2s"]
        advertised = side.settings.get(SETTINGS_HEADER_TABLE_SIZE, _DEFAULT_TABLE_SIZE)
        other.decoder.allow_table_size(advertised)
        if not side.settings_reported:
            side.settings_reported = True
            self._report_settings(side, time, packet, out)

    def _report_settings(self, side: _Side, time: float, packet: int | None, out: list[Event]) -> None:
        who = "client" if side.direction == "c2s" else "server"
        listed = ", ".join(f"{SETTING_NAMES.get(key, f'0x{key:x}')} = {value}"
                           for key, value in side.settings.items()) or "none (the defaults)"
        text = f"HTTP/2 connection (RFC 9113): the {who}'s SETTINGS: {listed}."
        if side.direction == "s2c":
            enabled = side.settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1
            text += (" The server accepts WebSocket over HTTP/2 (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, RFC 8441 3)."
                     if enabled else " The server does not offer the extended CONNECT (RFC 8441 3): no WebSocket "
                                     "may be opened on this connection.")
        self._notice(side, "h2.connection", time, packet, out, text)

    # -- header blocks -------------------------------------------------------------------------------------

    def _headers(self, side: _Side, frame: Http2Frame, time: float, packet: int | None, out: list[Event]) -> None:
        if frame.stream_id == 0:
            raise Stop("h2.frame", f"A {frame.type_name} frame on stream 0 (RFC 9113 6.2: PROTOCOL_ERROR).")
        is_push = frame.type == FrameType.PUSH_PROMISE
        extra = 4 if is_push else (5 if frame.flags & PRIORITY_FLAG else 0)
        fragment = self._unpad(frame, extra)
        side.block = bytearray()
        side.block_stream = frame.stream_id
        side.block_end_stream = not is_push and bool(frame.flags & END_STREAM)
        side.block_is_push = is_push
        self._fragment(side, fragment, frame.flags, time, packet, out)

    def _fragment(self, side: _Side, fragment: bytes, flags: int, time: float, packet: int | None,
                  out: list[Event]) -> None:
        block = side.block
        assert block is not None
        if not side.headers_lost:
            if len(block) + len(fragment) > self.limits.max_header_bytes:
                # RFC 9113 10.5.1 lets an endpoint bound header blocks; the block is dropped unread, and with it
                # the dynamic table updates it made (RFC 7541 2.3.2): later blocks of this direction are lost too.
                side.headers_lost = True
                block.clear()
                self._notice(side, "h2.header-too-large", time, packet, out,
                             f"The header block of stream {side.block_stream} is longer than "
                             f"{self.limits.max_header_bytes} bytes (--max-header); it and the header blocks of "
                             f"this direction after it are not decoded; DATA still is.")
            else:
                block += fragment
        if not flags & END_HEADERS:
            return
        side.block = None
        if side.headers_lost:
            return
        try:
            fields = side.decoder.decode(bytes(block))
        except HeaderBlockError as error:
            # RFC 9113 4.3: a header block that cannot be decompressed is a COMPRESSION_ERROR; the decoder's
            # dynamic table is unknown from then on, so no later block of this direction can be trusted either.
            side.headers_lost = True
            self._notice(side, "h2.hpack", time, packet, out,
                         f"The header block of stream {side.block_stream} cannot be decoded (RFC 7541: "
                         f"{_printable(str(error).encode('ascii', 'backslashreplace')[:200])}); a peer answers "
                         f"COMPRESSION_ERROR (RFC 9113 4.3). Header blocks of this direction are not decoded from "
                         f"here on; DATA still is.", violation=True)
            return
        if side.block_is_push:
            return  # decoded for the dynamic table's sake; a pushed request is never a WebSocket
        if side.direction == "c2s":
            self._request(side, bytes(block), fields, time, packet, out)
        else:
            self._response(side, bytes(block), fields, time, packet, out)
            if side.block_end_stream and self._is_websocket(side.block_stream):
                self._end_stream(side, side.block_stream, time, packet, out)

    def _request(self, side: _Side, raw: bytes, fields: list[tuple[bytes, bytes]], time: float,
                 packet: int | None, out: list[Event]) -> None:
        stream_id = side.block_stream
        if self._is_websocket(stream_id):
            if side.block_end_stream:  # trailers (RFC 9113 8.1) ending the WebSocket's stream
                self._end_stream(side, stream_id, time, packet, out)
            return
        headers = Headers(tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in fields))
        if headers.get(":method") != "CONNECT" or headers.get(":protocol") is None:
            return  # an ordinary request: not a WebSocket
        request = HttpRequest(raw=raw, start_line=f"CONNECT {headers.get(':path') or ''} HTTP/2 "
                                                   f"(:protocol {headers.get(':protocol')})",
                              headers=headers, method="CONNECT", target=headers.get(":path") or "", version="HTTP/2")
        findings = self._judge_request(headers)
        decode = (self.websocket is None or self.websocket_finished) and headers.get(":protocol") == "websocket"
        if len(self.pending) >= MAX_PENDING_STREAMS:
            self._report_other(side, stream_id, f"More than {MAX_PENDING_STREAMS} extended CONNECTs await an "
                                                f"answer; the one on stream {stream_id} is not followed", time,
                               packet, out)
            return
        self.pending[stream_id] = _Pending(request, decode)
        if not decode:
            self._report_other(side, stream_id, f"An extended CONNECT on stream {stream_id} "
                                                f"(:protocol {headers.get(':protocol')}, :path "
                                                f"{headers.get(':path')})", time, packet, out)
            return
        self._announce(time, packet, out, stream_id)
        if self.websocket is not None:
            # The one before has ended: what it left unfinished is said, and the next goes on in the same conversation
            # (the conversation is the TCP stream; its ConnectionClosed comes when that ends).
            out += [event for event in self.websocket.end(time=time, packet=packet,
                                                          reason=f"HTTP/2 stream {self.websocket_stream} closed")
                    if not isinstance(event, ConnectionClosed)]
        self.websocket = Connection(self.stream, limits=self.limits, budget=self.budget)
        self.websocket_stream = stream_id
        self.websocket_ended = set()
        self.websocket_finished = False
        self._notice(side, "h2.connection", time, packet, out,
                     f"WebSocket over HTTP/2 (RFC 8441) on stream {stream_id}: the extended CONNECT below opens it; "
                     f"the stream's DATA frames carry its bytes.")
        out += self.websocket.receive_request(request, findings, time=time, packet=packet)
        if side.block_end_stream:
            self._end_stream(side, stream_id, time, packet, out)

    def _judge_request(self, headers: Headers) -> list[Finding]:
        findings: list[Finding] = []
        server = self.sides["s2c"]
        if server.settings_reported and server.settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1:
            findings.append(finding("h2.connect-not-enabled", "The client sent :protocol although the server's "
                                    "SETTINGS did not set SETTINGS_ENABLE_CONNECT_PROTOCOL to 1.",
                                    expected="SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 from the server first",
                                    got=str(server.settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL, "not sent"))))
        missing = [name for name in (":scheme", ":path", ":authority") if headers.get(name) is None]
        if missing:
            findings.append(finding("h2.extended-connect", f"The extended CONNECT lacks {', '.join(missing)}.",
                                    expected=":method, :protocol, :scheme, :path, :authority", got=", ".join(
                                        name for name, _ in headers if name.startswith(":"))))
        version = headers.get("sec-websocket-version")
        if version is None or version.strip() != "13":
            findings.append(finding("request.websocket-version", "RFC 8441 5 keeps Sec-WebSocket-Version from "
                                    "RFC 6455: it must be 13.", expected="13", got=version))
        return findings

    def _response(self, side: _Side, raw: bytes, fields: list[tuple[bytes, bytes]], time: float,
                  packet: int | None, out: list[Event]) -> None:
        stream_id = side.block_stream
        pending = self.pending.pop(stream_id, None)
        if pending is None:
            return
        headers = Headers(tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in fields))
        status_text = (headers.get(":status") or "").strip()
        status = int(status_text) if status_text.isascii() and status_text.isdigit() and len(status_text) == 3 else 0
        if 100 <= status < 200:
            self.pending[stream_id] = pending  # RFC 9113 8.1: an interim response; the final one follows
            return
        accepted = 200 <= status < 300  # RFC 8441 5: a 2xx answer accepts the WebSocket (HTTP/1.1's 101)
        if not pending.decoded:
            self._report_other(side, stream_id, f"Stream {stream_id}'s extended CONNECT was answered "
                                                f":status {status_text}", time, packet, out)
            return
        assert self.websocket is not None
        self.websocket_finished = not accepted
        response = HttpResponse(raw=raw, start_line=f"HTTP/2 {status_text}", headers=headers, version="HTTP/2",
                                status=status, reason="")
        findings = self._judge_response(pending.request.headers, headers) if accepted else []
        out += self.websocket.receive_response(response, findings, upgraded=accepted, time=time, packet=packet)

    @staticmethod
    def _judge_response(request: Headers, response: Headers) -> list[Finding]:
        """RFC 8441 5: Sec-WebSocket-Protocol and -Extensions are answered as RFC 6455 4.1 says (the accept key
        is gone: the stream itself is the proof that the server understood)."""
        findings: list[Finding] = []
        chosen = response.get("sec-websocket-protocol")
        offered = [token.strip() for token in (request.get("sec-websocket-protocol") or "").split(",")]
        if chosen is not None and chosen.strip() not in offered:
            findings.append(finding("response.protocol-not-offered", "The server chose a subprotocol the client "
                                    "did not offer.", expected=", ".join(offered), got=chosen))
        offered_extensions = {e.name for e in parse_extensions(request.get_all("sec-websocket-extensions"))}
        for extension in parse_extensions(response.get_all("sec-websocket-extensions")):
            if extension.name not in offered_extensions:
                findings.append(finding("response.extension-not-offered", "The server agreed to an extension the "
                                        "client did not offer.", expected=", ".join(offered_extensions) or None,
                                        got=extension.name))
        return findings

    # -- events ------------------------------------------------------------------------------------------------

    def _report_other(self, side: _Side, stream_id: int, what: str, time: float, packet: int | None,
                      out: list[Event]) -> None:
        if self.others_reported >= MAX_PENDING_STREAMS:
            return
        self.others_reported += 1
        self._notice(side, "h2.websocket-limit", time, packet, out,
                     f"{what}; one WebSocket at a time is decoded per HTTP/2 connection (stream "
                     f"{self.websocket_stream or 'none yet'}).")

    def _announce(self, time: float, packet: int | None, out: list[Event], stream_id: int | None = None) -> None:
        """The conversation's ConnectionOpened, then the settings seen so far, once."""
        if self.announced:
            return
        self.announced = True
        how = f"HTTP/2, WebSocket on stream {stream_id} (RFC 8441)" if stream_id else "HTTP/2"
        out.append(dataclasses.replace(self.opened, how=f"{self.opened.how}; {how}" if self.opened.how else how))
        for side in self.sides.values():
            if side.settings_reported:
                self._report_settings(side, time, packet, out)

    def _notice(self, side: _Side, check_id: str, time: float, packet: int | None, out: list[Event], message: str,
                *, violation: bool = False) -> None:
        if not self.announced:
            if check_id == "h2.connection":
                return  # told with the settings when (if ever) the conversation is announced
            self._announce(time, packet, out)
        kind: type[Notice] | type[Violation] = Violation if violation else Notice
        out.append(kind(stream=self.stream, direction=side.direction, time=time, packet=packet,
                        check=CHECKS[check_id], message=message))

    def _stop(self, side: _Side, check_id: str, message: str, time: float, packet: int | None,
              out: list[Event]) -> None:
        side.stopped = True
        side.buffer = bytearray()
        side.block = None
        self._notice(side, check_id, time, packet, out, message, violation=check_id == "h2.frame")

