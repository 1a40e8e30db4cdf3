"""``wsinspect handshake``: the Sec-WebSocket-Accept derivation step by step (``--key``), and ``handshake check``,
which lints an opening handshake pasted from browser dev tools, ``curl -v`` or a proxy log.

A paste is not a wire capture: line ends are whatever the clipboard made of them, dev tools leave out the request
line, ``curl -v`` prefixes every line with ``>`` or ``<``. ``split_paste`` undoes all that and says what it had to
assume; the verdict is then the core's own validator (``core.handshake``), each finding printed with its RFC section
and a fix.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from wsinspect.commands import (
    EXIT_FINDINGS,
    EXIT_OK,
    Line,
    add_output_options,
    command_parser,
    error,
    layout_width,
    present,
)
from wsinspect.core.checks import Severity
from wsinspect.core.events import HandshakeRequest, HandshakeResponse
from wsinspect.core.handshake import (
    Finding,
    Headers,
    HttpRequest,
    HttpResponse,
    ascii_number,
    display_text,
    parse_request,
    parse_response,
    validate_extended_connect,
    validate_extended_connect_response,
    validate_request,
    validate_response,
)
from wsinspect.views.diagram import RFC_EXAMPLE_KEY, accept_steps, wire_text
from wsinspect.views.handshake import finding_lines, handshake_lines
from wsinspect.views.safe import visible

HANDSHAKE_EXAMPLES = """\
examples:
  wsinspect handshake                              RFC 6455 1.3's key, step by step, to the RFC's answer
  wsinspect handshake --key x3JJHMbDL1EzLkh9GBhXDw== --export accept.html
  wsinspect handshake check request.txt            lint a request (and its response) pasted into a file
  pbpaste | wsinspect handshake check -            from the clipboard (macOS; xclip -o on Linux)
  curl -v --max-time 2 --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \\
       -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://127.0.0.1:8765/ 2>&1 | wsinspect handshake check -

