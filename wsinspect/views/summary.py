"""The closing summary: conversations, frames per opcode, bytes, messages, violations, capture notes.

It counts every event decoded, whatever a filter shows, so the totals describe the capture.
"""

from __future__ import annotations

from collections import Counter

from wsinspect.core.events import (
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
from wsinspect.core.fields import opcode_name
from wsinspect.views.describe import size
from wsinspect.views.packetlist import is_plain_http
from wsinspect.views.palette import Piece

Line = list[Piece]


class Summary:
    """Counts for the closing summary: conversations, frames per opcode, bytes, messages, violations."""

    def __init__(self) -> None:
        self.conversations = 0
        self.tls = 0  # streams that began with a TLS handshake: reported, not decoded
        self.refused = 0
        self.plain_http = 0  # requests that never asked for an upgrade (the live server's demo page)
        self._plain_http: set[int] = set()
        # Open streams counted as refused or plain HTTP: an HTTP/1.1 connection can go on to an upgrade after them.
        self._not_upgraded: dict[int, bool] = {}  # stream -> counted as plain HTTP (else as refused)
        self._handshaken: set[int] = set()  # open streams whose opening handshake was seen (decrypted or clear)
        self._tls_counted: set[int] = set()  # open TLS streams already counted as such
        self.frames: Counter[int] = Counter()  # by opcode (named when printed: this runs once per frame)
        self.bytes: Counter[str] = Counter()  # bytes of frames that came, by direction
        # The last frame of a direction that was not kept whole, until it is known how much of it came:
        # (stream, direction) -> (its stream offset, the size its header claims, the bytes already counted).
        self._cut: dict[tuple[int, str], tuple[int, int, int]] = {}
        self.messages = 0
        self.violations: Counter[str] = Counter()
        self.notices: Counter[str] = Counter()

    def handle(self, event: Event) -> None:
        if type(event) is FrameEvent:  # most events: narrowed without an isinstance call
            frame = event.frame
            self.frames[frame.opcode] += 1
            # The bytes that came, not what the length field claims (it can claim 8 EiB of a 1 KB frame): what was
            # kept now; the rest of a frame not kept whole once the next frame of its direction shows it came.
            counted = len(frame.header) + len(frame.payload)
            if self._cut:
                self._settle_cut(event.stream, event.direction, frame.offset)
            if frame.missing:
                self._cut[(event.stream, event.direction)] = (frame.offset, frame.size, counted)
            self.bytes[event.direction] += counted
            return
        kind = type(event)
        if kind is Message:
            self.messages += 1
        elif kind is ConnectionOpened:
            self.conversations += 1
        elif kind is HandshakeRequest:
            assert isinstance(event, HandshakeRequest)
            self._handshaken.add(event.stream)
            if is_plain_http(event):
                self._plain_http.add(event.stream)
        elif kind is HandshakeResponse:
            assert isinstance(event, HandshakeResponse)
            plain = event.stream in self._plain_http
            self._plain_http.discard(event.stream)
            counted_plain = self._not_upgraded.pop(event.stream, None)
            if counted_plain is not None:  # an earlier answer on this connection: the count goes by the last one
                if counted_plain:
                    self.plain_http -= 1
                else:
                    self.refused -= 1
            if not event.upgraded:
                self._not_upgraded[event.stream] = plain
                if plain:
                    self.plain_http += 1
                else:
                    self.refused += 1
        elif kind is Violation:
            assert isinstance(event, Violation)
            self.violations[event.check.id] += 1
        elif kind is Notice:
            assert isinstance(event, Notice)
            self.notices[event.check.id] += 1
            self._count_tls(event)
            if event.check.id == "capture.truncated-frame" and event.offset is not None and self._cut:
                self._settle_cut(event.stream, event.direction, event.offset)  # offset: where the stream ended
        elif kind is Gap:
            self.notices["capture.gap"] += 1
        elif kind is ConnectionClosed:
            self._cut.pop((event.stream, "c2s"), None)  # the stream ended inside it: the rest never came
            self._cut.pop((event.stream, "s2c"), None)
            self._plain_http.discard(event.stream)
            self._not_upgraded.pop(event.stream, None)
            self._handshaken.discard(event.stream)
            self._tls_counted.discard(event.stream)

    def _settle_cut(self, stream: int, direction: str, next_offset: int) -> None:
        """A frame of ``direction`` starts at ``next_offset``: the frame before it, if it was not kept whole, came
        up to there (or whole)."""
        cut = self._cut.pop((stream, direction), None)
        if cut is not None:
            offset, claimed, counted = cut
            came = min(next_offset - offset, claimed)
            if came > counted:
                self.bytes[direction] += came - counted

    def count_conversation(self, event: Event) -> None:
        """Only what the exit status needs: how many conversations there were (TLS streams apart)."""
        kind = type(event)
        if kind is ConnectionOpened:
            self.conversations += 1
        elif kind is HandshakeRequest:
            self._handshaken.add(event.stream)
        elif kind is Notice:
            assert isinstance(event, Notice)
            self._count_tls(event)
        elif kind is ConnectionClosed:
            self._handshaken.discard(event.stream)
            self._tls_counted.discard(event.stream)

    def _count_tls(self, notice: Notice) -> None:
        """A TLS stream nobody can see into is not a WebSocket conversation: one without keys, or one whose keys
        could not open it before its opening handshake (a suite that is not decrypted, a record that fails)."""
        check = notice.check.id
        unseen = check == "capture.tls" or (check == "capture.tls-undecryptable" and
                                            notice.stream not in self._handshaken)
        if unseen and notice.stream not in self._tls_counted:
            self._tls_counted.add(notice.stream)
            self.tls += 1
            self.conversations -= 1

    def close(self) -> None:
        """Nothing to flush: the summary is printed by whoever owns the console, when it chooses."""

    def lines(self, extra: list[str] | None = None, *, frames_shown: int | None = None) -> list[Line]:
        """The summary as lines of styled pieces; ``frames_shown`` is how many frames a filter let through."""
        label_width = 15
        out: list[Line] = [[("strong", "Summary")]]

        def row(label: str, value: str, role: str = "strong") -> None:
            out.append([(role, f"  {label:<{label_width}}"), ("plain", value)])

        notes = [f"{self.refused} refused"] if self.refused else []
        if self.plain_http:
            notes.append(f"{self.plain_http} plain HTTP")
        row("conversations", f"{self.conversations}" + (f" ({', '.join(notes)})" if notes else ""))
        if self.tls:
            row("TLS streams", f"{self.tls} (wss:// or another TLS protocol, not decrypted: see the notes above)")
        total = sum(self.frames.values())
        row("frames", f"{total}: " + ", ".join(f"{opcode_name(opcode)} {count}"
                                               for opcode, count in self.frames.most_common())
            if self.frames else "0")
        if frames_shown is not None:
            row("shown", f"{frames_shown} of {total} frames matched the filter")
        row("messages", str(self.messages))
        row("bytes", f"client→server {size(self.bytes['c2s'])}, server→client {size(self.bytes['s2c'])}")
        if self.violations:
            row("⚠ violations", ", ".join(f"{check} ×{count}" for check, count in self.violations.most_common()),
                "error")
        if self.notices:
            row("capture notes", ", ".join(f"{check} ×{count}" for check, count in self.notices.most_common()),
                "warning.strong")
        for line in extra or []:
            out.append([("plain", " " * (label_width + 2)), ("warning", line)])
        return out
