"""The opening handshake (RFC 6455 section 4): parse leniently, judge separately.

A strict HTTP parser refuses exactly the malformed handshakes a debugger exists to explain, so parsing here never
fails: it keeps the raw bytes, every header line in order (duplicates too) and notes what was odd about the syntax.
``validate_request`` and ``validate_response`` then judge the parsed message against the RFC and return findings,
each tied to a check in ``checks.CHECKS``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from wsinspect.core.checks import CHECKS, Check, Severity
from wsinspect.core.construct import fast_constructor

# RFC 6455 section 1.3: the one place this GUID lives.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = "13"
# A capture of many conversations repeats the same few header lines and values: short ones are parsed once, in
# bounded caches. Only short ones, so what the caches can hold stays small whatever the wire sends.
_MEMO_VALUES_UP_TO = 256


def display_text(text: str) -> str:
    """Header text (its bytes decoded as Latin-1, as parsed here) as the characters those bytes encode in UTF-8, as
    a peer that sends UTF-8 means them; a byte that is not part of valid UTF-8 becomes a lone surrogate, which
    ``views.safe.visible`` shows as \\xNN. For messages and ``got`` values: they are escaped once, by the view, so a
    real ESC byte (\\x1b) and a literal backslash (\\\\) stay distinct."""
    if text.isascii():
        return text
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:  # already characters, not bytes
        return text
    return raw.decode("utf-8", "surrogateescape")


def _quoted(text: str) -> str:
    """A wire value in a finding's message: in quotes, its bytes as display_text shows them (not repr: the view
    escapes the message, and would escape repr's backslashes a second time)."""
    return f"'{display_text(text)}'"


