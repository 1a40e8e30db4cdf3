"""``wsinspect serve`` against a second, independent peer: the ``websocket-client`` library (no compression).

Besides plain echo, its ``send_frame`` builds frames by hand, which is how the protocol violations are sent; a
reserved opcode, which ``ABNF`` refuses to build, goes out as raw bytes on the library's socket.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import websocket
from serve_support import Server, frames, of_type
from websocket import ABNF

TIMEOUT = 3.0


def connect(server: Server) -> websocket.WebSocket:
    return websocket.create_connection(server.url, timeout=TIMEOUT, http_no_proxy=["127.0.0.1"])


def read_until_eof(ws: websocket.WebSocket, limit: int = 20) -> list[ABNF]:
    """Every frame the server sends until it closes the TCP connection (at most ``limit``, within TIMEOUT)."""
    got: list[ABNF] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < limit and time.monotonic() < deadline:
        try:
            got.append(ws.recv_frame())
        except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
            return got
    raise AssertionError(f"the server did not close the connection; frames so far: {got}")


def close_code(frame: ABNF) -> int:
    assert frame.opcode == ABNF.OPCODE_CLOSE, frame
    return int(struct.unpack("!H", frame.data[:2])[0])


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame built byte by byte (for what ``ABNF.format`` refuses to build)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    if size < 126:
        header = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    key = os.urandom(4)
    return header + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


# -- conforming traffic -----------------------------------------------------------------------------------------


def test_text_and_binary_echo_and_ping(serve: Callable[..., Server]) -> None:
    server = serve()
    ws = connect(server)
    try:
        assert ws.getheaders().get("sec-websocket-extensions") is None  # websocket-client offers none
        ws.send("hello from websocket-client")
        assert ws.recv() == "hello from websocket-client"
        ws.send_binary(b"\x00\xff\x10")
        assert ws.recv() == b"\x00\xff\x10"
        ws.ping("p1")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert (opcode, frame.data) == (ABNF.OPCODE_PONG, b"p1")
    finally:
        ws.close()
    assert server.stop() == 0
    events = server.events()
    assert [(m["direction"], bytes.fromhex(m["data"])) for m in of_type(events, "message")] == [
        ("c2s", b"hello from websocket-client"), ("s2c", b"hello from websocket-client"),
        ("c2s", b"\x00\xff\x10"), ("s2c", b"\x00\xff\x10")]
    assert [c["code"] for c in of_type(events, "close")] == [1000, 1000]
    assert not of_type(events, "violation")


def test_hand_built_fragments_with_an_interleaved_ping(serve: Callable[..., Server]) -> None:
    """RFC 6455 5.4: control frames may be injected in the middle of a fragmented message."""
    server = serve()
    ws = connect(server)
    try:
        ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_TEXT, data=b"Hel"))
        ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_CONT, data=b"lo, "))
        ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_PING, data=b"in the middle"))
        ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_CONT, data="wörld".encode()))
        first = ws.recv_frame()
        second = ws.recv_frame()
        # The pong can only come first: the message is not complete until the last fragment.
        assert (first.opcode, first.data) == (ABNF.OPCODE_PONG, b"in the middle")
        assert (second.opcode, second.fin, second.data.decode()) == (ABNF.OPCODE_TEXT, 1, "Hello, wörld")
        # A fragmented binary message too.
        ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_BINARY, data=b"\x01"))
        ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_CONT, data=b"\x02"))
        assert ws.recv() == b"\x01\x02"
    finally:
        ws.close()
    log = server.wait_for("closed (the client started the close; clean close)")
    assert "text message (3 frames, " in log
    assert server.stop() == 0
    events = server.events()
    c2s = [(f["opcode_name"], f["websocket.fin"]) for f in frames(events, "c2s")]
    assert c2s[:4] == [("Text", False), ("Continuation", False), ("Ping", True), ("Continuation", True)]
    messages = of_type(events, "message", "c2s")
    assert [(m["text"], m["frames"]) for m in messages] == [("Hello, wörld", 3), (None, 2)]
    assert not of_type(events, "violation")


# -- protocol violations ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    name: str
    send: Callable[[websocket.WebSocket], Any]
    code: int  # the close code a conforming server fails the connection with (RFC 6455 7.4.1)
    check: str  # wsinspect's check id
    rfc: str  # the section the terminal and the JSON name


def _raw(data: bytes) -> Callable[[websocket.WebSocket], Any]:
    return lambda ws: ws.sock.sendall(data)


def _frame(**kwargs: Any) -> Callable[[websocket.WebSocket], Any]:
    return lambda ws: ws.send_frame(ABNF(**kwargs))


VIOLATIONS = [
    Violation("unmasked", _frame(fin=1, opcode=ABNF.OPCODE_TEXT, mask_value=0, data=b"naked"),
              1002, "frame.client-unmasked", "RFC 6455 5.1"),
    Violation("reserved-opcode", _raw(masked(0x3, b"?")), 1002, "frame.opcode-reserved", "RFC 6455 5.2"),
    Violation("reserved-control-opcode", _raw(masked(0xB, b"")), 1002, "frame.opcode-reserved", "RFC 6455 5.2"),
    Violation("rsv2", _frame(fin=1, rsv2=1, opcode=ABNF.OPCODE_TEXT, data=b"x"), 1002, "frame.rsv", "RFC 6455 5.2"),
    # RSV1 without permessage-deflate negotiated (websocket-client offers no extension).
    Violation("rsv1-unnegotiated", _frame(fin=1, rsv1=1, opcode=ABNF.OPCODE_TEXT, data=b"x"), 1002, "frame.rsv",
              "RFC 6455 5.2"),
    Violation("invalid-utf8", _frame(fin=1, opcode=ABNF.OPCODE_TEXT, data=b"ok \xff\xfe"), 1007,
              "message.invalid-utf8", "RFC 6455 8.1"),
    Violation("invalid-utf8-across-fragments",
              lambda ws: (ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_TEXT, data=b"\xe2\x82")),
                          ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_CONT, data=b"\x28"))),
              1007, "message.invalid-utf8", "RFC 6455 8.1"),
    Violation("fragmented-ping", _frame(fin=0, opcode=ABNF.OPCODE_PING, data=b"p"), 1002, "control.fragmented",
              "RFC 6455 5.5"),
    Violation("ping-126-bytes", _frame(fin=1, opcode=ABNF.OPCODE_PING, data=b"p" * 126), 1002, "control.too-long",
              "RFC 6455 5.5"),
    Violation("message-over-max-message", _frame(fin=1, opcode=ABNF.OPCODE_BINARY, data=b"b" * 1001), 1009,
              "message.too-big", "RFC 6455 10.4"),
    Violation("fragments-over-max-message",
              lambda ws: [ws.send_frame(ABNF(fin=int(i == 2), opcode=ABNF.OPCODE_BINARY if i == 0 else 0,
                                             data=b"f" * 400)) for i in range(3)],
              1009, "message.too-big", "RFC 6455 10.4"),
    Violation("continuation-without-start", _frame(fin=1, opcode=ABNF.OPCODE_CONT, data=b"orphan"), 1002,
              "fragment.unexpected-continuation", "RFC 6455 5.4"),
    Violation("new-message-inside-fragmented-one",
              lambda ws: (ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_TEXT, data=b"a")),
                          ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_TEXT, data=b"b"))),
              1002, "fragment.interleaved", "RFC 6455 5.4"),
    Violation("close-code-1005", _frame(fin=1, opcode=ABNF.OPCODE_CLOSE, data=struct.pack("!H", 1005)), 1002,
              "close.code-invalid", "RFC 6455 7.4"),
    Violation("close-one-byte", _frame(fin=1, opcode=ABNF.OPCODE_CLOSE, data=b"\x03"), 1002,
              "close.payload-one-byte", "RFC 6455 5.5.1"),
]


def fail_with(server: Server, case: Violation) -> tuple[int, str]:
    """Send the violation on a new connection; return the close code and reason the server answered with."""
    ws = connect(server)
    try:
        case.send(ws)
        got = read_until_eof(ws)
    finally:
        ws.shutdown()
    closes = [f for f in got if f.opcode == ABNF.OPCODE_CLOSE]
    assert len(closes) == 1, got
    return close_code(closes[0]), closes[0].data[2:].decode("utf-8")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the violation cases (they run one after another, each on a connection of its own)."""
    server = Server(["--max-message", "1000"], tmp_path_factory.mktemp("violations"), json_log=False)
    yield server
    try:
        assert server.stop() == 0
    finally:
        server.kill()


