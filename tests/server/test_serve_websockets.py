"""``wsinspect serve`` against the ``websockets`` library's client: a conforming real peer, with compression."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from serve_support import Server, frames, of_type
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

TIMEOUT = 5.0


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def client(server: Server, **kwargs: Any) -> Any:
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    kwargs.setdefault("ping_interval", None)  # only the pings a test sends
    return connect(server.url, proxy=None, **kwargs)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def extensions_of(ws: ClientConnection) -> str | None:
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def session(server: Server, body: Callable[[ClientConnection], Awaitable[Any]], **kwargs: Any) -> Any:
    async def main() -> Any:
        async with client(server, **kwargs) as ws:
            return await body(ws)

    return run(main())


# -- messages ---------------------------------------------------------------------------------------------------


def test_text_binary_fragmented_compressed_echo(serve: Callable[..., Server]) -> None:
    server = serve()
    binary = bytes(range(256)) * 4

    async def body(ws: ClientConnection) -> dict[str, Any]:
        got: dict[str, Any] = {"extensions": extensions_of(ws)}
        await ws.send("héllo wsinspect")
        got["text"] = await recv(ws)
        await ws.send(binary)
        got["binary"] = await recv(ws)
        await ws.send(["frag", "mented ", "message"])
        got["fragmented"] = await recv(ws)
        await ws.send([b"\x00\x01", b"\x02"])
        got["fragmented_binary"] = await recv(ws)
        return got

    got = session(server, body)
    assert got["extensions"] is not None and got["extensions"].startswith("permessage-deflate")
    assert got["text"] == "héllo wsinspect"
    assert got["binary"] == binary
    assert got["fragmented"] == "fragmented message"
    assert got["fragmented_binary"] == b"\x00\x01\x02"
    log = server.wait_for("closed (the client started the close; clean close)")
    assert "permessage-deflate" in log
    assert "compressed" in log
    assert server.stop() == 0

    events = server.events()
    response = of_type(events, "handshake_response")[0]
    assert response["status"] == 101 and response["extensions"][0].startswith("permessage-deflate")
    c2s = [m for m in of_type(events, "message", "c2s")]
    s2c = [m for m in of_type(events, "message", "s2c")]
    assert [m["data"] for m in c2s] == [m["data"] for m in s2c]
    assert [m["text"] for m in c2s] == ["héllo wsinspect", None, "fragmented message", None]
    # websockets sends each piece of an iterable as a frame, then an empty final frame.
    assert [m["frames"] for m in c2s] == [1, 1, 4, 3]
    assert all(m["compressed"] for m in c2s + s2c)
    client_frames = [f for f in frames(events, "c2s") if f["opcode_name"] != "Close"]
    assert all(f["websocket.mask"] for f in frames(events, "c2s"))
    assert not any(f["websocket.mask"] for f in frames(events, "s2c"))
    # RSV1 (0x4) on the first frame of a compressed message only (RFC 7692 6.1).
    assert [(f["websocket.opcode"], f["websocket.fin"], f["websocket.rsv"]) for f in client_frames] == [
        (1, True, 4), (2, True, 4), (1, False, 4), (0, False, 0), (0, False, 0), (0, True, 0),
        (2, False, 4), (0, False, 0), (0, True, 0)]
    assert not of_type(events, "violation")


def test_uncompressed_client(serve: Callable[..., Server]) -> None:
    server = serve()

    async def body(ws: ClientConnection) -> tuple[Any, ...]:
        await ws.send("plain text")
        text = await recv(ws)
        await ws.send(b"\xff\x00")
        data = await recv(ws)
        return extensions_of(ws), text, data

    assert session(server, body, compression=None) == (None, "plain text", b"\xff\x00")
    assert server.stop() == 0
    events = server.events()
    assert of_type(events, "handshake_response")[0]["extensions"] == []
    data_frames = [f for f in frames(events) if f["websocket.opcode"] in (1, 2)]
    assert len(data_frames) == 4
    assert all(f["websocket.rsv"] == 0 for f in data_frames)
    assert bytes.fromhex(data_frames[1]["payload"]) == b"plain text"  # s2c: unmasked, uncompressed
    assert [m["compressed"] for m in of_type(events, "message")] == [False] * 4


@pytest.mark.parametrize("compression", ["deflate", None])
def test_large_message_at_the_default_limit(serve: Callable[..., Server], compression: str | None) -> None:
    """1 MiB (the default --max-message) exactly is allowed, in both directions.

    Compressed, the payload is hex digits (it deflates to about half): random bytes would grow a little when
    deflated, and the compressed frame would then exceed the default --max-frame of 1 MiB, which limits the bytes
    on the wire (a design choice, shared with the websockets library's max_size).
    """
    server = serve()
    payload = os.urandom(1 << 20) if compression is None else os.urandom(1 << 19).hex().encode()

    async def body(ws: ClientConnection) -> bytes:
        await ws.send(payload)
        return await recv(ws)  # type: ignore[return-value]

    assert session(server, body, compression=compression, max_size=2 << 20) == payload
    assert server.stop() == 0
    messages = of_type(server.events(), "message")
    assert [(m["direction"], m["length"], m["complete"]) for m in messages] == [
        ("c2s", 1 << 20, True), ("s2c", 1 << 20, True)]
    assert not of_type(server.events(), "violation")


def test_message_one_byte_over_the_default_limit_is_1009(serve: Callable[..., Server]) -> None:
    server = serve()

    async def body(ws: ClientConnection) -> int | None:
        await ws.send(b"x" * ((1 << 20) + 1))
        with pytest.raises(ConnectionClosedError):
            await recv(ws)
        return ws.close_code

    assert session(server, body, compression=None, max_size=2 << 20) == 1009
    server.wait_for("[1009] RFC 6455 10.4")
    assert server.stop() == 0


def test_ping_gets_its_pong(serve: Callable[..., Server]) -> None:
    server = serve()

    async def body(ws: ClientConnection) -> float:
        waiter = await ws.ping(b"are you there")
        return await asyncio.wait_for(waiter, TIMEOUT)

    latency = session(server, body)
    assert latency >= 0
    assert server.stop() == 0
    pings = [f for f in frames(server.events()) if f["opcode_name"] in ("Ping", "Pong")]
    assert [(f["direction"], f["opcode_name"], bytes.fromhex(f["payload"])) for f in pings] == [
        ("c2s", "Ping", b"are you there"), ("s2c", "Pong", b"are you there")]


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4000, "custom reason")])
def test_close_code_from_client_is_echoed(serve: Callable[..., Server], code: int, reason: str) -> None:
    server = serve()

    async def main() -> tuple[int | None, Any]:
        ws = await client(server)
        await ws.close(code, reason)
        return ws.close_code, ws.protocol.close_rcvd

    close_code, received = run(main())
    assert close_code == code
    assert received is not None and received.code == code
    log = server.wait_for("closed (the client started the close; clean close)")
    assert f"Close [FIN] [MASKED] {code}" in log
    if reason:
        assert reason in log
    assert server.stop() == 0
    closes = of_type(server.events(), "close")
    assert [(c["direction"], c["code"]) for c in closes] == [("c2s", code), ("s2c", code)]
    assert closes[0]["reason"] == reason
    closed = of_type(server.events(), "connection_closed")
    assert closed and closed[0]["clean"] is True


# -- negotiation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offered", "chosen"), [
    (["v2"], "v2"),
    (["nope"], None),
    (["v2", "chat"], "chat"),  # the server's order of preference wins
])
def test_subprotocol_negotiation(serve: Callable[..., Server], offered: list[str], chosen: str | None) -> None:
    server = serve("--subprotocol", "chat", "--subprotocol", "v2")

    async def body(ws: ClientConnection) -> Any:
        await ws.send("hi")
        assert await recv(ws) == "hi"
        assert ws.response is not None
        return ws.subprotocol, ws.response.headers.get("Sec-WebSocket-Protocol")

    assert session(server, body, subprotocols=offered) == (chosen, chosen)
    assert server.stop() == 0
    response = of_type(server.events(), "handshake_response")[0]
    assert response["subprotocol"] == chosen


def test_no_compression_flag(serve: Callable[..., Server]) -> None:
    server = serve("--no-compression")

    async def body(ws: ClientConnection) -> Any:
        await ws.send("not compressed")
        return extensions_of(ws), await recv(ws)

    assert session(server, body) == (None, "not compressed")
    assert server.stop() == 0
    events = server.events()
    request = of_type(events, "handshake_request")[0]
    assert any(name.lower() == "sec-websocket-extensions" for name, _ in request["headers"])  # it was offered
    assert of_type(events, "handshake_response")[0]["extensions"] == []
    assert all(f["websocket.rsv"] == 0 for f in frames(events))


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_fragment_flag_splits_what_the_server_sends(serve: Callable[..., Server], compression: str | None) -> None:
    server = serve("--fragment", "3")
    text = "a message of some length, split by the server"

    async def body(ws: ClientConnection) -> Any:
        await ws.send(text)
        first = await recv(ws)
        await ws.send(b"0123456789")
        return first, await recv(ws)

    assert session(server, body, compression=compression) == (text, b"0123456789")
    log = server.wait_for("closed (the client started the close; clean close)")
    assert "Continuation" in log
    assert server.stop() == 0
    events = server.events()
    sent = [f for f in frames(events, "s2c") if f["opcode_name"] != "Close"]
    assert len(sent) > 4
    assert all(f["websocket.payload_length"] <= 3 for f in sent)
    first_message = []
    for frame in sent:
        first_message.append(frame)
        if frame["websocket.fin"]:
            break
    assert first_message[0]["websocket.opcode"] == 1
    assert {f["websocket.opcode"] for f in first_message[1:]} == {0}
    assert [f["websocket.fin"] for f in first_message] == [False] * (len(first_message) - 1) + [True]
    rsv = [f["websocket.rsv"] for f in first_message]
    assert rsv == ([4] if compression else [0]) + [0] * (len(first_message) - 1)
    echoed = of_type(events, "message", "s2c")
    assert [m["text"] for m in echoed] == [text, None]
    assert echoed[0]["frames"] == len(first_message)
    assert bytes.fromhex(echoed[1]["data"]) == b"0123456789"
