"""Helpers for the ``wsinspect serve`` tests: the real server as a subprocess on a loopback port.

Every server is started with ``--port 0`` (the kernel picks a free port; the server prints the one it got),
``--color never`` and COLUMNS=200, and stopped with SIGINT by PID. Its stdout is read by a thread as it comes, so a
test can wait for a line of the live log; the ``--json`` file is complete once the server has stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The same interpreter and checkout as the tests, whether or not the `wsinspect` script is on PATH.
WSINSPECT = [sys.executable, "-c",
             f"import sys; sys.path.insert(0, {str(REPO)!r}); from wsinspect.cli import main; sys.exit(main())"]
READY = "Ctrl-C closes every connection"
LISTENING = re.compile(r"wsinspect serve: (\w+) mode on wss?://(\[[^\]]+\]|[^:/]+):(\d+)/")
# The ready lines are printed a moment before the SIGINT handler is installed (see test_serve_shutdown.py): a SIGINT
# that early exits 130. stop() leaves this much time after the ready line before it signals.
SIGNAL_SETTLE = 0.15


class _Reader(threading.Thread):
    """Collects a pipe's bytes as they arrive."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.cond = threading.Condition()
        self.done = False

    def run(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if chunk:
                    self.data += chunk
                else:
                    self.done = True
                self.cond.notify_all()
            if not chunk:
                return

    def wait_for(self, predicate: Callable[[bytes], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = predicate(bytes(self.data))
                if found or self.done:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return found
                self.cond.wait(left)


class Server:
    """One ``wsinspect serve`` process."""

    def __init__(self, args: list[str], directory: Path, *, json_log: bool = True, port: int = 0,
                 ready_timeout: float = 15.0) -> None:
        self.directory = directory
        self.json_path: Path | None = directory / "serve.jsonl" if json_log else None
        cmd = [*WSINSPECT, "serve", "--port", str(port), "--color", "never"]
        if self.json_path is not None:
            cmd += ["--json", str(self.json_path)]
        cmd += args
        self.cmd = cmd
        env = {**os.environ, "COLUMNS": "200", "LINES": "50", "PYTHONUNBUFFERED": "1"}
        env.pop("NO_COLOR", None)
        env.pop("FORCE_COLOR", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=directory)
        self.pid = self.proc.pid
        self._out = _Reader(self.proc.stdout)
        self._err = _Reader(self.proc.stderr)
        self._out.start()
        self._err.start()
        ready = self._out.wait_for(lambda data: READY.encode() in data, ready_timeout)
        self.ready_at = time.monotonic()
        if not ready:
            self.kill()
            raise RuntimeError(f"wsinspect serve did not start: {cmd}\nstdout: {self.stdout}\nstderr: {self.stderr}")
        match = LISTENING.search(self.stdout)
        assert match, self.stdout
        self.mode, self.host, self.port = match.group(1), match.group(2).strip("[]"), int(match.group(3))
        self.returncode: int | None = None

    # -- output ------------------------------------------------------------------------------------------------

    @property
    def stdout_bytes(self) -> bytes:
        with self._out.cond:
            return bytes(self._out.data)

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        with self._err.cond:
            return bytes(self._err.data).decode("utf-8", "replace")

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 5.0) -> str:
        """Wait until the live log contains ``pattern`` (a substring or a regex); return the log so far."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        found = self._out.wait_for(lambda data: regex.search(data.decode("utf-8", "replace")), timeout)
        assert found, f"{pattern!r} not in the server's output within {timeout} s:\n{self.stdout[-6000:]}"
        return self.stdout

    def wait_for_stderr(self, text: str, timeout: float = 5.0) -> str:
        """Wait until stderr contains ``text`` (it is read by a thread of its own, so it can lag stdout)."""
        found = self._err.wait_for(lambda data: text.encode() in data, timeout)
        assert found, f"{text!r} not on the server's stderr within {timeout} s:\n{self.stderr[-3000:]}"
        return self.stderr

    def section(self, stream: int, timeout: float = 5.0, *, plain_http: bool = False) -> str:
        """The live log of connection ``stream``, from "#N connection from" to its last line: "#N closed (...)",
        or for a plain HTTP request (which gets no "closed" line) "#N GET / → 200 OK ...".

        Meaningful when connections follow one another: note rows (violations, messages) carry no "#N".
        """
        last = rf"^#{stream} \S+ \S+ → \d+ .*$" if plain_http else rf"^#{stream} closed \(.*$"
        self.wait_for(re.compile(last, re.M), timeout)
        log = self.stdout
        start = log.index(f"#{stream} connection from")
        end = re.compile(last, re.M).search(log, start)
        assert end is not None
        return log[start:end.end()]

    def next_number(self, *, websocket: bool = True) -> int:
        """The number the next connection will get: WebSocket upgrade attempts count 0, 1, 2, ...; page loads and
        other plain connections -1, -2, ... (meaningful when connections follow one another)."""
        numbers = [int(n) for n in re.findall(r"^#(-?\d+) connection from", self.stdout, re.M)]
        if websocket:
            return len([n for n in numbers if n >= 0])
        return -1 - len([n for n in numbers if n < 0])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # -- lifetime ----------------------------------------------------------------------------------------------

    def stop(self, timeout: float = 8.0) -> int:
        """SIGINT (Ctrl-C) and wait for the exit; returns the exit status."""
        if self.returncode is not None:
            return self.returncode
        settle = self.ready_at + SIGNAL_SETTLE - time.monotonic()
        if settle > 0:
            time.sleep(settle)
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGINT)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"wsinspect serve did not exit within {timeout} s of SIGINT") from None
        self._out.join(5)
        self._err.join(5)
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self.returncode = self.proc.returncode

    def events(self) -> list[dict[str, Any]]:
        """The --json log, one dict per event (complete only after stop())."""
        assert self.json_path is not None, "started without --json"
        with open(self.json_path, encoding="ascii") as handle:
            return [json.loads(line) for line in handle if line.strip()]


# -- small helpers shared by the test modules -------------------------------------------------------------------


def frames(events: list[dict[str, Any]], direction: str | None = None, stream: int | None = None
           ) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "frame" and (direction is None or e["direction"] == direction)
            and (stream is None or e["stream"] == stream)]


def of_type(events: list[dict[str, Any]], kind: str, direction: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and (direction is None or e["direction"] == direction)]


def raw_exchange(port: int, request: bytes, *, timeout: float = 5.0, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` on a fresh TCP connection and read until the server closes it (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = bytearray()
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
