"""``--follow``: the messages the two sides exchanged, like Wireshark's Follow Stream, printed as they complete.

Conversations can overlap in a capture; each line belongs to the conversation named by the last heading above it,
and a short heading (``── stream 3 ──``) is printed whenever the conversation changes, so the transcript stays
readable without holding any conversation back.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    HandshakeResponse,
    Message,
    Violation,
)
from wsinspect.core.fields import Opcode, opcode_name
from wsinspect.views.describe import close_info, endpoint, message_info, width_of
from wsinspect.views.output import Output
from wsinspect.views.packetlist import EventFilter
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]
_TEXT_SHOWN = 4000  # characters of a long text message printed in full under its line


@dataclass(slots=True)
class _Conversation:
    stream: int
    client: str
    server: str
    first_time: float
    headed: bool = False  # its full heading has been printed
    messages: int = 0


class Transcript:
    def __init__(self, output: Output, *, shown: EventFilter | None = None) -> None:
        self.out = output
        self.palette = output.palette
        self.shown = shown
        self._open: dict[int, _Conversation] = {}
        self._current: int | None = None  # the conversation the last printed line belongs to

    def _heading(self, conv: _Conversation, *, full: bool) -> None:
        conv.headed = True
        role = self.palette.stream_role(conv.stream)
        if full:
            label: Line = [(role + ".title", f" Stream {conv.stream} "), ("strong", f" {conv.client} → {conv.server} ")]
        else:
            label = [(role, f"── stream {conv.stream} "), ("muted", f"{conv.client} → {conv.server} ")]
        used = sum(width_of(text) for _, text in label)
        self.out.line([*label, (role, "─" * max(self.out.width - used - 1, 3))])
        self._current = conv.stream

    def _say(self, event: Event, conv: _Conversation, pieces: Line, more: list[Line] | None = None) -> None:
        if not conv.headed:
            self._heading(conv, full=True)
        elif self._current != conv.stream:
            self._heading(conv, full=False)
        who = "client" if event.direction == "c2s" else "server"
        line: Line = [("muted", f"{event.time - conv.first_time:9.3f}  "), (event.direction + ".strong", f"{who:>6} ")]
        self.out.line(line + pieces)
        if more:
            self.out.lines(more)

    def handle(self, event: Event) -> None:
        kind = type(event)
        if kind is ConnectionOpened:
            assert isinstance(event, ConnectionOpened)
            conv = self._open[event.stream] = _Conversation(event.stream, endpoint(event.client),
                                                            endpoint(event.server), event.time)
            return
        conv_or_none = self._open.get(event.stream)
        if conv_or_none is None:
            return
        conv = conv_or_none
        if kind is ConnectionClosed:
            del self._open[event.stream]
            if self._current == event.stream:
                self._current = None
            self.out.tick()
            return
        if self.shown is not None and not self.shown(event):
            return
        if kind is Message:
            assert isinstance(event, Message)
            conv.messages += 1
            more: list[Line] = []
            if event.text is not None and ("\n" in event.text or len(event.text) > 60):
                body = visible(event.text[:_TEXT_SHOWN]).replace("\\n", "\n")
                more = [[("text", part)] for part in body.split("\n")]
            self._say(event, conv, message_info(event), more)
        elif kind is FrameEvent:
            assert isinstance(event, FrameEvent)
            frame = event.frame
            if frame.opcode in (Opcode.PING, Opcode.PONG):
                pieces: Line = [("strong", opcode_name(frame.opcode).lower())]
                if frame.payload:
                    pieces.append(("muted", f" {visible(frame.payload[:240].decode('utf-8', 'surrogateescape'))}"))
                self._say(event, conv, pieces)
        elif kind is Close:
            assert isinstance(event, Close)
            self._say(event, conv, close_info(event))
        elif kind is Violation:
            assert isinstance(event, Violation)
            self._say(event, conv, [("error", f"⚠ {event.check.rfc}: "), ("error.text", visible(event.message))])
        elif kind is HandshakeResponse:
            assert isinstance(event, HandshakeResponse)
            if not event.upgraded:
                status = event.response
                self._say(event, conv, [("error", f"✗ handshake refused: {status.status} {visible(status.reason)}")])
        self.out.tick()

    def close(self) -> None:
        self._open.clear()
        self.out.flush()
