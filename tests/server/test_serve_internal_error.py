"""A bug of ours while decoding one peer's bytes costs that peer its connection (1011), never the server.

The server runs in this process so the test can plant the bug: ``ServerEndpoint.receive`` raises for one payload.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from wsinspect.core.events import Event
from wsinspect.server.endpoint import ServerConfig, ServerEndpoint
from wsinspect.server.run import ServeOptions, WebSocketServer

TRIGGER = b"plant a bug"


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def test_an_exception_while_decoding_fails_only_that_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    real_receive = ServerEndpoint.receive

    def buggy_receive(self: ServerEndpoint, data: bytes, *, time: float) -> list[Event]:
        if self.state.value == "open" and len(data) > 6 and TRIGGER in bytes(b ^ data[2 + i % 4] for i, b in
                                                                              enumerate(data[6:])):
            raise RuntimeError("planted \x1b[2J bug")
        return real_receive(self, data, time=time)

    monkeypatch.setattr(ServerEndpoint, "receive", buggy_receive)
    warnings: list[str] = []
    sink = Collect()
    server = WebSocketServer(ServeOptions(port=0), ServerConfig(compression=False), [sink], warn=warnings.append)

    async def main() -> tuple[Any, str]:
        host, port = await server.start()
        url = f"ws://{host}:{port}/"
        async with connect(url, proxy=None, ping_interval=None, compression=None) as victim, \
                connect(url, proxy=None, ping_interval=None, compression=None) as bystander:
            await bystander.send("before")
            assert await bystander.recv() == "before"
            await victim.send(TRIGGER)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(victim.recv(), 5)
            await bystander.send("after")
            echo = await asyncio.wait_for(bystander.recv(), 5)
        await server.shutdown()
        return closed.value.rcvd, str(echo)

    received_close, echo = asyncio.run(asyncio.wait_for(main(), 20))
    assert received_close is not None and received_close.code == 1011
    assert echo == "after"
    assert len(warnings) == 1 and "internal error while decoding, connection dropped" in warnings[0]
    assert "\x1b" not in warnings[0] and "\\x1b[2J" in warnings[0]
