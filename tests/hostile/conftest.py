"""Fixtures for the hostile-peer suite (helpers in hostile_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
try:
    import wsinspect  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from serve_support import Server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``serve("--mode", "chat")`` starts a server; every one is stopped (or killed) at teardown."""
    started: list[Server] = []

    def start(*args: str, json_log: bool = False, **kwargs: Any) -> Server:
        directory = tmp_path / f"serve{len(started)}"
        directory.mkdir()
        server = Server(list(args), directory, json_log=json_log, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.returncode is None:
            try:
                server.stop(timeout=8)
            except AssertionError:
                pass
            finally:
                server.kill()
