"""Console views: the packet list (grouped per conversation for captures, streaming for the live server),
the ``--follow`` transcript, and the closing summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

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
from wsinspect.core.fields import Opcode, opcode_name
from wsinspect.views.describe import (
    DIRECTION_STYLE,
    SEVERITY_STYLE,
    close_info,
    endpoint,
    frame_info,
    message_info,
    size,
    stream_colour,
)
from wsinspect.views.detail import DEFAULT_MAX_BYTES, frame_tree, hex_dump
from wsinspect.views.handshake import handshake_view
from wsinspect.views.safe import visible


@dataclass(slots=True)
class _Conversation:
    """What a view remembers of one connection while it is open."""

    stream: int
    client: str = "client"
    server: str = "server"
    how: str = ""
    mid_stream: bool = False
    first_time: float | None = None
    last_time: float | None = None
    request: HandshakeRequest | None = None
    response: HandshakeResponse | None = None
    # direction -> (opcode, compressed) of the fragmented message in progress, to describe its continuations
    open_message: dict[str, tuple[int, bool]] = field(default_factory=dict)
    rows: list[Any] = field(default_factory=list)  # what each view keeps to print when the conversation ends
    frames: int = 0


class RowFormatter:
    """Turns events into packet-list rows. Shared by the capture view and the live log.

    ``live`` rows show the wall-clock time and the connection id instead of a packet number and a time offset.
    ``compact`` rows (narrow terminals) say "client → server" instead of the two addresses.
    """

    def __init__(self, *, detail: bool = False, max_bytes: int = DEFAULT_MAX_BYTES, live: bool = False,
                 compact: bool = False) -> None:
        self.detail = detail
        self.max_bytes = max_bytes
        self.live = live
        self.compact = compact
        self.time_origin: float | None = None
        self.endpoint_width = 15

    def _endpoints(self, event: Event, conv: _Conversation) -> tuple[str, str, int]:
        if self.compact:
            pair = ("client", "server") if event.direction == "c2s" else ("server", "client")
            return pair[0], pair[1], 6
        source, target = (conv.client, conv.server) if event.direction == "c2s" else (conv.server, conv.client)
        return source, target, self.endpoint_width

    def _prefix(self, event: Event, conv: _Conversation) -> Text:
        if self.time_origin is None:
            self.time_origin = event.time
        row = Text()
        if self.live:
            row.append(f"#{event.stream:<3} ", style=f"bold {stream_colour(event.stream)}")
            row.append(time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time * 1000) % 1000:03d} ",
                       style="dim")
        else:
            row.append(f"{event.packet if event.packet is not None else '':>6} ", style="dim")
            row.append(f"{event.time - self.time_origin:10.6f} ", style="dim")
        source, target, width = self._endpoints(event, conv)
        row.append(f"{source:>{width}} → {target:<{width}} ", style=DIRECTION_STYLE[event.direction])
        return row

    def header_row(self) -> Text:
        width = 6 if self.compact else self.endpoint_width
        first = f"{'#':<5}{'Time':<13}" if self.live else f"{'No.':>6} {'Time':>10} "
        return Text(f"{first}{'Source':>{width}} → {'Destination':<{width}} {'Length':>7} Info", style="bold")

    def rows(self, event: Event, conv: _Conversation) -> list[RenderableType]:
        """The rows one event adds to the packet list (often none: some events only update state)."""
        if isinstance(event, FrameEvent):
            frame = event.frame
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                conv.open_message[event.direction] = (frame.opcode, frame.rsv1)
            row = self._prefix(event, conv)
            row.append(f"{frame.size:>7} ", style="dim")
            row.append_text(frame_info(event, continues=conv.open_message.get(event.direction)))
            row.no_wrap = True  # one frame, one line, like a packet list (see print_row)
            if frame.fin and not frame.is_control:
                conv.open_message.pop(event.direction, None)
            out: list[RenderableType] = [row]
            if self.detail:
                out += [frame_tree(event, max_bytes=self.max_bytes), hex_dump(event, max_bytes=self.max_bytes)]
            return out
        if isinstance(event, Message):
            if event.frames == 1 and not event.compressed and event.complete:
                return []  # the frame's row already said it all
            line = self._note_prefix(event)
            line.append("↳ ", style="dim")
            line.append_text(message_info(event))
            return [line]
        if isinstance(event, Violation | Notice):
            style = SEVERITY_STYLE[event.check.severity.value]
            line = self._note_prefix(event)
            line.append("⚠ " if isinstance(event, Violation) else "· ", style=style)
            if isinstance(event, Violation) and event.check.close_code:
                line.append(f"[{event.check.close_code}] ", style="bold " + style)
            line.append(f"{event.check.rfc}: ", style="bold " + style)
            line.append(visible(event.message), style=style)
            return [line]
        if isinstance(event, Gap):
            line = self._note_prefix(event)
            line.append(f"⋯ {event.missing} bytes {event.direction} never captured (stream offset {event.offset})",
                        style="yellow")
            return [line]
        return []

    def _note_prefix(self, event: Event) -> Text:
        """Indent for lines under a frame; live, they name their connection, since connections interleave."""
        if self.live:
            return Text(f"#{event.stream:<3}     ", style=f"bold {stream_colour(event.stream)}")
        return Text("        ")


def print_row(console: Console, row: RenderableType) -> None:
    """Frame rows stay on one line (cut with an ellipsis, as a packet list does); notes may wrap."""
    if isinstance(row, Text) and row.no_wrap:
        console.print(row, no_wrap=True, overflow="ellipsis")
    else:
        console.print(row)


def conversation_title(conv: _Conversation) -> Text:
    title = Text(f" Stream {conv.stream} ", style=f"bold reverse {stream_colour(conv.stream)}")
    title.append(f" {conv.client} → {conv.server} ", style="bold")
    if conv.first_time is not None and conv.last_time is not None:
        title.append(f" {conv.last_time - conv.first_time:.3f} s ", style="dim")
    response = conv.response
    if response is not None:
        if response.upgraded:
            if response.subprotocol:
                title.append(f" subprotocol {visible(response.subprotocol)} ", style="cyan")
            for extension in response.extensions:
                title.append(f" {visible(str(extension))} ", style="magenta")
        else:
            title.append(f" refused: {response.response.status} {visible(response.response.reason)} ",
                         style="bold red")
    if conv.mid_stream:
        title.append(" joined mid-connection ", style="yellow")
    return title


def is_plain_http(request: HandshakeRequest) -> bool:
    """A request that did not even ask for an upgrade (a browser fetching the demo page)."""
    headers = request.request.headers
    return "Upgrade" not in headers and "Sec-WebSocket-Key" not in headers


class CaptureView:
    """``wsinspect read``: each conversation as a block (header, handshake, packet list), printed when it ends.

    Blocks are printed as conversations end, so memory holds only the rows of open conversations.
    """

    def __init__(self, console: Console, *, detail: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.console = console
        self.formatter = RowFormatter(detail=detail, max_bytes=max_bytes, compact=console.width < 110)
        self._open: dict[int, _Conversation] = {}

    def handle(self, event: Event) -> None:
        if self.formatter.time_origin is None:
            self.formatter.time_origin = event.time  # like Wireshark: seconds since the capture's first event
        conv = self._open.get(event.stream)
        if conv is None:
            conv = self._open[event.stream] = _Conversation(event.stream)
        if conv.first_time is None:
            conv.first_time = event.time
        conv.last_time = event.time
        if isinstance(event, ConnectionOpened):
            conv.client, conv.server = endpoint(event.client), endpoint(event.server)
            conv.how, conv.mid_stream = event.how, event.mid_stream
            self.formatter.endpoint_width = max(self.formatter.endpoint_width, len(conv.client), len(conv.server))
        elif isinstance(event, HandshakeRequest):
            conv.request = event
        elif isinstance(event, HandshakeResponse):
            conv.response = event
        elif isinstance(event, ConnectionClosed):
            self._print(self._open.pop(event.stream), event)
            return
        # Keyed by packet: frames held back while the decoder resynchronised are listed where they were captured.
        conv.rows += [(event.packet or 0, len(conv.rows) + i, row)
                      for i, row in enumerate(self.formatter.rows(event, conv))]

    def _print(self, conv: _Conversation, closed: ConnectionClosed | None) -> None:
        console = self.console
        console.print(Rule(conversation_title(conv), align="left", style=stream_colour(conv.stream)))
        if conv.how:
            console.print(Text(f"client side: {conv.client} ({conv.how})", style="dim"))
        if conv.request or conv.response:
            console.print(handshake_view(conv.request, conv.response))
        if conv.rows:
            console.print(self.formatter.header_row())
            for _, _, row in sorted(conv.rows, key=lambda keyed: keyed[:2]):
                print_row(console, row)
        if closed is not None:
            ending = "both sides sent a close frame" if closed.clean else "no complete close handshake"
            console.print(Text(f"connection ended ({closed.reason}); {ending}", style="dim"))
        console.print()

    def close(self) -> None:
        for stream in list(self._open):
            self._print(self._open.pop(stream), None)


class LiveView:
    """``wsinspect serve``: every event printed as it happens, each connection in its own colour."""

    def __init__(self, console: Console, *, detail: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.console = console
        self.formatter = RowFormatter(detail=detail, max_bytes=max_bytes, live=True, compact=console.width < 110)
        self._open: dict[int, _Conversation] = {}

    def handle(self, event: Event) -> None:
        conv = self._open.setdefault(event.stream, _Conversation(event.stream))
        console = self.console
        colour = stream_colour(event.stream)
        if isinstance(event, ConnectionOpened):
            conv.client, conv.server = endpoint(event.client), endpoint(event.server)
            console.print(Text(f"#{event.stream} connection from {conv.client}", style=f"bold {colour}"))
            return
        if isinstance(event, HandshakeRequest):
            conv.request = event
            return
        if isinstance(event, HandshakeResponse):
            conv.response = event
            if conv.request is not None and is_plain_http(conv.request):
                request = conv.request.request
                line = Text(f"#{event.stream} {visible(request.method)} {visible(request.target)} → "
                            f"{event.response.status} {visible(event.response.reason)}", style=colour)
                line.append("  (plain HTTP, not a WebSocket upgrade)", style="dim")
                console.print(line)
                return
            console.print(Rule(conversation_title(conv), align="left", style=colour))
            console.print(handshake_view(conv.request, event))
            return
        if isinstance(event, ConnectionClosed):
            conv = self._open.pop(event.stream)
            if conv.request is not None and is_plain_http(conv.request):
                return
            ending = "clean close" if event.clean else "no complete close handshake"
            console.print(Text(f"#{event.stream} closed ({event.reason}; {ending})", style=f"bold {colour}"))
            return
        if isinstance(event, Violation) and event.check.id == "http.header-too-large":
            line = Text(f"#{event.stream} refused: 431 Request Header Fields Too Large. ", style="bold red")
            line.append(f"{event.check.rfc}: {visible(event.message)}", style="red")
            console.print(line)
            return
        for row in self.formatter.rows(event, conv):
            print_row(console, row)

    def close(self) -> None:
        self._open.clear()


class TranscriptView:
    """``--follow``: each conversation as the messages its two sides exchanged, like Wireshark's Follow Stream."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._open: dict[int, _Conversation] = {}

    def handle(self, event: Event) -> None:
        conv = self._open.setdefault(event.stream, _Conversation(event.stream))
        if conv.first_time is None:
            conv.first_time = event.time
        conv.last_time = event.time
        if isinstance(event, ConnectionOpened):
            conv.client, conv.server = endpoint(event.client), endpoint(event.server)
        elif isinstance(event, HandshakeResponse):
            conv.response = event
        elif isinstance(event, ConnectionClosed):
            self._print(self._open.pop(event.stream))
            return
        line = self._line(event, conv)
        if line is not None:
            conv.rows.append(line)

    def _line(self, event: Event, conv: _Conversation) -> Text | None:
        who = "client" if event.direction == "c2s" else "server"
        prefix = Text(f"{event.time - (conv.first_time or event.time):9.3f}  ", style="dim")
        prefix.append(f"{who:>6} ", style="bold " + DIRECTION_STYLE[event.direction])
        if isinstance(event, Message):
            prefix.append_text(message_info(event))
            if event.text is not None and ("\n" in event.text or len(event.text) > 60):
                prefix.append("\n" + visible(event.text[:4000]).replace("\\n", "\n"), style="green")
            return prefix
        if isinstance(event, FrameEvent) and event.frame.opcode in (Opcode.PING, Opcode.PONG):
            prefix.append(opcode_name(event.frame.opcode).lower(), style="dim bold")
            if event.frame.payload:
                prefix.append(f" {visible(event.frame.payload.decode('utf-8', 'surrogateescape'))}", style="dim")
            return prefix
        if isinstance(event, Close):
            prefix.append_text(close_info(event))
            return prefix
        if isinstance(event, Violation):
            prefix.append(f"⚠ {event.check.rfc}: {visible(event.message)}", style="red")
            return prefix
        return None

    def _print(self, conv: _Conversation) -> None:
        self.console.print(Rule(conversation_title(conv), align="left", style=stream_colour(conv.stream)))
        for row in conv.rows:
            self.console.print(row)
        self.console.print()

    def close(self) -> None:
        for stream in list(self._open):
            self._print(self._open.pop(stream))