def _shown(text: str | None) -> str | None:
    """display_text for a ``got`` that may be missing."""
    return None if text is None else display_text(text)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (RFC 6455 4.2.2 item 5.4)."""
    digest = hashlib.sha1((key.strip() + WEBSOCKET_GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class Finding:
    """One judgement about a handshake: which rule, what was expected, what was there."""

    check: Check
    message: str
    expected: str | None = None
    got: str | None = None

    @property
    def severity(self) -> Severity:
        return self.check.severity


def finding(check_id: str, message: str, expected: str | None = None, got: str | None = None) -> Finding:
    return Finding(CHECKS[check_id], message, expected, got)


@dataclass(frozen=True, slots=True)
class Headers:
    """Header lines in wire order, names and values as sent (decoded as Latin-1, so every byte survives)."""

    items: tuple[tuple[str, str], ...] = ()
    # The values under each lower-cased name, in wire order: a handshake is asked for a dozen headers by name, and a
    # capture of many short conversations parses thousands of handshakes.
    _by_name: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", _values_by_name(self.items))

    def get_all(self, name: str) -> list[str]:
        return list(self._by_name.get(name.lower(), ()))

    def get(self, name: str) -> str | None:
        values = self._by_name.get(name.lower())
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> list[str]:
        """A comma-separated list header, across repeated lines (RFC 7230 3.2.2), lower-cased, empties dropped."""
        return _tokens(self._by_name.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _values_by_name(items: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    by_name: dict[str, tuple[str, ...]] = {}
    # A repeated name collects its values in a list, made a tuple once at the end: rebuilding the tuple for every
    # repeat took time quadratic in the number of repeats (a pasted block of 100,000 'X-a: b' lines took minutes).
    repeated: dict[str, list[str]] = {}
    for key, value in items:
        lowered = key.lower()
        if lowered in by_name:
            values = repeated.get(lowered)
            if values is None:
                values = repeated[lowered] = [*by_name[lowered]]
            values.append(value)
        else:
            by_name[lowered] = (value,)
    for lowered, values in repeated.items():
        by_name[lowered] = tuple(values)
    return by_name


# Made once per handshake: (items, _by_name) positionally, by_name built with the items (see core.construct).
_new_headers = fast_constructor(Headers)


def _value_tokens(value: str) -> tuple[str, ...]:
    """The tokens of one comma-separated header value, lower-cased, empties dropped."""
    return tuple(stripped.lower() for token in value.split(",") if (stripped := token.strip()))


# Handshakes repeat the same few list values (Upgrade: websocket, Connection: Upgrade): short ones are split once.
_value_tokens_memo = functools.lru_cache(maxsize=64)(_value_tokens)


def _tokens(values: Iterable[str]) -> list[str]:
    """Headers.tokens over the values of one name."""
    tokens: list[str] = []
    for value in values:
        tokens += _value_tokens_memo(value) if len(value) <= _MEMO_VALUES_UP_TO else _value_tokens(value)
    return tokens


def _has_token(values: Iterable[str], token: str) -> bool:
    """``token in _tokens(values)``, for a lower-case ``token``."""
    for value in values:
        if token in (_value_tokens_memo(value) if len(value) <= _MEMO_VALUES_UP_TO else _value_tokens(value)):
            return True
    return False


def _joined(values: tuple[str, ...] | None) -> str | None:
    """Headers.get over the values of one name."""
    return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class HttpMessage:
    raw: bytes  # the header block exactly as received, including the blank line
    start_line: str
    headers: Headers
    syntax: tuple[Finding, ...] = ()  # what was odd about the syntax itself
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpRequest(HttpMessage):
    method: str = ""
    target: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class HttpResponse(HttpMessage):
    version: str = ""
    status: int = 0
    reason: str = ""


# Made once per handshake: positional (raw, start_line, headers, syntax, body, then the subclass's fields), without
# the frozen __init__'s cost (see core.construct).
_new_request = fast_constructor(HttpRequest)
_new_response = fast_constructor(HttpResponse)


def ascii_number(text: str, max_digits: int) -> int | None:
    """The value of a decimal number written in ASCII digits, or None.

    ``str.isdigit`` alone is not enough for wire text: it accepts '²' or '١' (which ``int`` refuses or reads as
    digits no HTTP peer meant), and ``int`` raises on more than 4,300 digits. Anything that is not 1 to
    ``max_digits`` ASCII digits is simply not a number here.
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def find_header_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a header block, or -1. Accepts bare LF line ends (lenient)."""
    crlf = buffer.find(b"\r\n\r\n", start)
    lf = buffer.find(b"\n\n", start)
    if crlf < 0:
        return lf + 2 if lf >= 0 else -1
    return crlf + 4 if lf < 0 or crlf + 4 <= lf + 2 else lf + 2


# Header lines seen before, to their (name, value): the lines of a capture's handshakes are mostly the same few
# (Host, Upgrade, Connection, Sec-WebSocket-Version...). Only lines that parse as a plain 'Name: value' are kept
# (none starting with a space or tab, so never an obs-fold continuation, whose meaning depends on the line before);
# emptied when full, so it stays small whatever the wire sends.
_known_lines: dict[str, tuple[str, str]] = {}
_KNOWN_LINES_LIMIT = 1024


def _split_head(raw: bytes) -> tuple[str, list[tuple[str, str]], list[Finding]]:
    text = raw.decode("latin-1")
    syntax: list[Finding] = []
    if text.endswith("\n") and text.count("\n") == text.count("\r\n"):
        # Every line ends with CRLF (the usual head): splitting there gives the same lines as the general way below.
        lines = text.split("\r\n")
    else:
        lines = text.split("\n")
        if any(not line.endswith("\r") for line in lines[:-2]):
            syntax.append(finding("http.bare-lf", "At least one header line ends with LF instead of CRLF."))
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    start_line = lines[0] if lines else ""
    headers: list[tuple[str, str]] = []
    known_lines = _known_lines
    for line in lines[1:]:
        header = known_lines.get(line)
        if header is not None:
            headers.append(header)
            continue
        if line[:1] in (" ", "\t") and headers:
            # obs-fold (RFC 7230 3.2.4): a continuation of the previous value; deprecated but still seen.
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            syntax.append(finding("http.malformed", f"Folded header line (obs-fold) after {_quoted(name)}."))
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            syntax.append(finding("http.malformed", f"Not a 'Name: value' header line: {_quoted(line)}."))
            continue
        header = (name, value.strip(" \t"))
        headers.append(header)
        if len(line) <= _MEMO_VALUES_UP_TO:
            if len(known_lines) >= _KNOWN_LINES_LIMIT:
                known_lines.clear()
            known_lines[line] = header
    return start_line, headers, syntax


# The last request parsed, with its bytes: a capture's trace parses a stream's request to decide whether it is a
# WebSocket, then hands the same bytes to its Connection, which parses them again. One entry, and immutable.
_last_request: tuple[bytes, HttpRequest] | None = None


def parse_request(raw: bytes) -> HttpRequest:
    """Parse a request header block (``raw`` up to and including the blank line). Never raises."""
    global _last_request
    last = _last_request
    if last is not None and last[0] == raw and type(raw) is bytes:
        return last[1]
    start_line, headers, syntax = _split_head(raw)
    parts = start_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        syntax.insert(0, finding("http.malformed", "The request line is not 'METHOD target HTTP/x.y'.",
                                  "GET /path HTTP/1.1", start_line))
    if len(parts) >= 3:
        method, target, version = parts[0], " ".join(parts[1:-1]), parts[-1]
    else:
        method, target, version = (*parts, "", "")[:3]
    items = tuple(headers)
    request = _new_request(raw, start_line, _new_headers(items, _values_by_name(items)), tuple(syntax), b"", method,
                           target, version)
    if type(raw) is bytes:  # (a bytearray could change under the entry)
        _last_request = (raw, request)
    return request


def parse_response(raw: bytes, body: bytes = b"") -> HttpResponse:
    """Parse a response header block (``raw`` up to and including the blank line). Never raises."""
    start_line, headers, syntax = _split_head(raw)
    version, _, rest = start_line.partition(" ")
    status_text, _, reason = rest.partition(" ")
    status = (ascii_number(status_text, 3) or 0) if len(status_text) == 3 else 0
    if not version.startswith("HTTP/") or not status:
        syntax.insert(0, finding("http.malformed", "The status line is not 'HTTP/x.y NNN reason'.",
                                  "HTTP/1.1 101 Switching Protocols", start_line))
    items = tuple(headers)
    return _new_response(raw, start_line, _new_headers(items, _values_by_name(items)), tuple(syntax), body, version,
                         status, reason)


def looks_like_http_request(data: bytes) -> bool:
    """Does a byte stream start like an HTTP request? (Used to find handshakes on any port.)"""
    method, space, _ = data[:16].partition(b" ")
    return bool(space) and method.isalpha() and method.isupper()


# -- Extensions (RFC 6455 section 9.1) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    name: str
    params: tuple[tuple[str, str | None], ...] = field(default=())

    def __str__(self) -> str:
        parts = [self.name] + [key if value is None else f"{key}={value}" for key, value in self.params]
        return "; ".join(parts)


def parse_extensions(values: Iterable[str]) -> list[Extension]:
    """Parse Sec-WebSocket-Extensions values: ``name; key=value; flag, other``. Lenient about quoting."""
    extensions: list[Extension] = []
    for value in values:
        extensions += _parse_extension_value_memo(value) if len(value) <= _MEMO_VALUES_UP_TO else \
            _parse_extension_value(value)
    return extensions


# A capture of many conversations repeats the same few offers and answers, each parsed up to four times per
# handshake (the request's offers judged against the answer, and read again to agree on permessage-deflate): short
# values are parsed once (see _MEMO_VALUES_UP_TO).


def _parse_extension_value(value: str) -> tuple[Extension, ...]:
    """The extensions one Sec-WebSocket-Extensions line lists."""
    extensions: list[Extension] = []
    for item in value.split(","):
        name, *raw_params = (part.strip() for part in item.split(";"))
        if not name:
            continue
        params: list[tuple[str, str | None]] = []
        for param in raw_params:
            if not param:
                continue
            key, equals, param_value = param.partition("=")
            params.append((key.strip().lower(), param_value.strip().strip('"') if equals else None))
        extensions.append(Extension(name.lower(), tuple(params)))
    return tuple(extensions)


_parse_extension_value_memo = functools.lru_cache(maxsize=64)(_parse_extension_value)


# -- Validation ------------------------------------------------------------------------------------------------


def _http_version_at_least_1_1(version: str) -> bool:
    if not version.startswith("HTTP/"):
        return False
    major_text, _, minor_text = version[5:].partition(".")
    major, minor = ascii_number(major_text, 3), ascii_number(minor_text or "0", 3)
    if major is None or minor is None:
        return False
    return (major, minor) >= (1, 1)


def validate_request(request: HttpRequest, *, allowed_origins: Iterable[str] | None = None) -> list[Finding]:
    """Judge a client's opening handshake against RFC 6455 section 4.2.1 (and 4.1, 11.3.1)."""
    findings = list(request.syntax)
    headers = request.headers
    by_name = headers._by_name  # (what Headers.get and friends read, by lower-cased name)
    if request.method != "GET":
        findings.append(finding("request.method", f"The method is {_quoted(request.method)}; it must be GET.",
                                 "GET", display_text(request.method)))
    if request.version != "HTTP/1.1" and not _http_version_at_least_1_1(request.version):
        findings.append(finding("request.version", f"The request is {_quoted(request.version)}; it must be "
                                 "HTTP/1.1 or higher.", "HTTP/1.1", display_text(request.version)))
    if not _joined(by_name.get("host")):
        findings.append(finding("request.host", "There is no Host header field.", "Host: <server authority>"))
    upgrade_values = by_name.get("upgrade", ())
    upgrade = _joined(upgrade_values)
    if upgrade is None or not _has_token(upgrade_values, "websocket"):
        findings.append(finding("request.upgrade", "The Upgrade header field " + (
            "is missing." if upgrade is None else f"does not contain 'websocket' (it says {_quoted(upgrade)})."),
            "websocket", _shown(upgrade)))
    connection_values = by_name.get("connection", ())
    connection = _joined(connection_values)
    connection_upgrade = _has_token(connection_values, "upgrade")
    if connection is None or not connection_upgrade:
        findings.append(finding("request.connection", "The Connection header field " + (
            "is missing." if connection is None else f"does not include the token 'Upgrade' (it says "
                                                      f"{_quoted(connection)})."), "Upgrade",
            _shown(connection)))
    if upgrade is None and not connection_upgrade:
        websocket_headers = [name if name.isascii() and name.isprintable() else _quoted(name)
                             for name, _ in headers if name.lower().startswith("sec-websocket-")]
        findings.append(finding("request.upgrade-stripped", (
            f"The request carries {', '.join(websocket_headers)} but neither Upgrade nor Connection: Upgrade: a "
            "proxy on the way most likely removed these hop-by-hop header fields." if websocket_headers else
            "A plain HTTP request, with no Upgrade or Connection: Upgrade header field: a client that did not ask "
            "for a WebSocket, or a proxy that removed these hop-by-hop header fields."),
            "Upgrade: websocket and Connection: Upgrade", None))
    keys = by_name.get("sec-websocket-key", ())
    if len(keys) > 1:
        findings.append(finding("request.key-repeated", f"Sec-WebSocket-Key appears {len(keys)} times.",
                                 "once", str(len(keys))))
    elif not keys:
        findings.append(finding("request.key", "There is no Sec-WebSocket-Key header field.",
                                 "a base64-encoded 16-byte nonce, e.g. dGhlIHNhbXBsZSBub25jZQ=="))
    else:
        key_problem = _key_problem(keys[0])
        if key_problem:
            findings.append(finding("request.key", key_problem, "base64 of 16 bytes (24 characters ending '==')",
                                     display_text(keys[0])))
    versions = by_name.get("sec-websocket-version", ())
    if versions != (SUPPORTED_VERSION,):
        got = display_text(", ".join(versions)) if versions else None
        findings.append(finding("request.websocket-version", "Sec-WebSocket-Version " + (
            "is missing." if got is None else f"is '{got}'; this protocol is version 13."), SUPPORTED_VERSION, got))
    protocols = [p.strip() for value in by_name.get("sec-websocket-protocol", ()) for p in value.split(",")]
    if protocols and (any(not p or not _is_token(p) for p in protocols) or len(set(protocols)) != len(protocols)):
        findings.append(finding("request.protocol-syntax", "Sec-WebSocket-Protocol is not a list of unique "
                                 "tokens.", "token, token", display_text(headers.get("Sec-WebSocket-Protocol") or "")))
    origin = _joined(by_name.get("origin"))
    if allowed_origins is not None:
        allowed = list(allowed_origins)
        # The server compares the lowercased /origin/ (RFC 6455 4.2.2 item 4, and RFC 6454 serialisation).
        if origin is None or origin.lower() not in {a.lower() for a in allowed}:
            told = "There is no Origin header field" if origin is None else f"Origin {_quoted(origin)} is not allowed"
            findings.append(finding("request.origin", f"{told}; this server accepts only {', '.join(allowed)}.",
                                    " or ".join(allowed), _shown(origin)))
    elif origin is None:
        findings.append(finding("request.origin-missing", "The request has no Origin header field."))
    return findings


