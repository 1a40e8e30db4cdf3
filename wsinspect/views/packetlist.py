"""The packet list: one line per frame as it is decoded, like Wireshark's packet list pane, with each
conversation's handshake where it happens and notes (messages, violations, gaps) under the frame they concern.

It streams: a conversation's title prints when the conversation is first seen, its handshake when the server has
answered, a frame's row when the frame is decoded, a message line when its last frame arrives. What it keeps per open
conversation is a few strings and flags (``_Conversation``); nothing per frame. ``read`` and ``serve`` share it:
live rows show the connection number and the wall-clock time instead of a frame number and a time offset.

Columns are fixed per run, from the terminal width, so the header always sits over its columns:

- 100 columns and more: No., Time, Source → Destination (full addresses), Length, Info. The address columns
  widen when a conversation with longer addresses appears (its column header, printed before its first row, shows
  the new widths; later rows of every conversation use them); addresses too long even then are cut from the left;
- 60 to 99: No., Time, the stream, its direction (``c→s``), Length, Info;
- under 60: No., direction, Info.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    Gap,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.fields import Opcode
from wsinspect.core.frames import MAX_CONTROL_PAYLOAD
from wsinspect.core.handshake import blocking
from wsinspect.views.describe import (
    SEVERITY_ROLE,
    close_body,
    endpoint,
    fit,
    fit_painted,
    frame_body_painted,
    frame_head,
    frame_info,
    is_compressed,
    message_details_painted,
    message_info,
    message_kind,
    width_of,
)
from wsinspect.views.detail import (
    DEFAULT_MAX_BYTES,
    bit_field_lines,
    frame_title,
    frame_tree_rest,
    hex_dump,
    legend_lines,
)
from wsinspect.views.explain import Explainer
from wsinspect.views.handshake import PaintedHandshakes
from wsinspect.views.output import Output
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]
EventFilter = Callable[[Event], bool]

WIDE = 100  # from here on, full addresses fit beside a useful Info column
NARROW = 60  # below this, only the frame number and direction stay beside Info
_ADDRESS = 15  # "127.0.0.1:47010"; the column widens for longer addresses, up to what leaves Info _MIN_INFO cells
_MIN_INFO = 40
_DATA = frozenset({int(Opcode.TEXT), int(Opcode.BINARY)})  # plain ints: cheaper per row than enum members
_CLOSE = int(Opcode.CLOSE)
_LENGTHS_KEPT = 4096  # painted Length cells kept (then it starts again)
_CLOSE_INFOS_KEPT = 1024  # painted Info cells of close frames kept (then it starts again)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _cut_left(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


@dataclass(slots=True)
class _Conversation:
    """What the list remembers of one open connection."""

    stream: int
    client: str = "client"
    server: str = "server"
    first_time: float | None = None
    titled: bool = False  # its title line has been printed
    columns_shown: bool = False  # the column header has been printed for it
    request: HandshakeRequest | None = None
    handshake_shown: bool = False
    refused: bool = False
    plain_http: bool = False  # live: a request that never asked for an upgrade (the demo page, a favicon)
    # direction -> the Source/Destination cell, as text and painted
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    # direction -> (opcode, compressed) of the fragmented message in progress, to describe its continuations
    open_message: dict[str, tuple[int, bool]] = field(default_factory=dict)
    # permessage-deflate was agreed, or may have been (no handshake seen): RSV1 then means "compressed"
    deflate: bool = True
    frames: int = 0
    messages: int = 0


def _short_size(count: int) -> str:
    """A byte count in at most 6 characters for the Length column ("8EiB", "512PiB"): only a claimed length (a
    frame header can claim up to 2**63 bytes) is ever too long for the column as a number."""
    value = count / 1024
    units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    while value >= 999.5 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{value:.0f}{units[0]}"


def is_plain_http(request: HandshakeRequest) -> bool:
    """A request that did not even ask for an upgrade (a browser fetching the demo page)."""
    headers = request.request.headers
    return "Upgrade" not in headers and "Sec-WebSocket-Key" not in headers


class PacketList:
    """``wsinspect read`` (default and ``--detail``) and ``wsinspect serve``'s live log."""

    def __init__(self, output: Output, *, detail: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                 live: bool = False, shown: EventFilter | None = None, compact: bool = False,
                 explain: bool = False, refusal_bodies: bool = False) -> None:
        self.out = output
        self.palette = output.palette
        self.detail = detail
        # One line per handshake and per frame (a room of 30 browsers): no tables, no message lines, no titles.
        self.compact = compact and not detail
        self.explainer = Explainer() if explain else None  # --explain: each header, frame fact and rule once
        self.max_bytes = max_bytes
        self.live = live
        # Live, a refusal's body is normally this server's own words for the findings shown above it; a proxy
        # relays someone else's, which say what the findings cannot.
        self.refusal_bodies = refusal_bodies or not live
        self.shown = shown
        self.width = max(output.width, 20)
        self.layout = "wide" if self.width >= WIDE else "medium" if self.width >= NARROW else "narrow"
        self.time_origin: float | None = None
        self.address_width = _ADDRESS
        self._open: dict[int, _Conversation] = {}
        self._legend_shown = False
        self._header_shown = False  # --compact prints the column header once
        self._painted_header: tuple[int, list[str]] = (0, [])  # (address width, the header row painted)
        self._bit_lines: dict[tuple[int, int], list[str]] = {}  # --detail: painted lines per first two header bytes
        # Rows are painted as they are laid out, from each role's escape sequences rendered once.
        self._handshakes = PaintedHandshakes(output.painted_lines, self.width)
        self._codes = self.palette.role_codes
        self._muted = self._codes["muted"]
        self._last_packet: int | None = None  # the last frame row's packet and time, and its number column
        self._last_time = math.nan  # equal to no time: the first row formats its own
        self._last_number = ("", 0)
        self._heads: dict[tuple[int, bool, bool, bool, bool, bool], tuple[str, int]] = {}  # painted, cells
        self._lengths: dict[int, tuple[str, int]] = {}  # frame size -> its Length cell painted, and its cells
        self._close_infos: dict[tuple[tuple[int, bool, bool, bool, bool, bool], bytes, int, int], str] = {}
        self._message_leads: dict[int, tuple[str, int]] = {}  # opcode -> "  ↳ text message", painted, cells
        self._last_stream: int | None = None  # the conversation the last printed block belongs to
        self.frames_shown = 0

    # ---- columns ------------------------------------------------------------------------------------------------

    def header_row(self) -> Line:
        """The column header (it depends on the layout and the address column's width)."""
        if self.live:
            first = f"{'#':<5} {'Time':<12} "
            middle = {"wide": f"{'Direction':<15} {'Length':>7} ", "medium": f"{'Dir':<3} {'Length':>6} ",
                      "narrow": ""}[self.layout]
            if self.layout == "narrow":
                first, middle = f"{'#':<5} {'Dir':<3} ", ""
        else:
            first = {"wide": f"{'No.':>7} {'Time':>10} ", "medium": f"{'No.':>7} {'Time':>10} ",
                     "narrow": f"{'No.':>6} "}[self.layout]
            width = self.address_width
            middle = {"wide": f"{'Source':>{width}} → {'Destination':<{width}} {'Length':>7} ",
                      "medium": f"{'Stream':<6} {'Dir':<3} {'Length':>6} ", "narrow": f"{'Dir':<3} "}[self.layout]
        return [("strong", first + middle + "Info")]

    def _endpoint_cell(self, conv: _Conversation, direction: str) -> tuple[str, str]:
        """The Source/Destination (or stream and direction) cell: its text and the text painted."""
        cell = conv.endpoints.get(direction)
        if cell is None:
            arrow = "c→s" if direction == "c2s" else "s→c"
            if self.live:
                wide = "client → server" if direction == "c2s" else "server → client"
                text = {"wide": f"{wide:<15} ", "medium": f"{arrow} ", "narrow": f"{arrow} "}[self.layout]
            elif self.layout == "wide":
                source, target = (conv.client, conv.server) if direction == "c2s" else (conv.server, conv.client)
                width = self.address_width
                text = f"{_cut_left(source, width):>{width}} → {_cut_left(target, width):<{width}} "
            elif self.layout == "medium":
                text = f"{_cut_left(str(conv.stream), 6):<6} {arrow} "
            else:
                text = f"{arrow} "
            cell = conv.endpoints[direction] = (text, self.palette.wrap(direction, text))
        return cell

    def _widen_addresses(self, conv: _Conversation) -> None:
        if self.live or self.layout != "wide":
            return
        most = (self.width - _MIN_INFO - 31) // 2  # 31: the other columns and separators of a wide row
        wanted = min(max(len(conv.client), len(conv.server)), most)
        if wanted > self.address_width:
            self.address_width = wanted
            for other in self._open.values():
                other.endpoints.clear()
                other.columns_shown = False  # its next row comes under a header with the new widths

    def _prefix(self, event: FrameEvent, conv: _Conversation) -> tuple[str, int]:
        """A frame row's columns before Info, painted, and the cells they take. All of it is ASCII but for the
        direction arrows, each one cell wide, so ``len`` measures it."""
        if self.live:
            return self._live_prefix(event, conv)
        cell, painted_cell = conv.endpoints.get(event.direction) or self._endpoint_cell(conv, event.direction)
        # Frames of one packet share its number and time: formatted once (a float's formatting is dear).
        if event.packet != self._last_packet or event.time != self._last_time:
            self._last_packet, self._last_time = event.packet, event.time
            self._last_number = self._number_cell(event)
        first, first_cells = self._last_number
        if self.layout == "narrow":
            return first + painted_cell, first_cells + len(cell)
        size = event.frame.size
        length = self._lengths.get(size) or self._length_cell(size)
        return f"{first}{painted_cell}{length[0]}", first_cells + len(cell) + length[1]

    def _number_cell(self, event: FrameEvent) -> tuple[str, int]:
        """The No. and Time columns, painted, and their cells."""
        packet = event.packet if event.packet is not None else ""
        if self.layout == "narrow":
            number = f"{packet:>6} "
        else:
            origin = self.time_origin if self.time_origin is not None else event.time
            # f"{packet:>7} {time:10.6f} ", in half the time: % skips parsing a format spec per value.
            number = "%7s %10.6f " % (packet, event.time - origin)  # noqa: UP031
        muted_start, muted_end = self._muted
        return muted_start + number + muted_end, len(number)

    def _length_cell(self, size: int) -> tuple[str, int]:
        """The Length column, painted, and its cells: frame sizes repeat, so each one's is kept (bounded)."""
        text = ("%7d " if self.layout == "wide" else "%6d ") % size
        if len(text) > (8 if self.layout == "wide" else 7):  # a claimed length too long for the column
            text = ("%7s " if self.layout == "wide" else "%6s ") % _short_size(size)
        if len(self._lengths) >= _LENGTHS_KEPT:
            self._lengths.clear()
        muted_start, muted_end = self._muted
        length = self._lengths[size] = (muted_start + text + muted_end, len(text))
        return length

    def _live_prefix(self, event: FrameEvent, conv: _Conversation) -> tuple[str, int]:
        """``serve``'s log: the connection and the wall-clock time instead of a frame number and a time offset."""
        cell, painted_cell = conv.endpoints.get(event.direction) or self._endpoint_cell(conv, event.direction)
        number = f"#{event.stream:<4} "
        first = self.palette.wrap(self.palette.stream_role(event.stream), number)
        if self.layout == "narrow":
            return first + painted_cell, len(number) + len(cell)
        muted_start, muted_end = self._muted
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time * 1000) % 1000:03d} "
        first += muted_start + stamp + muted_end
        length = self._lengths.get(event.frame.size) or self._length_cell(event.frame.size)
        return f"{first}{painted_cell}{length[0]}", len(number) + len(stamp) + len(cell) + length[1]

    def _info(self, event: FrameEvent, continues: tuple[int, bool] | None, room: int, deflate: bool) -> str:
        """The Info column cut to ``room`` cells, painted. The opcode and flags are painted once per kind of frame,
        a close frame's Info once per kind, body and room (most conversations end alike). A head that does not fit,
        or a close frame's body that does not fit whole, goes to ``frame_info``, which cuts them part by part."""
        frame = event.frame
        key = (frame.opcode, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3, frame.masked)  # what frame_head reads
        head = self._heads.get(key)
        if head is None:
            pieces = frame_head(frame)
            head = self._heads[key] = (self.palette.paint(pieces), sum([len(text) for _, text in pieces]))
        painted_head, head_cells = head
        if frame.opcode != _CLOSE:
            if head_cells <= room:
                return painted_head + frame_body_painted(frame, continues, deflate, room - head_cells, self._codes)
            return self.palette.paint(frame_info(event, continues=continues, width=room, deflate=deflate))
        # A close frame's Info depends on its head, payload (at most 125 bytes, RFC 6455 5.5) and room alone.
        close_key = (key, frame.payload, frame.missing, room)
        info = self._close_infos.get(close_key)
        if info is None:
            body, flags_kept = close_body(frame, head_cells, room) if head_cells <= room else ([], False)
            if flags_kept:
                info = painted_head + fit_painted(body, room - head_cells, self._codes)
            else:
                info = self.palette.paint(frame_info(event, continues=continues, width=room, deflate=deflate))
            if len(frame.payload) <= MAX_CONTROL_PAYLOAD:
                if len(self._close_infos) >= _CLOSE_INFOS_KEPT:
                    self._close_infos.clear()
                self._close_infos[close_key] = info
        return info

    def _note_indent(self, event: Event) -> Line:
        """Lines under a frame; live, they name their connection, since connections interleave."""
        if self.live:
            return [(self.palette.stream_role(event.stream), f"#{event.stream:<4} "), ("plain", "     ")]
        return [("plain", "        " if self.layout != "narrow" else "  ")]

    # ---- events -------------------------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self.time_origin is None:
            self.time_origin = event.time  # like Wireshark: seconds since the capture's first event
        conv = self._open.get(event.stream)
        if conv is None:
            conv = self._open[event.stream] = _Conversation(event.stream, first_time=event.time)
        shown = self.shown
        # Exact types; `type(event) is X` narrows the event for mypy without an isinstance call per event.
        if type(event) is FrameEvent:
            self._frame(event, conv, shown is None or shown(event))
        elif type(event) is Message:
            conv.messages += 1
            if shown is None or shown(event):
                self._message(event, conv)
        elif type(event) is ConnectionOpened:
            conv.client, conv.server = endpoint(event.client), endpoint(event.server)
            self._widen_addresses(conv)
            if shown is None or shown(event):
                self._title(conv, event)
        elif type(event) is HandshakeRequest:
            conv.request = event
            conv.plain_http = self.live and is_plain_http(event)
        elif type(event) is HandshakeResponse:
            self._handshake(event, conv, shown is None or shown(event) or
                            (conv.request is not None and shown(conv.request)))
        elif type(event) is ConnectionClosed:
            del self._open[event.stream]
            self._closed(event, conv)
        elif type(event) is Violation or type(event) is Notice:
            if shown is None or shown(event):
                self._note(event, conv)
        elif type(event) is Gap:
            if shown is None or shown(event):
                self._ensure_title(conv)
                self.out.line([*self._note_indent(event),
                               ("warning", f"⋯ {event.missing} bytes {event.direction} never captured "
                                           f"(stream offset {event.offset})")])
        elif type(event) is Close:
            pass  # the close frame's row already says its code and reason
        self.out.tick()

    def _ensure_title(self, conv: _Conversation) -> None:
        if not conv.titled:
            self._title(conv, None)

    def _title(self, conv: _Conversation, opened: ConnectionOpened | None) -> None:
        conv.titled = True
        if self.compact and not self.live:
            return  # the handshake line names the conversation
        role = self.palette.stream_role(conv.stream)
        self._last_stream = conv.stream
        if self.live:
            if not self.compact:
                self.out.line([(role, f"#{conv.stream} connection from {conv.client}")])
            return
        self.out.line(self._rule(conv, f" Stream {conv.stream} ", opened is not None and opened.mid_stream))
        if opened is not None and opened.how and opened.how != "SYN":  # a SYN says it plainly; guesses are shown
            self.out.line([("muted", f"client side: {conv.client} ({visible(opened.how)})")])

    def _rule(self, conv: _Conversation, label: str, mid_stream: bool = False) -> Line:
        role = self.palette.stream_role(conv.stream)
        title: Line = [(role + ".title", label), ("strong", f" {conv.client} → {conv.server} ")]
        if mid_stream:
            title.append(("warning.strong", " joined mid-connection "))
        used = sum(width_of(text) for _, text in title)
        title.append((role, "─" * max(self.width - used - 1, 3)))
        return title

    def _columns(self, conv: _Conversation) -> None:
        if not conv.columns_shown:
            conv.columns_shown = True
            if not self.live and not (self.compact and self._header_shown):
                self._header_shown = True
                width, painted = self._painted_header
                if width != self.address_width:  # painted once per address width (once per conversation, else)
                    painted = self.out.painted_lines(self.header_row())
                    self._painted_header = (self.address_width, painted)
                self.out.painted(painted)

    def _handshake(self, response: HandshakeResponse, conv: _Conversation, show: bool) -> None:
        request = conv.request
        conv.refused = not response.upgraded
        conv.deflate = response.deflate is not None
        if not show:
            return
        if self.live and conv.plain_http and request is not None:
            head = request.request
            self.out.line([(self.palette.stream_role(conv.stream), f"#{conv.stream} "),
                           ("plain", f"{visible(head.method)} {visible(head.target)} → {response.response.status} "
                                     f"{visible(response.response.reason)}"),
                           ("muted", "  (plain HTTP, not a WebSocket upgrade)")])
            return
        if self.compact:
            conv.titled = conv.handshake_shown = True
            self.out.row(fit(self._handshake_line(request, response, conv), self.width - 1))
            return
        self._ensure_title(conv)
        if conv.handshake_shown:  # an HTTP/1.1 connection that went on after an answer (RFC 9112 9.3)
            self.out.line([("muted", "the same connection carries another request (HTTP/1.1 keep-alive)")])
        conv.handshake_shown = True
        if self.live:
            self.out.line(self._rule(conv, f" #{conv.stream} "))
        elif self._last_stream != conv.stream:  # conversations overlap: say whose handshake this is
            self.out.line(self._rule(conv, f" Stream {conv.stream} handshake "))
        self._last_stream = conv.stream
        self.out.painted(self._handshakes.lines(request, response, explainer=self.explainer,
                                                show_body=self.refusal_bodies))
        self.out.line(self._outcome(response))

    def _handshake_line(self, request: HandshakeRequest | None, response: HandshakeResponse,
                        conv: _Conversation) -> Line:
        """``--compact``: the whole opening handshake on one line, with its first error if it failed."""
        role = self.palette.stream_role(conv.stream)
        line: Line = [(role, f"#{conv.stream} " if self.live else f"Stream {conv.stream} "),
                      ("muted", f"{conv.client} ")]
        if request is not None:
            line.append(("plain", f"{visible(request.request.method)} {visible(request.request.target)} → "))
        line += self._outcome(response, compact=True)
        findings = [*(request.findings if request else ()), *response.findings]
        errors = [finding for finding in findings if finding.severity.value == "error"]
        if errors:
            first = errors[0]
            line += [("error", f"  ✗ {first.check.rfc}: "), ("error.text", visible(first.message))]
            if len(errors) > 1:
                line.append(("muted", f" (+{len(errors) - 1} more)"))
        return line

    def _outcome(self, response: HandshakeResponse, *, compact: bool = False) -> Line:
        status = response.response.status  # 101, or 200 for an extended CONNECT over HTTP/2 (RFC 8441 5)
        if not response.upgraded:
            return [("error", f"✗ refused: {status} {visible(response.response.reason)}"),
                    ("muted", "" if compact else " (no WebSocket frames follow)")]
        if blocking(response.findings):  # an upgrade that breaks a MUST: a conforming client does not go on
            return [("error", f"✗ {status} invalid" if compact else
                     f"✗ answered {status}, but not validly: a conforming client fails the connection here")]
        line: Line = [("ok", f"✓ {status} upgraded" if compact else "✓ upgraded")]
        if response.subprotocol:
            line += [("muted", "; subprotocol "), ("accent", visible(response.subprotocol))]
        for extension in response.extensions:
            line += [("muted", "; extension "), ("accent.alt", visible(str(extension)))]
        return line

    def _frame(self, event: FrameEvent, conv: _Conversation, show: bool) -> None:
        frame = event.frame
        conv.frames += 1
        opcode = frame.opcode
        open_message = conv.open_message
        if opcode in _DATA:
            open_message[event.direction] = (opcode, is_compressed(frame, None, conv.deflate))
        if show:
            self.frames_shown += 1
            if not conv.titled:
                self._ensure_title(conv)
            if conv.request is not None and not conv.handshake_shown and self.shown is None and not self.compact:
                # Frames with no answer to the request (the server's side is not in the capture): the request first.
                conv.handshake_shown = True
                self.out.painted(self._handshakes.lines(conv.request, None, explainer=self.explainer))
            if self.detail and not self._legend_shown:
                self._legend_shown = True
                self.out.lines(legend_lines())
            if not conv.columns_shown:
                self._columns(conv)
            # The prefix is measured per row, since a frame number past 9,999,999 or a time past 9,999 s takes one
            # more cell than the header planned for.
            prefix, prefix_cells = self._prefix(event, conv)
            continues = open_message.get(event.direction)
            self.out.painted_row(prefix + self._info(event, continues, self.width - 1 - prefix_cells, conv.deflate))
            self._last_stream = conv.stream
            if self.explainer is not None:
                self.out.lines(self.explainer.frame(event, continues is not None and continues[1] and
                                                    opcode == Opcode.CONTINUATION))
            if self.detail:
                header = frame.header
                bits = self._bit_lines.get((header[0], header[1]))
                if bits is None:
                    paint = self.palette.paint
                    bits = self._bit_lines[header[0], header[1]] = [
                        paint(line) for line in bit_field_lines(header[0], header[1])]
                out = self.out
                out.row(frame_title(event))
                out.painted(bits)
                spans = list(frame.spans())
                out.rows(frame_tree_rest(event, max_bytes=self.max_bytes, continues=continues, spans=spans,
                                         deflate=conv.deflate))
                out.painted(hex_dump(event, self.palette, max_bytes=self.max_bytes, spans=spans))
        if frame.fin and opcode < 8:
            open_message.pop(event.direction, None)

    def _message(self, event: Message, conv: _Conversation) -> None:
        # A message of one uncompressed frame says nothing its frame's row did not (but --detail shows what a
        # compressed frame inflated to, and so does every view).
        if event.frames == 1 and not event.compressed and event.complete and (self.shown is None or self.detail):
            return
        if self.compact and self.shown is None:
            return  # one line per frame: the frames' rows carry the message
        self._ensure_title(conv)
        # One line, like a row: the preview is cut to the width rather than folded. What comes before the details
        # (indent, arrow, kind) is painted once per opcode, except live, where it names the connection.
        lead = None if self.live else self._message_leads.get(event.opcode)
        if lead is None:
            pieces = [*self._note_indent(event), ("muted", "↳ "), message_kind(event.opcode)]
            lead = (self.palette.paint(pieces), width_of("".join([text for _, text in pieces])))
            if not self.live:
                self._message_leads[event.opcode] = lead
        painted_lead, lead_cells = lead
        width = self.width - 1
        if lead_cells <= width:
            self.out.painted_row(painted_lead + message_details_painted(event, width - lead_cells, self._codes))
        else:
            self.out.row(fit([*self._note_indent(event), ("muted", "↳ "), *message_info(event)], width))

    def _note(self, event: Violation | Notice, conv: _Conversation) -> None:
        check = event.check
        if self.live and check.id == "http.header-too-large":
            self.out.line([(self.palette.stream_role(event.stream), f"#{event.stream} "),
                           ("error", "refused: 431 Request Header Fields Too Large. "),
                           ("error.text", f"{check.rfc}: {visible(event.message)}")])
            return
        self._ensure_title(conv)
        if (event.direction == "s2c" and conv.request is not None and not conv.handshake_shown
                and self.shown is None and not self.compact):
            # A note on the server's answer before the answer itself (its header block over --max-header): the
            # request it answers comes first, as it does before frames that have no answer.
            conv.handshake_shown = True
            self.out.painted(self._handshakes.lines(conv.request, None, explainer=self.explainer))
        role = SEVERITY_ROLE[check.severity.value]
        line = self._note_indent(event)
        line.append((role, "⚠ " if isinstance(event, Violation) else "· "))
        if isinstance(event, Violation) and check.close_code:
            line.append((role, f"[{check.close_code}] "))
        line += [(role + ".strong" if role != "error" else role, f"{check.rfc}: "),
                 (role if role != "error" else "error.text", visible(event.message))]
        self.out.line(line)
        note = self.explainer.rule(check) if self.explainer is not None else None
        if note:
            self.out.line(note)

    def _closed(self, event: ConnectionClosed, conv: _Conversation) -> None:
        if self.live:
            if conv.plain_http:
                return
            ending = ("clean close" if event.clean else "refused handshake" if conv.refused
                      else "no complete close handshake" if conv.handshake_shown
                      else "no WebSocket handshake completed")
            self.out.line([(self.palette.stream_role(conv.stream), f"#{event.stream} "),
                           ("strong", f"closed ({visible(event.reason)}; {ending})")])
            return
        if self.shown is None and conv.request is not None and not conv.handshake_shown:
            # The server never answered (or its answer was not captured): show what the client asked.
            self._ensure_title(conv)
            conv.handshake_shown = True
            self.out.painted(self._handshakes.lines(conv.request, None))
        if not conv.titled:
            return  # nothing of it was shown (a filter): say nothing of its end either
        duration = event.time - (conv.first_time if conv.first_time is not None else event.time)
        if conv.refused:
            ending = "the handshake was refused"
        elif conv.frames == 0 and conv.request is None:
            ending = "no WebSocket frame seen"
        elif event.clean:
            ending = "both sides sent a close frame"
        else:
            ending = "no complete close handshake"
        self.out.line([("muted", f"Stream {conv.stream} ended ({visible(event.reason)}) after {duration:.3f} s; "
                                 f"{ending}; {_count(conv.frames, 'frame')}, {_count(conv.messages, 'message')}")])
        if not self.compact:
            self.out.painted_row("")  # a blank line between conversations

    def close(self) -> None:
        """End of input: conversations still open are left as they are (their rows are already out)."""
        self._open.clear()
        self.out.flush()