class Summary:
    """Counts for the closing summary: conversations, frames per opcode, bytes, messages, violations."""

    def __init__(self) -> None:
        self.conversations = 0
        self.refused = 0
        self.plain_http = 0  # requests that never asked for an upgrade (the live server's demo page)
        self._plain_http: set[int] = set()
        self.frames: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.messages = 0
        self.violations: Counter[str] = Counter()
        self.notices: Counter[str] = Counter()

    def handle(self, event: Event) -> None:
        if isinstance(event, FrameEvent):
            self.frames[opcode_name(event.frame.opcode)] += 1
            self.bytes[event.direction] += event.frame.size
        elif isinstance(event, Message):
            self.messages += 1
        elif isinstance(event, ConnectionOpened):
            self.conversations += 1
        elif isinstance(event, HandshakeRequest) and is_plain_http(event):
            self._plain_http.add(event.stream)
        elif isinstance(event, HandshakeResponse) and not event.upgraded:
            if event.stream in self._plain_http:
                self._plain_http.discard(event.stream)
                self.plain_http += 1
            else:
                self.refused += 1
        elif isinstance(event, Violation):
            self.violations[event.check.id] += 1
        elif isinstance(event, Notice):
            self.notices[event.check.id] += 1
        elif isinstance(event, Gap):
            self.notices["capture.gap"] += 1

    def close(self) -> None:
        """Nothing to flush: the summary is printed by whoever owns the console, when it chooses."""

    def render(self, extra: list[str] | None = None) -> RenderableType:
        table = Table(title="Summary", box=box.SIMPLE, show_header=False, title_justify="left",
                      title_style="bold")
        table.add_column(style="bold")
        table.add_column()
        notes = [f"{self.refused} refused"] if self.refused else []
        if self.plain_http:
            notes.append(f"{self.plain_http} plain HTTP")
        table.add_row("conversations", f"{self.conversations}" + (f" ({', '.join(notes)})" if notes else ""))
        table.add_row("frames", f"{sum(self.frames.values())}: " + ", ".join(
            f"{name} {count}" for name, count in self.frames.most_common()) if self.frames else "0")
        table.add_row("messages", str(self.messages))
        table.add_row("bytes", f"client→server {size(self.bytes['c2s'])}, server→client {size(self.bytes['s2c'])}")
        if self.violations:
            table.add_row(Text("violations", style="bold red"), ", ".join(
                f"{check} ×{count}" for check, count in self.violations.most_common()))
        if self.notices:
            table.add_row(Text("capture notes", style="bold yellow"), ", ".join(
                f"{check} ×{count}" for check, count in self.notices.most_common()))
        for line in extra or []:
            table.add_row("", Text(line, style="yellow"))
        return Group(table)
