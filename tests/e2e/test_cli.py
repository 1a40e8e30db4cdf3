"""``wsinspect read`` as a user runs it: the console views, hostile payloads, help, and bad input files.

Every run is a child process on a 120-column console without colour (``--color never``, ``COLUMNS=120``), stdout
and stderr captured as bytes so nothing is decoded away before it is checked.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from captures.scenarios import ESCAPES, SAMPLE_ACCEPT, SCENARIOS, WRONG_ACCEPT

from .support import ROW, capture_path, console, json_frames, port_args, read_pcapng, run_wsinspect, shipped_json

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read(name: str, *args: str) -> str:
    return console(name, *args)


def flat(text: str) -> str:
    """All whitespace runs (line wraps included) as one space: for statements that may wrap."""
    return re.sub(r"\s+", " ", text)


def sections(text: str) -> dict[int, str]:
    """The output under each conversation's headings (``Stream N``), keyed by stream number. Only meaningful for
    captures whose conversations do not overlap in time; rows of overlapping ones are told apart by
    ``rows_by_stream``."""
    parts = re.split(r"^ Stream (\d+) ", text, flags=re.MULTILINE)
    merged: dict[int, str] = {}
    for i in range(1, len(parts) - 1, 2):
        merged[int(parts[i])] = merged.get(int(parts[i]), "") + parts[i + 1]
    return merged


WIDE_ROW = re.compile(r"^\s*(\d+)\s+\d+\.\d{6} +(\S+) → (\S+) +\d+ ", re.MULTILINE)


def _shown_endpoint(joined: str) -> str:
    """JSON's ``host:port`` as the packet list shows it (IPv6 in brackets)."""
    host, _, port = joined.rpartition(":")
    return f"[{host}]:{port}" if ":" in host else joined


def rows_by_stream(out: str, name: str) -> dict[int, list[int]]:
    """Frame numbers of the packet list's rows, per conversation, told apart by their Source → Destination."""
    streams = {}
    for line in shipped_json(name):
        if line["type"] == "connection":
            client, server = _shown_endpoint(line["client"]), _shown_endpoint(line["server"])
            streams[client, server] = streams[server, client] = line["stream"]
    rows: dict[int, list[int]] = {}
    for match in WIDE_ROW.finditer(out):
        rows.setdefault(streams[match.group(2), match.group(3)], []).append(int(match.group(1)))
    return rows


def frame_rows(text: str) -> dict[int, str]:
    """Packet-list rows, keyed by frame number (rows start with the number, right-aligned)."""
    rows: dict[int, str] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[int(match.group(1))] = line
    return rows


# ---- the default view -------------------------------------------------------------------------------------------


def packet_of(name: str, direction: str, opcode: int, payload: bytes) -> int:
    """The frame number of the one frame with this content (from --json: file-independent test data)."""
    found = [f["packet"] for f in json_frames(shipped_json(name)) if f["direction"] == direction
             and f["websocket.opcode"] == opcode and f["payload"] == payload.hex()]
    assert len(found) == 1, (direction, opcode, payload)
    return found[0]


def test_echo_default_view() -> None:
    out = read("echo")
    lines = shipped_json("echo")
    request = next(line for line in lines if line["type"] == "handshake_request")
    key = dict(request["headers"])["Sec-WebSocket-Key"]
    accept = dict(next(line for line in lines if line["type"] == "handshake_response")["headers"])[
        "Sec-WebSocket-Accept"]
    text = flat(out)
    # the accept computation spelled out (RFC 6455 4.2.2), and ticked
    assert f'"{key}"' in text and GUID in text
    assert re.search(re.escape(accept) + r" +✓", text), "the Sec-WebSocket-Accept line has no ✓"
    assert "✗" not in out
    # every header line of the handshake
    for name, value in request["headers"]:
        assert re.search(rf"^\s*{re.escape(name)}\s+{re.escape(value)}\s*$", out, re.MULTILINE), name
    assert "GET /echo/0 HTTP/1.1" in out and "HTTP/1.1 101 Switching Protocols" in out
    # one row per frame, one line each, with what it carries
    rows = frame_rows(out)
    assert sorted(rows) == [f["packet"] for f in json_frames(shipped_json("echo"))]
    assert 'Text [FIN] [MASKED] "hello"' in rows[packet_of("echo", "c2s", 1, b"hello")]
    assert rows[packet_of("echo", "s2c", 1, b"hello")].rstrip().endswith('Text [FIN] "hello"')
    assert '"héllo wörld ✓ 😀"' in rows[packet_of("echo", "c2s", 1, "héllo wörld ✓ 😀".encode())]
    binary = bytes(range(16)) + b"\x00\xff\xfe"
    assert "Binary [FIN] [MASKED] 00 01 02 03" in rows[packet_of("echo", "c2s", 2, binary)]
    for direction, opcode, payload in (("c2s", 9, b"ping-1234"), ("s2c", 10, b"ping-1234"),
                                       ("s2c", 9, b"server-ping"), ("c2s", 10, b"server-ping")):
        row = rows[packet_of("echo", direction, opcode, payload)]
        assert ("Ping [FIN]" if opcode == 9 else "Pong [FIN]") in row and payload.decode() in row
        assert ("[MASKED]" in row) is (direction == "c2s")
    for direction in ("c2s", "s2c"):
        close = rows[packet_of("echo", direction, 8, b"\x03\xe8bye")]
        assert "Close [FIN]" in close and "1000" in close and '"bye"' in close
    assert all(len(line) <= 120 for line in out.splitlines())
    # the closing summary
    assert re.search(r"conversations\s+1\b", out) and re.search(r"frames\s+15\b", out)


