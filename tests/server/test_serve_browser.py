"""A real browser: headless Chromium loads the demo page, whose JavaScript opens a WebSocket to the server.

Chromium is driven over the DevTools protocol (a WebSocket itself, spoken with ``websocket-client``): the test types
a message the way the page's form sends it and waits for the echo in the page's log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from serve_support import Server, frames, of_type

CHROMIUM = next((path for path in (shutil.which("chromium"), "/usr/bin/chromium") if path and os.path.exists(path)),
                None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium'; "
                                "CI installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
         "--remote-allow-origins=*"]


def _descendants(pid: int) -> list[int]:
    """PIDs of the processes below ``pid`` (Chromium's renderers, zygotes...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Browser:
    def __init__(self, url: str, profile: Path) -> None:
        assert CHROMIUM is not None
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.cdp: websocket.WebSocket | None = None
        self._ids = itertools.count(1)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}"
                                   if self.proc.stderr else "Chromium exited")
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        self.devtools_port = int(port_file.read_text().splitlines()[0])
        page = self._page(url)
        self.cdp = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10, suppress_origin=True)

    def _page(self, url: str) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.devtools_port}/json/list", timeout=5) as answer:
                targets = json.load(answer)
            pages = [t for t in targets if t.get("type") == "page" and t.get("url", "").startswith(url)]
            if pages:
                return pages[0]  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"no page for {url} among {targets}"
            time.sleep(0.1)

    def evaluate(self, expression: str) -> Any:
        """Runtime.evaluate: the expression's value (by value, so arrays and strings come back as JSON)."""
        assert self.cdp is not None
        call_id = next(self._ids)
        self.cdp.send(json.dumps({"id": call_id, "method": "Runtime.evaluate",
                                  "params": {"expression": expression, "returnByValue": True}}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = json.loads(self.cdp.recv())
            if reply.get("id") == call_id:
                assert "error" not in reply and "exceptionDetails" not in reply["result"], reply
                return reply["result"]["result"].get("value")
        raise AssertionError(f"no answer to {expression!r}")

    def wait_until(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
            time.sleep(0.05)

    def quit(self) -> None:
        if self.cdp is not None:
            with contextlib.suppress(Exception):
                self.cdp.close(timeout=1)
        family = _descendants(self.pid)
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in family:  # only the processes this browser started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], Browser]]:
    started: list[Browser] = []

    def launch(url: str) -> Browser:
        profile = tmp_path / f"profile{len(started)}"
        profile.mkdir()
        started.append(Browser(url, profile))
        return started[-1]

    yield launch
    for instance in started:
        instance.quit()


def test_demo_page_in_chromium_echoes_a_typed_message(serve: Callable[..., Server],
                                                      browser: Callable[[str], Browser]) -> None:
    server = serve()
    page_url = f"http://127.0.0.1:{server.port}/"
    chromium = browser(page_url)
    assert chromium.wait_until("document.getElementById('status')?.textContent === 'open'")
    connected = chromium.evaluate("document.querySelector('#log li.info').textContent")
    assert "extensions=permessage-deflate" in connected

    message = "hello from chromium ✓"
    chromium.evaluate(f"""(() => {{
        document.getElementById('text').value = {json.dumps(message)};
        document.getElementById('form').requestSubmit();
        return true;
    }})()""")
    got = chromium.wait_until(f"""(() => {{
        const bodies = [...document.querySelectorAll('#log li.got .body')].map(e => e.textContent);
        return bodies.includes({json.dumps(message)}) ? bodies : null;
    }})()""")
    assert got == [message, "wsinspect: you are connection #0"]  # newest first; the server's welcome on /demo
    sent = chromium.evaluate("[...document.querySelectorAll('#log li.sent .body')].map(e => e.textContent)")
    assert sent == [message]

    # The page's Close button: a clean closing handshake with 1000.
    chromium.evaluate("document.getElementById('close').click(), true")
    assert chromium.wait_until("document.getElementById('status')?.textContent === 'closed 1000'")

    log = server.wait_for(re.compile(r"#\d+ closed \(the client started the close; clean close\)"))
    assert "GET / → 200 OK" in log
    assert "HeadlessChrome" in log or "Chrome" in log
    assert server.stop() == 0

    events = server.events()
    upgraded = [r for r in of_type(events, "handshake_response") if r["upgraded"]]
    assert len(upgraded) == 1 and upgraded[0]["extensions"][0].startswith("permessage-deflate")
    stream = upgraded[0]["stream"]
    request = next(r for r in of_type(events, "handshake_request") if r["stream"] == stream)
    headers = {name.lower(): value for name, value in request["headers"]}
    assert headers["origin"] == f"http://127.0.0.1:{server.port}"
    assert "permessage-deflate" in headers["sec-websocket-extensions"]
    assert not [f for f in request["findings"] if f["severity"] == "error"]

    c2s = [f for f in frames(events, "c2s", stream) if f["opcode_name"] == "Text"]
    s2c = [f for f in frames(events, "s2c", stream) if f["opcode_name"] == "Text"]
    assert len(c2s) == 1 and len(s2c) == 2  # the welcome, then the echo
    assert c2s[0]["websocket.mask"] and c2s[0]["websocket.masking_key"]  # a browser masks (RFC 6455 5.3)
    assert c2s[0]["websocket.rsv"] == 4  # RSV1: compressed (RFC 7692)
    assert not s2c[0]["websocket.mask"] and s2c[0]["websocket.rsv"] == 4
    messages = [m for m in of_type(events, "message") if m["stream"] == stream]
    assert [(m["direction"], m["text"], m["compressed"]) for m in messages] == [
        ("s2c", "wsinspect: you are connection #0", True), ("c2s", message, True), ("s2c", message, True)]
    closes = [c for c in of_type(events, "close") if c["stream"] == stream]
    assert [(c["direction"], c["code"]) for c in closes] == [("c2s", 1000), ("s2c", 1000)]
    assert closes[0]["reason"] == "bye from the page"
    assert not of_type(events, "violation")


def test_page_numbers_match_the_terminal_and_wire_text_cannot_reorder_the_page(
        serve: Callable[..., Server], browser: Callable[[str], Browser]) -> None:
    """A class in chat mode: page loads and favicon requests use no connection number, each page says the number
    the terminal shows for it, and a classmate's bidirectional override stays inside its own message."""
    server = serve("--mode", "chat")
    page_url = f"http://127.0.0.1:{server.port}/"
    # Plain HTTP first: none of these may use up a WebSocket connection number.
    for path in ("/", "/favicon.ico", "/index.html"):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5).close()
    first = browser(page_url)
    assert first.wait_until("document.getElementById('whoami')?.dataset.connection")
    second = browser(page_url)
    numbers = [int(page.wait_until("document.getElementById('whoami')?.dataset.connection"))
               for page in (first, second)]
    assert numbers == [0, 1]
    log = server.wait_for("#1 connection from")
    # The terminal's numbers for the two upgraded connections are the ones the pages show.
    assert re.search(r"^#0 connection from", log, re.M) and re.search(r"^#1 connection from", log, re.M)
    assert first.evaluate("document.getElementById('whoami').textContent") == "you are connection #0"

    # A right-to-left override (U+202E) with no terminator, from one member, seen by the other's page.
    override = "\u202eevil override"
    member = websocket.create_connection(server.url, timeout=5)
    try:
        member.send(override)
        second.wait_until(f"[...document.querySelectorAll('#log li.got .body')].some(e => e.textContent.endsWith("
                          f"{json.dumps(override)}))")
        # The detail after that message ("N bytes") is still laid out to its right: the override did not leak.
        layout = second.evaluate("""(() => {
            const li = [...document.querySelectorAll('#log li.got')].find(e => e.textContent.includes('evil'));
            const spans = li.querySelectorAll('span');
            const body = spans[2].getBoundingClientRect(), detail = spans[3].getBoundingClientRect();
            return {bodyLeft: body.left, detailLeft: detail.left, dir: spans[2].dir,
                    bidi: getComputedStyle(spans[2]).unicodeBidi};
        })()""")
        assert layout["detailLeft"] > layout["bodyLeft"], layout
        assert layout["dir"] == "auto" and layout["bidi"] == "isolate", layout
    finally:
        member.close()
    assert server.stop() == 0
    upgraded = [r["stream"] for r in of_type(server.events(), "handshake_response") if r["upgraded"]]
    assert upgraded == [0, 1, 2]
    plain = [r["stream"] for r in of_type(server.events(), "handshake_response") if not r["upgraded"]]
    assert plain and all(stream < 0 for stream in plain)
