"""The opening handshake as a two-column table, the accept-key computation spelled out, and findings in plain
words. Each function returns lines of styled pieces (see ``palette``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

from wsinspect.core.checks import Severity
from wsinspect.core.events import HandshakeRequest, HandshakeResponse
from wsinspect.core.handshake import WEBSOCKET_GUID, Finding, HttpMessage, accept_key
from wsinspect.views.describe import SEVERITY_ROLE, width_of
from wsinspect.views.explain import Explainer
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]
T = TypeVar("T")
# (role, headers, the table's columns) -> the headers' rows, in order
HeaderRows = Callable[[str, Iterable[tuple[str, str]], "_Layout"], list[T]]

MARK = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "i"}
_NAME_COLUMN_MAX = 28  # longer header names push their value right rather than widening every row
_BODY_SHOWN = 400


def quoted(value: str | None) -> str:
    return "(missing)" if value is None else visible(value)


def finding_lines(finding: Finding, *, indent: str = "  ", explainer: Explainer | None = None) -> list[Line]:
    role = SEVERITY_ROLE[finding.severity.value]
    lines: list[Line] = [[(role, f"{indent}{MARK[finding.severity]} "), (role, f"{finding.check.rfc}: "),
                          ("plain", visible(finding.message))]]
    if finding.expected is not None or finding.got is not None:
        lines.append([("muted", indent + "    expected: "),
                      ("ok", visible(finding.expected) if finding.expected is not None else "-"),
                      ("muted", "   got: "), ("error.text", quoted(finding.got))])
    note = explainer.rule(finding.check) if explainer is not None else None
    if note:
        lines.append(note)
    return lines


def findings_lines(findings: Iterable[Finding], explainer: Explainer | None = None) -> list[Line]:
    return [line for finding in findings for line in finding_lines(finding, explainer=explainer)]


def _folded(value: str, width: int) -> list[str]:
    """A long header value (cookies, long offers) folded onto continuation lines rather than cut: see ``_spans``."""
    if width_of(value) <= width:  # most values: one line
        return [value]
    return [value[start:end] for start, end in _spans(value, width, width)]


# Where a line may end when a text has no space to break at within the line: after a list's or a name's separator.
# None of them is base64 or in an escape, so the key's and the accept's rows and the walkthrough fold by the
# lengths of the key and the accept alone (``PaintedHandshakes`` relies on it), and no escape is split there.
_SOFT_BREAKS = ",;-_.:&"
_ESCAPE_LENGTHS = {"x": 4, "u": 6, "U": 10}  # visible's escapes: \xff, \uffff, \Uffffffff; others 2


def _spans(text: str, first_room: int, room: int, breaks: str = "") -> list[tuple[int, int]]:
    """Where ``text`` (made visible) is cut into lines of at most ``first_room`` cells, then ``room`` cells: as many
    words as fit, a line ending at a space (or after a character of ``breaks``); where no space is within reach,
    after a separator (``_SOFT_BREAKS``); only a token longer than the line is cut inside, and then not inside an
    escape. No line starts with a combining mark. The spaces where a line ends at a space are not shown (as
    ``wrap`` does): every other character is, in order, and no line is empty or blank."""
    cells = None if text.isascii() else [width_of(char) for char in text]
    length = len(text)
    spans: list[tuple[int, int]] = []
    start, limit = 0, first_room
    while start < length:
        stop = min(start + limit, length)  # one cell a character: the longest prefix that fits
        if cells is not None:  # (it ends before a character of one cell or more: a combining mark always fits)
            used, stop = 0, start
            while stop < length and used + cells[stop] <= limit:
                used += cells[stop]
                stop += 1
        stop = max(stop, start + 1)  # a line narrower than one character still shows one
        if stop >= length:
            spans.append((start, length))
            break
        space = _last_space(text, cells, start, stop)
        brk = _last_break(text, cells, start, stop, breaks)
        if space > brk:
            end = start + len(text[start:space].rstrip(" "))
            resume = _past_spaces(text, space)
        else:
            if brk < 0:
                brk = _last_break(text, cells, start, stop, _SOFT_BREAKS)
            end = resume = brk + 1 if brk >= 0 else _hard_cut(text, start, stop)
            if text[start:end].isspace():  # a run of spaces wider than the line: dropped, as at a break
                start = _past_spaces(text, start)
                continue
        spans.append((start, end))
        start, limit = resume, room
    return spans or [(0, 0)]


def _past_spaces(text: str, index: int) -> int:
    while index < len(text) and text[index] == " ":
        index += 1
    return index


def _last_space(text: str, cells: list[int] | None, start: int, stop: int) -> int:
    """The last space a line from ``start`` can end at (``text[start:space]`` fits in ``stop - start``
    characters) with something before it, and not before a combining mark; -1 if none."""
    space = stop + 1
    while True:
        space = text.rfind(" ", start + 1, space)
        if space < 0 or text[start:space].isspace():
            return -1
        resume = _past_spaces(text, space)
        if cells is None or resume >= len(text) or cells[resume]:
            return space


def _last_break(text: str, cells: list[int] | None, start: int, stop: int, chars: str) -> int:
    """The last character of ``chars`` in ``text[start:stop]`` that a line can end with (not one before a
    combining mark, nor before spaces and a combining mark); -1 if none."""
    brk = stop
    while chars:
        brk = max(text.rfind(char, start, brk) for char in chars)
        if brk < 0 or cells is None:
            return brk
        resume = _past_spaces(text, brk + 1)  # (spaces there come before a mark: no break at them either)
        if resume >= len(text) or cells[resume]:
            return brk
    return -1


def _hard_cut(text: str, start: int, stop: int) -> int:
    """Where a token too long for its line is cut: as late as fits (``stop``), but before an escape that would be
    split."""
    escape = text.find("\\", start, stop)
    while escape != -1:  # every backslash of a visible text starts an escape; lines start between escapes
        end = escape + _ESCAPE_LENGTHS.get(text[escape + 1 : escape + 2], 2)
        if end > stop:
            return escape if escape > start else stop
        escape = text.find("\\", end, stop)
    return stop


_VALUE_COLUMN_MIN = 20  # narrower than this beside the names, values go under them (``_Layout``)
_NARROW_INDENT = "   "  # where values start under their names


class _Layout:
    """The table's columns at one width: names and values side by side where a value column of
    ``_VALUE_COLUMN_MIN`` cells fits beside the names, else each name on its own line and its value under it at
    ``_NARROW_INDENT``. Every line of the table is at most ``width - 1`` cells (as the packet list's rows)."""

    __slots__ = ("name_width", "pad", "side_by_side", "value_width")

    def __init__(self, name_width: int, width: int) -> None:
        self.name_width = name_width
        self.side_by_side = width - name_width - 3 >= _VALUE_COLUMN_MIN
        if self.side_by_side:
            self.value_width = width - name_width - 3
            self.pad = " " * (name_width + 2)
        else:
            self.value_width = width - 1 - len(_NARROW_INDENT)
            self.pad = _NARROW_INDENT


# A table's layout, made once per name column's width and terminal width (a view has a handful of them): laid out
# for every conversation, it must cost next to nothing.
_layout = lru_cache(maxsize=64)(_Layout)


def _name_cell(name: str, name_width: int) -> str:
    """A name (made visible) padded to the name column by cells, not characters (a wide character takes two)."""
    return name + " " * (name_width - (len(name) if name.isascii() else width_of(name)))


def header_row_lines(role: str, name: str, value: str, name_width: int, width: int) -> list[Line]:
    """One header of the table: its name and value, the value folded if it is long. Depends on its arguments alone
    (``PaintedHandshakes`` keeps each one's paint)."""
    return _header_row_lines(role, name, value, _layout(name_width, width))


def _header_row_lines(role: str, name: str, value: str, layout: _Layout) -> list[Line]:
    return _row_lines(role, "plain", visible(name), visible(value), layout)


def _row_lines(name_role: str, value_role: str, name: str, value: str, layout: _Layout) -> list[Line]:
    """A row of the table: ``name`` and ``value`` (both visible already) in their columns, folded to fit."""
    name_width = layout.name_width
    if layout.side_by_side:
        name_cells = len(name) if name.isascii() else width_of(name)
        if name_cells <= name_width:
            first, *rest = _folded(value, layout.value_width)
            return [[(name_role, f" {_name_cell(name, name_width)} "), (value_role, first)],
                    *[[(value_role, layout.pad + part)] for part in rest]]
        # A name longer than the name column pushes its value right where the whole row fits on one line ...
        value_cells = len(value) if value.isascii() else width_of(value)
        if name_cells + value_cells <= name_width + layout.value_width:
            return [[(name_role, f" {name} "), (value_role, value)]]
    # ... and else has a line of its own (lines, on a narrow terminal), the value under it in the value column.
    room = layout.name_width + 1 + layout.value_width if layout.side_by_side else layout.value_width + 2
    lines: list[Line] = [[(name_role, " " + name[start:end])] for start, end in _spans(name, room, room)]
    if value:
        lines += [[(value_role, layout.pad + part)] for part in _folded(value, layout.value_width)]
    return lines


def _message_lines(title: str, message: HttpMessage, role: str, layout: _Layout, explainer: Explainer | None,
                   upgraded: bool | None, line: Callable[[Line], list[T]], header_rows: HeaderRows[T]) -> list[T]:
    pad = layout.pad
    lines: list[T] = []
    start_line = visible(message.start_line)
    room = layout.value_width
    if layout.side_by_side and len(start_line) <= room and (start_line.isascii() or width_of(start_line) <= room):
        # most: one line, made as it always was
        lines += line([(role + ".strong", f" {title:<{layout.name_width}} "), ("strong", start_line)])
    else:
        for title_line in _row_lines(role + ".strong", "strong", title, start_line, layout):
            lines += line(title_line)
    if explainer is None:  # the usual table: one row per header, nothing between them
        return lines + header_rows(role, message.headers.items, layout)
    if upgraded is not None:
        note = explainer.status(upgraded, pad)
        if note:
            lines += line(note)
    for name, value in message.headers.items:
        lines += header_rows(role, ((name, value),), layout)
        note = explainer.header(name, pad)
        if note:
            lines += line(note)
    return lines


_ACCEPT_LEAD: Line = [("muted", "Sec-WebSocket-Accept = base64(SHA-1(")]
_ACCEPT_MIDDLE: Line = [("muted", " + "), ("accent", f'"{WEBSOCKET_GUID}"'), ("muted", ")) = ")]
_ACCEPT_MATCHES: Piece = ("ok", "  ✓ the server's answer matches")


def _walkthrough_parts(request: HandshakeRequest,
                       response: HandshakeResponse | None) -> tuple[str, str, Piece | None] | None:
    """What the walkthrough of how Sec-WebSocket-Accept is computed from Sec-WebSocket-Key (RFC 6455 4.2.2) says:
    the key (made visible), the accept it calls for, and the verdict on the server's answer (none where there was
    no 101 to judge); None where the request has no key."""
    key = request.request.headers.get("Sec-WebSocket-Key")
    if key is None:
        return None
    expected = accept_key(key)
    if response is None or response.response.status != 101:
        return visible(key.strip()), expected, None
    got = response.response.headers.get("Sec-WebSocket-Accept")
    if got is not None and got.strip() == expected:
        return visible(key.strip()), expected, _ACCEPT_MATCHES
    return visible(key.strip()), expected, ("error", f"  ✗ the server sent {quoted(got)}")


def _walkthrough_line(quoted_key: str, expected: str, verdict: Piece | None) -> Line:
    line = [*_ACCEPT_LEAD, ("accent", quoted_key), *_ACCEPT_MIDDLE, ("strong", expected)]
    if verdict is not None:
        line.append(verdict)
    return line


_CONTINUATION = "  "  # where the walkthrough's continuation lines start, as ``Output`` folds lines


def _walkthrough_lines(quoted_key: str, expected: str, verdict: Piece | None, width: int) -> list[Line]:
    """The walkthrough folded to ``width`` cells: at spaces and after an opening parenthesis, and within the GUID
    (or a long key) after a dash, rather than wherever the line is full."""
    line = _walkthrough_line(quoted_key, expected, verdict)
    joined = "".join(text for _, text in line)
    if width_of(joined) <= width:
        return [line]
    lines: list[Line] = []
    for start, end in _spans(joined, width, width - len(_CONTINUATION), breaks="("):
        folded: Line = [("plain", _CONTINUATION)] if lines else []
        offset = 0
        for role, text in line:  # the pieces, or parts of them, between start and end
            piece_start, piece_end = max(start - offset, 0), min(end - offset, len(text))
            if piece_start < piece_end:
                folded.append((role, text[piece_start:piece_end]))
            offset += len(text)
        lines.append(folded)
    return lines


def handshake_lines(request: HandshakeRequest | None, response: HandshakeResponse | None, *,
                    width: int = 120, explainer: Explainer | None = None, show_body: bool = True) -> list[Line]:
    """The request and the response header by header (wire order, duplicates kept), then the accept key
    computation where one was due, then the findings (or a tick when there are none). The table and the
    walkthrough fit in ``width`` cells; the findings are folded by the view's ``Output``."""
    def walkthrough(request: HandshakeRequest, response: HandshakeResponse | None) -> list[Line]:
        parts = _walkthrough_parts(request, response)
        if parts is None:
            return []
        key, expected, verdict = parts
        return _walkthrough_lines(f'"{key}"', expected, verdict, width)

    return _table(request, response, width, explainer, show_body, _as_is, _as_is, _header_rows_as_pieces,
                  walkthrough)


def _as_is(line: Line) -> list[Line]:
    return [line]


def _header_rows_as_pieces(role: str, headers: Iterable[tuple[str, str]], layout: _Layout) -> list[Line]:
    return [line for name, value in headers for line in _header_row_lines(role, name, value, layout)]


class PaintedHandshakes:
    """``handshake_lines`` painted, for a view that shows many conversations: the lines of a header seen before
    (most headers of most conversations: often only the key and the accept differ) are painted once per run, and
    so is the layout of the key's and the accept's rows and of the accept key's walkthrough for each length of key.

    ``paint`` is the view's painter, which folds a line wider than the terminal (``Output.painted_lines``). It and
    ``width`` are fixed for the run, so a row's paint depends on the header and the name column's width alone. What
    is kept is bounded: short headers only, and at most ``_ROWS_KEPT`` of them (then it starts again); at most
    ``_TEMPLATES_KEPT`` layouts of keys and accepts.
    """

    def __init__(self, paint: Callable[[Line], list[str]], width: int) -> None:
        self._paint = paint
        self._width = width
        self._rows: dict[tuple[str, str, str, int], list[str]] = {}
        self._kept: dict[tuple[Piece, ...], list[str]] = {}  # lines that depend on the name column's width alone
        # Lines painted with placeholders where each connection's key or accept goes, by the shape they depend on:
        # (key length, accept length, verdict) for the walkthrough, (role, name, value length, name width) for rows.
        self._templates: dict[tuple[object, ...], list[str]] = {}

    def lines(self, request: HandshakeRequest | None, response: HandshakeResponse | None, *,
              explainer: Explainer | None = None, show_body: bool = True) -> list[str]:
        return _table(request, response, self._width, explainer, show_body, self._paint, self._kept_line,
                      self._header_rows, self._walkthrough)

    def _header_rows(self, role: str, headers: Iterable[tuple[str, str]], layout: _Layout) -> list[str]:
        rows = self._rows
        name_width = layout.name_width  # with the width, fixed for the run, it makes the layout
        lines: list[str] = []
        for name, value in headers:
            painted = rows.get((role, name, value, name_width))  # most headers: seen before, kept
            lines += painted if painted is not None else self._header_row(role, name, value, layout)
        return lines

    def _header_row(self, role: str, name: str, value: str, layout: _Layout) -> list[str]:
        """A header's rows not kept yet: painted, and kept if short (the key's and the accept's by their layout)."""
        if name.lower() in _UNIQUE_PER_CONNECTION:
            return self._unique_row(role, name, value, layout)
        painted = self._painted_row(role, name, value, layout)
        if len(name) + len(value) <= _ROW_KEPT_CHARS:
            if len(self._rows) >= _ROWS_KEPT:
                self._rows.clear()
            self._rows[role, name, value, layout.name_width] = painted
        return painted

    def _painted_row(self, role: str, name: str, value: str, layout: _Layout) -> list[str]:
        return [text for line in _header_row_lines(role, name, value, layout) for text in self._paint(line)]

    def _unique_row(self, role: str, name: str, value: str, layout: _Layout) -> list[str]:
        """The key's or the accept's row: a base64 value (as it should be) folds as any other of its length (it
        has no space, separator, escape or wide character), so the row is painted once per length with
        placeholders, and each connection's value put in their place."""
        if not _is_base64(value):
            return self._painted_row(role, name, value, layout)
        shape = (role, name, len(value), layout.name_width)
        template = self._templates.get(shape)
        if template is None:
            template = self._painted_row(role, name, _KEY_MARK * len(value), layout)
            if "".join(template).count(_KEY_MARK) != len(value):  # a mark in the name or the palette's codes
                return self._painted_row(role, name, value, layout)
            self._keep_template(shape, template)
        return _filled(template, _KEY_MARK, value)

    def _kept_line(self, line: Line) -> list[str]:
        key = tuple(line)
        painted = self._kept.get(key)
        if painted is None:
            painted = self._kept[key] = self._paint(line)
        return painted

    def _walkthrough(self, request: HandshakeRequest, response: HandshakeResponse | None) -> list[str]:
        """The walkthrough painted. Every connection has its own key and accept, but where both are base64 (as
        they should be) the line folds the same way for every key of the same length: folding reads a text's
        length and where its spaces, separators, escapes and wide characters are, and base64 has none of them.
        So the line is painted once per length, with placeholders outside base64 where the key and the accept go,
        and each connection's are put in their place (in order: a placeholder run cut by the fold continues on the
        next line)."""
        parts = _walkthrough_parts(request, response)
        if parts is None:
            return []
        key, expected, verdict = parts
        if (verdict is not None and verdict is not _ACCEPT_MATCHES) or not _is_base64(key) or not _is_base64(expected):
            return self._painted_walkthrough(f'"{key}"', expected, verdict)
        shape = (len(key), len(expected), verdict)
        template = self._templates.get(shape)
        if template is None:
            template = self._painted_walkthrough(f'"{_KEY_MARK * len(key)}"', _ACCEPT_MARK * len(expected), verdict)
            placed = "".join(template)
            if placed.count(_KEY_MARK) != len(key) or placed.count(_ACCEPT_MARK) != len(expected):
                return self._painted_walkthrough(f'"{key}"', expected, verdict)  # a palette that used a mark
            self._keep_template(shape, template)
        # The key is base64: no accept mark comes in with it.
        return _filled(_filled(template, _KEY_MARK, key), _ACCEPT_MARK, expected)

    def _painted_walkthrough(self, quoted_key: str, expected: str, verdict: Piece | None) -> list[str]:
        return [text for line in _walkthrough_lines(quoted_key, expected, verdict, self._width)
                for text in self._paint(line)]

    def _keep_template(self, shape: tuple[object, ...], template: list[str]) -> None:
        if len(self._templates) >= _TEMPLATES_KEPT:
            self._templates.clear()
        self._templates[shape] = template


def _filled(template: list[str], mark: str, text: str) -> list[str]:
    """Painted lines with each run of ``mark`` replaced by the next characters of ``text``, in order: a text cut by
    the fold goes on on the next line. (Within a line, a text's marks are one run.)"""
    lines = []
    used = 0
    for line in template:
        count = line.count(mark)
        if count:
            line = line.replace(mark * count, text[used : used + count])
            used += count
        lines.append(line)
    return lines


_ROWS_KEPT = 1024
_ROW_KEPT_CHARS = 256
_UNIQUE_PER_CONNECTION = {"sec-websocket-key", "sec-websocket-accept"}  # not kept: they would only crowd the rest out
_TEMPLATES_KEPT = 64
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_KEY_MARK, _ACCEPT_MARK = "~", "|"  # printable ASCII without spaces, as base64 is, but not in it


def _is_base64(text: str) -> bool:
    return not text.strip(_BASE64)


def _table(request: HandshakeRequest | None, response: HandshakeResponse | None, width: int,
           explainer: Explainer | None, show_body: bool, line: Callable[[Line], list[T]],
           kept_line: Callable[[Line], list[T]], header_rows: HeaderRows[T],
           walkthrough: Callable[[HandshakeRequest, HandshakeResponse | None], list[T]]) -> list[T]:
    """``handshake_lines``' layout, each line made by ``line`` (``kept_line`` for the few that depend on the name
    column's width alone), the headers' by ``header_rows`` and the accept key's walkthrough by ``walkthrough``: as
    pieces, or painted."""
    names = [name for message in (request.request if request else None, response.response if response else None)
             if message is not None for name, _ in message.headers.items]
    joined = "".join(names)
    if joined.isascii() and joined.isprintable() and "\\" not in joined:  # names as they should be: shown as sent
        widest = max(map(len, names), default=0)
    else:
        widest = max(map(width_of, map(visible, names)), default=0)
    name_width = min(max(len("response"), widest), _NAME_COLUMN_MAX)
    layout = _layout(name_width, width)
    lines: list[T] = []
    if layout.side_by_side:
        lines += kept_line([("strong", f" {'Header':<{name_width}} Value")])
    else:
        lines += kept_line([("strong", " Header")]) + kept_line([("strong", _NARROW_INDENT + "Value")])
    lines += kept_line([("muted", " " + "─" * min(width - 2, name_width + 40))])
    if request is not None:
        lines += _message_lines("request", request.request, "c2s", layout, explainer, None, line, header_rows)
    if response is not None:
        lines += _message_lines("response", response.response, "s2c", layout, explainer, response.upgraded, line,
                                header_rows)
        if response.response.body and show_body:
            body = response.response.body[: _BODY_SHOWN * 4].decode("utf-8", "surrogateescape")[:_BODY_SHOWN]
            for body_line in _row_lines("muted", "muted", "body", visible(body), layout):
                lines += line(body_line)
    if request is not None and (response is None or response.response.status == 101):
        lines += walkthrough(request, response)  # only where an accept key was due
    findings = [*(request.findings if request else ()), *(response.findings if response else ())]
    if findings:
        for finding_line in findings_lines(findings, explainer):
            lines += line(finding_line)
    elif request is not None and response is not None and response.upgraded:
        # An extended CONNECT over HTTP/2 follows RFC 8441's rules instead (no key, no accept, :status 200).
        rules = "RFC 8441 section 4" if request.request.method == "CONNECT" else "RFC 6455 section 4"
        lines += kept_line([("ok", f"  ✓ handshake follows {rules}")])
    return lines
