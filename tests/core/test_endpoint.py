"""The endpoint core in both roles: a ClientEndpoint and a ServerEndpoint talking to each other in memory, the client
against hand-written server bytes and against a real ``websockets`` server on 127.0.0.1.

Expected values come from the RFC (section 1.3's key and accept value), from frames encoded by hand (helpers.encode,
helpers.hand_mask) with the masking keys the test itself hands out, and from what the test sent.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from wsinspect.core.connection import Connection, Limits
from wsinspect.core.endpoint import ClientEndpoint, ClientOptions, Role, State
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    Event,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Message,
)
from wsinspect.server.endpoint import ServerConfig, ServerEndpoint

from .helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    RFC_ACCEPT,
    RFC_KEY,
    TEXT,
    cframe,
    encode,
    hand_mask,
    messages,
    of_type,
    sframe,
    violation_ids,
)

CLIENT_ADDRESS = ("127.0.0.1", 50000)
SERVER_ADDRESS = ("127.0.0.1", 8765)


class Keys:
    """An injectable ``random_bytes``: distinct, known bytes for each call, and a record of what it handed out."""

    def __init__(self) -> None:
        self.given: list[bytes] = []
        self._counter = itertools.count(1)

    def __call__(self, count: int) -> bytes:
        seed = next(self._counter)
        value = bytes((seed * 37 + index * 11) % 256 for index in range(count))
        self.given.append(value)
        return value


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def frames_of(events: list[Event], direction: str) -> list[FrameEvent]:
    return [e for e in events if isinstance(e, FrameEvent) and e.direction == direction]


def opened_client(options: ClientOptions | None = None, *, extensions: str | None = None) -> ClientEndpoint:
    """A client that got a hand-written 101 for RFC 6455 1.3's key."""
    client = ClientEndpoint(options or ClientOptions(host="server.example.com", compression=False),
                           client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0, key=RFC_KEY, random_bytes=Keys())
    client.data_to_send()
    client.events()
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {RFC_ACCEPT}"]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    client.receive(("\r\n".join(lines) + "\r\n\r\n").encode(), time=0.1)
    assert client.state is State.OPEN
    return client


