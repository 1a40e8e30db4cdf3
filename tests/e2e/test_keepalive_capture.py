"""captures/keepalive.pcapng (review finding 9): a real keep-alive client (http.client) makes two plain requests and
then the upgrade on one TCP connection to a real server (Node's http module); recorded by
captures/record_keepalive.py, which wrote what was sent to captures/keepalive.json."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wsinspect.core.events import ConnectionOpened, HandshakeRequest, HandshakeResponse, Message
from wsinspect.trace import CaptureTrace

from .support import cli_env, read_json, run_wsinspect

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
CAPTURE = CAPTURES / "keepalive.pcapng"
MANIFEST: dict[str, Any] = json.loads((CAPTURES / "keepalive.json").read_text(encoding="utf-8"))


def test_the_websocket_after_two_plain_requests_is_found_without_port() -> None:
    trace = CaptureTrace(CAPTURE)
    events = list(trace)
    assert len([event for event in events if isinstance(event, ConnectionOpened)]) == 1
    requests = [event.request.target for event in events if isinstance(event, HandshakeRequest)]
    responses = [(event.response.status, event.upgraded) for event in events if isinstance(event, HandshakeResponse)]
    # The exchange just before the upgrade is shown (the plain GET /app.js, its body chunked), then the upgrade.
    assert requests == ["/app.js", "/ws"]
    assert responses == [(200, False), (101, True)]
    messages = {direction: [event.text for event in events if isinstance(event, Message)
                            and event.direction == direction] for direction in ("c2s", "s2c")}
    assert messages == {"c2s": MANIFEST["c2s"], "s2c": MANIFEST["s2c"]}
    assert trace.stats.skipped_streams == 0


def test_port_shows_every_exchange_on_the_connection() -> None:
    events = list(CaptureTrace(CAPTURE, server_ports=(MANIFEST["port"],)))
    statuses = [event.response.status for event in events if isinstance(event, HandshakeResponse)]
    assert statuses == [exchange["status"] for exchange in MANIFEST["exchanges"]]


def test_the_list_shows_the_handshake_and_frames_and_counts_no_refusal() -> None:
    done = run_wsinspect(["read", CAPTURE, "--color", "never"], env=cli_env())
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("utf-8")
    assert "the same connection carries another request (HTTP/1.1 keep-alive)" in out
    assert "✓ upgraded" in out and '"second message ✓"' in out
    assert "conversations  1\n" in out  # the upgrade came: not counted as refused or plain HTTP


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_decodes_the_same_frames() -> None:
    fields = ["frame.number", "websocket.opcode", "websocket.payload_length"]
    out = subprocess.run(["tshark", "-r", str(CAPTURE), "-Y", "websocket", "-T", "fields",
                          *(arg for field in fields for arg in ("-e", field))],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    theirs = [tuple(int(value) for value in line.split("\t")) for line in out.splitlines() if line]
    ours = [(line["packet"], line["websocket.opcode"], line["websocket.payload_length"]) for line in read_json(CAPTURE)
            if line["type"] == "frame"]
    assert ours == theirs and len(ours) == 2 * len(MANIFEST["c2s"]) + 2
