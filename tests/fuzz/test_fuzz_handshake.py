"""Fuzz target 1: the opening handshake's parsers and validators on mutated real handshakes never raise.

Seeds: RFC 6455 1.3's example and every header block at the start of a shipped capture's streams. Besides byte
edits, the mutations aim at the conversions of wire text into numbers (issue 7): duplicated header lines and huge,
non-ASCII or signed numbers in Sec-WebSocket-Version, Content-Length and permessage-deflate's window bits.
"""

from __future__ import annotations

from fuzz_support import fuzz_settings, handshake_seeds, mutated
from hypothesis import given
from hypothesis import strategies as st

from wsinspect.core.deflate import negotiate, params_from_response
from wsinspect.core.handshake import (
    blocking,
    find_header_end,
    parse_extensions,
    parse_request,
    parse_response,
    validate_request,
    validate_response,
)

NUMBERS = [b"0", b"8", b"13", b"15", b"16", b"-1", b"+13", b" 13 ", b"1_3", b"0x0d", b"1e3", b"\xb2", b"\xd9\xa3",
           b"9" * 20, b"9" * 4301, b"9" * 5000, b""]
NUMBER_HEADERS = [b"Sec-WebSocket-Version: ", b"Content-Length: ",
                  b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=",
                  b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=",
                  b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=",
                  b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover="]


@st.composite
def hostile_header_lines(draw: st.DrawFn) -> bytes:
    return b"\r\n" + draw(st.sampled_from(NUMBER_HEADERS)) + draw(st.sampled_from(NUMBERS))


@st.composite
def mutated_head(draw: st.DrawFn, head: bytes) -> bytes:
    """A header block with lines duplicated or added (hostile numbers), then byte edits anywhere."""
    lines = head.split(b"\r\n")
    for _ in range(draw(st.integers(0, 3), label="line edits")):
        at = draw(st.integers(1, max(len(lines) - 2, 1)), label="line")
        if draw(st.booleans(), label="duplicate line") and at < len(lines):
            lines.insert(at, lines[at])
        else:
            lines.insert(at, draw(hostile_header_lines())[2:])
    if draw(st.booleans(), label="many headers"):
        lines[1:1] = [b"X-Filler: " + str(n).encode() for n in range(draw(st.integers(0, 1200)))]
    return draw(mutated(b"\r\n".join(lines), extra=hostile_header_lines()))


@st.composite
def handshakes(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    request, response = draw(st.sampled_from(handshake_seeds()), label="seed")
    body = draw(st.binary(max_size=64), label="body")
    return draw(mutated_head(request), label="request"), draw(mutated_head(response), label="response"), body


def check_handshake(request_raw: bytes, response_raw: bytes, body: bytes) -> None:
    """The contract: parsing and validating any header block never raises, and what is parsed came from it."""
    request = parse_request(request_raw)
    response = parse_response(response_raw, body)
    assert request.raw == request_raw and response.raw == response_raw
    assert len(request.headers) <= request_raw.count(b"\n") + 1
    findings = validate_request(request) + validate_request(request, allowed_origins=["http://example.com"])
    findings += validate_response(response, request) + validate_response(response, None)
    blocking(findings)
    offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
    negotiate(offers)
    for accepted in parse_extensions(response.headers.get_all("Sec-WebSocket-Extensions")):
        for offer in (None, *offers):
            params, _ = params_from_response(accepted, offer)
            # A negotiated window is what zlib can use, whatever number the wire said.
            for client in (True, False):
                assert 8 <= params.max_window_bits(client) <= 15
    find_header_end(request_raw + response_raw)


@fuzz_settings(ci_examples=100)
@given(handshake=handshakes())
def test_handshake_parsers_never_raise(handshake: tuple[bytes, bytes, bytes]) -> None:
    check_handshake(*handshake)


@fuzz_settings(ci_examples=100)
@given(request=st.binary(max_size=600), response=st.binary(max_size=600))
def test_handshake_parsers_on_arbitrary_bytes(request: bytes, response: bytes) -> None:
    check_handshake(request, response, b"")
