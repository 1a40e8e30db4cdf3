"""``--flow``: each conversation as a ladder, like Wireshark's Flow Graph: a client column and a server column, one
arrow per frame with its time, opcode and a short preview, the opening handshake at the top and the close at the end.

It streams like the other views: a conversation's heading when it is first seen, an arrow as each frame is decoded.
Where conversations overlap, a short heading says whose arrows follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsinspect.core.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Notice,
    Violation,
)
from wsinspect.core.fields import Opcode, opcode_name
from wsinspect.core.frames import parse_close_payload
from wsinspect.views.describe import endpoint, fit, is_compressed, payload_preview, size, width_of
from wsinspect.views.output import Output
from wsinspect.views.packetlist import EventFilter
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]
_TIME = 11  # "   0.001093 "
_PREVIEW = 24  # characters of payload on an arrow


@dataclass(slots=True)
class _Ladder:
    stream: int
    client: str
    server: str
    first_time: float
    headed: bool = False
    # direction -> (opcode, compressed) of the fragmented message in progress
    messages: dict[str, tuple[int, bool]] = field(default_factory=dict)
    deflate: bool = True  # permessage-deflate was agreed, or may have been (no handshake seen)


class FlowView:
    def __init__(self, output: Output, *, shown: EventFilter | None = None) -> None:
        self.out = output
        self.palette = output.palette
        self.shown = shown
        width = max(output.width, 40)
        self.span = min(width - _TIME - 4, 90)  # cells between the two lifelines
        self._open: dict[int, _Ladder] = {}
        self._current: int | None = None

    # ---- drawing -------------------------------------------------------------------------------------------------

    def _heading(self, ladder: _Ladder, *, full: bool) -> None:
        ladder.headed = True
        self._current = ladder.stream
        role = self.palette.stream_role(ladder.stream)
        if not full:
            label: Line = [(role, f"── stream {ladder.stream} "), ("muted", f"{ladder.client} ⇄ {ladder.server} ")]
            used = sum(width_of(text) for _, text in label)
            self.out.line([*label, (role, "─" * max(_TIME + self.span + 3 - used, 3))])
            return
        self.out.line([(role + ".title", f" Stream {ladder.stream} "),
                       ("strong", f" {ladder.client} ⇄ {ladder.server}")])
        # The lifelines are the "│" at column _TIME and at column _TIME + 1 + span: centre each name over its own.
        left = _TIME - 3
        right = _TIME + 1 + self.span - 3
        self.out.line([("plain", " " * left), ("c2s.strong", "client"), ("plain", " " * (right - left - 6)),
                       ("s2c.strong", "server")])

    def _arrow(self, event: Event, ladder: _Ladder, label: Line, *, role: str | None = None) -> None:
        if not ladder.headed:
            self._heading(ladder, full=True)
        elif self._current != ladder.stream:
            self._heading(ladder, full=False)
        direction = event.direction
        role = role or direction
        room = self.span - 6
        label = fit(label, room)
        used = sum(width_of(text) for _, text in label)
        dashes = max(self.span - used - 4, 1)
        stamp: Line = [("muted", f"{event.time - ladder.first_time:{_TIME - 1}.6f} "), ("muted", "│")]
        if direction == "c2s":
            body: Line = [(role, "─ "), *label, (role, " " + "─" * dashes + "▶")]
        else:
            body = [(role, "◀" + "─" * dashes + " "), *label, (role, " ─")]
        self.out.row([*stamp, *body, ("muted", "│")])

    def _note(self, event: Event, ladder: _Ladder, pieces: Line) -> None:
        if self._current != ladder.stream:
            self._heading(ladder, full=not ladder.headed)
        self.out.line([("plain", " " * _TIME), ("muted", "│ "), *pieces])

    # ---- events --------------------------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        kind = type(event)
        if kind is ConnectionOpened:
            assert isinstance(event, ConnectionOpened)
            self._open[event.stream] = _Ladder(event.stream, endpoint(event.client), endpoint(event.server),
                                               event.time)
            return
        ladder = self._open.get(event.stream)
        if ladder is None:
            return
        if kind is ConnectionClosed:
            assert isinstance(event, ConnectionClosed)
            del self._open[event.stream]
            if ladder.headed and (self.shown is None or self.shown(event)):
                self._note(event, ladder, [("muted", f"connection ended ({visible(event.reason)})")])
            self.out.tick()
            return
        if self.shown is not None and not self.shown(event):
            if kind is FrameEvent:
                assert isinstance(event, FrameEvent)
                self._track(event, ladder)
            return
        if kind is FrameEvent:
            assert isinstance(event, FrameEvent)
            self._frame(event, ladder)
        elif kind is HandshakeRequest:
            assert isinstance(event, HandshakeRequest)
            request = event.request
            self._arrow(event, ladder, [("strong", f"{visible(request.method)} {visible(request.target)}"),
                                        ("muted", " Upgrade: websocket" if "Upgrade" in request.headers else "")])
        elif kind is HandshakeResponse:
            assert isinstance(event, HandshakeResponse)
            ladder.deflate = event.deflate is not None
            status = event.response
            role = "s2c" if event.upgraded else "error"
            label: Line = [("strong" if event.upgraded else "error", f"{status.status} {visible(status.reason)}")]
            if event.extensions:
                label.append(("muted", " " + visible(str(event.extensions[0])).split(";")[0]))
            self._arrow(event, ladder, label, role=role)
        elif kind is Violation or kind is Notice:
            assert isinstance(event, Violation | Notice)
            role = "error" if kind is Violation else "info"
            mark = "⚠" if kind is Violation else "·"
            self._note(event, ladder, [(role, f"{mark} {event.check.rfc}: "), (role, visible(event.message)[:160])])
        self.out.tick()

    def _track(self, event: FrameEvent, ladder: _Ladder) -> tuple[int, bool] | None:
        """The message a data frame belongs to, (opcode, compressed); kept up to date whether or not it is drawn."""
        frame = event.frame
        messages = ladder.messages
        current = messages.get(event.direction)
        if frame.opcode >= 8:
            return current  # control frames may come between fragments; they belong to no message
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            current = (frame.opcode, is_compressed(frame, None, ladder.deflate))
        if frame.fin:
            messages.pop(event.direction, None)
        elif current is not None:
            messages[event.direction] = current
        return current

    def _frame(self, event: FrameEvent, ladder: _Ladder) -> None:
        frame = event.frame
        continues = self._track(event, ladder)
        label: Line = [("opcode", opcode_name(frame.opcode))]
        if frame.opcode == Opcode.CLOSE:
            close = parse_close_payload(frame.payload)
            label.append(("strong", f" {close.code}" if close.code is not None else " (no code)"))
            if close.reason:
                label.append(("text", f' "{visible(close.reason[:_PREVIEW])}"'))
        elif is_compressed(frame, continues, ladder.deflate):
            label.append(("muted", " (compressed)"))
        elif frame.payload:
            is_text = frame.opcode in (Opcode.TEXT, Opcode.PING, Opcode.PONG) or (
                frame.opcode == Opcode.CONTINUATION and continues is not None and continues[0] == Opcode.TEXT)
            label += [("plain", " "), payload_preview(frame.payload, text=is_text, limit=_PREVIEW)]
        length = f" {frame.payload_length} B" if not frame.missing else \
            f" claims {size(frame.payload_length)}, {size(len(frame.payload))} kept"
        label.append(("muted", length + ("" if frame.fin else ", more follows")))
        self._arrow(event, ladder, label)

    def close(self) -> None:
        self._open.clear()
        self.out.flush()