_TOKEN_SEPARATORS = set('()<>@,;:\\"/[]?={} \t')


def _is_token(text: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E and ch not in _TOKEN_SEPARATORS for ch in text)


def _key_problem(key: str) -> str | None:
    try:
        decoded = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        return f"Sec-WebSocket-Key {_quoted(key)} is not valid base64."
    if len(decoded) != 16:
        return f"Sec-WebSocket-Key decodes to {len(decoded)} bytes; it must be 16."
    return None


def validate_response(response: HttpResponse, request: HttpRequest | None) -> list[Finding]:
    """Judge a server's opening handshake as the client must (RFC 6455 section 4.1), given the request."""
    findings = list(response.syntax)
    headers = response.headers
    by_name = headers._by_name  # (what Headers.get and friends read, by lower-cased name)
    if response.status != 101:
        plain = request is not None and "websocket" not in request.headers.tokens("Upgrade")
        findings.append(finding("response.status", f"The server answered {response.status} {_quoted(response.reason)}"
                                 ": the connection was not upgraded." + (
                                     " It received a plain HTTP request (no Upgrade: websocket), so it could not "
                                     "switch protocols." if plain else ""), "101", str(response.status)))
        asked = request.headers.get_all("Sec-WebSocket-Version") if request is not None else []
        # RFC 6455 4.4 is about a version the server does not speak; a request without any (plain HTTP) asks none.
        if asked and asked != [SUPPORTED_VERSION] and "Sec-WebSocket-Version" not in headers:
            wanted = ", ".join(asked) or "(none)"
            findings.append(finding("response.version-list", f"The client asked for version {wanted} and the "
                                    "refusal does not say which versions the server supports.",
                                    "Sec-WebSocket-Version: 13", None))
        return findings
    if not _has_token(by_name.get("upgrade", ()), "websocket"):
        findings.append(finding("response.upgrade", "The Upgrade header field is missing or not 'websocket'.",
                                 "websocket", _shown(headers.get("Upgrade"))))
    if not _has_token(by_name.get("connection", ()), "upgrade"):
        findings.append(finding("response.connection", "The Connection header field is missing or lacks the "
                                 "token 'Upgrade'.", "Upgrade", _shown(headers.get("Connection"))))
    got_accept = _joined(by_name.get("sec-websocket-accept"))
    key = _joined(request.headers._by_name.get("sec-websocket-key")) if request is not None else None
    if key is not None:
        expected = accept_key(key)
        if got_accept is None or got_accept.strip() != expected:
            findings.append(finding("response.accept", "Sec-WebSocket-Accept " + (
                "is missing." if got_accept is None else "does not match the key the client sent."),
                expected, _shown(got_accept)))
    elif got_accept is None:
        findings.append(finding("response.accept", "Sec-WebSocket-Accept is missing.",
                                 "base64(SHA-1(key + GUID))"))
    if request is not None:
        requested = request.headers._by_name
        offered_extensions = {e.name for e in parse_extensions(requested.get("sec-websocket-extensions", ()))}
        for extension in parse_extensions(by_name.get("sec-websocket-extensions", ())):
            if extension.name not in offered_extensions:
                findings.append(finding("response.extension-not-offered",
                                         f"The server accepted extension {_quoted(extension.name)}, which the "
                                         "client did not offer.", ", ".join(sorted(offered_extensions)) or "none",
                                         display_text(extension.name)))
        offered_protocols = [p.strip() for v in requested.get("sec-websocket-protocol", ()) for p in v.split(",")
                             if p.strip()]
        chosen = [p.strip() for v in by_name.get("sec-websocket-protocol", ()) for p in v.split(",")]
        if len(chosen) > 1 or (chosen and chosen[0] not in offered_protocols):
            findings.append(finding("response.protocol-not-offered", "The server's Sec-WebSocket-Protocol "
                                     f"{_quoted(', '.join(chosen))} is not exactly one of those the client "
                                     "offered.", " or ".join(offered_protocols) or "none",
                                     display_text(", ".join(chosen))))
    return findings


