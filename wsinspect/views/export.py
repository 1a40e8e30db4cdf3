"""Handouts: what a command showed, saved as HTML, SVG or plain text at a fixed width (``--export FILE``).

A command that can export lays its output out once, as lines of styled pieces folded to one width; the terminal
gets those lines painted by the palette, and the handout gets the very same lines recorded by a rich ``Console``
(``record=True``) and written with ``export_html``, ``export_svg`` or ``export_text``. So the handout is what the
terminal showed, line for line; only the colours differ where the terminal had none (``--color never``, a pipe):
the handout keeps the theme's colours unless the theme is ``mono``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.terminal_theme import DEFAULT_TERMINAL_THEME, MONOKAI, TerminalTheme
from rich.text import Text

from wsinspect.views.describe import width_of, wrap
from wsinspect.views.palette import THEMES, Piece

Line = list[Piece]

EXPORT_WIDTH = 100  # columns of every handout, whatever the terminal's width: a page, not a window
EXPORT_FORMATS = {".html": "html", ".htm": "html", ".svg": "svg", ".txt": "txt"}

# The page behind the text: dark for the dark theme, white for the light one and for mono (printed handouts).
_PAGE_THEMES: dict[str, TerminalTheme] = {"dark": MONOKAI, "light": DEFAULT_TERMINAL_THEME,
                                          "mono": DEFAULT_TERMINAL_THEME}


class ExportError(Exception):
    """A handout that cannot be written: an unknown extension, or a file the system refuses."""


def export_format(path: str) -> str:
    """``html``, ``svg`` or ``txt`` from the file name; ExportError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ExportError("a handout is FILE.html, FILE.svg or FILE.txt")
    return EXPORT_FORMATS[suffix]


def fold(lines: Iterable[Line], width: int) -> list[Line]:
    """Lines wider than ``width`` folded at spaces, continuing under their own indent (as ``Output.line`` does),
    so the terminal and the handout break every line at the same place."""
    folded: list[Line] = []
    for line in lines:
        if sum(width_of(text) for _, text in line) <= width:
            folded.append(line)
            continue
        first = line[0][1] if line else ""
        indent = " " * max(len(first) - len(first.lstrip(" ")), 2)
        folded += wrap(line, width, indent)
    return folded


def _recording_console(width: int) -> Console:
    return Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                   highlight=False, markup=False, emoji=False, legacy_windows=False)


def _print(console: Console, text: Text) -> None:
    # Lines come folded to the width already: never let rich wrap or cut them differently from the terminal.
    console.print(text, no_wrap=True, overflow="ignore", crop=False)


def render(lines: Iterable[Line], *, theme: str, width: int = EXPORT_WIDTH) -> Console:
    """A recording console holding ``lines`` styled by ``theme`` (role names become the theme's rich styles)."""
    styles = THEMES[theme]
    console = _recording_console(width)
    for line in lines:
        text = Text()
        for role, piece in line:
            text.append(piece, style=styles.get(role, ""))
        _print(console, text)
    return console


def save(lines: Iterable[Line], path: str, *, theme: str, title: str, width: int = EXPORT_WIDTH) -> None:
    """Write ``lines`` to ``path`` in the format its extension names. Raises ExportError with a one-line reason."""
    export_format(path)  # an unknown extension fails before any rendering
    _write(render(lines, theme=theme, width=width), path, theme=theme, title=title)


def save_painted(lines: Iterable[str], path: str, *, theme: str, title: str, width: int = EXPORT_WIDTH) -> None:
    """Like ``save``, for lines a view painted itself (ANSI colour codes in them): ``wsinspect read`` streams
    painted lines, so its handout is read back from them."""
    export_format(path)
    console = _recording_console(width)
    for line in lines:
        _print(console, Text.from_ansi(line))
    _write(console, path, theme=theme, title=title)


def _write(console: Console, path: str, *, theme: str, title: str) -> None:
    """What ``console`` recorded, as the format ``path``'s extension names."""
    kind = export_format(path)
    page = _PAGE_THEMES.get(theme, MONOKAI)
    if kind == "html":
        content = console.export_html(theme=page, inline_styles=True)
    elif kind == "svg":
        content = console.export_svg(title=title, theme=page)
    else:
        content = console.export_text(styles=False)
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
    except OSError as error:
        raise ExportError(error.strerror or str(error)) from None


def check_writable(path: str) -> None:
    """Fail before the work, not after it: the extension is known and the file's folder exists."""
    export_format(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"no such folder: {folder}")
