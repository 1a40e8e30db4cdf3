"""``--record``: the capture the server writes decodes, with ``wsinspect read`` and with tshark, to what it logged
live."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import websocket
from serve_support import WSINSPECT, Server, frames, of_type
from websocket import ABNF
from websockets.asyncio.client import connect

TIMEOUT = 5.0
IGNORED = {"time", "packet", "first_packet"}


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in event.items() if key not in IGNORED}
    if event["type"] in ("connection", "connection_closed"):
        out.pop("reason", None)
        out.pop("how", None)  # "it connected to us" live; how the capture told the sides apart when read
    return out


def session(server: Server) -> None:
    """Three connections, one after another: compressed (websockets), plain (websocket-client), and one that
    breaks a rule."""

    async def compressed() -> None:
        async with connect(server.url, proxy=None, ping_interval=None, open_timeout=TIMEOUT,
                           close_timeout=TIMEOUT) as ws:
            for message in ("text message", b"\x00\x01binary", ["frag", "mented"], "x" * 300):
                await ws.send(message)
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            await asyncio.wait_for(await ws.ping(b"ping!"), TIMEOUT)
            await ws.close(1000, "done")

    asyncio.run(asyncio.wait_for(compressed(), 15))
    server.wait_for("#0 closed (")

    ws = websocket.create_connection(server.url, timeout=TIMEOUT)
    try:
        ws.send("plain text")
        assert ws.recv() == "plain text"
        ws.send_frame(ABNF(fin=0, opcode=ABNF.OPCODE_BINARY, data=b"\x01" * 200))
        ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_CONT, data=b"\x02" * 70000))  # 64-bit length form
        assert len(ws.recv()) == 70200
    finally:
        ws.close(status=4000, reason=b"bye")
    server.wait_for("#1 closed (")

    ws = websocket.create_connection(server.url, timeout=TIMEOUT)
    try:
        ws.send_frame(ABNF(fin=1, opcode=ABNF.OPCODE_TEXT, data=b"\xc3\x28"))  # invalid UTF-8
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionResetError)):
            for _ in range(5):
                ws.recv_frame()
    finally:
        ws.shutdown()
    server.wait_for("#2 closed (")


def read_json(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run([*WSINSPECT, "read", str(path), "--json"], capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("ascii").splitlines() if line.strip()]


@pytest.fixture(scope="module", params=[".pcapng", ".pcap"])
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Server, Path, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("record")
    capture = directory / f"session{request.param}"
    server = Server(["--record", str(capture)], directory)
    try:
        session(server)
    finally:
        assert server.stop() == 0
    return server, capture, server.events()


def test_live_log_covers_the_session(recorded: tuple[Server, Path, list[dict[str, Any]]]) -> None:
    _, capture, live = recorded
    assert capture.stat().st_size > 0
    assert [m["stream"] for m in of_type(live, "message", "c2s")] == [0, 0, 0, 0, 1, 1, 2]
    assert of_type(live, "message", "c2s")[-1]["text"] is None  # the invalid UTF-8 one
    assert [v["check"] for v in of_type(live, "violation", "c2s")] == ["message.invalid-utf8"]
    assert [(c["stream"], c["direction"], c["code"]) for c in of_type(live, "close")] == [
        (0, "c2s", 1000), (0, "s2c", 1000), (1, "c2s", 4000), (1, "s2c", 4000), (2, "s2c", 1007)]
    assert {f["length_bits"] for f in frames(live)} == {7, 16, 64}


def per_side(events: list[dict[str, Any]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    sides: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for event in events:
        sides.setdefault((event["stream"], event["direction"]), []).append(comparable(event))
    return sides


def test_read_gives_the_same_events(recorded: tuple[Server, Path, list[dict[str, Any]]]) -> None:
    """Every event of each connection and direction, in order: frames, messages, closes, violations."""
    _, capture, live = recorded
    replayed = read_json(capture)
    assert per_side(replayed) == per_side(live)
    # The capture's packet numbers are real: every replayed event has one.
    assert all(e["packet"] is not None for e in replayed if e["type"] != "connection")


def test_read_gives_the_same_events_in_the_same_order(recorded: tuple[Server, Path, list[dict[str, Any]]]) -> None:
    _, capture, live = recorded
    assert [comparable(e) for e in read_json(capture)] == [comparable(e) for e in live]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decodes_the_same_frames(recorded: tuple[Server, Path, list[dict[str, Any]]]) -> None:
    server, capture, live = recorded
    fields = ["tcp.stream", "tcp.srcport", "websocket.opcode", "websocket.fin", "websocket.mask",
              "websocket.payload_length"]
    command = ["tshark", "-n", "-r", str(capture), "-d", f"tcp.port=={server.port},http", "-Y", "websocket",
               "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    seen = []
    for line in result.stdout.splitlines():
        stream, port, opcodes, fins, masks, lengths = line.split("\t")
        direction = "s2c" if int(port) == server.port else "c2s"
        for opcode, fin, mask, length in zip(opcodes.split(","), fins.split(","), masks.split(","),
                                             lengths.split(","), strict=True):
            seen.append((int(stream), direction, int(opcode), fin in ("1", "True"), mask in ("1", "True"),
                         int(length)))
    # tshark's websocket.payload_length is the 7-bit field: 126 or 127 announce the 16- or 64-bit forms.
    short = {7: None, 16: 126, 64: 127}
    expected = [(f["stream"], f["direction"], f["websocket.opcode"], f["websocket.fin"], f["websocket.mask"],
                 short[f["length_bits"]] or f["websocket.payload_length"]) for f in frames(live)]
    assert seen == expected
