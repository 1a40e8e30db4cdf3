"""The JSON lines' fast encoders write exactly what the reference encoder (json.dumps of to_json) writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captures.scenarios import SCENARIOS
from wsinspect.capture.keylog import KeyLog
from wsinspect.core.events import FrameEvent, Message
from wsinspect.trace import CaptureTrace
from wsinspect.views.jsonlines import frame_line, message_line, to_json

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "captures").glob("*.pcapng"))


def reference(event: FrameEvent | Message) -> str:
    return json.dumps(to_json(event), ensure_ascii=True, separators=(",", ":"))


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_fast_lines_equal_the_reference_encoder(path: Path) -> None:
    scenario = SCENARIOS.get(path.stem)
    # Connections captured without their handshake are decoded as Wireshark's Decode As would (--port).
    ports = sorted({c.server_port for c in scenario.connections if not c.handshake_captured}) if scenario else []
    if path.stem == "one-sided":
        ports = [47202]  # its server-only stream (captures/derive.py)
    # A wss capture comes with its key log beside it (captures/record_tls.py): its frames are checked decrypted.
    keys = path.with_name(path.name + ".keys")
    keylog = KeyLog.read(keys) if keys.exists() else None
    checked = 0
    for event in CaptureTrace(path, server_ports=ports, keylog=keylog):
        if isinstance(event, FrameEvent):
            assert frame_line(event) == reference(event)
            checked += 1
        elif isinstance(event, Message):
            assert message_line(event) == reference(event)
            checked += 1
    # No frames: every handshake refused, a plain HTTP request, or TLS that cannot be seen into (no keys, or a
    # CBC suite, which is not decrypted).
    assert checked > 0 or path.stem in ("bad-handshake", "plain-http", "wss", "wss-tls12-cbc")


def test_text_with_controls_quotes_and_non_ascii_is_escaped_the_same_way() -> None:
    event = Message(stream=1, direction="s2c", time=1.5, packet=None, opcode=1,
                    data='"\\\x1b[2J\u202e😀'.encode(), text='"\\\x1b[2J\u202e😀', frames=2, wire_length=9,
                    compressed=True, complete=True, first_packet=None)
    line = message_line(event)
    assert line == reference(event)
    assert line.isascii() and "\x1b" not in line
