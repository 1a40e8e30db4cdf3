"""Where the console views write: painted lines, in batches, straight to the console's file.

A view hands over lines as styled pieces; this paints them with the palette and writes them in batches, so a
capture of a million frames costs a few thousand writes. The first line is written at once and then at least every
``FLUSH_SECONDS``, so a reader behind a pipe (``| less``, ``| head``) sees output from the start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from time import monotonic
from typing import IO

from rich.console import Console

from wsinspect.views.describe import width_of_pieces, wrap
from wsinspect.views.palette import Palette, Piece

BATCH_LINES = 512
FLUSH_SECONDS = 0.2


_SGR = re.compile("\x1b\\[[0-9;]*m")


class HandoutFull(Exception):
    """Raised by ``Output.flush`` once the handout has overflowed, when its ``stop_when_full`` asks for it."""


class Handout:
    """What a run showed, kept for ``--export``: painted lines (with the theme's colours whatever the terminal has),
    at most ``limit`` of them. A capture that shows more is too long for a handout; ``overflowed`` says so.

    With ``stop_when_full`` (``read``: a file has an end, so there is no point showing the rest for a handout that
    will not be saved), the output's next flush after the overflow raises ``HandoutFull``, once."""

    def __init__(self, limit: int, *, stop_when_full: bool = False) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.overflowed = False
        self.stop_when_full = stop_when_full

    def keep(self, lines: list[str]) -> None:
        room = self.limit - len(self.lines)
        if len(lines) > room:
            self.overflowed = True
        self.lines.extend(lines[: max(room, 0)])


class Output:
    def __init__(self, console: Console, palette: Palette, *, live: bool = False, width: int | None = None,
                 handout: Handout | None = None, strip: bool = False) -> None:
        self.file: IO[str] = console.file
        self.width = width or console.width
        self.palette = palette
        self.live = live  # a live log writes every event as it happens
        self.handout = handout
        # Exporting paints in colour for the handout; a terminal without colour gets the same lines without it.
        self.strip = strip
        self._lines: list[str] = []
        self._flush_due = 0.0  # monotonic time from which waiting lines are written: the first ones at once

    def line(self, pieces: list[Piece]) -> None:
        """One line; folded at spaces if it is wider than the terminal (rows are cut to fit before they get here)."""
        if width_of_pieces([text for _, text in pieces]) > self.width:
            self._lines += self._folded(pieces)
        else:
            self._lines.append(self.palette.paint(pieces))
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def painted_lines(self, pieces: list[Piece]) -> list[str]:
        """What ``line`` would write, for a view that keeps painted lines to write again."""
        if width_of_pieces([text for _, text in pieces]) > self.width:
            return self._folded(pieces)
        return [self.palette.paint(pieces)]

    def _folded(self, pieces: list[Piece]) -> list[str]:
        first = pieces[0][1] if pieces else ""
        indent = " " * max(len(first) - len(first.lstrip(" ")), 2)  # continue under the line's own indent
        if len(indent) >= self.width:
            indent = "  "  # a narrow terminal: under the line's own indent, nothing would fit
        return [self.palette.paint(folded) for folded in wrap(pieces, self.width, indent)]

    def row(self, pieces: list[Piece]) -> None:
        """A packet-list row, already cut to the width (``describe.fit``): painted as it is."""
        self._lines.append(self.palette.paint(pieces))
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def painted_row(self, line: str) -> None:
        """A row painted and cut to the width by the view itself."""
        self._lines.append(line)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def rows(self, lines: Iterable[list[Piece]]) -> None:
        """Lines that are laid out to a fixed width already (trees, hex dumps): painted as they are."""
        paint = self.palette.paint
        self._lines.extend(paint(pieces) for pieces in lines)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def painted(self, lines: list[str]) -> None:
        """Lines painted earlier (a view's cache of lines that repeat)."""
        self._lines.extend(lines)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def lines(self, lines: Iterable[list[Piece]]) -> None:
        for pieces in lines:
            self.line(pieces)

    def tick(self) -> None:
        """Called after each event: writes what is waiting if it has waited long enough (or at once, live)."""
        if self._lines and (self.live or monotonic() >= self._flush_due):
            self.flush()

    def flush(self) -> None:
        if self._lines:
            if self.handout is not None:
                self.handout.keep(self._lines)
            self._lines.append("")
            text = "\n".join(self._lines)
            self.file.write(_SGR.sub("", text) if self.strip else text)
            self._lines.clear()
        self.file.flush()
        self._flush_due = monotonic() + FLUSH_SECONDS
        handout = self.handout
        if handout is not None and handout.overflowed and handout.stop_when_full:
            handout.stop_when_full = False  # once: what the caller writes next (its own ending) is written
            raise HandoutFull
