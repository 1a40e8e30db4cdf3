"""Untrusted text made harmless for a terminal.

Everything from the wire (payloads, header values, close reasons) goes through ``visible()`` and then into a
``rich.text.Text`` as plain text, never as markup: escape sequences (``\\x1b[2J``, ``\\x1b]0;title\\x07``), other
control characters, bidirectional overrides and other invisible format characters are shown as Python-style escapes,
and ``[bold red]`` stays literal because ``Text`` does not parse markup.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, smuggled through by "surrogateescape"
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """Text with every non-printable character (per Unicode: controls, formats, separators) escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else _escape(ch) for ch in text)


def preview(text: str, limit: int) -> str:
    """A one-line, safe, bounded excerpt."""
    shown = text[: limit + 1]
    if not shown.isprintable() or "\\" in shown:  # visible()'s own test, here to spare a call on most excerpts
        shown = visible(shown)
    return shown if len(text) <= limit and len(shown) <= limit * 4 else shown[:limit] + "…"


def hex_preview(data: bytes, limit: int) -> str:
    shown = data[:limit].hex(" ")
    return shown + (" …" if len(data) > limit else "")
