"""``wsinspect serve --misbehave KIND`` against real clients: the ``websockets`` library and headless Chromium.

Each kind runs in a server of its own; the ten start together, once for the module. For each kind the tests check
what the client reports (websockets' exception and close codes; Chromium's close event and the console message
that says why), what the client sent back (its close frame, in the server's live log), and that the live log flags
the server's own fault with the RFC section it breaks. Expected values come from RFC 6455 and from the clients,
never from wsinspect: the wrong accept key is recomputed here from the key in the log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from serve_support import Server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidHeaderValue, InvalidUpgrade

from wsinspect.cli import build_parser, main

try:
    from test_serve_browser import CHROMIUM, Browser
except ImportError:  # websocket-client, which speaks the DevTools protocol, is missing
    CHROMIUM = None

KINDS = ("bad-accept", "no-upgrade-header", "masked-frames", "rsv1-without-extension", "fragmented-ping",
         "oversized-ping", "invalid-utf8", "bad-close-code", "no-pong", "no-close-reply")
HANDSHAKE_KINDS = ("bad-accept", "no-upgrade-header")
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
# The kinds whose fault answers a message: the close code a conforming client fails the connection with, and the
# RFC section of the rule the server's frame breaks (shown with the violation in the server's log).
ANSWER_FAULTS = {
    "masked-frames": (1002, "5.1"),
    "rsv1-without-extension": (1002, "5.2"),
    "fragmented-ping": (1002, "5.5"),
    "oversized-ping": (1002, "5.5"),
    "invalid-utf8": (1007, "8.1"),
    "bad-close-code": (1002, "7.4"),
}
# websockets' keepalive and closing timeouts, short so the test is quick.
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.3
CLOSE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One ``wsinspect serve --misbehave KIND`` per kind, started at once (each takes a second of CPU to start)."""
    root = tmp_path_factory.mktemp("misbehave")

    def start(kind: str) -> Server:
        directory = root / kind
        directory.mkdir()
        return Server(["--misbehave", kind], directory, json_log=False, ready_timeout=60)

    with ThreadPoolExecutor(len(KINDS)) as pool:
        futures = {kind: pool.submit(start, kind) for kind in KINDS}
    started = {kind: future.result() for kind, future in futures.items() if future.exception() is None}
    try:
        assert len(started) == len(KINDS), [future.exception() for future in futures.values()]
        yield started
    finally:
        with ThreadPoolExecutor(len(started) or 1) as pool:
            for server in started.values():
                pool.submit(_stop, server)


def _stop(server: Server) -> None:
    try:
        server.stop(timeout=8)
    finally:
        server.kill()


def _row(direction: str, what: str) -> re.Pattern[str]:
    """A frame row of the live log: '#N  time  client → server  length  Close [FIN] [MASKED] 1002 ...'."""
    arrow = "client → server" if direction == "c2s" else "server → client"
    return re.compile(rf"^#\d+ +\S+ {arrow} +\d+ {what}", re.M)


# -- the command line ---------------------------------------------------------------------------------------------


def test_misbehave_help_names_every_kind_with_its_rfc_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--misbehave", "help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out
    # One block per kind: its name, then its sentence, indented.
    blocks = dict(block.split("\n", 1) for block in re.split(r"^  (?=\S)", listing, flags=re.M)[1:])
    assert list(blocks) == list(KINDS)
    for kind, sentence in blocks.items():
        assert re.search(r"RFC 6455 \d", sentence) and "client" in sentence, kind
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert listing in capsys.readouterr().out


def test_an_unknown_kind_is_refused_and_the_default_is_to_behave(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--misbehave", "masked"])
    assert exit_.value.code == 2
    assert "--misbehave help" in capsys.readouterr().err
    assert build_parser().parse_args(["serve"]).misbehave is None


def test_the_banner_says_the_server_is_broken_and_how(servers: dict[str, Server]) -> None:
    for kind, server in servers.items():
        banner = server.stdout[: server.stdout.index("Ctrl-C closes every connection")]
        assert f"DELIBERATELY BROKEN (--misbehave {kind})" in banner
        assert "RFC 6455" in banner


# -- websockets ---------------------------------------------------------------------------------------------------


def _connection_log(server: Server, number: int, until: str | re.Pattern[str], timeout: float = 5.0) -> str:
    """The live log from '#number connection from' on, once ``until`` appears after it."""
    regex = until if isinstance(until, re.Pattern) else re.compile(re.escape(until))
    start = f"#{number} connection from"
    deadline = time.monotonic() + timeout
    while True:
        log = server.stdout
        section = log[log.index(start):] if start in log else ""
        if regex.search(section):
            return section
        assert time.monotonic() < deadline, f"{regex.pattern!r} not in #{number}'s log:\n{section[-4000:]}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", HANDSHAKE_KINDS)