def validate_extended_connect(request: HttpRequest) -> list[Finding]:
    """Judge a WebSocket request over HTTP/2 (RFC 8441 4 and 5): an extended CONNECT, its pseudo-header fields in
    ``request.headers`` (':method', ':protocol', ...). What the server's SETTINGS allowed is not known here."""
    findings: list[Finding] = []
    headers = request.headers
    pseudo = ", ".join(name for name, _ in headers if name.startswith(":"))
    method, protocol = headers.get(":method"), headers.get(":protocol")
    if method != "CONNECT":
        findings.append(finding("h2.extended-connect", "An HTTP/2 WebSocket is opened with :method CONNECT; "
                                + ("there is no :method." if method is None else f"this one is {_quoted(method)}."),
                                expected="CONNECT", got=_shown(method)))
    if protocol is None or protocol.strip().lower() != "websocket":
        findings.append(finding("h2.extended-connect", "The extended CONNECT names the protocol in :protocol, "
                                "which must be 'websocket' (RFC 8441 4); " + (
                                    "there is none." if protocol is None else f"it is {_quoted(protocol)}."),
                                expected="websocket", got=_shown(protocol)))
    missing = [name for name in (":scheme", ":path", ":authority") if headers.get(name) is None]
    if missing:
        findings.append(finding("h2.extended-connect", f"The extended CONNECT lacks {', '.join(missing)}.",
                                expected=":method, :protocol, :scheme, :path, :authority", got=display_text(pseudo)))
    version = headers.get("sec-websocket-version")
    if version is None or version.strip() != SUPPORTED_VERSION:
        findings.append(finding("request.websocket-version", "RFC 8441 5 keeps Sec-WebSocket-Version from "
                                "RFC 6455: it must be 13.", expected=SUPPORTED_VERSION, got=_shown(version)))
    return findings


