"""``wsinspect demo``: run as a teacher runs it (a child process, no terminal), then checked against real things.

What the demo must hold is written here from the issue (a handshake, a text, a binary and a fragmented message, ping
then pong, a compressed message, the close both ways); what its bytes mean is checked with the RFC's own numbers
(the GUID of RFC 6455 1.3, the 00 00 ff ff tail of RFC 7692 7.2.1 through zlib), with ``wsinspect read`` on the
recording, and with tshark, Wireshark's dissector, frame by frame. Nothing expected comes from the demo's module.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, has_no_escape, run_process

STEPS = 8
# One word each step's title must hold, in order: the list of what the demo goes through.
STEP_SUBJECTS = ["handshake", "text", "binary", "fragmented", "ping", "closing", "compressed", "close"]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: taken off each compressed message, added back to inflate
RFC_6455 = Path("/work/shared/rfc/rfc6455.txt")
STEP_HEADING = re.compile(r"^Step (\d+) of (\d+): (.+)$", re.MULTILINE)
OPCODE = re.compile(r"\b(Text|Binary|Continuation|Ping|Pong|Close)\b")


def demo(*args: str, stdin: bytes = b"") -> tuple[str, str]:
    done = run_process(["demo", "--color", "never", *args], stdin=stdin)
    assert done.code == 0, done.err
    return done.out, done.err


def blocks(out: str) -> dict[int, str]:
    """Each step's part of the output: from its heading to the next one."""
    headings = list(STEP_HEADING.finditer(out))
    return {int(match[1]): out[match.start() : headings[index + 1].start() if index + 1 < len(headings) else None]
            for index, match in enumerate(headings)}


def read_json(capture: Path) -> list[dict[str, Any]]:
    done = run_process(["read", str(capture), "--json"])
    assert done.code == 0, done.err
    return [json.loads(line) for line in done.out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[dict[str, Any]]]:
    capture = tmp_path_factory.mktemp("demo") / "demo.pcapng"
    out, _ = demo("--seed", "11", "--record", str(capture))
    return out, capture, read_json(capture)


def of(events: list[dict[str, Any]], kind: str, stream: int | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and (stream is None or e["stream"] == stream)]


# -- the terminal ---------------------------------------------------------------------------------------------


def test_every_step_is_announced_in_order_with_what_to_look_at(recorded: tuple[str, Path, Any]) -> None:
    out = recorded[0]
    headings = STEP_HEADING.findall(out)
    assert [int(number) for number, _, _ in headings] == list(range(1, STEPS + 1))
    assert all(int(total) == STEPS for _, total, _ in headings)
    for (_, _, title), subject in zip(headings, STEP_SUBJECTS, strict=True):
        assert subject in title.lower()
    for number, block in blocks(out).items():
        look = [line for line in block.splitlines() if line.startswith("  ▸ ")]
        assert len(look) == 2, f"step {number}"
        assert all(re.search(r"RFC (6455|7692) \d+(\.\d+)*$", line) for line in look), look


def test_each_step_shows_its_own_frames(recorded: tuple[str, Path, Any]) -> None:
    steps = blocks(recorded[0])
    rows = {number: [line for line in block.splitlines() if re.match(r"^\s+\d+\s+\d+\.\d{6} ", line)]
            for number, block in steps.items()}

    def opcodes(step: int) -> list[str]:
        return [match[0] for row in rows[step] if (match := OPCODE.search(row))]

    assert "GET / HTTP/1.1" in steps[1] and "101 Switching Protocols" in steps[1] and not rows[1]
    assert opcodes(2) == ["Text"] and "[MASKED]" in rows[2][0]
    assert opcodes(3) == ["Binary"]
    assert opcodes(4) == ["Text", "Continuation", "Continuation"] and "(3 frames" in steps[4]
    assert opcodes(5) == ["Ping", "Pong"]
    assert opcodes(6) == ["Close", "Close"]
    assert "permessage-deflate" in steps[7] and opcodes(7) == ["Text"] and "[RSV1]" in rows[7][0]
    assert opcodes(8) == ["Close", "Close"]


