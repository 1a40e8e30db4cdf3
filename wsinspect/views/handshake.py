"""The opening handshake as a two-column table, the accept-key computation spelled out, and findings in plain
words. Each function returns lines of styled pieces (see ``palette``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
# (role, headers, name width, value width) -> the headers' rows, in order
HeaderRows = Callable[[str, Iterable[tuple[str, str]], int, int], list[T]]

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
    """A long header value (cookies, long offers) folded onto continuation lines rather than cut."""
    if width <= 0 or width_of(value) <= width:
        return [value]
    return [value[i : i + width] for i in range(0, len(value), width)]


def header_row_lines(role: str, name: str, value: str, name_width: int, value_width: int) -> list[Line]:
    """One header of the table: its name and value, the value folded if it is long. Depends on its arguments alone
    (``PaintedHandshakes`` keeps each one's paint)."""
    first, *rest = _folded(visible(value), value_width)
    pad = " " * (name_width + 2)
    return [[(role, f" {visible(name):<{name_width}} "), ("plain", first)], *[[("plain", pad + part)] for part in rest]]


def _message_lines(title: str, message: HttpMessage, role: str, name_width: int, value_width: int,
                   explainer: Explainer | None, upgraded: bool | None,
                   line: Callable[[Line], list[T]], header_rows: HeaderRows[T]) -> list[T]:
    pad = " " * (name_width + 2)
    lines: list[T] = []
    lines += line([(role + ".strong", f" {title:<{name_width}} "), ("strong", visible(message.start_line))])
    if explainer is None:  # the usual table: one row per header, nothing between them
        return lines + header_rows(role, message.headers.items, name_width, value_width)
    if upgraded is not None:
        note = explainer.status(upgraded, pad)
        if note:
            lines += line(note)
    for name, value in message.headers.items:
        lines += header_rows(role, ((name, value),), name_width, value_width)
        note = explainer.header(name, pad)
        if note:
            lines += line(note)
    return lines


_ACCEPT_LEAD: Line = [("muted", "Sec-WebSocket-Accept = base64(SHA-1(")]
_ACCEPT_MIDDLE: Line = [("muted", " + "), ("accent", f'"{WEBSOCKET_GUID}"'), ("muted", ")) = ")]
_ACCEPT_MATCHES: Piece = ("ok", "  ✓ the server's answer matches")


def accept_walkthrough(request: HandshakeRequest, response: HandshakeResponse | None) -> Line:
    """How Sec-WebSocket-Accept is computed from Sec-WebSocket-Key (RFC 6455 4.2.2), and whether it matched."""
    parts = _walkthrough_parts(request, response)
    if parts is None:
        return []
    key, expected, verdict = parts
    return _walkthrough_line(f'"{key}"', expected, verdict)


def _walkthrough_parts(request: HandshakeRequest,
                       response: HandshakeResponse | None) -> tuple[str, str, Piece | None] | None:
    """What ``accept_walkthrough`` says: the key (made visible), the accept it calls for, and the verdict on the
    server's answer (none where there was no 101 to judge); None where the request has no key."""
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


def handshake_lines(request: HandshakeRequest | None, response: HandshakeResponse | None, *,
                    width: int = 120, explainer: Explainer | None = None, show_body: bool = True) -> list[Line]:
    """The request and the response header by header (wire order, duplicates kept), then the accept key
    computation where one was due, then the findings (or a tick when there are none)."""
    return _table(request, response, width, explainer, show_body, _as_is, _as_is, _header_rows_as_pieces,
                  _walkthrough_as_is)


def _as_is(line: Line) -> list[Line]:
    return [line]


def _header_rows_as_pieces(role: str, headers: Iterable[tuple[str, str]], name_width: int,
                           value_width: int) -> list[Line]:
    return [line for name, value in headers for line in header_row_lines(role, name, value, name_width, value_width)]


def _walkthrough_as_is(request: HandshakeRequest, response: HandshakeResponse | None) -> list[Line]:
    walkthrough = accept_walkthrough(request, response)
    return [walkthrough] if walkthrough else []


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

    def _header_rows(self, role: str, headers: Iterable[tuple[str, str]], name_width: int,
                     value_width: int) -> list[str]:
        rows = self._rows
        lines: list[str] = []
        for name, value in headers:
            painted = rows.get((role, name, value, name_width))  # most headers: seen before, kept
            lines += painted if painted is not None else self._header_row(role, name, value, name_width, value_width)
        return lines

    def _header_row(self, role: str, name: str, value: str, name_width: int, value_width: int) -> list[str]:
        """A header's rows not kept yet: painted, and kept if short (the key's and the accept's by their layout)."""
        if name.lower() in _UNIQUE_PER_CONNECTION:
            return self._unique_row(role, name, value, name_width, value_width)
        painted = self._painted_row(role, name, value, name_width, value_width)
        if len(name) + len(value) <= _ROW_KEPT_CHARS:
            if len(self._rows) >= _ROWS_KEPT:
                self._rows.clear()
            self._rows[role, name, value, name_width] = painted
        return painted

    def _painted_row(self, role: str, name: str, value: str, name_width: int, value_width: int) -> list[str]:
        return [text for line in header_row_lines(role, name, value, name_width, value_width)
                for text in self._paint(line)]

    def _unique_row(self, role: str, name: str, value: str, name_width: int, value_width: int) -> list[str]:
        """The key's or the accept's row: a base64 value (as it should be) folds as any other of its length, so the
        row is painted once per length with placeholders, and each connection's value put in their place."""
        if not _is_base64(value):
            return self._painted_row(role, name, value, name_width, value_width)
        shape = (role, name, len(value), name_width)
        template = self._templates.get(shape)
        if template is None:
            template = self._painted_row(role, name, _KEY_MARK * len(value), name_width, value_width)
            if "".join(template).count(_KEY_MARK) != len(value):  # a mark in the name or the palette's codes
                return self._painted_row(role, name, value, name_width, value_width)
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
        length and where its spaces are, and base64 has none. So the line is painted once per length, with
        placeholders outside base64 where the key and the accept go, and each connection's are put in their place
        (in order: a placeholder run cut by the fold continues on the next line)."""
        parts = _walkthrough_parts(request, response)
        if parts is None:
            return []
        key, expected, verdict = parts
        if (verdict is not None and verdict is not _ACCEPT_MATCHES) or not _is_base64(key) or not _is_base64(expected):
            return self._paint(_walkthrough_line(f'"{key}"', expected, verdict))
        shape = (len(key), len(expected), verdict)
        template = self._templates.get(shape)
        if template is None:
            template = self._paint(_walkthrough_line(f'"{_KEY_MARK * len(key)}"', _ACCEPT_MARK * len(expected),
                                                     verdict))
            placed = "".join(template)
            if placed.count(_KEY_MARK) != len(key) or placed.count(_ACCEPT_MARK) != len(expected):
                return self._paint(_walkthrough_line(f'"{key}"', expected, verdict))  # a palette that used a mark
            self._keep_template(shape, template)
        # The key is base64: no accept mark comes in with it.
        return _filled(_filled(template, _KEY_MARK, key), _ACCEPT_MARK, expected)

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
    value_width = max(width - name_width - 3, 20)
    lines: list[T] = []
    lines += kept_line([("strong", f" {'Header':<{name_width}} Value")])
    lines += kept_line([("muted", " " + "─" * min(width - 2, name_width + 40))])
    if request is not None:
        lines += _message_lines("request", request.request, "c2s", name_width, value_width, explainer, None,
                                line, header_rows)
    if response is not None:
        lines += _message_lines("response", response.response, "s2c", name_width, value_width, explainer,
                                response.upgraded, line, header_rows)
        if response.response.body and show_body:
            body = response.response.body[: _BODY_SHOWN * 4].decode("utf-8", "surrogateescape")[:_BODY_SHOWN]
            lines += line([("muted", f" {'body':<{name_width}} "), ("muted", visible(body))])
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