def validate_extended_connect_response(response: HttpResponse, request: HttpRequest | None) -> list[Finding]:
    """Judge the answer to an extended CONNECT (RFC 8441 5): a 2xx :status accepts the WebSocket (HTTP/1.1's 101);
    Sec-WebSocket-Protocol and -Extensions are answered as RFC 6455 4.1 says; there is no accept key (the stream
    itself shows that the server understood)."""
    if not 200 <= response.status < 300:
        return [finding("response.status", f"The server answered :status {response.status or '(none)'}: the "
                        "WebSocket was not accepted (RFC 8441 5: a 2xx status accepts it).", "200",
                        str(response.status))]
    findings: list[Finding] = []
    headers = response.headers
    offered_headers = request.headers if request is not None else Headers()
    chosen = headers.get("sec-websocket-protocol")
    offered = [token.strip() for token in (offered_headers.get("sec-websocket-protocol") or "").split(",")]
    if chosen is not None and chosen.strip() not in offered:
        findings.append(finding("response.protocol-not-offered", "The server chose a subprotocol the client did "
                                "not offer.", expected=", ".join(offered), got=display_text(chosen)))
    offered_extensions = {e.name for e in parse_extensions(offered_headers.get_all("sec-websocket-extensions"))}
    for extension in parse_extensions(headers.get_all("sec-websocket-extensions")):
        if extension.name not in offered_extensions:
            findings.append(finding("response.extension-not-offered", "The server agreed to an extension the "
                                    "client did not offer.", expected=", ".join(sorted(offered_extensions)) or None,
                                    got=display_text(extension.name)))
    return findings


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that break a MUST."""
    return [f for f in findings if f.severity is Severity.ERROR]