def test_websockets_refuses_a_broken_101(servers: dict[str, Server], kind: str) -> None:
    server = servers[kind]
    number = server.next_number()

    async def attempt() -> BaseException:
        with pytest.raises((InvalidHeaderValue, InvalidUpgrade)) as refused:
            async with connect(server.url, open_timeout=5):
                pass
        return refused.value

    error = asyncio.run(attempt())
    log = _connection_log(server, number, f"#{number} closed")
    # RFC 6455 4.1: the client fails the connection; it never opens, so no frame crosses. The log says the 101
    # was not a valid upgrade rather than ticking it.
    assert not _row("c2s", "").search(log) and not _row("s2c", "").search(log)
    assert "✗ answered 101, but not validly" in log and "✓ upgraded" not in log
    if kind == "bad-accept":
        assert isinstance(error, InvalidHeaderValue) and error.name == "Sec-WebSocket-Accept"
        key = re.search(r"^ Sec-WebSocket-Key +(\S+)", log, re.M)
        assert key is not None
        without_guid = base64.b64encode(hashlib.sha1(key.group(1).encode()).digest()).decode()
        right = base64.b64encode(hashlib.sha1((key.group(1) + GUID).encode()).digest()).decode()
        assert error.value == without_guid != right
        # The server's own log flags its answer, expected against sent.
        assert re.search(rf"✗ RFC 6455 4\.1: Sec-WebSocket-Accept .*\n +expected: {re.escape(right)} +got: "
                         rf"{re.escape(without_guid)}", log)
    else:
        assert isinstance(error, InvalidUpgrade) and error.name == "Upgrade" and error.value is None
        assert not re.search(r"^ Upgrade ", log[log.index(" response "):], re.M)
        assert re.search(r"✗ RFC 6455 4\.1: .*Upgrade", log)


@pytest.mark.parametrize("kind", ANSWER_FAULTS)
def test_websockets_fails_the_connection_on_the_faulty_answer(servers: dict[str, Server], kind: str) -> None:
    server = servers[kind]
    code, section = ANSWER_FAULTS[kind]
    number = server.next_number()

    async def exchange() -> ConnectionClosedError:
        async with connect(server.url, open_timeout=5, close_timeout=CLOSE_TIMEOUT) as client:
            await client.send("hello")
            with pytest.raises(ConnectionClosedError) as failed:
                await asyncio.wait_for(client.recv(), 5)
            return failed.value

    error = asyncio.run(exchange())
    assert error.sent is not None and error.sent.code == code
    log = _connection_log(server, number, f"#{number} closed")
    assert re.search(rf"⚠ \[{code}\] RFC 6455 {re.escape(section)}\b", log)
    assert _row("c2s", rf"Close \[FIN\] \[MASKED\] {code}\b").search(log)
    if kind == "rsv1-without-extension":
        # Nothing was negotiated, so RSV1 means nothing: the payload is shown as it is, not as "compressed".
        assert _row("s2c", r"Text \[FIN\] \[RSV1\] \"hello\"").search(log)


def test_websockets_keepalive_gives_up_on_a_server_that_never_pongs(servers: dict[str, Server]) -> None:
    server = servers["no-pong"]
    number = server.next_number()

    async def wait_for_the_timeout() -> tuple[ConnectionClosedError, float]:
        async with connect(server.url, open_timeout=5, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                           close_timeout=CLOSE_TIMEOUT) as client:
            started = time.monotonic()
            with pytest.raises(ConnectionClosedError) as failed:
                await asyncio.wait_for(client.recv(), 5)
            return failed.value, time.monotonic() - started

    error, waited = asyncio.run(wait_for_the_timeout())
    assert error.sent is not None and error.sent.code == 1011  # websockets' choice: the RFC names no code for it
    assert waited >= PING_INTERVAL + PING_TIMEOUT * 0.9
    log = _connection_log(server, number, f"#{number} closed")
    assert _row("c2s", r"Ping \[FIN\] \[MASKED\]").search(log)
    assert not _row("s2c", "Pong").search(log)
    assert _row("c2s", r"Close \[FIN\] \[MASKED\] 1011\b").search(log)