@pytest.mark.parametrize("case", VIOLATIONS, ids=[v.name for v in VIOLATIONS])
def test_violation_fails_the_connection(strict_server: Server, case: Violation) -> None:
    streams_before = strict_server.next_number()
    code, reason = fail_with(strict_server, case)
    assert code == case.code
    assert reason  # the close frame says why
    # The terminal: the violation with its close code and RFC section, then the server's close frame.
    log = strict_server.section(streams_before)
    assert f"⚠ [{case.code}] {case.rfc}: " in log
    assert f"Close [FIN] {case.code} " in log


def test_json_log_of_violations_and_server_still_serves(serve: Callable[..., Server]) -> None:
    """All the violations on one server, one connection each; then a new client is still served."""
    server = serve("--max-message", "1000")
    answers = [fail_with(server, case) for case in VIOLATIONS]
    assert [code for code, _ in answers] == [case.code for case in VIOLATIONS]
    ws = connect(server)
    try:
        ws.send("still here?")
        assert ws.recv() == "still here?"
    finally:
        ws.close()
    assert server.stop() == 0
    events = server.events()
    for stream, (case, (code, reason)) in enumerate(zip(VIOLATIONS, answers, strict=True)):
        mine = [e for e in events if e["stream"] == stream]
        violations = [v for v in of_type(mine, "violation", "c2s") if v["check"] == case.check]
        assert violations, (case.name, of_type(mine, "violation"))
        assert (violations[0]["rfc"], violations[0]["close_code"], violations[0]["severity"]) == (
            case.rfc, case.code, "error"), case.name
        assert [(c["code"], c["reason"]) for c in of_type(mine, "close", "s2c")] == [(code, reason)], case.name
        assert of_type(mine, "connection_closed"), case.name
    last = [e for e in events if e["stream"] == len(VIOLATIONS)]
    assert [m["text"] for m in of_type(last, "message")] == ["still here?", "still here?"]
    assert not of_type(last, "violation")


