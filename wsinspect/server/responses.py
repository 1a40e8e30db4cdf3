"""HTTP answers the server sends: 101, the refusals that explain themselves, the demo page."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from wsinspect import __version__
from wsinspect.core.checks import CHECKS, Severity
from wsinspect.core.handshake import SUPPORTED_VERSION, Finding, accept_key
from wsinspect.views.safe import visible

SERVER_NAME = f"wsinspect/{__version__}"


def _response(status: int, headers: Iterable[tuple[str, str]], body: bytes = b"", *, head_only: bool = False
              ) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", f"Server: {SERVER_NAME}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if status != 101:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body  # HEAD: the same headers, no body (RFC 9110 9.3.2)


def switching_protocols(key: str, *, subprotocol: str | None, extensions: str | None) -> bytes:
    """The server's opening handshake (RFC 6455 4.2.2 item 5)."""
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return _response(101, headers)


def refusal_status(findings: Iterable[Finding]) -> int:
    """The HTTP status a conforming server answers these findings with; the most specific one wins."""
    statuses = {f.check.http_status for f in findings if f.severity is Severity.ERROR and f.check.http_status}
    # A malformed request is a 400 whatever else is wrong; 426 only tells a well-formed client to switch versions.
    for status in (431, 400, 426, 403):
        if status in statuses:
            return status
    return 400


def refusal(findings: list[Finding]) -> bytes:
    """A refusal whose body says, in plain words, which rule the request broke (RFC 6455 4.2.1, 4.4)."""
    status = refusal_status(findings)
    lines = [f"{status} {HTTPStatus(status).phrase}: this is not a valid WebSocket opening handshake.", ""]
    # Findings quote the request (header values, the target): escaped like wire data everywhere, so a client that
    # prints this body (curl in a terminal) shows escapes instead of obeying them.
    for finding in findings:
        if finding.severity is not Severity.ERROR:
            continue
        lines.append(f"- {visible(finding.message)}")
        lines.append(f"  Rule ({finding.check.rfc}): {finding.check.rule}")
        if finding.expected is not None:
            lines.append(f"  Expected: {visible(finding.expected)}")
        if finding.got is not None:
            lines.append(f"  Got: {visible(finding.got)}")
    lines += ["", f"({SERVER_NAME}, a WebSocket protocol inspector)", ""]
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if status == 426:
        headers.append(("Sec-WebSocket-Version", SUPPORTED_VERSION))  # RFC 6455 4.4
    return _response(status, headers, "\n".join(lines).encode("utf-8", "replace"))


def too_many_connections(limit: int) -> bytes:
    body = f"503 Service Unavailable: this server holds at most {limit} connections (--max-connections).\n"
    return _response(503, [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")], body.encode())


def bad_gateway(upstream: str, reason: str) -> bytes:
    """The proxy's answer when it cannot reach its upstream (RFC 9110 15.6.3); ``reason`` must already be escaped."""
    body = f"502 Bad Gateway: wsinspect proxy could not reach {visible(upstream)}: {reason}\n"
    return _response(502, [("Content-Type", "text/plain; charset=utf-8")], body.encode("utf-8", "replace"))


def header_too_large(limit: int) -> bytes:
    finding = Finding(CHECKS["http.header-too-large"], f"The request's header block exceeds {limit} bytes "
                      "(--max-header).")
    return refusal([finding])


def not_http(why: str) -> bytes:
    """The answer to bytes that cannot be an HTTP request; ``why`` quotes them, so it is escaped here."""
    body = (f"400 Bad Request: {visible(why)}.\n\n"
            "  Rule (RFC 9112 3): an HTTP request starts with a request line, METHOD target HTTP/x.y.\n"
            "  Rule (RFC 6455 4.2.1): a WebSocket opening handshake is an HTTP/1.1 GET request.\n"
            f"\n({SERVER_NAME}, a WebSocket protocol inspector)\n")
    return _response(400, [("Content-Type", "text/plain; charset=utf-8")], body.encode("utf-8", "replace"))


def plain_http_to_https() -> bytes:
    """A plain request on a TLS port: nginx's answer (its status 497, sent as 400)."""
    body = ("400 Bad Request: The plain HTTP request was sent to HTTPS port. This server speaks TLS (started with "
            f"--certfile): use https:// or wss://.\n\n({SERVER_NAME}, a WebSocket protocol inspector)\n")
    return _response(400, [("Content-Type", "text/plain; charset=utf-8")], body.encode())


def page(html: bytes, *, head_only: bool = False) -> bytes:
    return _response(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], html,
                     head_only=head_only)


def not_found(path: str) -> bytes:
    body = f"404 Not Found: {visible(path)}\nThis server has the demo page at / and WebSocket on any path.\n"
    return _response(404, [("Content-Type", "text/plain; charset=utf-8")], body.encode("utf-8", "replace"))