def test_bad_handshake_view() -> None:
    out = read("bad-handshake")
    parts = sections(out)
    assert sorted(parts) == list(range(len(SCENARIOS["bad-handshake"].connections)))
    refusals = {"/bad/0": "400 Bad Request", "/bad/1": "400 Bad Request", "/bad/2": "400 Bad Request",
                "/bad/3": "405 Method Not Allowed", "/bad/4": "426 Upgrade Required"}
    for stream, part in parts.items():
        _title, body = part.split("\n", 1)
        target = re.search(r"^\s*request\s+\w+ (/bad/\d) HTTP/1\.1", body, re.MULTILINE)
        assert target, f"stream {stream}: no request line"
        path = target.group(1)
        if path in refusals:
            assert f"✗ refused: {refusals[path]}" in body, f"the {path} refusal does not say {refusals[path]}"
            assert f"HTTP/1.1 {refusals[path]}" in body
            assert "✗" in body, f"{path}: the broken rule is not marked"
        assert not frame_rows(body), "no frame follows a failed handshake"
    # each broken request rule, in words
    text = flat(out)
    assert "Sec-WebSocket-Version" in flat(parts[0]) and "8" in flat(parts[0])
    assert "POST" in flat(parts[3]) and "GET" in flat(parts[3])
    # the wrong Sec-WebSocket-Accept: what it should have been and what the server sent
    assert re.search(rf"expected:? +{re.escape(SAMPLE_ACCEPT)} +got:? +{re.escape(WRONG_ACCEPT)}", text)
    assert re.search(rf"{re.escape(SAMPLE_ACCEPT)} +✗", text)


def test_stream_option_shows_only_that_conversation() -> None:
    out = read("multi", "--stream", "1")
    assert list(sections(out)) == [1]
    assert "GET /multi/1 " in out and "/multi/0" not in out and "/multi/2" not in out
    assert "conn 1 message 0" in out and "conn 0 " not in out and "conn 2 " not in out
    lines = [json.loads(line) for line in run_wsinspect(
        ["read", capture_path("multi"), "--json", "--stream", "0", "--stream", "2"]).stdout.splitlines()]
    assert {line["stream"] for line in lines} == {0, 2}
    assert [f for f in json_frames(lines)] == [f for f in json_frames(shipped_json("multi")) if f["stream"] != 1]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_packet_list_in_capture_order(name: str) -> None:
    """Each conversation's packet list reads top to bottom like Wireshark's, one row per frame."""
    rows = rows_by_stream(read(name, *port_args(name)), name)
    frames = json_frames(shipped_json(name))
    assert sorted(rows) == sorted({f["stream"] for f in frames})
    for stream, numbers in rows.items():
        if port_args(name):
            # Joined mid-connection: the list streams, and a frame is only trusted (and listed) once the next
            # header confirms where it ends, so a row can come after a later packet's (README, Known limits).
            numbers = sorted(numbers)
        assert numbers == sorted(f["packet"] for f in frames if f["stream"] == stream)


def test_port_option_decodes_midstream() -> None:
    out = read("midstream", "--port", "47070")
    assert '"first message after the capture started"' in out
    assert '"server speaks unprompted: ✓"' in out
    assert len(frame_rows(out)) == 9


# ---- --detail ---------------------------------------------------------------------------------------------------