def test_steps_cite_only_sections_the_rfc_has(recorded: tuple[str, Path, Any]) -> None:
    if not RFC_6455.exists():
        pytest.skip(f"{RFC_6455} is not here")
    headings = set(re.findall(r"^(\d+(?:\.\d+)*)\.  ", RFC_6455.read_text(encoding="utf-8"), re.MULTILINE))
    cited = re.findall(r"RFC 6455 (\d+(?:\.\d+)*)$", recorded[0], re.MULTILINE)
    assert cited and set(cited) <= headings


def test_the_narration_fits_a_projector(recorded: tuple[str, Path, Any]) -> None:
    for block in blocks(recorded[0]).values():
        for line in block.splitlines()[:3]:  # the heading and the two lines on what to look at
            assert len(line) <= 76, line  # an 80-column terminal, with a margin


# -- the recording, read back ---------------------------------------------------------------------------------


def test_recording_holds_every_step(recorded: tuple[str, Path, list[dict[str, Any]]]) -> None:
    events = recorded[2]
    assert len(of(events, "connection")) == 2
    for stream in (0, 1):
        request, = of(events, "handshake_request", stream)
        response, = of(events, "handshake_response", stream)
        key = dict(request["headers"])["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert response["status"] == 101 and dict(response["headers"])["Sec-WebSocket-Accept"] == accept
        assert not request["findings"] and not response["findings"]
    assert of(events, "handshake_response", 0)[0]["extensions"] == []
    assert "permessage-deflate" in json.dumps(of(events, "handshake_response", 1)[0]["extensions"])

    frames = of(events, "frame")
    assert all(f["websocket.mask"] == (f["direction"] == "c2s") for f in frames)  # RFC 6455 5.1
    keys = [f["websocket.masking_key"] for f in frames if f["direction"] == "c2s"]
    assert len(set(keys)) == len(keys)  # a fresh key for every frame (RFC 6455 5.3)
    shape = [(f["stream"], f["direction"], f["websocket.opcode"], f["websocket.fin"]) for f in frames]
    assert shape == [
        (0, "c2s", 1, True),  # text
        (0, "c2s", 2, True),  # binary
        (0, "c2s", 1, False), (0, "c2s", 0, False), (0, "c2s", 0, True),  # one message in three frames
        (0, "c2s", 9, True), (0, "s2c", 10, True),  # ping, then pong
        (0, "c2s", 8, True), (0, "s2c", 8, True),  # the client closes, the server answers
        (1, "c2s", 1, True),  # compressed text
        (1, "s2c", 8, True), (1, "c2s", 8, True),  # the server closes, the client answers
    ]
    binary = frames[1]
    assert binary["websocket.payload_length"] > 125 and binary["length_bits"] == 16  # RFC 6455 5.2
    ping, pong = frames[5], frames[6]
    assert ping["payload"] == pong["payload"] != ""  # RFC 6455 5.5.3

    messages = of(events, "message")
    assert [(m["stream"], m["opcode"], m["frames"], m["compressed"]) for m in messages] == [
        (0, 1, 1, False), (0, 2, 1, False), (0, 1, 3, False), (1, 1, 1, True)]
    compressed_frame, compressed = frames[9], messages[3]
    assert compressed_frame["websocket.rsv"] == 4  # RSV1 (RFC 7692 6)
    wire = bytes.fromhex(compressed_frame["payload"])
    inflated = zlib.decompressobj(-15).decompress(wire + DEFLATE_TAIL)
    assert inflated == bytes.fromhex(compressed["data"]) and len(wire) < len(inflated)

    closes = [(c["stream"], c["direction"], c["code"], c["initiator"]) for c in of(events, "close")]
    assert closes == [(0, "c2s", 1000, True), (0, "s2c", 1000, False), (1, "s2c", 1001, True),
                      (1, "c2s", 1001, False)]
    assert [c["clean"] for c in of(events, "connection_closed")] == [True, True]


def test_demo_rows_are_the_recordings_rows(recorded: tuple[str, Path, Any]) -> None:
    """The demo shows the wire as read shows a capture: the same frame numbers and Info for the same frames."""
    out, capture, _ = recorded
    read = run_process(["read", str(capture), "--color", "never"])
    row = re.compile(r"^\s+(\d+)\s+\d+\.\d{6} .*?\s+\d+ (\S.*)$", re.MULTILINE)  # (No., Info)
    assert row.findall(out) and row.findall(out) == row.findall(read.out)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decodes_the_same_frames(recorded: tuple[str, Path, list[dict[str, Any]]]) -> None:
    _, capture, events = recorded
    fields = ["frame.number", "tcp.stream", "websocket.opcode", "websocket.fin", "websocket.rsv", "websocket.mask",
              "websocket.payload_length"]
    done = subprocess.run(["tshark", "-n", "-r", str(capture), "-Y", "websocket", "-T", "fields",
                           *[arg for field in fields for arg in ("-e", field)]],
                          capture_output=True, text=True, timeout=60, check=True)
    theirs = []
    for line in done.stdout.splitlines():
        number, stream, *per_frame = line.split("\t")
        # Several frames in one packet: tshark lists each field's values with commas.
        for opcode, fin, rsv, mask, length in zip(*(value.split(",") for value in per_frame), strict=True):
            theirs.append((int(number), int(stream), int(opcode), fin in ("1", "True"), int(rsv, 16),
                           mask in ("1", "True"), int(length)))
    # tshark's websocket.payload_length is the 7-bit field: 126 announces the 16-bit form.
    ours = [(f["packet"], f["stream"], f["websocket.opcode"], f["websocket.fin"], f["websocket.rsv"],
             f["websocket.mask"], min(f["websocket.payload_length"], 126)) for f in of(events, "frame")]
    assert theirs == ours
    assert len(theirs) == 12


def test_a_seed_gives_the_same_bytes_every_run(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.pcapng", tmp_path / "b.pcapng", tmp_path / "c.pcapng"
    out_a, _ = demo("--seed", "3", "--record", str(first))
    out_b, _ = demo("--seed", "3", "--record", str(second))
    demo("--seed", "4", "--record", str(other))
    assert first.read_bytes() == second.read_bytes()
    assert out_a.replace(str(first), "F") == out_b.replace(str(second), "F")
    keys = [dict(of(read_json(path), "handshake_request", 0)[0]["headers"])["Sec-WebSocket-Key"]
            for path in (first, other)]
    assert keys[0] != keys[1]


def test_without_a_seed_the_keys_are_fresh(tmp_path: Path) -> None:
    captures = [tmp_path / "a.pcapng", tmp_path / "b.pcapng"]
    for capture in captures:
        demo("--record", str(capture))
    keys = {dict(of(read_json(path), "handshake_request", 0)[0]["headers"])["Sec-WebSocket-Key"]
            for path in captures}
    assert len(keys) == 2


# -- the views --------------------------------------------------------------------------------------------------


@functools.cache
def shown_with(view: str) -> str:
    return demo("--seed", "1", view)[0]


@pytest.mark.parametrize("view", ["--flow", "--explain", "--detail", "--compact"])
def test_every_view_shows_every_step(view: str) -> None:
    out = shown_with(view)
    assert [int(n) for n, _, _ in STEP_HEADING.findall(out)] == list(range(1, STEPS + 1))
    assert has_no_escape(out)


def test_flow_draws_both_directions() -> None:
    steps = blocks(shown_with("--flow"))
    assert "▶" in steps[2] and "◀" in steps[5]  # the text goes to the server, the pong comes back


def test_explain_annotates_each_fact_where_it_first_appears() -> None:
    steps = blocks(shown_with("--explain"))

    def notes(step: int) -> str:
        return "\n".join(line for line in steps[step].splitlines() if line.lstrip().startswith("↳ RFC"))

    assert "RFC 6455 5.3" in notes(2)  # why the client masks, under its first frame
    assert "RFC 6455 5.4" in notes(4) and "RFC 7692" in notes(7)
    assert "RFC 6455 5.3" not in notes(4)  # once is enough


@pytest.mark.parametrize(("theme", "on_white"), [("light", True), ("dark", False)])
def test_light_theme_has_no_colour_that_vanishes_on_white(theme: str, on_white: bool) -> None:
    done = run_process(["demo", "--seed", "1", "--theme", theme, "--color", "always"])
    assert done.code == 0 and "\x1b[" in done.out
    bright_yellow_or_cyan = "\x1b[93m" in done.out or "\x1b[96m" in done.out
    assert bright_yellow_or_cyan is not on_white


# -- handouts ------------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_html_handout_parses_and_holds_every_step(tmp_path: Path) -> None:
    handout = tmp_path / "demo.html"
    out, _ = demo("--seed", "2", "--export", str(handout))
    parser = _Text()
    parser.feed(handout.read_text(encoding="utf-8"))
    parser.close()
    text = "".join(parser.parts)
    assert [int(n) for n, _, _ in STEP_HEADING.findall(text)] == list(range(1, STEPS + 1))
    assert STEP_HEADING.findall(text) == STEP_HEADING.findall(out)


def test_svg_handout_is_well_formed(tmp_path: Path) -> None:
    handout = tmp_path / "demo.svg"
    demo("--seed", "2", "--theme", "light", "--export", str(handout))
    root = ElementTree.parse(handout).getroot()
    assert root.tag.endswith("svg")


def test_text_handout_is_what_the_terminal_got(tmp_path: Path) -> None:
    handout = tmp_path / "demo.txt"
    out, _ = demo("--seed", "2", "--export", str(handout))
    assert handout.read_text(encoding="utf-8") == out


def test_unknown_handout_format_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = run_process(["demo", "--export", str(tmp_path / "demo.pdf"), "--record", str(tmp_path / "d.pcapng")])
    assert done.code == 2 and "FILE.html" in done.err and not done.out
    assert not (tmp_path / "d.pcapng").exists()


def test_unwritable_recording_is_one_line(tmp_path: Path) -> None:
    done = run_process(["demo", "--record", str(tmp_path / "missing" / "d.pcapng")])
    assert done.code == 2 and "Traceback" not in done.err and len(done.err.strip().splitlines()) == 1


# -- --step ---------------------------------------------------------------------------------------------------


def test_step_waits_for_enter_fed_on_stdin() -> None:
    out, err = demo("--seed", "1", "--step", stdin=b"\n" * (STEPS - 1))
    assert err.count("Enter") == STEPS - 1
    assert "end of input" not in err
    assert [int(n) for n, _, _ in STEP_HEADING.findall(out)] == list(range(1, STEPS + 1))


def test_step_without_input_says_so_and_finishes() -> None:
    out, err = demo("--seed", "1", "--step", stdin=b"\n\n")
    assert err.count("end of input") == 1
    assert [int(n) for n, _, _ in STEP_HEADING.findall(out)] == list(range(1, STEPS + 1))


def _read_until(stream: Any, marker: bytes, deadline: float) -> bytes:
    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no {marker!r} in time; got {seen[-300:]!r}"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"ended before {marker!r}; got {seen[-300:]!r}"
        seen += chunk
    return seen


def test_step_shows_nothing_of_the_next_step_before_enter() -> None:
    environment = {**os.environ, "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "demo", "--step", "--seed", "1", "--color", "never"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                             env=environment)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    try:
        deadline = time.monotonic() + 30
        shown = b""
        for step in range(2, STEPS + 1):
            _read_until(child.stderr, f"step {step} of {STEPS}".encode(), deadline)
            shown += _drain(child.stdout)  # the child flushed its output before it started waiting
            assert f"Step {step - 1} of {STEPS}".encode() in shown
            assert f"Step {step} of {STEPS}".encode() not in shown
            child.stdin.write(b"\n")
            child.stdin.flush()
        rest, _ = child.communicate(timeout=30)
        assert f"Step {STEPS} of {STEPS}".encode() in rest
        assert child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _drain(stream: Any) -> bytes:
    data = b""
    while select.select([stream], [], [], 0.2)[0]:
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            break
        data += chunk
    return data


def test_ctrl_c_leaves_a_recording_of_the_steps_shown(tmp_path: Path) -> None:
    capture = tmp_path / "stopped.pcapng"
    environment = {**os.environ, "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    # Ctrl-C as at a terminal: where the tests themselves run in the background of a non-interactive shell, SIGINT
    # is ignored and the child would inherit that, so Python would not turn it into KeyboardInterrupt.
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "demo", "--step", "--seed", "1", "--record",
                              str(capture)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=ROOT, env=environment,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert child.stdin is not None and child.stderr is not None
    try:
        deadline = time.monotonic() + 30
        _read_until(child.stderr, f"step 2 of {STEPS}".encode(), deadline)
        child.stdin.write(b"\n")
        child.stdin.flush()
        _read_until(child.stderr, f"step 3 of {STEPS}".encode(), deadline)
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=30)
        assert child.returncode == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    events = read_json(capture)
    assert [f["websocket.opcode"] for f in of(events, "frame")] == [1]  # step 2's text; step 3 never ran
    assert of(events, "handshake_response")[0]["upgraded"]
