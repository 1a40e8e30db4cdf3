"""The opening handshake as a table, the accept-key computation spelled out, and findings in plain words."""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from wsinspect.core.checks import Severity
from wsinspect.core.events import HandshakeRequest, HandshakeResponse
from wsinspect.core.handshake import WEBSOCKET_GUID, Finding, HttpMessage, accept_key
from wsinspect.views.describe import SEVERITY_STYLE, quoted
from wsinspect.views.safe import visible

_MARK = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "i"}


def finding_line(finding: Finding, *, indent: str = "  ") -> Text:
    style = SEVERITY_STYLE[finding.severity.value]
    line = Text(f"{indent}{_MARK[finding.severity]} ", style=style)
    line.append(f"{finding.check.rfc}: ", style="bold " + style)
    line.append(visible(finding.message))
    if finding.expected is not None or finding.got is not None:
        line.append("\n" + indent + "    expected: ", style="dim")
        line.append(visible(finding.expected) if finding.expected is not None else "-", style="green")
        line.append("   got: ", style="dim")
        line.append(quoted(finding.got), style="red")
    return line


def findings_block(findings: Iterable[Finding]) -> Text:
    out = Text()
    for finding in findings:
        if out:
            out.append("\n")
        out.append_text(finding_line(finding))
    return out


def _message_rows(table: Table, title: str, message: HttpMessage, style: str) -> None:
    table.add_row(Text(title, style="bold " + style), Text(visible(message.start_line), style="bold"))
    for name, value in message.headers:
        table.add_row(Text(visible(name), style=style), Text(visible(value)))


def accept_walkthrough(request: HandshakeRequest, response: HandshakeResponse | None) -> Text:
    """How Sec-WebSocket-Accept is computed from Sec-WebSocket-Key (RFC 6455 4.2.2), and whether it matched."""
    key = request.request.headers.get("Sec-WebSocket-Key")
    out = Text()
    if key is None:
        return out
    expected = accept_key(key)
    out.append("Sec-WebSocket-Accept = base64(SHA-1(", style="dim")
    out.append(f'"{visible(key.strip())}"', style="cyan")
    out.append(" + ", style="dim")
    out.append(f'"{WEBSOCKET_GUID}"', style="dim cyan")
    out.append(")) = ", style="dim")
    out.append(expected, style="bold")
    if response is None or response.response.status != 101:
        return out
    got = response.response.headers.get("Sec-WebSocket-Accept")
    if got is not None and got.strip() == expected:
        out.append("  ✓ the server's answer matches", style="green")
    else:
        out.append(f"  ✗ the server sent {quoted(got)}", style="bold red")
    return out


def handshake_view(request: HandshakeRequest | None, response: HandshakeResponse | None) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_header=True, header_style="bold", pad_edge=False, expand=False)
    table.add_column("Header", no_wrap=True)
    table.add_column("Value", overflow="fold")
    if request is not None:
        _message_rows(table, "request", request.request, "bright_cyan")
    if response is not None:
        if request is not None:
            table.add_section()
        _message_rows(table, "response", response.response, "bright_yellow")
        if response.response.body:
            body = response.response.body.decode("utf-8", "surrogateescape")
            table.add_row(Text("body", style="dim"), Text(visible(body[:400]), style="dim"))
    parts: list[RenderableType] = [table]
    if request is not None and (response is None or response.response.status == 101):
        walkthrough = accept_walkthrough(request, response)  # only where an accept key was due
        if walkthrough:
            parts.append(walkthrough)
    findings = [*(request.findings if request else ()), *(response.findings if response else ())]
    if findings:
        parts.append(findings_block(findings))
    elif request is not None and response is not None and response.upgraded:
        parts.append(Text("  ✓ handshake follows RFC 6455 section 4", style="green"))
    return Group(*parts)
