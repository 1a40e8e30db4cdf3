"""serve for a real class: option values checked, chat's log in causal order, who started a close, the addresses
printed for --host 0.0.0.0 (a slow member that cannot hold back the room: tests/hostile)."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable

import pytest
import websocket
from serve_support import REPO, WSINSPECT, Server, of_type


def run_cli(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WSINSPECT, "serve", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False)


@pytest.mark.parametrize(("args", "words"), [
    (["--port", "80000"], "not a TCP port (0-65535"),
    (["--port", "-1"], "not a TCP port"),
    (["--mode", "push", "--interval", "0"], "not a positive number of seconds"),
    (["--mode", "push", "--interval", "-2"], "not a positive number of seconds"),
    (["--interval", "nan"], "not a positive number of seconds"),
    (["--idle-timeout", "-1"], "not a number of seconds, 0 or more"),
    (["--max-fragments", "0"], "not a whole number, 1 or more"),
    (["--max-queue", "lots"], "not a size"),
], ids=["port-too-big", "port-negative", "interval-zero", "interval-negative", "interval-nan", "idle-negative",
        "fragments-zero", "queue-not-a-size"])
def test_bad_option_values_are_one_line_errors(args: list[str], words: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing listened


def test_interval_outside_push_mode_is_said_to_be_ignored(serve: Callable[..., Server]) -> None:
    server = serve("--interval", "2")
    server.wait_for_stderr("--interval applies to --mode push only; ignored in echo mode")
    assert server.stop() == 0


def test_help_states_the_defaults_of_every_limit() -> None:
    help_text = " ".join(run_cli("--help").stdout.split())
    for expected in ("--max-frame SIZE largest frame payload kept (default: 2M)",
                     "--max-message SIZE largest message, after inflating (default: 1M)",
                     "--max-queue SIZE bytes waiting to be sent to one client (default: 1M)",
                     "(default: 65536)", "(default: 100)", "(default: 300; 0: never)", "(default: 16k;",
                     "(default: 256)", "drop a client that has not finished its handshake after SECONDS "
                     "(default: 10)", "(default: 1024)"):
        assert expected in help_text, expected


def test_chat_logs_a_message_before_the_broadcasts_it_causes(serve: Callable[..., Server]) -> None:
    server = serve("--mode", "chat")
    alice = websocket.create_connection(server.url, timeout=5)
    bob = websocket.create_connection(server.url, timeout=5)
    try:
        server.wait_for("#1 connection from")
        alice.send("the cause")
        assert alice.recv() == "#0: the cause" and bob.recv() == "#0: the cause"
        log = server.wait_for(re.compile(r"#1 .*server → client .*\"#0: the cause\""))
    finally:
        alice.close()
        bob.close()
    received = log.index('client → server')  # alice's text frame
    broadcasts = [m.start() for m in re.finditer(r'server → client +\d+ Text \[FIN\] "#0: the cause"', log)]
    assert len(broadcasts) == 2 and all(received < at for at in broadcasts), log
    assert server.stop() == 0
    events = server.events()
    order = [(e["stream"], e["direction"]) for e in events if e["type"] == "message"]
    assert order.index((0, "c2s")) < order.index((0, "s2c")) and order.index((0, "c2s")) < order.index((1, "s2c"))


def test_a_close_is_logged_as_started_by_whoever_started_it(serve: Callable[..., Server]) -> None:
    server = serve("--max-fragments", "100")
    ws = websocket.create_connection(server.url, timeout=5)
    ws.close(status=1000)
    server.wait_for("#0 closed (the client started the close; clean close)")
    # The server starts one: a frame over --max-fragments is failed with 1009.
    ws = websocket.create_connection(server.url, timeout=5)
    try:
        ws.send_frame(websocket.ABNF(fin=0, opcode=websocket.ABNF.OPCODE_TEXT, data=b"a"))
        for _ in range(100):
            ws.send_frame(websocket.ABNF(fin=0, opcode=websocket.ABNF.OPCODE_CONT, data=b""))
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                ws.recv()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        ws.close()
    log = server.wait_for("#1 closed (")
    assert "#1 closed (the server closed it: 1009 message in more than 100 frames (--max-fragments)" in log
    assert server.stop() == 0
    closes = [c for c in of_type(server.events(), "close") if c["stream"] == 1]
    assert closes[0]["direction"] == "s2c" and closes[0]["code"] == 1009 and closes[0]["initiator"]


def test_every_interface_prints_the_addresses_to_open(serve: Callable[..., Server]) -> None:
    server = serve("--host", "0.0.0.0")
    listed = re.findall(r"^  http://(\S+):(\d+)/$", server.stdout, re.M)
    assert listed, server.stdout
    assert {port for _, port in listed} == {str(server.port)}
    hosts = [host for host, _ in listed]
    assert "0.0.0.0" not in hosts and hosts[-1] == "127.0.0.1"  # loopback last
    for host in hosts:  # every address printed is one this machine answers on
        with socket.create_connection((host.strip("[]"), server.port), timeout=3):
            pass
    # The stdlib's own view of this host's addresses is among them (when it has a non-loopback one).
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        own = set()
    assert {a for a in own if not a.startswith("127.")} <= set(hosts)


def test_ping_interval_keeps_a_quiet_client_past_the_idle_timeout(serve: Callable[..., Server]) -> None:
    """--ping-interval below --idle-timeout: a client that only answers pings (websockets does so by itself) is
    never idle, and no probe ping is needed on top of the regular ones."""
    import asyncio

    from websockets.asyncio.client import connect

    server = serve("--ping-interval", "0.5", "--idle-timeout", "2")

    async def quiet() -> str:
        async with connect(server.url, proxy=None, ping_interval=None, open_timeout=5) as ws:
            await asyncio.sleep(5)  # two and a half idle timeouts without sending a message
            await ws.send("still here")
            return str(await asyncio.wait_for(ws.recv(), 5))

    assert asyncio.run(quiet()) == "still here"
    assert server.stop() == 0
    assert "idle for" not in server.stdout
    pings = [e for e in server.events() if e["type"] == "frame" and e["opcode_name"] == "Ping"]
    assert pings and all(bytes.fromhex(p["payload"]).startswith(b"wsinspect ") for p in pings)  # no probe
