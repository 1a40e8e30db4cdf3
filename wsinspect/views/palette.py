"""Themes, and the escape sequences they turn into, rendered once per run.

Rows are built as lists of ``(role, text)`` pieces. A role is what a piece *is* ("c2s", "error", "muted"), never
a colour; a theme says how each role looks. rich turns each role's style into this terminal's escape sequences once,
when the palette is made (so rich still does terminal detection, colour depth and NO_COLOR), and from then on a row
costs string concatenation, not rich's layout engine.

Three themes:

- ``dark`` for dark backgrounds (most terminals);
- ``light`` for light backgrounds, projectors included: no yellow or cyan that vanish on white, nothing that
  matters is only dim;
- ``mono``: no colour at all, only bold, underline and reverse. It is what ``NO_COLOR`` selects, unless colour is
  asked for on the command line (``--color always``): https://no-color.org lets a per-run option override NO_COLOR,
  and colour in a theme without colour would be no colour.

In every theme, nothing important is told by colour alone: violations carry ``⚠``, refusals ``✗``, matches ``✓``,
directions their arrow and column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from rich.console import Console
from rich.text import Text

THEME_NAMES = ("auto", "dark", "light", "mono")

# Connections are told apart by colour in a live log, and by their number in every theme.
_STREAM_COLOURS_DARK = ("green", "blue", "magenta", "cyan", "bright_green", "bright_blue", "bright_magenta",
                        "orange3")
_STREAM_COLOURS_LIGHT = ("green", "blue", "magenta", "red")

_DARK: dict[str, str] = {
    "plain": "",
    "strong": "bold",
    "muted": "dim",
    "c2s": "bright_cyan",
    "s2c": "bright_yellow",
    "c2s.strong": "bold bright_cyan",
    "s2c.strong": "bold bright_yellow",
    "opcode": "bold",
    "flag": "dim",
    "flag.rsv": "magenta",
    "text": "green",
    "binary": "dim green",
    "error": "bold red",
    "error.text": "red",
    "warning": "yellow",
    "warning.strong": "bold yellow",
    "info": "dim",
    "info.strong": "bold",
    "ok": "green",
    "accent": "cyan",
    "accent.alt": "magenta",
    "heading": "bold",
    "field.first-byte": "bold magenta",
    "field.second-byte": "bold cyan",
    "field.extended_length": "blue",
    "field.masking_key": "yellow",
    "field.payload": "green",
    "field.unmasked": "bold green",
}

# Light backgrounds: only colours that stay dark on white even where a terminal has just the 8 standard colours
# (rich maps a 256-colour name to the nearest standard one there, and dark orange becomes yellow): no yellow, no
# cyan, no dim.
_LIGHT: dict[str, str] = {
    **_DARK,
    "muted": "grey39",
    "c2s": "blue",
    "s2c": "magenta",
    "c2s.strong": "bold blue",
    "s2c.strong": "bold magenta",
    "flag": "grey39",
    "flag.rsv": "underline magenta",
    "text": "green",
    "binary": "green",
    "error": "bold red",
    "error.text": "red",
    "warning": "red",
    "warning.strong": "bold red",
    "info": "",
    "ok": "green",
    "accent": "blue",
    "accent.alt": "magenta",
    "field.first-byte": "bold magenta",
    "field.second-byte": "bold blue",
    "field.extended_length": "blue",
    "field.masking_key": "underline red",
    "field.payload": "green",
    "field.unmasked": "bold green",
}

_MONO: dict[str, str] = {
    **{role: "" for role in _DARK},
    "strong": "bold",
    "c2s.strong": "bold",
    "s2c.strong": "bold",
    "opcode": "bold",
    "flag.rsv": "underline",
    "error": "bold",
    "warning.strong": "bold",
    "info.strong": "bold",
    "heading": "bold",
    "field.first-byte": "bold",
    "field.second-byte": "underline",
    "field.masking_key": "underline",
    "field.unmasked": "bold",
}

THEMES: Mapping[str, Mapping[str, str]] = {"dark": _DARK, "light": _LIGHT, "mono": _MONO}
STREAM_COLOURS: Mapping[str, tuple[str, ...]] = {"dark": _STREAM_COLOURS_DARK, "light": _STREAM_COLOURS_LIGHT,
                                                 "mono": ("",)}


def resolve_theme(requested: str, environ: Mapping[str, str] | None = None, *, colour: str = "auto") -> str:
    """``auto`` becomes what the terminal says: NO_COLOR means mono (unless ``colour`` is "always": --color always
    wins over NO_COLOR); COLORFGBG (set by xterm, rxvt, Konsole and others as "foreground;background") tells a
    light background from a dark one; otherwise dark."""
    env = os.environ if environ is None else environ
    if requested != "auto":
        return requested
    if env.get("NO_COLOR") and colour != "always":
        return "mono"
    background = env.get("COLORFGBG", "").rpartition(";")[2]
    if background.isdigit():
        # The 16 ANSI colours: 7 (light grey) and 9-15 are light backgrounds; 0-6 and 8 are dark.
        return "light" if int(background) in (7, *range(9, 16)) else "dark"
    return "dark"


Piece = tuple[str, str]  # (role, text)


class Palette:
    """Each role's escape sequences for this console and theme, rendered once.

    ``paint(pieces)`` is the hot path: a join over precomputed strings.
    """

    def __init__(self, console: Console, theme: str = "dark") -> None:
        self.theme = theme
        self.styled = console.color_system is not None or console.is_terminal
        styles = dict(THEMES[theme])
        colours = STREAM_COLOURS[theme]
        self.stream_roles = len(colours)
        for index, colour in enumerate(colours):
            styles[f"stream.{index}"] = colour
            styles[f"stream.{index}.title"] = f"bold reverse {colour}".strip()
        self._codes: dict[str, tuple[str, str]] = {role: self._render(console, style)
                                                   for role, style in styles.items()}
        # For code that paints as it lays a row out (``describe.fit_painted``): role -> (start, end).
        self.role_codes: Mapping[str, tuple[str, str]] = self._codes

    def _render(self, console: Console, style: str) -> tuple[str, str]:
        if not style or not self.styled:
            return ("", "")
        with console.capture() as captured:
            console.print(Text("\x00", style=style), end="", soft_wrap=True)
        before, _, after = captured.get().partition("\x00")
        # A style that starts nothing ends nothing: then ``start + text + end`` is the text, which lets painters
        # concatenate without asking whether a role has a style.
        return (before, after) if before else ("", "")

    def stream_role(self, stream: int) -> str:
        return f"stream.{stream % self.stream_roles}"

    def paint(self, pieces: Iterable[Piece]) -> str:
        codes = self._codes
        out = []
        for role, text in pieces:
            if not text:
                continue
            start, end = codes[role]
            out.append(start + text + end)
        return "".join(out)

    def codes(self, role: str) -> tuple[str, str]:
        """The escape sequences that start and end ``role`` (empty strings without colour)."""
        return self._codes[role]

    def wrap(self, role: str, text: str) -> str:
        start, end = self._codes[role]
        return start + text + end if text else text
