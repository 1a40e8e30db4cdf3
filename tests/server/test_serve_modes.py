"""``--mode chat``, ``--mode push`` and ``--ping-interval``, with the ``websockets`` library as the peers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from serve_support import Server, frames, of_type
from websockets.asyncio.client import connect

TIMEOUT = 5.0


def run(coro: Any, timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def client(server: Server, **kwargs: Any) -> Any:
    kwargs.setdefault("ping_interval", None)
    return connect(server.url, proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **kwargs)


def test_chat_broadcasts_to_everyone_with_the_sender_id(serve: Callable[..., Server]) -> None:
    server = serve("--mode", "chat")

    async def main() -> dict[str, list[Any]]:
        async with client(server) as alice:
            server.wait_for("#0 connection from")
            async with client(server, compression=None) as bob:
                server.wait_for("#1 connection from")
                await alice.send("hello from alice")
                got = {"alice": [await asyncio.wait_for(alice.recv(), TIMEOUT)],
                       "bob": [await asyncio.wait_for(bob.recv(), TIMEOUT)]}
                await bob.send(b"\x01\x02\x03")
                got["alice"].append(await asyncio.wait_for(alice.recv(), TIMEOUT))
                got["bob"].append(await asyncio.wait_for(bob.recv(), TIMEOUT))
                return got

    got = run(main())
    assert got["alice"] == got["bob"] == ["#0: hello from alice", "#1: <3 bytes of binary>"]
    assert server.stop() == 0
    sent = of_type(server.events(), "message", "s2c")
    assert sorted((m["stream"], m["text"]) for m in sent) == [
        (0, "#0: hello from alice"), (0, "#1: <3 bytes of binary>"),
        (1, "#0: hello from alice"), (1, "#1: <3 bytes of binary>")]
    # Each connection's own compression: alice negotiated permessage-deflate, bob did not.
    assert {m["stream"]: m["compressed"] for m in sent} == {0: True, 1: False}


def test_push_sends_unasked(serve: Callable[..., Server]) -> None:
    server = serve("--mode", "push", "--interval", "0.2")

    async def main() -> list[tuple[float, Any]]:
        got: list[tuple[float, Any]] = []
        async with client(server) as ws:
            started = time.monotonic()
            deadline = started + 2.0
            while len(got) < 3 and time.monotonic() < deadline:
                try:
                    message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                got.append((time.monotonic() - started, message))
        return got

    got = run(main())
    assert len(got) >= 3, got
    assert got[2][0] < 2.0
    numbers = [int(re.fullmatch(r"push (\d+) at \d\d:\d\d:\d\d", text).group(1)) for _, text in got]  # type: ignore[union-attr]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert server.stop() == 0
    events = server.events()
    assert not of_type(events, "message", "c2s")  # nothing was asked
    assert len(of_type(events, "message", "s2c")) >= 3


def test_ping_interval_pings_and_the_client_pongs(serve: Callable[..., Server]) -> None:
    server = serve("--ping-interval", "0.2")

    async def main() -> str:
        async with client(server) as ws:  # websockets answers pings by itself
            await asyncio.sleep(1.0)
            await ws.send("still alive")
            return await asyncio.wait_for(ws.recv(), TIMEOUT)  # type: ignore[no-any-return]

    assert run(main()) == "still alive"
    log = server.wait_for("clean close")
    assert re.search(r"^#\d+ +[\d:.]+ server → client +\d+ Ping \[FIN\]", log, re.MULTILINE)
    assert server.stop() == 0
    events = server.events()
    pings = [f for f in frames(events, "s2c") if f["opcode_name"] == "Ping"]
    pongs = [f for f in frames(events, "c2s") if f["opcode_name"] == "Pong"]
    assert len(pings) >= 3
    assert not [f for f in frames(events, "c2s") if f["opcode_name"] == "Ping"]
    assert not [f for f in frames(events, "s2c") if f["opcode_name"] == "Pong"]
    assert all(not f["websocket.mask"] for f in pings) and all(f["websocket.mask"] for f in pongs)
    # Every ping answered with a pong carrying the same payload (RFC 6455 5.5.3).
    assert [f["payload"] for f in pongs] == [f["payload"] for f in pings][: len(pongs)]
    assert len(pongs) >= len(pings) - 1
    assert bytes.fromhex(pings[0]["payload"]).startswith(b"wsinspect ")
