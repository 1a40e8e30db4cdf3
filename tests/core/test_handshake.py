"""The opening handshake (RFC 6455 section 4): lenient parsing, then one check id per broken rule."""

from __future__ import annotations

import base64

import pytest
import websocket
from websockets.sync.client import connect

from wsinspect.core.checks import CHECKS, Severity
from wsinspect.core.connection import Connection
from wsinspect.core.deflate import DeflateParams, negotiate, params_from_response
from wsinspect.core.events import HandshakeResponse
from wsinspect.core.handshake import (
    Extension,
    blocking,
    find_header_end,
    parse_extensions,
    parse_request,
    parse_response,
    validate_request,
    validate_response,
)

from .helpers import RFC_KEY, capture_request, hand_accept, record_session, request_bytes

# The RFC 6455 section 1.3 request, as a list of header lines we can mutate.
BASE_LINES = [
    "GET /chat HTTP/1.1",
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Origin: http://example.com",
    "Sec-WebSocket-Protocol: chat, superchat",
    "Sec-WebSocket-Version: 13",
]


def build(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def mutate(replace: dict[str, str | None] | None = None, add: list[str] | None = None,
           start: str | None = None) -> bytes:
    """The base request with header ``name`` replaced by a full line (or removed if None), plus extra lines."""
    lines = [start or BASE_LINES[0]]
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    for line in BASE_LINES[1:]:
        name = line.split(":", 1)[0].lower()
        if name in replace:
            if replace[name] is not None:
                lines.append(replace[name])  # type: ignore[arg-type]
        else:
            lines.append(line)
    return build(lines + (add or []))


def finding_ids(raw: bytes, **kw: object) -> list[str]:
    return [f.check.id for f in validate_request(parse_request(raw), **kw)]  # type: ignore[arg-type]


def b64(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


# (case id, request bytes, the one check it must fire). RFC 6455 4.2.1 items 1-6, 4.4, 11.3.1, 4.1 item 10.
REQUEST_CASES = [
    ("method POST", mutate(start="POST /chat HTTP/1.1"), "request.method"),
    ("method lower-case get", mutate(start="get /chat HTTP/1.1"), "request.method"),
    ("HTTP/1.0", mutate(start="GET /chat HTTP/1.0"), "request.version"),
    ("HTTP/0.9", mutate(start="GET /chat HTTP/0.9"), "request.version"),
    ("no Host", mutate({"Host": None}), "request.host"),
    ("empty Host", mutate({"Host": "Host: "}), "request.host"),
    ("no Upgrade", mutate({"Upgrade": None}), "request.upgrade"),
    ("Upgrade h2c", mutate({"Upgrade": "Upgrade: h2c"}), "request.upgrade"),
    ("no Connection", mutate({"Connection": None}), "request.connection"),
    ("Connection keep-alive", mutate({"Connection": "Connection: keep-alive"}), "request.connection"),
    ("Connection Upgraded", mutate({"Connection": "Connection: Upgraded"}), "request.connection"),
    ("no key", mutate({"Sec-WebSocket-Key": None}), "request.key"),
    ("key not base64", mutate({"Sec-WebSocket-Key": "Sec-WebSocket-Key: not*base64*at*all*!!!!="}), "request.key"),
    ("key 15 bytes", mutate({"Sec-WebSocket-Key": f"Sec-WebSocket-Key: {b64(15)}"}), "request.key"),
    ("key 17 bytes", mutate({"Sec-WebSocket-Key": f"Sec-WebSocket-Key: {b64(17)}"}), "request.key"),
    ("key 16 raw chars", mutate({"Sec-WebSocket-Key": "Sec-WebSocket-Key: 0123456789abcdef"}), "request.key"),
    ("key repeated", mutate(add=[f"Sec-WebSocket-Key: {b64(16)}"]), "request.key-repeated"),
    ("version 8", mutate({"Sec-WebSocket-Version": "Sec-WebSocket-Version: 8"}), "request.websocket-version"),
    ("version missing", mutate({"Sec-WebSocket-Version": None}), "request.websocket-version"),
    ("version 13 twice", mutate(add=["Sec-WebSocket-Version: 13"]), "request.websocket-version"),
    ("protocol empty element", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: chat, , superchat"}),
     "request.protocol-syntax"),
    ("protocol repeated", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: chat, chat"}),
     "request.protocol-syntax"),
    ("protocol with separator", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: chat/1"}),
     "request.protocol-syntax"),
    ("protocol with space", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: super chat"}),
     "request.protocol-syntax"),
    ("protocol non-ASCII", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: ch\xe4t"}),
     "request.protocol-syntax"),
    ("protocol repeated across lines", mutate(add=["Sec-WebSocket-Protocol: chat"]), "request.protocol-syntax"),
]


@pytest.mark.parametrize(("raw", "check_id"), [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES])
def test_request_check_fires_alone(raw: bytes, check_id: str) -> None:
    assert finding_ids(raw) == [check_id]


def test_request_check_statuses() -> None:
    # 4.2.1: "an appropriate error code (such as 400 Bad Request)"; 4.2.2 /version/ and 4.4: 426 Upgrade Required;
    # 4.2.2 /origin/: "e.g., 403 Forbidden".
    for check_id in ("request.method", "request.version", "request.host", "request.upgrade", "request.connection",
                     "request.key", "request.key-repeated", "request.protocol-syntax"):
        assert CHECKS[check_id].http_status == 400, check_id
        assert CHECKS[check_id].severity is Severity.ERROR
    version = validate_request(parse_request(mutate({"Sec-WebSocket-Version": "Sec-WebSocket-Version: 8"})))
    assert [(f.check.id, f.check.http_status, f.got, f.expected) for f in version] == [
        ("request.websocket-version", 426, "8", "13")]
    assert CHECKS["request.origin"].http_status == 403


VALID_VARIANTS = [
    ("base", mutate()),
    ("Upgrade mixed case", mutate({"Upgrade": "Upgrade: WebSocket"})),
    ("Connection keep-alive, Upgrade", mutate({"Connection": "Connection: keep-alive, Upgrade"})),
    ("Connection UPGRADE", mutate({"Connection": "Connection: UPGRADE"})),
    ("Connection upgrade,keep-alive no space", mutate({"Connection": "Connection: upgrade,keep-alive"})),
    ("Connection on two lines", mutate({"Connection": "Connection: keep-alive"}, add=["Connection: Upgrade"])),
    ("header names any case", build([BASE_LINES[0]] + [
        line.split(":", 1)[0].upper() + ":" + line.split(":", 1)[1] for line in BASE_LINES[1:]])),
    ("no protocol", mutate({"Sec-WebSocket-Protocol": None})),
    ("one protocol", mutate({"Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: chat"})),
    ("HTTP/1.1 absolute URI", mutate(start="GET ws://server.example.com/chat HTTP/1.1")),
    ("HTTP/2.0 is 'or higher'", mutate(start="GET /chat HTTP/2.0")),
    ("key with spaces around", mutate({"Sec-WebSocket-Key": "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  "})),
    ("header value tab", mutate({"Host": "Host:\tserver.example.com"})),
    ("extra headers", mutate(add=["Cookie: a=b", "Sec-WebSocket-Extensions: permessage-deflate"])),
]


@pytest.mark.parametrize("raw", [v[1] for v in VALID_VARIANTS], ids=[v[0] for v in VALID_VARIANTS])
def test_valid_requests_have_no_findings(raw: bytes) -> None:
    assert finding_ids(raw) == []


def test_origin_allow_list() -> None:
    raw = mutate()
    assert finding_ids(raw, allowed_origins=["http://example.com", "https://other"]) == []
    evil = mutate({"Origin": "Origin: http://evil.example"})
    findings = validate_request(parse_request(evil), allowed_origins=["http://example.com"])
    assert [(f.check.id, f.got) for f in findings] == [("request.origin", "http://evil.example")]
    assert finding_ids(mutate({"Origin": None}), allowed_origins=["http://example.com"]) == ["request.origin"]
    # Without an allow-list a missing Origin is only worth knowing (4.2.1 item 7): not an error.
    missing = validate_request(parse_request(mutate({"Origin": None})))
    assert [(f.check.id, f.severity) for f in missing] == [("request.origin-missing", Severity.INFO)]
    assert blocking(missing) == []


def test_origin_compared_after_lowercasing() -> None:
    # RFC 6455 4.2.2 item 4 /origin/: "The origin is serialized to ASCII and converted to lowercase."
    # (Regression: found by this suite, fixed in ac93d6b.)
    raw = mutate({"Origin": "Origin: HTTP://Example.COM"})
    assert finding_ids(raw, allowed_origins=["http://example.com"]) == []
    assert finding_ids(raw, allowed_origins=["http://example.org"]) == ["request.origin"]


# -- what real clients send --------------------------------------------------------------------------------------

REAL_CLIENTS = {
    "websockets": lambda url: connect(url, open_timeout=3),
    "websockets-protocols-origin": lambda url: connect(url, open_timeout=3, subprotocols=["chat", "superchat"],
                                                       origin="http://example.com"),
    "websockets-no-compression": lambda url: connect(url, open_timeout=3, compression=None),
    "websocket-client": lambda url: websocket.create_connection(url, timeout=3),
    "websocket-client-protocols": lambda url: websocket.create_connection(
        url, timeout=3, subprotocols=["chat", "superchat"], header=["X-Extra: 1"]),
}


@pytest.mark.parametrize("name", list(REAL_CLIENTS))
def test_real_client_requests_are_valid(name: str) -> None:
    raw = capture_request(REAL_CLIENTS[name])
    end = find_header_end(raw)
    assert end == len(raw)
    request = parse_request(raw)
    assert request.method == "GET" and request.target == "/chat?room=1"
    assert request.raw == raw
    findings = validate_request(request)
    assert blocking(findings) == [], findings
    assert {f.check.id for f in findings} <= {"request.origin-missing"}


def test_real_server_response_is_valid() -> None:
    def handler(ws: object) -> None:
        ws.recv()  # type: ignore[attr-defined]

    def client(url: str) -> None:
        with connect(url, subprotocols=["chat"]) as ws:
            ws.send("x")

    chunks = record_session(client, handler, subprotocols=["chat"])
    c2s = b"".join(data for d, data in chunks if d == "c2s")
    s2c = b"".join(data for d, data in chunks if d == "s2c")
    request = parse_request(c2s[: find_header_end(c2s)])
    response = parse_response(s2c[: find_header_end(s2c)])
    assert response.status == 101
    assert validate_response(response, request) == []
    assert response.headers.get("Sec-WebSocket-Accept") == hand_accept(request.headers.get("Sec-WebSocket-Key"))
    conn = Connection()
    events = conn.receive("c2s", c2s, time=0) + conn.receive("s2c", s2c, time=1)
    response_event = next(e for e in events if isinstance(e, HandshakeResponse))
    assert response_event.upgraded and response_event.findings == ()
    assert response_event.subprotocol == "chat"
    assert response_event.deflate is not None  # websockets negotiates permessage-deflate by default


# -- responses ----------------------------------------------------------------------------------------------------

REQUEST = parse_request(request_bytes(protocols="chat, superchat"))
GOOD_RESPONSE = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Accept: {hand_accept(RFC_KEY)}",
]


def response_ids(lines: list[str], request: object = REQUEST) -> list[str]:
    return [f.check.id for f in validate_response(parse_response(build(lines)), request)]  # type: ignore[arg-type]


RESPONSE_CASES = [
    ("no Upgrade", [line for line in GOOD_RESPONSE if not line.startswith("Upgrade")], ["response.upgrade"]),
    ("Upgrade h2c", [*GOOD_RESPONSE[:1], "Upgrade: h2c", *GOOD_RESPONSE[2:]], ["response.upgrade"]),
    ("no Connection", [line for line in GOOD_RESPONSE if not line.startswith("Connection")],
     ["response.connection"]),
    ("Connection close", [*GOOD_RESPONSE[:2], "Connection: close", *GOOD_RESPONSE[3:]], ["response.connection"]),
    ("no accept", GOOD_RESPONSE[:3], ["response.accept"]),
    ("accept twice", [*GOOD_RESPONSE, GOOD_RESPONSE[3]], ["response.accept"]),  # 11.3.3: not more than once
    ("extension not offered", [*GOOD_RESPONSE, "Sec-WebSocket-Extensions: permessage-deflate"],
     ["response.extension-not-offered"]),
    ("protocol not offered", [*GOOD_RESPONSE, "Sec-WebSocket-Protocol: mqtt"], ["response.protocol-not-offered"]),
    ("two protocols", [*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat, superchat"],
     ["response.protocol-not-offered"]),
    ("protocol twice", [*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: chat"],
     ["response.protocol-not-offered"]),
    ("status 400", ["HTTP/1.1 400 Bad Request", "Content-Length: 0"], ["response.status"]),
    # The client asked for 13, so RFC 6455 4.4's version list is not owed: the 426 is about something else.
    ("status 426 without versions", ["HTTP/1.1 426 Upgrade Required"], ["response.status"]),
    ("status 426 with versions", ["HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13"],
     ["response.status"]),
    ("status 200", ["HTTP/1.1 200 OK"], ["response.status"]),
]


@pytest.mark.parametrize(("lines", "expected"), [c[1:] for c in RESPONSE_CASES], ids=[c[0] for c in RESPONSE_CASES])
def test_response_checks(lines: list[str], expected: list[str]) -> None:
    assert response_ids(lines) == expected


@pytest.mark.parametrize("lines", [
    GOOD_RESPONSE,
    [*GOOD_RESPONSE[:1], "upgrade: WEBSOCKET", "connection: keep-alive, upgrade", *GOOD_RESPONSE[3:]],
    [*GOOD_RESPONSE, "Sec-WebSocket-Protocol: superchat"],
    [*GOOD_RESPONSE[:3], f"Sec-WebSocket-Accept:   {hand_accept(RFC_KEY)}  "],
])
def test_valid_responses(lines: list[str]) -> None:
    assert response_ids(lines) == []


VERSION_8_REQUEST = parse_request(request_bytes().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"))


@pytest.mark.parametrize(("lines", "expected"), [
    (["HTTP/1.1 400 Bad Request"], ["response.status", "response.version-list"]),
    (["HTTP/1.1 426 Upgrade Required"], ["response.status", "response.version-list"]),
    (["HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13"], ["response.status"]),
    (["HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8, 7"],
     ["response.status"]),
])
def test_refusing_a_version_must_list_the_supported_ones(lines: list[str], expected: list[str]) -> None:
    # RFC 6455 4.4: "If the server doesn't support the requested version, it MUST respond with a
    # |Sec-WebSocket-Version| header field (or multiple ...) containing all versions it is willing to use."
    assert response_ids(lines, VERSION_8_REQUEST) == expected


def test_wrong_accept_shows_expected_and_got() -> None:
    wrong = base64.b64encode(b"\x00" * 20).decode()
    lines = [*GOOD_RESPONSE[:3], f"Sec-WebSocket-Accept: {wrong}"]
    findings = validate_response(parse_response(build(lines)), REQUEST)
    assert [(f.check.id, f.expected, f.got) for f in findings] == [
        ("response.accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", wrong)]
    assert findings[0].severity is Severity.ERROR
    # The accept for another key is wrong too (4.1 item 4).
    other = [*GOOD_RESPONSE[:3], f"Sec-WebSocket-Accept: {hand_accept(b64(16))}"]
    assert response_ids(other) == ["response.accept"]


def test_status_not_101_is_not_upgraded() -> None:
    conn = Connection()
    events = conn.receive("c2s", request_bytes(), time=0)
    events += conn.receive("s2c", build(["HTTP/1.1 403 Forbidden", "Content-Length: 0"]), time=1)
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert not response.upgraded
    assert [f.check.id for f in response.findings] == ["response.status"]
    assert response.findings[0].got == "403"


# -- permessage-deflate parameters (RFC 7692 7.1) ---------------------------------------------------------------

OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_BAD = [
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; mystery=1",
]


@pytest.mark.parametrize("accept", DEFLATE_BAD)
def test_deflate_params_invalid(accept: str) -> None:
    offer = parse_extensions([OFFER])[0]
    _, findings = params_from_response(parse_extensions([accept])[0], offer)
    assert [f.check.id for f in findings] == ["response.deflate-params"]
    # Through a connection too, as a finding on the response.
    conn = Connection()
    conn.receive("c2s", request_bytes(extensions=OFFER), time=0)
    lines = [*GOOD_RESPONSE, f"Sec-WebSocket-Extensions: {accept}"]
    events = conn.receive("s2c", build(lines), time=1)
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert [f.check.id for f in response.findings] == ["response.deflate-params"]


def test_client_max_window_bits_not_offered() -> None:
    offer = parse_extensions(["permessage-deflate"])[0]
    _, findings = params_from_response(parse_extensions(["permessage-deflate; client_max_window_bits=10"])[0], offer)
    assert [f.check.id for f in findings] == ["response.deflate-params"]


@pytest.mark.parametrize(("accept", "params"), [
    ("permessage-deflate", DeflateParams()),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True)),
    ("permessage-deflate; server_max_window_bits=8; client_max_window_bits=15",
     DeflateParams(server_max_window_bits=8, client_max_window_bits=15)),
    ('permessage-deflate; server_max_window_bits="10"', DeflateParams(server_max_window_bits=10)),
    ("PerMessage-Deflate; Client_Max_Window_Bits=9", DeflateParams(client_max_window_bits=9)),
])
def test_deflate_params_valid(accept: str, params: DeflateParams) -> None:
    offer = parse_extensions([OFFER])[0]
    got, findings = params_from_response(parse_extensions([accept])[0], offer)
    assert findings == []
    assert got == params


# When the offer leaves the server's window free, the server picks 12 bits (RFC 7692 7.1.2.1 allows a server to
# include server_max_window_bits unasked); it never goes above what the client asked for.
@pytest.mark.parametrize(("offers", "expected"), [
    ([OFFER], DeflateParams(server_max_window_bits=12, client_max_window_bits=12)),
    (["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"],
     DeflateParams(server_max_window_bits=10, client_no_context_takeover=True)),
    (["permessage-deflate; server_max_window_bits=15"], DeflateParams(server_max_window_bits=12)),
    (["permessage-deflate; client_max_window_bits=9"],
     DeflateParams(client_max_window_bits=9, server_max_window_bits=12)),
    (["permessage-deflate; server_max_window_bits=20", "permessage-deflate"], DeflateParams(server_max_window_bits=12)),
    (["permessage-deflate; unknown", "permessage-deflate; server_no_context_takeover"],
     DeflateParams(server_no_context_takeover=True, server_max_window_bits=12)),
    (["x-webkit-deflate-frame"], None),
    (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
    ([], None),
])
def test_negotiate(offers: list[str], expected: DeflateParams | None) -> None:
    assert negotiate(parse_extensions(offers)) == expected


def test_parse_extensions() -> None:
    got = parse_extensions(['permessage-deflate; client_max_window_bits; server_max_window_bits="10", foo',
                            "bar; x=1"])
    assert got == [
        Extension("permessage-deflate", (("client_max_window_bits", None), ("server_max_window_bits", "10"))),
        Extension("foo"),
        Extension("bar", (("x", "1"),)),
    ]


# -- lenient parsing ------------------------------------------------------------------------------------------

def test_bare_lf_is_parsed_with_a_warning() -> None:
    raw = "\n".join(BASE_LINES).encode() + b"\n\n"
    assert find_header_end(raw) == len(raw)
    assert find_header_end(raw + b"\x81\x00") == len(raw)
    request = parse_request(raw)
    assert [name for name, _ in request.headers] == [line.split(":")[0] for line in BASE_LINES[1:]]
    assert request.headers.get("Sec-WebSocket-Key") == RFC_KEY
    findings = validate_request(request)
    assert [(f.check.id, f.severity) for f in findings] == [("http.bare-lf", Severity.WARNING)]


def test_crlf_header_block_end() -> None:
    raw = build(BASE_LINES)
    assert find_header_end(raw) == len(raw)
    assert find_header_end(raw[:-1]) == -1
    assert find_header_end(raw + b"GET") == len(raw)


def test_obs_fold_is_joined() -> None:
    raw = mutate(add=["X-Long: first", "   second", "\tthird"])
    request = parse_request(raw)
    assert request.headers.get("X-Long") == "first second third"
    assert [f.check.id for f in request.syntax] == ["http.malformed", "http.malformed"]


def test_duplicate_headers_kept_in_order() -> None:
    raw = mutate(add=["X-Dup: one", "Other: x", "x-dup: two", "X-DUP: three"])
    request = parse_request(raw)
    assert request.headers.get_all("X-Dup") == ["one", "two", "three"]
    assert request.headers.get("x-dup") == "one, two, three"
    names = [name for name, _ in request.headers]
    assert names[-4:] == ["X-Dup", "Other", "x-dup", "X-DUP"]
    assert len(request.headers) == len(BASE_LINES) - 1 + 4


def test_raw_bytes_kept() -> None:
    raw = mutate(add=["X-Bytes: caf\xe9 \xff\x80"])
    request = parse_request(raw)
    assert request.raw == raw
    assert request.headers.get("X-Bytes") == "caf\xe9 \xff\x80"
    assert request.headers.get("X-Bytes").encode("latin-1") == b"caf\xe9 \xff\x80"  # type: ignore[union-attr]


@pytest.mark.parametrize("line", ["No colon here", "Host : space-before-colon", ": no name"])
def test_malformed_header_line_is_reported_and_skipped(line: str) -> None:
    request = parse_request(mutate(add=[line]))
    assert [f.check.id for f in request.syntax] == ["http.malformed"]
    assert len(request.headers) == len(BASE_LINES) - 1
    assert validate_request(request)[0].check.id == "http.malformed"


@pytest.mark.parametrize("start", ["GET /chat", "GET", "", "GET /chat HTTQ/1.1"])
def test_malformed_request_line(start: str) -> None:
    raw = build([start, *BASE_LINES[1:]]) if start else b"\r\n" + build(BASE_LINES[1:])
    request = parse_request(raw)
    assert request.syntax and request.syntax[0].check.id == "http.malformed"


@pytest.mark.parametrize(("status_line", "status"), [
    ("HTTP/1.1 101 Switching Protocols", 101),
    ("HTTP/1.1 101", 101),
    ("HTTP/1.1 400 Bad  Request", 400),
    ("HTTP/1.1 abc Nope", 0),
    ("HTTP/1.1 1010 Nope", 0),
    ("ICY 200 OK", 200),
])
def test_status_line(status_line: str, status: int) -> None:
    response = parse_response(build([status_line]))
    assert response.status == status
    malformed = [f.check.id for f in response.syntax] == ["http.malformed"]
    assert malformed == (status == 0 or not status_line.startswith("HTTP/"))