check reads at most 1 MiB of its input and checks a header block up to 32 KiB (serve's --max-header); from stdin
it stops reading once a request and the whole header block of its response are in (curl keeps the WebSocket open).

exit status: 0 the handshake follows RFC 6455 section 4 (RFC 8441 for HTTP/2; with --key: the key is valid), 1 a
rule is broken (or the server did not switch protocols; with --key: the key is not base64 of 16 bytes), 2 the input
is not an HTTP request or response.
"""

_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+ HTTP/\d+(\.\d+)?$")
# A line that means to be a request line though it is not a well-formed one ("GET /a b HTTP/1.1", "GET / HTTP/1.1 x"):
# it starts a request block all the same, so the core's validator says what is wrong with it instead of it being
# skipped as text around the headers.
_REQUEST_LIKE = re.compile(r"^[A-Z]+ \S.* HTTP/")
_STATUS_LINE = re.compile(r"^HTTP/\d+(\.\d+)? \d{3}( .*)?$")
_HEADER_LINE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:")
# An HTTP/2 pseudo-header field as Chrome's dev tools show it (":method: CONNECT", ":protocol: websocket").
_PSEUDO_HEADER_LINE = re.compile(r"^:[a-z]+:")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NAME_THEN_VALUE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:( |\t|$)")
# curl's progress meter, which curl -v prints too when its output is redirected (as in `curl -v URL > out 2>&1`).
# Each update starts with a lone CR and ends without a newline, so on a slow transfer an update lands at the start
# of a verbose line ("\r  0  0 ... --:--:--     0< HTTP/1.1 400 Bad Request"): its 12 numeric columns are removed.
_SIZE = r"[\d.]+[kMGTP]?"
_CURL_PROGRESS = re.compile(rf"(?:^|\r)\s*\d+\s+{_SIZE}\s+\d+\s+{_SIZE}\s+\d+\s+{_SIZE}\s+{_SIZE}\s+{_SIZE}"
                            rf"(?:\s+[-\d:]+){{3}}\s+{_SIZE}")
# Section headings of Chrome's and Firefox's network panels, as they come along in a copy of the whole panel.
_SECTIONS = {"general": "general", "request headers": "request", "response headers": "response"}
_GENERAL_FIELDS = ("request url", "request method", "status code", "remote address", "referrer policy")

_PROXY_FIX = [
    "if the client sent them, a reverse proxy on the way dropped these hop-by-hop header fields (RFC 9110 7.6.1); "
    "it must forward them to the WebSocket backend:",
    "  nginx, in the location that proxies to the backend:",
    "      proxy_http_version 1.1;",
    "      proxy_set_header Upgrade $http_upgrade;",
    '      proxy_set_header Connection "upgrade";',
    "  Apache: mod_proxy_wstunnel (a2enmod proxy proxy_http proxy_wstunnel), then",
    "      ProxyPass /ws/ ws://backend:8080/ws/",
    "    or, from Apache 2.4.47 on, mod_proxy_http alone:",
    "      ProxyPass /ws/ http://backend:8080/ws/ upgrade=websocket",
]
FIXES: dict[str, list[str]] = {
    "http.malformed": ["every header line is 'Name: value'; the block starts with the request or status line and "
                       "ends with an empty line"],
    "request.method": ["open the WebSocket with GET (RFC 6455 4.1 item 1)"],
    "request.version": ["send HTTP/1.1; behind nginx, whose proxy speaks HTTP/1.0 to the backend unless told: "
                        "proxy_http_version 1.1;"],
    "request.host": ["send Host: the server's host and port, as in the ws:// URL"],
    "request.upgrade": ["the client must send 'Upgrade: websocket'", *_PROXY_FIX],
    "request.connection": ["the client must send 'Connection: Upgrade'", *_PROXY_FIX],
    "request.upgrade-stripped": _PROXY_FIX,
    "request.key": ["send a fresh random nonce of 16 bytes, base64-encoded (24 characters ending in '=='), e.g. "
                    "base64(os.urandom(16)); a server must refuse any other value with 400 Bad Request"],
    "request.key-repeated": ["send Sec-WebSocket-Key once"],
    "request.websocket-version": ["send 'Sec-WebSocket-Version: 13'; a server that does not speak the version "
                                  "asked for answers 426 with the versions it does speak"],
    "request.protocol-syntax": ["list each subprotocol once, as tokens separated by commas: "
                                "Sec-WebSocket-Protocol: chat, superchat"],
    "request.origin": ["connect from an allowed page, or add this Origin to the server's list"],
    "response.status": ["the server did not switch protocols; its body usually says why: 400 points at the request's "
                        "findings, 426 at the version, 403 at the Origin, 200 or 404 at a proxy or route that never "
                        "passed the upgrade on (it must forward Upgrade and Connection)"],
    "response.upgrade": ["the server must answer 'Upgrade: websocket'", *_PROXY_FIX[1:]],
    "response.connection": ["the server must answer 'Connection: Upgrade'", *_PROXY_FIX[1:]],
    "response.accept": ["compute it from the key exactly as 'wsinspect handshake --key KEY' shows; a proxy must "
                        "not rewrite Sec-WebSocket-Key or Sec-WebSocket-Accept"],
    "response.extension-not-offered": ["only accept an extension the client listed in Sec-WebSocket-Extensions"],
    "response.protocol-not-offered": ["pick exactly one of the client's subprotocols, or send no "
                                      "Sec-WebSocket-Protocol at all"],
    "response.deflate-params": ["answer only with parameters RFC 7692 7.1 defines, each once, with valid values"],
    "response.version-list": ["add 'Sec-WebSocket-Version: 13' (every version the server speaks) to the refusal"],
}


# What check reads of its input at most: a handshake's header blocks are a few KB (a server refuses more than tens
# of KB: serve's --max-header is 32 KiB), and a paste many times that is a mistake that must not take minutes.
PASTE_LIMIT = 1024 * 1024
# What is checked of one header block at most: serve's --max-header default, read's too (core.connection.Limits).
# A server refuses a larger one (431), and a table of its lines would only bury the findings.
HEADER_BLOCK_LIMIT = 32 * 1024
# How many skipped lines the notes quote; beyond that they are counted.
_SKIPPED_QUOTED = 3
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class Paste:
    """An opening handshake as found in a paste: the header blocks (CRLF line ends) and what had to be assumed.

    ``http2``: the blocks are HTTP/2 header lists (pseudo-header fields, no start line), one 'name: value' a line.
    ``response_ended``: the response's header block was ended by its blank line (more input changes nothing)."""

    request: bytes | None = None
    response: bytes | None = None
    notes: list[str] = field(default_factory=list)
    http2: bool = False
    response_ended: bool = False


@dataclass
class _Block:
    start_line: str | None
    section: str  # "request", "response" or "" (unknown)
    lines: list[str] = field(default_factory=list)
    ended: bool = False  # a blank line came after it
    size: int = 0  # the bytes of its lines, line ends included
    lines_cut: int = 0  # lines past HEADER_BLOCK_LIMIT, left out


def _curl_lines(lines: list[str]) -> tuple[list[str], list[str]] | None:
    """``curl -v``'s ``> `` (sent) and ``< `` (received) lines, prefixes removed; None when they hold neither a
    request line nor a status line (not a curl transcript)."""
    sent = [line[2:] if line.startswith("> ") else "" for line in lines if line.startswith(">")]
    received = [line[2:] if line.startswith("< ") else "" for line in lines if line.startswith("<")]
    if not any(_REQUEST_LINE.match(line) for line in sent) and not any(_STATUS_LINE.match(line)
                                                                        for line in received):
        return None
    return sent, received


def _blocks(lines: list[str], general: dict[str, str], notes: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    current: _Block | None = None
    section = ""
    skipped: list[str] = []
    indented = 0
    for line in lines:
        stripped = line.strip()
        lowered = stripped.lower()
        heading = re.sub(r"\s+(view source|view parsed|raw)$", "", lowered)
        if heading in _SECTIONS:
            section = _SECTIONS[heading]
            current = None
            continue
        if section == "general" or (current is None and lowered.partition(":")[0] in _GENERAL_FIELDS):
            name, colon, value = stripped.partition(":")
            if colon:
                general[name.strip().lower()] = value.strip()
            continue
        if _REQUEST_LIKE.match(stripped) or _STATUS_LINE.match(stripped):
            current = _Block(stripped, "response" if _STATUS_LINE.match(stripped) else "request")
            blocks.append(current)
            continue
        if not stripped:
            if current is not None:
                current.ended = True
            current = None  # the blank line that ends a header block; a body may follow
            continue
        header = _HEADER_LINE.match(stripped) or _PSEUDO_HEADER_LINE.match(stripped)
        if current is None:
            if not header:
                skipped.append(stripped)  # text around the headers ("Provisional headers are shown", a body)
                continue
            current = _Block(None, section)
            blocks.append(current)
        if header and line != stripped:
            # Dev tools and copies from a web page indent header lines; an obs-fold continuation (which the core
            # judges) is a line that starts with white space and is not 'Name: value' itself.
            indented += 1
            line = stripped
        current.size += len(line) + 2
        if current.size > HEADER_BLOCK_LIMIT:
            current.lines_cut += 1
            continue
        current.lines.append(line)
    if indented:
        notes.append(f"{indented} header line{'s' if indented != 1 else ''} started with spaces or a tab (as copied "
                     "from a web page): read without them")
    for block in blocks:
        if block.lines_cut:
            notes.append(f"a header block is over {HEADER_BLOCK_LIMIT // 1024} KiB (a server refuses it: 431, and "
                         f"serve's --max-header is {HEADER_BLOCK_LIMIT // 1024} KiB): its last {block.lines_cut:,} "
                         "lines are not checked")
    if skipped and blocks:
        quoted = ", ".join(repr_line(line) for line in skipped[:_SKIPPED_QUOTED])
        more = f" and {len(skipped) - _SKIPPED_QUOTED} more" if len(skipped) > _SKIPPED_QUOTED else ""
        notes.append(f"{len(skipped)} line{'s' if len(skipped) != 1 else ''} outside any header block skipped: "
                     f"{quoted}{more}")
    return blocks


def repr_line(line: str) -> str:
    """A skipped line, quoted and cut short, its bytes shown as UTF-8 where they are (escaped later, by the view)."""
    shown = display_text(line)
    return f"'{shown[:60]}…'" if len(shown) > 60 else f"'{shown}'"


def _join_split_values(lines: list[str]) -> list[str]:
    """Dev tools panels copied as text can put a header's value on the line after its name ("Status Code:" then
    "101 Switching Protocols"): join them. A name with an empty value followed by another header stays as it is
    (a header line has a space or nothing after its colon; "127.0.0.1:8765" or "ws://host/" are values)."""
    joined: list[str] = []
    for line in lines:
        previous = joined[-1].strip() if joined else ""
        name = previous[:-1]
        name_only = previous.endswith(":") and (_TOKEN.match(name) is not None or name.lower() in _GENERAL_FIELDS)
        value = line.strip()
        if name_only and value and not _NAME_THEN_VALUE.match(value) and value.lower() not in _SECTIONS:
            joined[-1] = f"{previous} {value}"
        else:
            joined.append(line)
    return joined


def _block_bytes(start_line: str, lines: list[str]) -> bytes:
    return ("\r\n".join([start_line, *lines]) + "\r\n\r\n").encode("latin-1")


def _utf16(data: bytes) -> str | None:
    """The codec of a UTF-16 paste (PowerShell's '>' writes UTF-16LE with a byte order mark), or None."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    # Without a mark: ASCII text in UTF-16 has a zero byte beside each character.
    head = data[:64]
    if len(head) >= 4 and head.count(0) * 2 >= len(head) - 1:
        return "utf-16-le" if head[1] == 0 else "utf-16-be"
    return None


def _paste_bytes(data: bytes, notes: list[str]) -> bytes:
    """The paste as the bytes a wire would have carried: a UTF-16 paste re-encoded as UTF-8, a byte order mark
    removed."""
    codec = _utf16(data)
    if codec is not None:
        # (an odd last byte, as a read cut at its limit leaves, is replaced rather than refused)
        data = data.decode(codec, "replace").encode("utf-8")
        notes.append("the paste is UTF-16 text (as PowerShell's '>' writes it): read as UTF-16")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
        if codec is None:
            notes.append("the paste starts with a UTF-8 byte order mark (as Notepad writes it): removed")
    return data


def split_paste(data: bytes) -> Paste | None:
    """The request and response in a paste, or None when nothing in it is HTTP."""
    paste = Paste()
    # Latin-1 keeps every byte as one character, as the core reads header bytes off the wire.
    text = _paste_bytes(data, paste.notes).decode("latin-1")
    lines = [_CURL_PROGRESS.sub("", line.rstrip("\r")) for line in text.replace("\r\n", "\n").split("\n")]
    if lines[-1] == "":
        lines.pop()  # (what follows the last line end: a blank line is one that ends with a line end)
    curl = _curl_lines(lines)
    if curl is not None:
        paste.notes.append("a curl -v transcript: the '>' lines are the request, the '<' lines the response")
        lines = [*curl[0], "", *curl[1]]
    else:
        lines = _join_split_values(lines)
    general: dict[str, str] = {}
    blocks = _blocks(lines, general, paste.notes)
    if not blocks:
        return None
    if any(line.startswith(":") for block in blocks if block.start_line is None for line in block.lines):
        return _http2_paste(blocks, paste)
    for block in blocks:
        names = {line.partition(":")[0].strip().lower() for line in block.lines}
        if block.start_line is not None:
            kind = "response" if _STATUS_LINE.match(block.start_line) else "request"
        elif block.section in ("request", "response"):
            kind = block.section
        else:
            kind = "response" if "sec-websocket-accept" in names and "sec-websocket-key" not in names else "request"
        if (paste.request if kind == "request" else paste.response) is not None:
            paste.notes.append(f"more than one {kind} in the paste: the first is checked")
            continue
        start_line = block.start_line or _assumed_start_line(kind, general, paste.notes)
        if kind == "request":
            paste.request = _block_bytes(start_line, block.lines)
        else:
            paste.response = _block_bytes(start_line, block.lines)
            paste.response_ended = block.ended
    return paste


def _http2_paste(blocks: list[_Block], paste: Paste) -> Paste:
    """A paste of HTTP/2 header lists (Chrome shows an HTTP/2 WebSocket's request as ':method: CONNECT',
    ':protocol: websocket', ...): each block as its 'name: value' lines, judged by RFC 8441's rules."""
    paste.http2 = True
    paste.notes.append("HTTP/2 pseudo-header fields (:method, :protocol...): checked as an RFC 8441 extended "
                       "CONNECT, the WebSocket over HTTP/2, not as an HTTP/1.1 Upgrade")
    for block in blocks:
        if block.start_line is not None:
            paste.notes.append("an HTTP/1.1 start line among HTTP/2 header lists skipped: "
                               f"{repr_line(block.start_line)}")
            continue
        kind = "response" if any(line.lower().startswith(":status:") for line in block.lines) else "request"
        if (paste.request if kind == "request" else paste.response) is not None:
            paste.notes.append(f"more than one {kind} in the paste: the first is checked")
            continue
        raw = ("\r\n".join(block.lines) + "\r\n\r\n").encode("latin-1")
        if kind == "request":
            paste.request = raw
        else:
            paste.response, paste.response_ended = raw, block.ended
    return paste


def _http2_headers(raw: bytes) -> Headers:
    """The fields of an HTTP/2 header list pasted as 'name: value' lines (a pseudo-header's name keeps its colon)."""
    fields: list[tuple[str, str]] = []
    for line in raw.decode("latin-1").split("\r\n"):
        if not line:
            continue
        colon = line.find(":", 1)
        name, value = (line, "") if colon < 0 else (line[:colon], line[colon + 1:])
        fields.append((name.strip().lower(), value.strip(" \t")))
    return Headers(tuple(fields))


def _http2_messages(paste: Paste) -> tuple[HttpRequest | None, HttpResponse | None]:
    """The pasted HTTP/2 request and response as the core's messages, built as ``read`` builds them (core.http2)."""
    request = response = None
    if paste.request is not None:
        headers = _http2_headers(paste.request)
        path, protocol = headers.get(":path") or "", headers.get(":protocol")
        method = headers.get(":method") or ""
        start_line = f"{method} {path} HTTP/2" + (f" (:protocol {protocol})" if protocol is not None else "")
        request = HttpRequest(raw=paste.request, start_line=start_line, headers=headers, method=method, target=path,
                              version="HTTP/2")
    if paste.response is not None:
        headers = _http2_headers(paste.response)
        status_text = (headers.get(":status") or "").strip()
        response = HttpResponse(raw=paste.response, start_line=f"HTTP/2 {status_text}", headers=headers,
                                version="HTTP/2", status=ascii_number(status_text, 3) or 0, reason="")
    return request, response


def _assumed_start_line(kind: str, general: dict[str, str], notes: list[str]) -> str:
    """Dev tools show the headers without the request or status line; rebuild it from their "General" section if
    it was pasted too, else assume the usual one and say that it was not checked."""
    if kind == "request":
        method = general.get("request method", "")
        url = general.get("request url", "")
        target = re.sub(r"^[a-z]+://[^/]*", "", url) or "/"
        if method:
            notes.append(f"no request line in the paste: rebuilt from 'Request Method' and 'Request URL' as "
                         f"{method} {target} HTTP/1.1")
            return f"{method} {target} HTTP/1.1"
        notes.append("no request line in the paste (dev tools leave it out): assumed GET / HTTP/1.1, so the method "
                     "and HTTP version are not checked")
        return "GET / HTTP/1.1"
    status = general.get("status code", "")
    if status:
        notes.append(f"no status line in the paste: rebuilt from 'Status Code' as HTTP/1.1 {status}")
        return f"HTTP/1.1 {status}"
    notes.append("no status line in the paste: assumed HTTP/1.1 101 Switching Protocols")
    return "HTTP/1.1 101 Switching Protocols"


def fix_lines(finding: Finding, shown: set[str]) -> list[Line]:
    """What to change, under a finding; the lines an earlier finding's fix already showed are not repeated."""
    fix = FIXES.get(finding.check.id, [])
    fresh = [line for line in fix if line not in shown]
    shown.update(fix)
    if not fix:
        return []
    if not fresh:
        return [[("muted", "      fix: as above")]]
    first, *rest = fresh
    lines: list[Line] = [[("accent", "      fix: "), ("plain", first)], *[[("plain", "           " + line)]
                                                                          for line in rest]]
    if len(fresh) < len(fix):
        lines.append([("muted", "           (and the proxy configuration above)")])
    return lines


def check_lines(paste: Paste, *, width: int = 100) -> tuple[list[Line], list[Finding], bool]:
    """The report for a paste, its findings, and whether the server switched protocols (True when the paste holds
    no response: nothing says it did not)."""
    request: HttpRequest | None
    response: HttpResponse | None
    if paste.http2:
        request, response = _http2_messages(paste)
        request_findings = validate_extended_connect(request) if request is not None else []
        response_findings = validate_extended_connect_response(response, request) if response is not None else []
    else:
        request = parse_request(paste.request) if paste.request is not None else None
        response = parse_response(paste.response) if paste.response is not None else None
        request_findings = validate_request(request) if request is not None else []
        response_findings = validate_response(response, request) if response is not None else []
    rules = "RFC 8441: WebSocket over HTTP/2" if paste.http2 else "RFC 6455 section 4"
    lines: list[Line] = [[("heading", f"Opening handshake check ({rules})")]]
    lines += [[("muted", f"  · {visible(note)}")] for note in paste.notes]
    if response is not None and request is None:
        lines.append([("muted", "  · only a response: paste the request too to check Sec-WebSocket-Accept "
                                "against its key")])
    lines.append([])
    # The table and the accept-key line from the shared view; findings follow below, each with its fix.
    request_event = HandshakeRequest(stream=0, direction="c2s", time=0.0, request=request, findings=()) \
        if request is not None else None
    response_event = HandshakeResponse(stream=0, direction="s2c", time=0.0, response=response, findings=(),
                                       upgraded=False) if response is not None else None
    lines += handshake_lines(request_event, response_event, width=width)
    shown: set[str] = set()
    for title, findings in (("the request", request_findings), ("the response", response_findings)):
        if not findings:
            continue
        lines.append([])
        lines.append([("strong", f"Findings on {title}")])
        for finding in findings:
            lines += finding_lines(finding)
            status = finding.check.http_status
            if title == "the request" and finding.severity is Severity.ERROR and status:
                lines.append([("muted", f"      a server refuses it: {status}")])
            lines += fix_lines(finding, shown)
    findings = request_findings + response_findings
    upgraded = response is None or (200 <= response.status < 300 if paste.http2 else response.status == 101)
    wrong = [f for f in findings if f.severity in (Severity.ERROR, Severity.WARNING)]
    lines.append([])
    if wrong:
        errors = sum(f.severity is Severity.ERROR for f in wrong)
        lines.append([("error", f"✗ {errors} rule{'s' if errors != 1 else ''} broken"),
                      ("muted", f", {len(wrong) - errors} warning{'s' if len(wrong) - errors != 1 else ''}")])
    else:
        what = " and ".join(name for name, message in (("request", request), ("response", response)) if message)
        lines.append([("ok", "✓ "), ("plain", f"the {what} follow{'s' if ' and ' not in what else ''} "
                                              f"{rules.replace(':', ' (') + ')' if paste.http2 else rules}")])
    return lines, findings, upgraded


# -- the commands --------------------------------------------------------------------------------------------


def add_parser(commands: object) -> None:
    # One parser, 'check FILE' as positionals rather than a sub-parser: a sub-parser would reset options given
    # before it ('handshake --export x.html check FILE') to its own defaults.
    handshake = command_parser(commands, "handshake", help="Sec-WebSocket-Accept step by step; lint a pasted "
                                                           "handshake", epilog=HANDSHAKE_EXAMPLES,
                               usage="%(prog)s [--key KEY] [options]\n       %(prog)s check FILE|- [options]",
                               description="Walk through how a server derives Sec-WebSocket-Accept from the "
                                           "client's Sec-WebSocket-Key (RFC 6455 1.3 and 4.2.2); or, with 'check "
                                           "FILE', check an opening handshake pasted from browser dev tools, curl "
                                           "-v or a proxy log (LF or CRLF line ends, with or without the request "
                                           "line, a request and its response together) against RFC 6455 section "
                                           "4: each finding with its RFC section and what to fix.")
    handshake.add_argument("action", nargs="?", choices=("check",), metavar="check",
                           help="check the handshake in FILE instead of walking through a key")
    handshake.add_argument("file", nargs="?", metavar="FILE", help="the pasted text, or '-' for stdin")
    handshake.add_argument("--key", default=RFC_EXAMPLE_KEY, metavar="KEY",
                           help="the Sec-WebSocket-Key value (default: RFC 6455 1.3's example, %(default)s)")
    add_output_options(handshake)
    handshake.set_defaults(run=run_handshake)


def run_handshake(args: argparse.Namespace) -> int:
    if args.action == "check":
        if args.file is None:
            return error(args, "handshake check: which file? Give FILE, or - to read stdin")
        return run_check(args)
    if args.file is not None:
        return error(args, f"handshake: unexpected '{visible(args.file)}'; to check a pasted handshake: "
                           "wsinspect handshake check FILE")
    return run_walkthrough(args)


def _key_findings(key: str) -> list[Finding]:
    """What RFC 6455 4.2.1 item 5 says of this key, judged by the core's validator (and nothing else of it)."""
    request = HttpRequest(raw=b"", start_line="GET / HTTP/1.1", method="GET", target="/", version="HTTP/1.1",
                          headers=Headers((("Sec-WebSocket-Key", key),)))
    return [f for f in validate_request(request) if f.check.id == "request.key"]


def run_walkthrough(args: argparse.Namespace) -> int:
    lines = accept_steps(args.key)
    findings = _key_findings(wire_text(args.key))
    if findings:
        lines.append([])
        for finding in findings:
            lines += finding_lines(finding)
            lines.append([("plain", "    A server computes the accept value above all the same, but must not "
                                    f"send it: it refuses the handshake ({finding.check.http_status} Bad "
                                    "Request), as RFC 6455 4.2.1 says of a client handshake that does not match "
                                    "item 5:")])
            lines.append([("info", "    \u201cA |Sec-WebSocket-Key| header field with a base64-encoded (see "
                                   "Section 4 of [RFC4648]) value that, when decoded, is 16 bytes in length.\u201d")])
    status = present(args, lines)
    # As check's: a key that breaks the rule is a finding (1), whatever was shown for it.
    return EXIT_FINDINGS if status == EXIT_OK and findings else status


def _exchange_complete(data: bytes) -> bool:
    """Does ``data`` (what arrived so far) hold a request and the whole header block of its response? Only whole
    lines count: the last one may still be arriving."""
    end = data.rfind(b"\n")
    if end < 0:
        return False
    paste = split_paste(data[:end + 1])
    return paste is not None and paste.request is not None and paste.response is not None and paste.response_ended


# Past this much input, check no longer looks for a complete exchange after each read (each look parses all that
# arrived): a curl transcript of a handshake is a few KB, and reading on to the end or PASTE_LIMIT is still bounded.
_LOOK_FOR_END_UP_TO = 64 * 1024


# The line ends of a blank line, the end of a header block: plain, or as curl -v shows the response's ("< ").
_BLANK_LINES = (b"\n\n", b"\n\r\n", b"\n< \r\n", b"\n<\r\n", b"\n< \n", b"\n<\n")


def _ends_a_block(data: bytes | bytearray) -> bool:
    return any(blank in data for blank in _BLANK_LINES)


def read_paste(stream: BinaryIO, *, stop_at_exchange: bool) -> tuple[bytes, int | None]:
    """At most PASTE_LIMIT bytes of ``stream``, and how many bytes were read when it had more (else None).

    With ``stop_at_exchange``, reading stops as soon as a request and its response's whole header block are in:
    ``curl -v`` keeps a WebSocket open after the 101, so its output has no end to wait for."""
    data = bytearray()
    read_some = getattr(stream, "read1", stream.read)
    while len(data) <= PASTE_LIMIT:
        chunk = read_some(PASTE_LIMIT + 1 - len(data))
        if not chunk:
            break
        data += chunk
        if stop_at_exchange and len(data) <= _LOOK_FOR_END_UP_TO and _ends_a_block(data[-len(chunk) - 4:]) \
                and _exchange_complete(bytes(data)):
            break
    if len(data) > PASTE_LIMIT:
        return bytes(data[:PASTE_LIMIT]), len(data)
    return bytes(data), None


def run_check(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            data, cut = read_paste(sys.stdin.buffer, stop_at_exchange=True)
        else:
            with open(args.file, "rb") as handle:
                data, cut = read_paste(handle, stop_at_exchange=False)
    except OSError as failure:
        return error(args, f"{visible(args.file)}: {visible(failure.strerror or str(failure))}")
    paste = split_paste(data)
    if paste is not None and cut is not None:
        paste.notes.insert(0, f"the input is over {PASTE_LIMIT // (1024 * 1024)} MiB: only its first "
                              f"{PASTE_LIMIT:,} bytes were read and checked")
    if paste is None:
        return error(args, f"{visible(args.file)}: not an HTTP request or response: no request line, status line "
                           "or 'Name: value' header line")
    lines, findings, upgraded = check_lines(paste, width=layout_width(args))
    status = present(args, lines)
    if status != EXIT_OK:
        return status
    wrong = any(f.severity in (Severity.ERROR, Severity.WARNING) for f in findings)
    return EXIT_FINDINGS if wrong or not upgraded else EXIT_OK