INVALID_PINGS = [v for v in VIOLATIONS if v.check.startswith("control.")]


@pytest.mark.parametrize("case", INVALID_PINGS, ids=[v.name for v in INVALID_PINGS])
def test_invalid_ping_gets_no_pong(serve: Callable[..., Server], case: Violation) -> None:
    server = serve()
    ws = connect(server)
    try:
        case.send(ws)
        got = read_until_eof(ws)
    finally:
        ws.shutdown()
    assert server.stop() == 0
    sent = [f["opcode_name"] for f in frames(server.events(), "s2c")]
    assert not of_type(server.events(), "violation", "s2c")  # the server never breaks a rule itself
    assert sent == ["Close"]
    assert [f.opcode for f in got] == [ABNF.OPCODE_CLOSE]


def test_abrupt_disconnect_mid_message_is_survived(serve: Callable[..., Server]) -> None:
    """A client that vanishes inside a fragmented message (no close frame) leaves the server serving."""
    server = serve()
    ws = connect(server)
    ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_TEXT, data=b"never fin"))
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    ws.sock.close()
    server.wait_for("#0 closed (")
    ws = connect(server)
    try:
        ws.send("next")
        assert ws.recv() == "next"
    finally:
        ws.close()
    log = server.wait_for("#1 closed (")
    assert "#0 closed (" in log and "no complete close handshake" in log
    assert server.stop() == 0
