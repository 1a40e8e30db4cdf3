"""Fixtures shared by the command tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from websockets.sync.server import Server, ServerConnection, serve


@pytest.fixture
def websockets_server() -> Iterator[int]:
    """The port of a real echo server (the websockets library) on 127.0.0.1, for curl to talk to."""
    def echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    server: Server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.socket.getsockname()[1])
    finally:
        server.shutdown()
        thread.join(timeout=5)