class Pair:
    """A ClientEndpoint wired to a ServerEndpoint in memory; the server echoes (like ``serve --mode echo``)."""

    def __init__(self, options: ClientOptions | None = None, config: ServerConfig | None = None) -> None:
        self.clock = itertools.count(1)
        self.keys = Keys()
        self.server = ServerEndpoint(config or ServerConfig(), client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0,
                                     numbering=lambda websocket: 7, on_message=self._echo)
        self.client_messages: list[Message] = []
        self.client = ClientEndpoint(options or ClientOptions(host="127.0.0.1:8765"), client=CLIENT_ADDRESS,
                                     server=SERVER_ADDRESS, time=0.0, stream=7, key=RFC_KEY, random_bytes=self.keys,
                                     on_message=lambda message, now: self.client_messages.append(message))
        self.client_log: list[Event] = self.client.events()
        self.server_log: list[Event] = []
        self.wire: list[tuple[str, bytes]] = []  # every byte each side wrote, in order
        self.pump()

    def _echo(self, message: Message, now: float) -> None:
        self.server.send_message(message.data, time=now, opcode=message.opcode)

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to send."""
        self.client_log += self.client.events()
        self.server_log += self.server.events()
        while True:
            to_server, to_client = self.client.data_to_send(), self.server.data_to_send()
            if not to_server and not to_client:
                return
            if to_server:
                self.wire.append(("c2s", to_server))
                self.server_log += self.server.receive(to_server, time=float(next(self.clock)))
            if to_client:
                self.wire.append(("s2c", to_client))
                self.client_log += self.client.receive(to_client, time=float(next(self.clock)))

    def take_logs(self) -> tuple[list[Event], list[Event]]:
        logs = self.client_log, self.server_log
        self.client_log, self.server_log = [], []
        return logs


# -- the opening handshake ------------------------------------------------------------------------------------


def test_rfc_key_gives_rfc_accept_between_client_and_server() -> None:
    pair = Pair(ClientOptions(host="server.example.com", compression=False))
    [(_, request), (_, response), *_] = pair.wire
    assert b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" in request
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 1.3
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert pair.client.role is Role.CLIENT and pair.server.role is Role.SERVER
    assert pair.client.response is not None and pair.client.response.status == 101
    assert pair.client.subprotocol is None and pair.client.extensions is None and not pair.client.compression
    [answer] = of_type(pair.client_log, HandshakeResponse)
    assert answer.findings == ()


def test_request_is_the_rfc_handshake_with_options_in_order() -> None:
    options = ClientOptions(host="example.com:8080", path="/chat?room=1", origin="http://example.com",
                            subprotocols=("chat", "superchat"), extra_headers=(("Cookie", "a=1"), ("X-Trace", "7")))
    client = ClientEndpoint(options, client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0, key=RFC_KEY)
    assert client.data_to_send() == (
        b"GET /chat?room=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Cookie: a=1\r\n"
        b"X-Trace: 7\r\n"
        b"\r\n")
    events = client.events()
    [request] = of_type(events, HandshakeRequest)
    assert [f.check.id for f in request.findings] == []
    assert client.state is State.CONNECTING and client.data_to_send() == b""


def test_key_is_sixteen_random_bytes_base64() -> None:
    keys = Keys()
    client = ClientEndpoint(ClientOptions(host="h"), client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0,
                            random_bytes=keys)
    assert len(keys.given[0]) == 16
    assert client.key == base64.b64encode(keys.given[0]).decode()
    assert f"Sec-WebSocket-Key: {client.key}\r\n".encode() in client.data_to_send()


def test_header_with_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        ClientEndpoint(ClientOptions(host="h", extra_headers=(("X", "a\r\nInjected: yes"),)),
                       client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0)


def test_hand_written_101_with_the_rfc_accept_opens() -> None:
    client = opened_client()
    assert client.response is not None and client.response.headers.get("Sec-WebSocket-Accept") == RFC_ACCEPT


@pytest.mark.parametrize(("header", "check"), [
    ("Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "response.accept"),
    ("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat",
     "response.protocol-not-offered"),
    ("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate",
     "response.extension-not-offered"),
], ids=lambda value: value if value.startswith("response.") else None)
def test_bad_101_fails_before_open(header: str, check: str) -> None:
    client = ClientEndpoint(ClientOptions(host="h", compression=False), client=CLIENT_ADDRESS, server=SERVER_ADDRESS,
                            time=0.0, key=RFC_KEY)
    client.data_to_send()
    events = client.receive(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"{header}\r\n\r\n").encode(), time=1.0)
    [answer] = of_type(events, HandshakeResponse)
    assert check in [f.check.id for f in answer.findings]
    # RFC 6455 4.1: the client fails the connection; it was never established, so no close frame (7.1.7).
    assert client.state is State.CLOSED and client.wants_transport_closed and not client.awaiting_tcp_close
    assert client.data_to_send() == b""
    client.send_message("too late", time=2.0)
    assert client.data_to_send() == b""


def test_refusal_by_the_server_closes_the_client() -> None:
    pair = Pair(ClientOptions(host="h", origin="http://evil.example"),
                ServerConfig(allowed_origins=("http://good.example",)))
    response = pair.client.response
    assert response is not None and response.status == 403 and b"http://evil.example" in response.body
    assert pair.client.state is State.CLOSED and pair.client.wants_transport_closed
    assert pair.server.state is State.CLOSED and pair.server.wants_transport_closed
    assert [e.upgraded for e in of_type(pair.client_log, HandshakeResponse)] == [False]


def test_refusal_without_a_length_is_complete_when_the_server_hangs_up() -> None:
    client = ClientEndpoint(ClientOptions(host="h"), client=CLIENT_ADDRESS, server=SERVER_ADDRESS, time=0.0)
    client.data_to_send()
    client.events()
    assert client.receive(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nnot ", time=1.0) == []
    client.receive(b"you", time=2.0)
    assert client.response is None and client.state is State.CONNECTING
    events = client.transport_closed(time=3.0, reason="the server closed TCP")
    assert [e.response.status for e in of_type(events, HandshakeResponse)] == [403]
    assert client.response is not None and client.response.body == b"not you"
    assert client.state is State.CLOSED and client.wants_transport_closed

def test_subprotocol_the_server_chose() -> None:
    pair = Pair(ClientOptions(host="h", subprotocols=("chat", "superchat")), ServerConfig(subprotocols=("superchat",)))
    assert pair.client.subprotocol == "superchat" == pair.server.subprotocol


# -- messages -------------------------------------------------------------------------------------------------


def test_client_frames_are_masked_with_a_fresh_key_each() -> None:
    pair = Pair(ClientOptions(host="h", compression=False))
    before = len(pair.keys.given)
    pair.client.send_message("Hello", time=10.0)
    pair.client.send_message(b"\x00\xff", time=11.0)
    sent = pair.client.data_to_send()
    first_key, second_key = pair.keys.given[before:]
    assert first_key != second_key
    assert sent == encode(TEXT, b"Hello", key=first_key) + encode(BINARY, b"\x00\xff", key=second_key)
    assert sent[6:11] == hand_mask(b"Hello", first_key)


@pytest.mark.parametrize("compression", [True, False])
def test_text_and_binary_round_trip(compression: bool) -> None:
    pair = Pair(ClientOptions(host="h", compression=compression), ServerConfig(compression=compression))
    assert pair.client.compression is compression and pair.server.compression is compression
    pair.take_logs()
    sent: list[str | bytes] = ["héllo " * 40, bytes(range(256)) * 3, "", b""]
    for item in sent:
        pair.client.send_message(item, time=20.0)
    pair.pump()
    client_log, server_log = pair.take_logs()
    expected = [item.encode() if isinstance(item, str) else item for item in sent]
    assert [m.data for m in messages(server_log) if m.direction == "c2s"] == expected
    assert [m.data for m in pair.client_messages] == expected
    assert [m.opcode for m in pair.client_messages] == [TEXT, BINARY, TEXT, BINARY]
    assert [m.compressed for m in pair.client_messages] == [compression] * 4
    assert all(f.frame.rsv1 is compression for f in frames_of(client_log, "c2s"))
    assert violation_ids(client_log + server_log) == []


@pytest.mark.parametrize("compression", [True, False])
def test_fragmented_both_ways(compression: bool) -> None:
    pair = Pair(ClientOptions(host="h", compression=compression, fragment_size=4),
                ServerConfig(compression=compression, fragment_size=5))
    pair.take_logs()
    text = "Hello, fragmented world! " * 3
    pair.client.send_message(text, time=30.0)
    pair.pump()
    client_log, server_log = pair.take_logs()
    [received] = [m for m in messages(server_log) if m.direction == "c2s"]
    assert received.text == text and received.frames > 1
    client_frames = frames_of(server_log, "c2s")
    assert [f.frame.opcode for f in client_frames] == [TEXT] + [CONT] * (len(client_frames) - 1)
    assert all(f.frame.payload_length <= 4 for f in client_frames)
    assert [f.frame.fin for f in client_frames] == [False] * (len(client_frames) - 1) + [True]
    assert [f.frame.rsv1 for f in client_frames] == [compression] + [False] * (len(client_frames) - 1)
    [echo] = pair.client_messages
    assert echo.text == text and echo.frames > 1
    assert all(f.frame.payload_length <= 5 for f in frames_of(client_log, "s2c"))
    assert violation_ids(client_log + server_log) == []


@pytest.mark.parametrize("compression", [True, False])
def test_send_fragmented_in_parts_even_inside_a_character(compression: bool) -> None:
    pair = Pair(ClientOptions(host="h", compression=compression), ServerConfig(compression=compression))
    pair.take_logs()
    pair.client.send_fragmented("héllo", 5, time=40.0)  # 6 bytes in 5 frames: 'é' is cut in two when uncompressed
    pair.server.send_fragmented(b"\x01\x02\x03", 3, time=41.0)
    pair.pump()
    client_log, server_log = pair.take_logs()
    assert [f.frame.opcode for f in frames_of(server_log, "c2s")] == [TEXT, CONT, CONT, CONT, CONT]
    [received] = [m for m in messages(server_log) if m.direction == "c2s"]
    assert received.text == "héllo" and received.frames == 5
    assert [f.frame.opcode for f in frames_of(client_log, "s2c")][:3] == [BINARY, CONT, CONT]
    [fragmented_by_server, echo] = pair.client_messages  # the server's was queued before it read ours
    assert (fragmented_by_server.data, fragmented_by_server.frames) == (b"\x01\x02\x03", 3)
    assert echo.text == "héllo"
    assert violation_ids(client_log + server_log) == []
    with pytest.raises(ValueError):
        pair.client.send_fragmented("x", 0, time=42.0)


def test_ping_pong_both_ways() -> None:
    pair = Pair(ClientOptions(host="h"))
    pair.take_logs()
    pair.client.send_ping(b"from client", time=50.0)
    pair.server.send_ping(b"from server", time=51.0)
    pair.pump()
    client_log, server_log = pair.take_logs()
    assert [(f.frame.opcode, f.frame.payload) for f in frames_of(client_log, "s2c")] == [
        (PING, b"from server"), (PONG, b"from client")]
    pongs = [f.frame for f in frames_of(server_log, "c2s") if f.frame.opcode == PONG]
    assert [(p.payload, p.masked) for p in pongs] == [(b"from server", True)]
    with pytest.raises(ValueError):
        pair.client.send_ping(b"x" * 126, time=52.0)


# -- closing --------------------------------------------------------------------------------------------------


def test_close_from_the_client() -> None:
    pair = Pair(ClientOptions(host="h"))
    pair.take_logs()
    pair.client.close(1000, "done", time=60.0)
    assert (pair.client.state, pair.client.wants_transport_closed) == (State.CLOSING, False)
    pair.pump()
    _, server_log = pair.take_logs()
    assert [(c.direction, c.code, c.reason) for c in of_type(server_log, Close)] == [
        ("c2s", 1000, "done"), ("s2c", 1000, "")]
    # RFC 6455 7.1.1: the server closes TCP at once; the client waits for it.
    assert pair.server.state is State.CLOSED and pair.server.wants_transport_closed
    assert pair.client.state is State.CLOSED and pair.client.awaiting_tcp_close
    assert not pair.client.wants_transport_closed
    assert pair.client.close_initiator == "client" == pair.server.close_initiator
    [ended] = of_type(pair.client.transport_closed(time=61.0, reason="the server closed TCP"), ConnectionClosed)
    assert ended.clean and pair.client.wants_transport_closed and not pair.client.awaiting_tcp_close


def test_close_from_the_server() -> None:
    pair = Pair(ClientOptions(host="h"))
    pair.take_logs()
    pair.server.close(1001, "going away", time=70.0)
    assert [pair.server.state] == [State.CLOSING]
    pair.pump()
    client_log, _ = pair.take_logs()
    assert [(c.direction, c.code) for c in of_type(client_log, Close)] == [("s2c", 1001), ("c2s", 1001)]
    [echo] = [f.frame for f in frames_of(client_log, "c2s")]
    assert echo.opcode == CLOSE and echo.masked and echo.payload == close_payload(1001)
    assert pair.server.state is State.CLOSED and pair.server.wants_transport_closed
    assert pair.client.state is State.CLOSED and pair.client.awaiting_tcp_close
    assert pair.client.close_initiator == "server" == pair.server.close_initiator


def test_close_without_a_code_is_answered_without_one() -> None:
    pair = Pair(ClientOptions(host="h"))
    pair.take_logs()
    pair.client.close(None, time=80.0)
    pair.pump()
    client_log, _ = pair.take_logs()
    assert [(c.direction, c.code) for c in of_type(client_log, Close)] == [("c2s", None), ("s2c", None)]
    with pytest.raises(ValueError):
        opened_client().close(None, "a reason needs a code", time=81.0)


def test_while_closing_pings_and_messages_are_only_logged() -> None:
    delivered: list[Message] = []
    client = opened_client()
    client.on_message = lambda message, now: delivered.append(message)
    client.close(1000, time=1.0)
    client.data_to_send()
    events = client.receive(sframe(PING, b"late ping") + sframe(TEXT, b"late message"), time=2.0)
    # RFC 6455 5.5.1: after its close frame an endpoint sends no data, and need not process what still arrives.
    assert [m.data for m in messages(events)] == [b"late message"] and delivered == []
    assert (client.data_to_send(), client.state) == (b"", State.CLOSING)
    client.receive(sframe(CLOSE, close_payload(1000)), time=3.0)
    assert client.data_to_send() == b"" and client.state is State.CLOSED and client.awaiting_tcp_close

# -- violations: each side fails the connection with the check's close code ---------------------------------


@pytest.mark.parametrize(("server_bytes", "code", "check"), [
    (cframe(TEXT, b"masked"), 1002, "frame.server-masked"),  # RFC 6455 5.1
    (sframe(TEXT, b"\xff\xfe"), 1007, "message.invalid-utf8"),  # RFC 6455 8.1
    (sframe(PING, b"x" * 126), 1002, "control.too-long"),  # RFC 6455 5.5: and no pong for it
    (sframe(PING, b"part", fin=False), 1002, "control.fragmented"),
    (sframe(CLOSE, close_payload(1005)), 1002, "close.code-invalid"),  # RFC 6455 7.4.1: not echoed
], ids=lambda value: value if isinstance(value, str) else None)
def test_client_fails_a_server_that_breaks_a_rule(server_bytes: bytes, code: int, check: str) -> None:
    delivered: list[Message] = []
    client = opened_client()
    client.on_message = lambda message, now: delivered.append(message)
    events = client.receive(sframe(TEXT, b"fine") + server_bytes, time=1.0)
    assert check in violation_ids(events)
    assert [m.data for m in delivered] == [b"fine"]  # the valid message before the bad frame still arrives
    [answer] = frames_of(events, "c2s")  # only the failing close: no pong, no echo
    assert answer.frame.opcode == CLOSE and answer.frame.masked
    assert answer.frame.payload[:2] == code.to_bytes(2, "big")
    assert client.state is State.CLOSED and client.awaiting_tcp_close and client.close_initiator == "client"
    assert client.data_to_send().startswith(b"\x88")  # the failing close, written once
    assert client.receive(sframe(PING, b"after"), time=2.0)  # still decoded for the log ...
    assert client.data_to_send() == b""  # ... and never answered (RFC 6455 7.1.7)


@pytest.mark.parametrize(("client_bytes", "code", "check"), [
    (sframe(TEXT, b"unmasked"), 1002, "frame.client-unmasked"),  # RFC 6455 5.1
    (cframe(TEXT, b"\xc3"), 1007, "message.invalid-utf8"),
    (cframe(PING, b"x" * 126), 1002, "control.too-long"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_server_fails_a_client_that_breaks_a_rule(client_bytes: bytes, code: int, check: str) -> None:
    pair = Pair(ClientOptions(host="h", compression=False))
    pair.take_logs()
    events = pair.server.receive(cframe(TEXT, b"fine") + client_bytes, time=90.0)
    assert check in violation_ids(events)
    answers = [f.frame for f in frames_of(events, "s2c")]
    assert [a.opcode for a in answers] == [TEXT, CLOSE]
    assert answers[0].payload == b"fine"  # the echo goes out before the close
    assert answers[1].payload[:2] == code.to_bytes(2, "big")
    assert pair.server.state is State.CLOSED and pair.server.wants_transport_closed
    # The client takes the server's close as the end and echoes it.
    client_events = pair.client.receive(pair.server.data_to_send(), time=91.0)
    assert [c.code for c in of_type(client_events, Close)] == [code, code]
    assert pair.client.state is State.CLOSED and pair.client.awaiting_tcp_close


def test_client_bounds_the_frames_of_one_message() -> None:
    client = opened_client(ClientOptions(host="h", compression=False, max_fragments=3))
    events = client.receive(sframe(TEXT, b"a", fin=False) + sframe(CONT, b"b", fin=False) * 3, time=1.0)
    [answer] = frames_of(events, "c2s")
    assert answer.frame.payload[:2] == (1009).to_bytes(2, "big") and client.state is State.CLOSED


def test_client_inflates_what_a_deflating_server_sends() -> None:
    client = opened_client(ClientOptions(host="h"), extensions="permessage-deflate; client_no_context_takeover")
    assert client.compression and client.extensions == "permessage-deflate; client_no_context_takeover"
    # RFC 7692 7.2.3.1: "Hello" compressed, unmasked.
    events = client.receive(bytes.fromhex("c107f248cdc9c90700"), time=1.0)
    [message] = messages(events)
    assert message.text == "Hello" and message.compressed


# -- the client's bytes, read by an independent decoder -------------------------------------------------------


def test_what_the_pair_wrote_decodes_cleanly_on_its_own() -> None:
    pair = Pair(ClientOptions(host="h", fragment_size=7, subprotocols=("chat",)),
                ServerConfig(subprotocols=("chat",), fragment_size=9))
    pair.client.send_message("one " * 20, time=100.0)
    pair.client.send_fragmented(b"two" * 10, 4, time=101.0)
    pair.client.send_ping(b"?", time=102.0)
    pair.client.close(1000, "bye", time=103.0)
    pair.pump()
    decoder = Connection(3, limits=Limits())
    events: list[Event] = []
    for number, (direction, data) in enumerate(pair.wire):
        events += decoder.receive(direction, data, time=float(number))  # type: ignore[arg-type]
    events += decoder.end(time=99.0)
    assert violation_ids(events) == []
    assert all(f.frame.masked for f in frames_of(events, "c2s"))
    assert [m.data for m in messages(events) if m.direction == "c2s"] == [b"one " * 20, b"two" * 10]
    assert [m.data for m in messages(events) if m.direction == "s2c"] == [b"one " * 20, b"two" * 10]
    assert of_type(events, ConnectionClosed)[0].clean


# -- against a real server: the websockets library on 127.0.0.1 -----------------------------------------------

TIMEOUT = 10.0


class LiveClient:
    """The smallest asyncio transport for a ClientEndpoint: write what it wants sent, feed it what arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: ClientEndpoint) -> None:
        self.reader, self.writer, self.endpoint = reader, writer, endpoint
        self.log: list[Event] = endpoint.events()
        self.flush()

    def flush(self) -> None:
        self.log += self.endpoint.events()
        data = self.endpoint.data_to_send()
        if data:
            self.writer.write(data)

    async def until(self, done: Callable[[list[Event]], bool]) -> None:
        while not done(self.log):
            data = await self.reader.read(65536)
            if not data:
                self.log += self.endpoint.transport_closed(time=time.time(), reason="the server closed TCP")
                return
            self.log += self.endpoint.receive(data, time=time.time())
            self.flush()