def wire_start(frame: dict) -> bytes:
    """The first bytes of a frame on the wire, rebuilt from the JSON fields (RFC 6455 5.2)."""
    length = frame["websocket.payload_length"]
    bits = frame["length_bits"]
    head = bytes([frame["websocket.fin"] << 7 | frame["websocket.rsv"] << 4 | frame["websocket.opcode"],
                  frame["websocket.mask"] << 7 | (length if bits == 7 else 126 if bits == 16 else 127)])
    head += length.to_bytes(bits // 8, "big") if bits > 7 else b""
    key = bytes.fromhex((frame["websocket.masking_key"] or "").replace(":", ""))
    payload = bytes.fromhex(frame["payload"])
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + payload


@pytest.mark.parametrize("name", ["echo", "large"])
def test_detail_field_tree_and_hex_dump(name: str) -> None:
    out = read(name, "--detail")
    for field in ("websocket.fin", "websocket.rsv", "websocket.opcode", "websocket.mask",
                  "websocket.payload_length", "websocket.masking_key"):
        assert f"[{field}]" in out
    if name == "large":
        assert "[websocket.payload_length_ext_16]" in out and "[websocket.payload_length_ext_64]" in out
        assert "Extended Payload length (64 bits): 300000" in out
    frames = json_frames(shipped_json(name))
    for frame in frames:  # the first line of each frame's hex dump: offset, then 8 + 8 bytes
        start = wire_start(frame)[:16]
        hex_line = " ".join(f"{b:02x}" for b in start[:8]) + "  " + " ".join(f"{b:02x}" for b in start[8:])
        assert re.search(rf"^ *0000  {re.escape(hex_line.strip())}", out, re.MULTILINE), frame["packet"]
    for frame in frames:
        if frame["websocket.masking_key"]:
            assert f"Masking-Key: {frame['websocket.masking_key'].replace(':', ' ')}" in out
    assert re.search(r"Opcode: Text \(1\)", out) and re.search(r"Opcode: Close \(8\)", out)


# ---- --follow ---------------------------------------------------------------------------------------------------


def test_follow_shows_inflated_text() -> None:
    out = read("deflate", "--follow")
    for conn in SCENARIOS["deflate"].connections:
        for direction in ("c2s", "s2c"):
            for message in conn.messages(direction):
                if message.kind == "text" and message.payload:
                    assert message.text[:40] in out, message.text[:40]
    assert "alpha beta gamma" in out and "server side pieces" in out
    assert out.index("compress me, please") < out.index("alpha beta gamma") < out.index("server side pieces")
    assert "\\x00\\x00\\xff\\xff" not in out and "J\\xcc)" not in out  # no raw DEFLATE bytes anywhere
    assert "close 1000" in out and '"deflate done"' in out and '"nct done"' in out


# ---- hostile payloads ---------------------------------------------------------------------------------------------

MODES = [(), ("--detail",), ("--follow",), ("--json",)]


@pytest.mark.parametrize("mode", MODES, ids=["default", "detail", "follow", "json"])
def test_hostile_payloads_never_reach_the_terminal(mode: Sequence[str]) -> None:
    done = run_wsinspect(["read", capture_path("hostile"), "--color", "never", *mode])
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    for stream in (done.stdout, done.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream
        assert b"\xc2\x9b" not in stream and b"\x9b" not in stream  # CSI as a C1 control, UTF-8 encoded or raw
    assert b"[bold red]" in done.stdout  # markup in the payload is shown as the characters it is
    out = done.stdout.decode("utf-8")
    if mode == ("--json",):
        texts = [line.get("text") for line in map(json.loads, out.splitlines()) if line["type"] == "message"]
        assert texts.count(ESCAPES) == 2  # the JSON keeps the exact text, escaped by JSON itself
    else:
        assert "\\x1b[2J\\x1b]0;pwned\\x07[bold red]" in out  # the escapes, spelled out


@pytest.mark.parametrize("mode", MODES, ids=["default", "detail", "follow", "json"])
def test_hostile_payloads_with_colour_only_add_colour(mode: Sequence[str]) -> None:
    """With ``--color always`` the only escape sequences are wsinspect's own SGR colour codes."""
    done = run_wsinspect(["read", capture_path("hostile"), "--color", "always", *mode])
    assert done.returncode == 0
    rest = re.sub(rb"\x1b\[[0-9;]*m", b"", done.stdout)
    assert b"\x1b" not in rest and b"\x07" not in rest
    assert b"[bold red]" in rest


def test_hostile_violations_are_shown() -> None:
    out = flat(read("hostile"))
    for words in ("1007", "1002", "not masked|unmasked", "0x3|reserved", "RSV1", "125", "FIN=0|fragmented",
                  "1005"):
        assert re.search(words, out, re.IGNORECASE), words


# ---- help ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["read", "--help"]], ids=["main", "read"])
def test_help_has_examples(args: list[str]) -> None:
    done = run_wsinspect(args)
    assert done.returncode == 0
    out = done.stdout.decode("utf-8")
    assert "examples:" in out
    assert "wsinspect read captures/echo.pcapng" in out
    if args[0] == "read":
        for option in ("--json", "--detail", "--follow", "--stream", "--port"):
            assert re.search(rf"wsinspect read \S+ .*{option}", out), option


def test_no_command_prints_help() -> None:
    done = run_wsinspect([])
    assert done.returncode != 0 and b"Traceback" not in done.stderr
    assert b"read" in done.stdout + done.stderr


# ---- bad input files ----------------------------------------------------------------------------------------------


BAD_KINDS = {  # kind -> what the one-line error must say
    "empty": "empty",
    "text": "not a pcap or pcapng file",
    "random": "not a pcap or pcapng file",
    "header-only-fragment": "pcapng",
    "missing": "No such file",
    "directory": "directory",
}


def bad_file(directory: Path, kind: str, stem: str | None = None) -> Path:
    path = directory / f"{stem or kind}.pcapng"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("This is not a capture.\nJust some text, two lines of it.\n")
    elif kind == "random":
        path.write_bytes(random.Random(6455).randbytes(4096))
    elif kind == "header-only-fragment":
        path.write_bytes(capture_path("echo").read_bytes()[:20])  # inside the section header block
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        path.write_bytes(capture_path("echo").read_bytes()[:1000])
    else:
        assert kind == "missing"
    return path


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("mode", [(), ("--json",)], ids=["console", "json"])
def test_bad_file_error(tmp_path: Path, kind: str, mode: Sequence[str]) -> None:
    path = bad_file(tmp_path, kind)
    done = run_wsinspect(["read", path, *mode], cwd=tmp_path)
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert done.stdout == b""
    assert err.startswith("wsinspect: ") and err.endswith("\n")
    assert str(path) in err.replace("\n", "")  # (the path may be wrapped: see the test below)
    assert BAD_KINDS[kind] in flat(err)


@pytest.mark.parametrize("kind", [*sorted(BAD_KINDS), "truncated"])
def test_bad_file_error_is_one_line(tmp_path: Path, kind: str) -> None:
    path = bad_file(tmp_path, kind, stem=f"{kind}-" + "a-capture-with-a-long-name-" * 4)
    done = run_wsinspect(["read", path, "--json"])
    err = done.stderr.decode("utf-8")
    assert done.returncode in (2, 3) and err.startswith("wsinspect: ")
    assert err.count("\n") == 1, err


def cut_points() -> list[tuple[int, int]]:
    """(packet number, file offset) pairs that fall inside an Enhanced Packet Block of echo.pcapng."""
    packets = read_pcapng(capture_path("echo")).packets
    chosen = [packets[0], packets[7], packets[12], packets[-1]]  # SYN, first frame, mid-session, last
    out = [(p.number, p.start + (p.end - p.start) // 2) for p in chosen]
    out.append((packets[7].number, packets[7].start + 9))  # inside the block header itself
    return out


@pytest.mark.parametrize(("packet", "offset"), cut_points(), ids=lambda v: str(v))
def test_truncated_capture(tmp_path: Path, packet: int, offset: int) -> None:
    """Cut inside packet N: packets 1..N-1 are decoded exactly as in the whole file, then 'truncated', exit 3."""
    path = tmp_path / "echo-truncated.pcapng"
    path.write_bytes(capture_path("echo").read_bytes()[:offset])
    done = run_wsinspect(["read", path, "--json"])
    err = done.stderr.decode("utf-8")
    assert done.returncode == 3, err
    assert "Traceback" not in err and "truncated" in err
    lines = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    whole = json_frames(shipped_json("echo"))
    assert json_frames(lines) == [f for f in whole if f["packet"] < packet]
    whole_messages = [m for m in shipped_json("echo") if m["type"] == "message"]
    assert [m for m in lines if m["type"] == "message"] == [m for m in whole_messages if m["packet"] < packet]
    console = run_wsinspect(["read", path, "--color", "never"])
    assert console.returncode == 3 and b"truncated" in console.stderr and b"Traceback" not in console.stderr