def test_websockets_stops_waiting_for_a_close_reply_that_never_comes(servers: dict[str, Server]) -> None:
    server = servers["no-close-reply"]
    number = server.next_number()

    async def close_and_time_it() -> tuple[Any, float]:
        async with connect(server.url, open_timeout=5, close_timeout=CLOSE_TIMEOUT) as client:
            started = time.monotonic()
            await client.close(1000, "bye")
            return client, time.monotonic() - started

    client, waited = asyncio.run(close_and_time_it())
    # It waited its close_timeout, then closed TCP itself (RFC 6455 7.1.1: "a client MAY initiate the TCP Close").
    assert CLOSE_TIMEOUT * 0.9 <= waited < CLOSE_TIMEOUT + 2
    assert client.protocol.close_sent.code == 1000 and client.protocol.close_rcvd is None
    assert client.close_code == 1006  # what an API reports when no close frame came back (RFC 6455 7.1.5)
    log = _connection_log(server, number, f"#{number} closed")
    assert _row("c2s", r"Close \[FIN\] \[MASKED\] 1000\b").search(log)
    assert not _row("s2c", "Close").search(log)
    assert re.search(rf"^#{number} closed \(the client closed the TCP connection", log, re.M)


# -- Chromium -----------------------------------------------------------------------------------------------------

# How long Chromium's closing socket is watched: its own closing-handshake timeout is 60 s (measured), too long here.
STILL_CLOSING_AFTER = 2.0

# One page opens a WebSocket to every server at once; each records its events. On open it sends "hello" (the frame
# kinds answer it), or for no-close-reply starts the closing handshake.
HARNESS = """(() => {
  window.sockets = {};
  window.results = {};
  for (const [kind, port] of Object.entries(%s)) {
    const result = window.results[kind] = {events: []};
    const ws = window.sockets[kind] = new WebSocket("ws://127.0.0.1:" + port + "/");
    ws.onopen = () => {
      result.events.push("open");
      if (kind === "no-close-reply") ws.close(1000, "bye"); else ws.send("hello");
    };
    ws.onmessage = (e) => result.events.push("message " + e.data);
    ws.onerror = () => result.events.push("error");
    ws.onclose = (e) => { result.events.push("close"); result.close = [e.code, e.wasClean]; };
  }
  return true;
})()"""


def _console(chromium: Any) -> list[str]:
    """The page's console messages so far: Log.enable replays them before it answers."""
    chromium.cdp.send(json.dumps({"id": 0, "method": "Log.enable"}))
    texts = []
    while True:
        message = json.loads(chromium.cdp.recv())
        if message.get("method") == "Log.entryAdded":
            texts.append(message["params"]["entry"]["text"])
        if message.get("id") == 0:
            return texts