async def live_session(options: ClientOptions, script: Callable[[LiveClient], Any], **serve_kwargs: Any
                       ) -> list[Event]:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, ping_interval=None, **serve_kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        endpoint = ClientEndpoint(options, client=writer.get_extra_info("sockname")[:2], server=("127.0.0.1", port),
                                  time=time.time())
        live = LiveClient(reader, writer, endpoint)
        await live.until(lambda log: bool(of_type(log, HandshakeResponse)))
        await script(live)
        writer.close()
        return live.log


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


SENT: list[str | bytes] = ["hello websockets", b"\x00\x01\x02" * 1000, "ünïcödé " * 500, ""]


@pytest.mark.parametrize("compression", [True, False])
def test_against_a_websockets_server(compression: bool) -> None:
    async def script(live: LiveClient) -> None:
        endpoint = live.endpoint
        assert endpoint.state is State.OPEN
        for item in SENT:
            endpoint.send_message(item, time=time.time())
        endpoint.send_fragmented("in three parts", 3, time=time.time())
        endpoint.send_ping(b"are you there", time=time.time())
        live.flush()
        await live.until(lambda log: len([m for m in messages(log) if m.direction == "s2c"]) == len(SENT) + 1
                         and any(f.frame.opcode == PONG for f in frames_of(log, "s2c")))
        endpoint.close(1000, "thanks", time=time.time())
        live.flush()
        await live.until(lambda log: bool(of_type(log, ConnectionClosed)))

    log = run(live_session(ClientOptions(host="127.0.0.1", compression=compression), script,
                           compression="deflate"))
    [answer] = of_type(log, HandshakeResponse)
    assert answer.upgraded and answer.findings == ()
    assert (answer.deflate is not None) is compression
    expected = [item.encode() if isinstance(item, str) else item for item in SENT] + [b"in three parts"]
    assert [m.data for m in messages(log) if m.direction == "s2c"] == expected
    if compression:
        assert any(m.compressed for m in messages(log) if m.direction == "s2c")
        assert any(f.frame.rsv1 for f in frames_of(log, "c2s"))
    assert [f.frame.payload for f in frames_of(log, "s2c") if f.frame.opcode == PONG] == [b"are you there"]
    # The server accepted every frame (a masking or framing mistake would have drawn a 1002) and echoed the close.
    assert [(c.direction, c.code) for c in of_type(log, Close)] == [("c2s", 1000), ("s2c", 1000)]
    assert violation_ids(log) == []
    [ended] = of_type(log, ConnectionClosed)
    assert ended.clean


def test_a_websockets_server_that_refuses() -> None:
    def refuse(connection: ServerConnection, request: WsRequest) -> WsResponse:
        return connection.respond(HTTPStatus.FORBIDDEN, "not you\n")

    async def script(live: LiveClient) -> None:
        assert live.endpoint.wants_transport_closed

    log = run(live_session(ClientOptions(host="127.0.0.1"), script, process_request=refuse))
    [answer] = of_type(log, HandshakeResponse)
    assert not answer.upgraded and answer.response.status == 403 and answer.response.body == b"not you\n"
    assert "response.status" in [f.check.id for f in answer.findings]
    assert not frames_of(log, "c2s")

