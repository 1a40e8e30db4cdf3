"""Frames made by ``wsinspect frame build``, read back by ``frame decode``, by the ``websockets`` library's frame
parser and by Wireshark's dissector (tshark).

The round trip is a property over hypothesis-generated frames (any opcode, FIN, RSV1, payload, mask, either
sender). websockets is the second opinion on both the bytes and the rules: it must parse the same fields, and it
must refuse a frame exactly when ``frame decode`` reports one of the frame rules websockets' parser checks itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ProtocolError
from websockets.frames import Frame as WebsocketsFrame
from websockets.streams import StreamReader

from wsinspect.capture.writer import SessionRecorder
from wsinspect.commands.frame import decode_events, parse_hex
from wsinspect.core.events import FrameEvent, Violation

from .support import byte_rows, one_lines, run

# The rules websockets' Frame.parse checks on its own (reserved bits, opcode, mask bit, control frame length and
# FIN); the others (close codes, fragmentation, UTF-8) belong to its protocol layer, not its frame parser.
FRAME_RULES = {"frame.rsv", "frame.opcode-reserved", "frame.client-unmasked", "frame.server-masked",
               "control.fragmented", "control.too-long"}

# RFC 6455 1.3's opening handshake, so tshark knows the frames that follow are WebSocket.
RFC_1_3_REQUEST = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
                   b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n")
RFC_1_3_RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")


def websockets_parse(data: bytes, *, mask: bool) -> WebsocketsFrame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WebsocketsFrame.parse(reader.read_exact, mask=mask)
    try:
        next(parser)
    except StopIteration as done:
        frame: WebsocketsFrame = done.value
        return frame
    raise AssertionError("websockets wanted more bytes than the frame has")


@st.composite
def frame_arguments(draw: st.DrawFn) -> tuple[list[str], dict[str, Any]]:
    opcode = draw(st.sampled_from(range(16)))
    control = opcode >= 8
    as_text = draw(st.booleans())
    if as_text:
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40 if control else 200))
        payload = text.encode("utf-8")
        arguments = [f"--text={text}"]
    else:
        payload = draw(st.binary(max_size=130 if control else 70_000 if draw(st.booleans()) else 300))
        arguments = ["--binary", payload.hex()] if payload else []
    fin = draw(st.booleans())
    rsv1 = draw(st.integers(0, 9)) == 0  # now and then: a rule broken on purpose
    key = draw(st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
    arguments += ["--opcode", str(opcode), "--max-bytes", str(max(len(payload), 1))]
    arguments += [] if fin else ["--no-fin"]
    arguments += ["--rsv1"] if rsv1 else []
    arguments += ["--mask", key.hex()] if key is not None else []
    sender = draw(st.sampled_from(["c2s", "s2c"]))
    return arguments, {"opcode": opcode, "payload": payload, "fin": fin, "rsv1": rsv1, "key": key, "sender": sender}


def _wire_of(out: str) -> bytes:
    lines = one_lines(out)
    # too long for one line: the hex rows (the test asked for every payload byte with --max-bytes)
    return lines[0] if lines else byte_rows(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame_arguments())
def test_build_decode_round_trip_and_websockets_agrees(case: tuple[list[str], dict[str, Any]]) -> None:
    arguments, want = case
    built = run(["frame", "build", *arguments])
    assert built.code == 0, built.err
    wire = _wire_of(built.out)

    # frame decode, as a user runs it, shows the same bytes and fields
    side = "--from-client" if want["sender"] == "c2s" else "--from-server"
    if len(wire) <= 1024:
        decoded = run(["frame", "decode", wire.hex(), side])
        assert one_lines(decoded.out) == [wire]
        assert f"({want['opcode']})  [websocket.opcode]" in decoded.out
        assert f"Fin: {want['fin']}" in decoded.out and f"Mask: {want['key'] is not None}" in decoded.out
        assert f"Reserved (RSV1): {want['rsv1']}" in decoded.out

    # the decoder behind it: the fields, exactly
    events = decode_events(wire, want["sender"])
    frames = [event.frame for event in events if isinstance(event, FrameEvent)]
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.opcode, frame.fin, frame.rsv1, frame.masking_key, frame.payload) == (
        want["opcode"], want["fin"], want["rsv1"], want["key"], want["payload"])
    assert frame.size == len(wire)
    frame_rules_broken = {event.check.id for event in events if isinstance(event, Violation)} & FRAME_RULES

    # websockets: the same fields, and it refuses the frame exactly when a frame rule is broken
    try:
        theirs = websockets_parse(wire, mask=want["sender"] == "c2s")
    except ProtocolError:
        assert frame_rules_broken, "websockets refuses a frame wsinspect finds nothing wrong with"
        return
    assert not frame_rules_broken, f"websockets accepts a frame wsinspect says breaks {frame_rules_broken}"
    assert (int(theirs.opcode), theirs.fin, theirs.rsv1, bytes(theirs.data)) == (
        want["opcode"], want["fin"], want["rsv1"], want["payload"])


@given(st.binary(min_size=1, max_size=64), st.sampled_from(["spaced", "0x", "colons", "stream", "escaped", "dump"]))
@example(b"AA", "dump")  # found by Hypothesis: a short last row whose text column ("AA") reads as hex
@example(b"\xab" * 17, "dump")
def test_hex_formats_round_trip(data: bytes, style: str) -> None:
    if style == "spaced":
        text = data.hex(" ")
    elif style == "0x":
        text = " ".join(f"0x{byte:02X}" for byte in data)
    elif style == "colons":
        text = data.hex(":")
    elif style == "stream":
        text = data.hex()
    elif style == "escaped":
        text = "".join(f"\\x{byte:02x}" for byte in data)
    else:  # Wireshark's "Copy as Hex Dump": offset, 16 bytes, the printable column
        text = "\n".join(f"{row:04x}   {data[row:row + 16].hex(' '):<47}   "
                         + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data[row:row + 16])
                         for row in range(0, len(data), 16))
    assert parse_hex(text) == data


# -- tshark ----------------------------------------------------------------------------------------------------

# (build arguments, then what the frame must be: FIN, opcode, masking key, payload), written out by hand
TSHARK_CASES: list[tuple[list[str], bool, int, str | None, bytes]] = [
    (["--text", "Hello"], True, 1, None, b"Hello"),
    (["--text", "Hello", "--mask", "37fa213d"], True, 1, "37:fa:21:3d", b"Hello"),
    (["--text", "Hel", "--no-fin", "--mask", "01020304"], False, 1, "01:02:03:04", b"Hel"),
    (["--text", "lo", "--opcode", "continuation", "--mask", "a0b0c0d0"], True, 0, "a0:b0:c0:d0", b"lo"),
    (["--opcode", "ping", "--text", "Hello"], True, 9, None, b"Hello"),
    (["--opcode", "pong", "--text", "Hello", "--mask", "37fa213d"], True, 10, "37:fa:21:3d", b"Hello"),
    (["--binary", "00" * 125], True, 2, None, bytes(125)),
    (["--binary", "ff" * 126, "--mask", "deadbeef"], True, 2, "de:ad:be:ef", b"\xff" * 126),
    (["--binary", "5a" * 65_535, "--max-bytes", "65535"], True, 2, None, b"Z" * 65_535),
    (["--binary", "a5" * 65_536, "--mask", "00000000", "--max-bytes", "65536"], True, 2, "00:00:00:00",
     b"\xa5" * 65_536),
    (["--close", "1000", "--text", "bye", "--mask", "11223344"], True, 8, "11:22:33:44", b"\x03\xe8bye"),
    (["--opcode", "binary"], True, 2, None, b""),
]


def _tshark_json(path: Path) -> list[Any]:
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": config, "LC_ALL": "C.UTF-8"}
        done = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "websocket", "-T", "json", "-x"],
                              capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decodes_what_frame_build_makes(tmp_path: Path) -> None:
    wires: list[bytes] = []
    for arguments, *_ in TSHARK_CASES:
        built = run(["frame", "build", *arguments])
        assert built.code == 0, built.err
        wires.append(_wire_of(built.out))
    capture = tmp_path / "built.pcap"
    recorder = SessionRecorder(capture)
    client, server = ("127.0.0.1", 50000), ("127.0.0.1", 80)
    recorder.open(0, client, server, 1.0)
    recorder.data(0, "c2s", RFC_1_3_REQUEST, 1.1)
    recorder.data(0, "s2c", RFC_1_3_RESPONSE, 1.2)
    for index, wire in enumerate(wires):
        # one frame per packet: masked frames are the client's, unmasked ones the server's (RFC 6455 5.1)
        recorder.data(0, "c2s" if wire[1] & 0x80 else "s2c", wire, 2.0 + index)
    recorder.finish(100.0)

    seen = []
    for packet in _tshark_json(capture):
        layers = packet["_source"]["layers"]
        ws = layers["websocket"]
        seen.append(ws)
    assert len(seen) == len(wires)
    for ws, (arguments, fin, opcode, key, payload) in zip(seen, TSHARK_CASES, strict=True):
        length = int(ws.get("websocket.payload_length_ext_16") or ws.get("websocket.payload_length_ext_64")
                     or ws["websocket.payload_length"])
        assert (ws["websocket.fin"], int(ws["websocket.opcode"]), ws["websocket.mask"], length) == (
            "1" if fin else "0", opcode, "0" if key is None else "1", len(payload)), arguments
        assert ws.get("websocket.masking_key") == key, arguments
        unmasked = bytes.fromhex(ws["websocket.payload_raw"][0]) if "websocket.payload_raw" in ws else b""
        assert unmasked == payload, arguments
