"""The JSON lines' fast encoders write exactly what the reference encoder (json.dumps of to_json) writes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from captures.scenarios import SCENARIOS
from wsinspect.capture.keylog import KeyLog
from wsinspect.core.events import Event, FrameEvent, Message
from wsinspect.trace import CaptureTrace
from wsinspect.views.jsonlines import JsonLinesView, frame_line, message_line, to_json

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "captures").glob("*.pcapng"))


def reference(event: Event) -> str:
    return json.dumps(to_json(event), ensure_ascii=True, separators=(",", ":"))


def reference_line(event: Event) -> bytes:
    return (reference(event) + "\n").encode()


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
            assert frame_line(event) == reference_line(event)
            checked += 1
        elif isinstance(event, Message):
            assert message_line(event) == reference_line(event)
            checked += 1
    # No frames: every handshake refused, a plain HTTP request, or TLS that cannot be seen into (no keys, or a
    # CBC suite, which is not decrypted).
    assert checked > 0 or path.stem in ("bad-handshake", "plain-http", "wss", "wss-tls12-cbc")


def test_text_with_controls_quotes_and_non_ascii_is_escaped_the_same_way() -> None:
    event = Message(stream=1, direction="s2c", time=1.5, packet=None, opcode=1,
                    data='"\\\x1b[2J\u202e😀'.encode(), text='"\\\x1b[2J\u202e😀', frames=2, wire_length=9,
                    compressed=True, complete=True, first_packet=None)
    line = message_line(event)
    assert line == reference_line(event)
    assert line.isascii() and b"\x1b" not in line


@pytest.mark.parametrize("stream", ["buffered", "line-buffered", "text only"])
def test_the_view_writes_the_reference_lines_in_order_to_any_text_stream(stream: str) -> None:
    """The view writes bytes beneath the text layer: what was written as text before comes first, every event is
    one reference line, and a stream with no binary buffer (StringIO) gets the same text."""
    events = list(CaptureTrace(CAPTURES[0].with_name("deflate.pcapng")))
    raw = io.BytesIO()
    buffered = io.BufferedWriter(raw, buffer_size=1 << 20)  # type: ignore[arg-type]  # holds lines until flushed
    out: io.TextIOBase = io.StringIO() if stream == "text only" else \
        io.TextIOWrapper(buffered, encoding="ascii", line_buffering=stream == "line-buffered")
    out.write("before\n")
    view = JsonLinesView(out)  # type: ignore[arg-type]
    for number, event in enumerate(events):
        view.handle(event)
        if stream == "line-buffered" and number == 3:  # followed live (tail -f): each line is out at once
            assert raw.getvalue().count(b"\n") == 5
    view.close()
    written = out.getvalue().encode() if isinstance(out, io.StringIO) else raw.getvalue()
    assert written == b"before\n" + b"".join(reference_line(event) for event in events)
    assert len(events) > 10
