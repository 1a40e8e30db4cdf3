"""How the trace decides what a TCP stream is, fed flow items directly (no capture file needed for the items).

A plain HTTP GET is a WebSocket conversation only when the server answers it as a WebSocket endpoint does (426, or
``Upgrade: websocket``); a TLS stream is reported from its ClientHello, which may span segments; capture notices
that arrive before a stream is decided come after its ConnectionOpened, or not at all for a skipped stream. The
ClientHello reader is checked against a real one made by Python's ``ssl`` module, and fuzzed.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from wsinspect.capture.reassembly import FlowClosed, FlowData, FlowItem, FlowNotice, FlowOpened
from wsinspect.core.events import ConnectionClosed, ConnectionOpened, Event, HandshakeRequest, HandshakeResponse, Notice
from wsinspect.trace import CaptureTrace, describe_client_hello, looks_like_tls

from .support import capture_path

CLIENT, SERVER = ("10.0.0.1", 50000), ("10.0.0.2", 8080)


def run(items: Iterable[FlowItem], server_ports: tuple[int, ...] = ()) -> tuple[list[Event], CaptureTrace]:
    trace = CaptureTrace(capture_path("echo"), server_ports=server_ports)  # the file is not read here
    events: list[Event] = []
    for item in items:
        events += trace._flow_item(item)
    return events, trace


def opened() -> FlowOpened:
    return FlowOpened(flow=0, time=0.0, packet=1, client=CLIENT, server=SERVER, client_reason="SYN",
                      mid_stream=False)


def data(direction: str, payload: bytes, packet: int) -> FlowData:
    return FlowData(flow=0, time=packet / 10, packet=packet, direction=direction, data=payload)  # type: ignore[arg-type]


def closed(packet: int) -> FlowClosed:
    return FlowClosed(flow=0, time=packet / 10, packet=packet, reason="FIN")


def notice(packet: int) -> FlowNotice:
    return FlowNotice(flow=0, time=packet / 10, packet=packet, direction="c2s", check="capture.one-sided",
                      message="only one direction was captured")


PLAIN_GET = b"GET /live HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
UPGRADE_REQUIRED = b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n"


def test_a_plain_get_answered_with_a_page_is_skipped() -> None:
    events, trace = run([opened(), data("c2s", PLAIN_GET, 2), data("s2c", PAGE, 3), closed(4)])
    assert events == [] and trace.stats.skipped_streams == 1


def test_a_plain_get_answered_426_is_a_failed_handshake() -> None:
    events, trace = run([opened(), data("c2s", PLAIN_GET, 2), data("s2c", UPGRADE_REQUIRED, 3), closed(4)])
    assert [type(e) for e in events] == [ConnectionOpened, HandshakeRequest, HandshakeResponse, ConnectionClosed]
    request, response = events[1], events[2]
    assert isinstance(request, HandshakeRequest) and isinstance(response, HandshakeResponse)
    assert "request.upgrade-stripped" in [f.check.id for f in request.findings]
    assert response.response.status == 426 and not response.upgraded
    assert trace.stats.skipped_streams == 0


def test_a_notice_before_the_decision_follows_connection_opened() -> None:
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    events, _ = run([opened(), notice(2), data("c2s", upgrade[:20], 3), notice(4), data("c2s", upgrade[20:], 5)])
    kinds = [type(e) for e in events]
    assert kinds[0] is ConnectionOpened and kinds.count(Notice) == 2
    assert all(isinstance(e, Notice) for e in events[1:3]) and isinstance(events[3], HandshakeRequest)


def test_a_notice_for_a_skipped_stream_is_dropped() -> None:
    events, trace = run([opened(), notice(2), data("c2s", PLAIN_GET, 3), data("s2c", PAGE, 4), notice(5),
                         closed(6)])
    assert events == [] and trace.stats.skipped_streams == 1


def real_client_hello(server_name: str, alpn: list[str]) -> bytes:
    """The first flight of a real TLS client (Python's ssl module, OpenSSL), through memory BIOs."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server's answer, which never comes
        client.do_handshake()
    return outgoing.read()


def test_client_hello_of_a_real_tls_client() -> None:
    hello = real_client_hello("chat.example.test", ["h2", "http/1.1"])
    assert looks_like_tls(hello)
    described = describe_client_hello(hello)
    assert "server name (SNI) chat.example.test" in described and "ALPN h2, http/1.1" in described
    assert "TLS 1.3" in described  # OpenSSL 3 offers 1.3 first (supported_versions, RFC 8446 4.2.1)


def test_a_client_hello_split_over_segments_is_reported_once_whole() -> None:
    hello = real_client_hello("split.example.test", ["http/1.1"])
    items: list[FlowItem] = [opened()]
    items += [data("c2s", hello[i : i + 100], 2 + i // 100) for i in range(0, len(hello), 100)]
    items += [notice(90), data("s2c", b"\x16\x03\x03\x00\x10" + bytes(16), 91), closed(92)]
    events, _ = run(items, server_ports=(SERVER[1],))  # --port does not turn TLS into frames
    assert [type(e) for e in events] == [ConnectionOpened, Notice, Notice, ConnectionClosed]
    tls = events[1]
    assert isinstance(tls, Notice) and tls.check.id == "capture.tls" and "split.example.test" in tls.message
    assert tls.packet == 2 + (len(hello) - 1) // 100  # reported when the record was complete


def test_hostile_server_name_is_escaped() -> None:
    hello = bytearray(real_client_hello("abcdefghijklmnop.test", []))
    at = hello.find(b"abcdefghijklmnop")
    hello[at : at + 4] = b"\x1b[2J"
    described = describe_client_hello(bytes(hello))
    assert "\x1b" not in described and "\\x1b[2J" in described


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=5))
def test_client_hello_reader_never_raises(noise: bytes, cut: int) -> None:
    hello = real_client_hello_cached()
    mixed = hello[: len(hello) * cut // 5] + noise
    for candidate in (noise, b"\x16\x03\x01" + noise, mixed):
        described = describe_client_hello(candidate)
        assert described.isascii() and described.isprintable()


_HELLO: list[bytes] = []


def real_client_hello_cached() -> bytes:
    if not _HELLO:
        _HELLO.append(real_client_hello("fuzz.example.test", ["http/1.1"]))
    return _HELLO[0]
