"""The opening handshake as a two-column table, the accept-key computation spelled out, and findings in plain
words. Each function returns lines of styled pieces (see ``palette``)."""

from __future__ import annotations

from collections.abc import Iterable

from wsinspect.core.checks import Severity
from wsinspect.core.events import HandshakeRequest, HandshakeResponse
from wsinspect.core.handshake import WEBSOCKET_GUID, Finding, HttpMessage, accept_key
from wsinspect.views.describe import SEVERITY_ROLE, width_of
from wsinspect.views.explain import Explainer
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]

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


def _message_lines(title: str, message: HttpMessage, role: str, name_width: int, value_width: int,
                   explainer: Explainer | None, upgraded: bool | None = None) -> list[Line]:
    pad = " " * (name_width + 2)
    lines: list[Line] = [[(role + ".strong", f" {title:<{name_width}} "), ("strong", visible(message.start_line))]]
    if explainer is not None and upgraded is not None:
        note = explainer.status(upgraded, pad)
        if note:
            lines.append(note)
    for name, value in message.headers:
        shown_name = visible(name)
        first, *rest = _folded(visible(value), value_width)
        lines.append([(role, f" {shown_name:<{name_width}} "), ("plain", first)])
        lines += [[("plain", pad + part)] for part in rest]
        note = explainer.header(name, pad) if explainer is not None else None
        if note:
            lines.append(note)
    return lines


def accept_walkthrough(request: HandshakeRequest, response: HandshakeResponse | None) -> Line:
    """How Sec-WebSocket-Accept is computed from Sec-WebSocket-Key (RFC 6455 4.2.2), and whether it matched."""
    key = request.request.headers.get("Sec-WebSocket-Key")
    if key is None:
        return []
    expected = accept_key(key)
    line: Line = [("muted", "Sec-WebSocket-Accept = base64(SHA-1("), ("accent", f'"{visible(key.strip())}"'),
                  ("muted", " + "), ("accent", f'"{WEBSOCKET_GUID}"'), ("muted", ")) = "), ("strong", expected)]
    if response is None or response.response.status != 101:
        return line
    got = response.response.headers.get("Sec-WebSocket-Accept")
    if got is not None and got.strip() == expected:
        line.append(("ok", "  ✓ the server's answer matches"))
    else:
        line.append(("error", f"  ✗ the server sent {quoted(got)}"))
    return line


def handshake_lines(request: HandshakeRequest | None, response: HandshakeResponse | None, *,
                    width: int = 120, explainer: Explainer | None = None, show_body: bool = True) -> list[Line]:
    """The request and the response header by header (wire order, duplicates kept), then the accept key
    computation where one was due, then the findings (or a tick when there are none)."""
    names = [visible(name) for message in (request.request if request else None,
                                           response.response if response else None)
             if message is not None for name, _ in message.headers]
    name_width = min(max([len("response"), *(width_of(name) for name in names)]), _NAME_COLUMN_MAX)
    value_width = max(width - name_width - 3, 20)
    lines: list[Line] = [[("strong", f" {'Header':<{name_width}} Value")],
                         [("muted", " " + "─" * min(width - 2, name_width + 40))]]
    if request is not None:
        lines += _message_lines("request", request.request, "c2s", name_width, value_width, explainer)
    if response is not None:
        lines += _message_lines("response", response.response, "s2c", name_width, value_width, explainer,
                                response.upgraded)
        if response.response.body and show_body:
            body = response.response.body[: _BODY_SHOWN * 4].decode("utf-8", "surrogateescape")[:_BODY_SHOWN]
            lines.append([("muted", f" {'body':<{name_width}} "), ("muted", visible(body))])
    if request is not None and (response is None or response.response.status == 101):
        walkthrough = accept_walkthrough(request, response)  # only where an accept key was due
        if walkthrough:
            lines.append(walkthrough)
    findings = [*(request.findings if request else ()), *(response.findings if response else ())]
    if findings:
        lines += findings_lines(findings, explainer)
    elif request is not None and response is not None and response.upgraded:
        # An extended CONNECT over HTTP/2 follows RFC 8441's rules instead (no key, no accept, :status 200).
        rules = "RFC 8441 section 4" if request.request.method == "CONNECT" else "RFC 6455 section 4"
        lines.append([("ok", f"  ✓ handshake follows {rules}")])
    return lines