@pytest.fixture(scope="module")
def chromium(servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Chromium's reaction to every kind, from one browser: the events of each socket, the console, the numbers
    the servers gave the connections, and the browser (for the demo page)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium')")
    numbers = {kind: server.next_number() for kind, server in servers.items()}
    browser = Browser("about:blank", tmp_path_factory.mktemp("chromium"))
    try:
        browser.evaluate(HARNESS % json.dumps({kind: server.port for kind, server in servers.items()}))
        settled = """Object.entries(window.results).every(([kind, r]) =>
            kind === "no-pong" ? r.events.includes("message hello") :
            kind === "no-close-reply" ? r.events.includes("open") : r.events.includes("close"))"""
        browser.wait_until(settled, timeout=15)
        time.sleep(STILL_CLOSING_AFTER)  # no-close-reply: watch the closing socket a while
        yield {"results": browser.evaluate("window.results"),
               "ready_states": browser.evaluate(
                   "Object.fromEntries(Object.entries(window.sockets).map(([k, ws]) => [k, ws.readyState]))"),
               "console": _console(browser), "numbers": numbers, "browser": browser}
    finally:
        browser.quit()


CHROMIUM_SAYS = {  # the reason Chromium prints on the console when it fails the connection
    "bad-accept": "Error during WebSocket handshake: Incorrect 'Sec-WebSocket-Accept' header value",
    "no-upgrade-header": "Error during WebSocket handshake: 'Upgrade' header is missing",
    "masked-frames": "A server must not mask any frames that it sends to the client.",
    "rsv1-without-extension": "One or more reserved bits are on: reserved1 = 1, reserved2 = 0, reserved3 = 0",
    "fragmented-ping": "Invalid frame header",
    "oversized-ping": "Invalid frame header",
    "invalid-utf8": "Could not decode a text frame as UTF-8.",
    "bad-close-code": "Received a broken close frame containing a reserved status code.",
}
# What Chromium sends the server when it fails the connection. Not 1007 for invalid UTF-8: Chromium closes with
# 1002 ("Invalid UTF-8 in text frame"), which RFC 6455 7.1.7 allows (the code is "appropriate", not mandated).
CHROMIUM_CLOSE_CODES = {**{kind: code for kind, (code, _) in ANSWER_FAULTS.items()}, "invalid-utf8": 1002}


@pytest.mark.parametrize("kind", HANDSHAKE_KINDS)
def test_chromium_refuses_a_broken_101(servers: dict[str, Server], chromium: dict[str, Any], kind: str) -> None:
    result = chromium["results"][kind]
    # Never opened: an error, then a close event with 1006 (the WebSocket API's "abnormal closure").
    assert result["events"] == ["error", "close"] and result["close"] == [1006, False]
    port = servers[kind].port
    assert f"WebSocket connection to 'ws://127.0.0.1:{port}/' failed: {CHROMIUM_SAYS[kind]}" in chromium["console"]
    number = chromium["numbers"][kind]
    log = _connection_log(servers[kind], number, f"#{number} closed")
    assert "Chrome" in log and not _row("c2s", "").search(log)


@pytest.mark.parametrize("kind", ANSWER_FAULTS)
def test_chromium_fails_the_connection_on_the_faulty_answer(servers: dict[str, Server], chromium: dict[str, Any],
                                                            kind: str) -> None:
    result = chromium["results"][kind]
    # Opened, then failed: the page sees an error and 1006 whatever code went on the wire.
    assert result["events"] == ["open", "error", "close"] and result["close"] == [1006, False]
    port = servers[kind].port
    assert f"WebSocket connection to 'ws://127.0.0.1:{port}/' failed: {CHROMIUM_SAYS[kind]}" in chromium["console"]
    number = chromium["numbers"][kind]
    code, section = CHROMIUM_CLOSE_CODES[kind], ANSWER_FAULTS[kind][1]
    log = _connection_log(servers[kind], number, f"#{number} closed")
    assert re.search(rf"⚠ \[\d+\] RFC 6455 {re.escape(section)}\b", log)
    assert _row("c2s", rf"Close \[FIN\] \[MASKED\] {code}\b").search(log)


def test_chromium_sends_no_pings_so_no_pong_goes_unnoticed(servers: dict[str, Server],
                                                           chromium: dict[str, Any]) -> None:
    assert chromium["results"]["no-pong"]["events"] == ["open", "message hello"]
    assert chromium["ready_states"]["no-pong"] == 1  # OPEN
    number = chromium["numbers"]["no-pong"]
    log = _connection_log(servers["no-pong"], number, _row("s2c", r'Text \[FIN\] "hello"'))
    assert not _row("c2s", "Ping").search(log)


def test_chromium_keeps_waiting_for_a_close_reply(servers: dict[str, Server], chromium: dict[str, Any]) -> None:
    """Chromium gives up after its own 60 s closing-handshake timeout (1006, not clean; measured by hand): here it
    is seen still waiting, with its close frame sent and TCP still open."""
    assert chromium["results"]["no-close-reply"]["events"] == ["open"]
    assert chromium["ready_states"]["no-close-reply"] == 2  # CLOSING
    number = chromium["numbers"]["no-close-reply"]
    log = _connection_log(servers["no-close-reply"], number, _row("c2s", r"Close \[FIN\] \[MASKED\] 1000\b"))
    assert not _row("s2c", "Close").search(log) and f"#{number} closed" not in log


def test_the_demo_page_warns_and_fails_when_a_student_sends(servers: dict[str, Server],
                                                            chromium: dict[str, Any]) -> None:
    """The class's view: the demo page says the server is broken, opens, and fails on the first message sent."""
    server = servers["invalid-utf8"]
    page: Any = chromium["browser"]
    number = server.next_number()
    page.evaluate(f"location.href = 'http://127.0.0.1:{server.port}/', true")
    page.wait_until("document.getElementById('status')?.textContent === 'open'")
    warning = page.evaluate("document.getElementById('misbehave').textContent")
    assert "deliberately broken (--misbehave invalid-utf8)" in warning and "RFC 6455" in warning
    page.evaluate("""(() => {
        document.getElementById('text').value = 'hello from the class';
        document.getElementById('form').requestSubmit();
        return true;
    })()""")
    assert page.wait_until("document.getElementById('status').textContent === 'closed 1006'")
    log = _connection_log(server, number, f"#{number} closed")
    assert _row("c2s", r'Text \[FIN\] \[MASKED\] "hello from the class"').search(log)
    assert _row("s2c", r'Text \[FIN\] "caf\\xe9"').search(log)
    assert re.search(r"⚠ \[1007\] RFC 6455 8\.1", log)
