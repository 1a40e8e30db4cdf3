"""The views as a user's terminal meets them: streaming, filters, -c, widths, themes, NO_COLOR, pipes and exit
statuses. Expected values come from the captures' --json output and from what their peers were told to send
(``captures/scenarios.py``), never from the view code itself."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from captures.scenarios import SCENARIOS
from wsinspect.trace import CaptureTrace
from wsinspect.views.output import Output
from wsinspect.views.packetlist import PacketList
from wsinspect.views.palette import Palette, resolve_theme

from .support import ROOT, capture_path, cli_env, json_frames, run_wsinspect, shipped_json

SGR = re.compile(rb"\x1b\[([0-9;]*)m")
ROW = re.compile(r"^ *(\d+) ")


def read_out(name: str, *args: str, columns: int = 120) -> str:
    done = run_wsinspect(["read", capture_path(name), "--color", "never", *args], env=cli_env(COLUMNS=str(columns)))
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout.decode("utf-8")


def frame_rows(out: str) -> dict[int, str]:
    """Packet-list rows keyed by frame number: lines that start with a number followed by the time or direction."""
    rows = {}
    for line in out.splitlines():
        if re.match(r"^ *\d+ +(\d+\.\d{6}|[cs]→[cs]) ", line):
            rows[int(ROW.match(line).group(1))] = line  # type: ignore[union-attr]
    return rows


# ---- streaming ----------------------------------------------------------------------------------------------------


def test_each_event_is_written_as_it_is_decoded() -> None:
    """The list writes a conversation's title at its first event and each row at its frame, before the capture
    (or the conversation) ends, and keeps nothing of a conversation once it has ended."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None, force_terminal=False)
    # live=True writes at every event; a file reader gets the same lines in batches at most 0.2 s apart.
    view = PacketList(Output(console, Palette(console, "dark"), live=True))
    events = iter(CaptureTrace(capture_path("echo")))
    first = next(events)
    view.handle(first)
    assert "Stream 0" in buffer.getvalue(), "the title waits for more than the conversation's first event"
    frames_seen = 0
    for event in events:
        view.handle(event)
        if type(event).__name__ == "FrameEvent":
            frames_seen += 1
            if frames_seen == 1:
                # Written at the first frame (the first flush is immediate), long before the capture ends.
                assert len(frame_rows(buffer.getvalue())) == 1
    view.close()
    assert len(frame_rows(buffer.getvalue())) == len(json_frames(shipped_json("echo")))
    assert not view._open, "an ended conversation is still held"


def test_head_of_a_pipe_exits_quietly() -> None:
    """``wsinspect read big.pcapng --detail | head -1``: exit status 0 and nothing on stderr."""
    argv = [sys.executable, "-m", "wsinspect", "read", str(capture_path("large")), "--detail", "--color", "never"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), cwd=ROOT)
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()  # what head does after its line
    status = child.wait(timeout=60)
    err = child.stderr.read()
    assert first.startswith(b" Stream 0")
    assert status == 0 and err == b"", err


# ---- filters and -c ------------------------------------------------------------------------------------------------


def test_filter_chooses_rows_not_decoding() -> None:
    frames = json_frames(shipped_json("fragmentation"))
    out = read_out("fragmentation", "-Y", "websocket.opcode == 0")
    rows = frame_rows(out)
    assert sorted(rows) == sorted(f["packet"] for f in frames if f["websocket.opcode"] == 0)
    # Continuations still say what they continue: the state ran on the frames the filter hid.
    assert any('Continuation [FIN] [MASKED] "world"' in row for row in rows.values())
    assert re.search(rf"shown +{len(rows)} of {len(frames)} frames", out)


def test_filter_on_json_and_follow() -> None:
    done = run_wsinspect(["read", capture_path("echo"), "--json", "-Y", 'text contains "héllo"'])
    lines = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert lines and {line["type"] for line in lines} == {"message"}
    assert all("héllo" in line["text"] for line in lines) and len(lines) == 2  # the message and its echo
    out = read_out("deflate", "--follow", "-Y", "direction == \"s2c\" && message")
    assert "server" in out and re.search(r"^ +[\d.]+ +client ", out, re.MULTILINE) is None


def test_bad_filter_is_one_line_with_its_column() -> None:
    done = run_wsinspect(["read", capture_path("echo"), "-Y", "websocket.opcode == && violation"])
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2 and done.stdout == b""
    assert err.count("\n") == 1 and "column 20" in err, err


def test_count_stops_after_n_packets() -> None:
    whole = shipped_json("echo")
    done = run_wsinspect(["read", capture_path("echo"), "--json", "-c", "12"])
    lines = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert json_frames(lines) == [f for f in json_frames(whole) if f["packet"] <= 12]
    assert rows_are_at_most(read_out("echo", "-c", "12"), 12)


def rows_are_at_most(out: str, packet: int) -> bool:
    rows = frame_rows(out)
    return bool(rows) and max(rows) <= packet


# ---- exit statuses -------------------------------------------------------------------------------------------------


def test_exit_status_nothing_found() -> None:
    done = run_wsinspect(["read", capture_path("midstream")])  # no handshake, and no --port
    assert done.returncode == 1 and b"--port" in done.stderr
    done = run_wsinspect(["read", capture_path("multi"), "--stream", "7"])
    assert done.returncode == 1 and b"tcp.stream 7" in done.stderr and b"3 TCP stream" in done.stderr


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "65536"], ["--port", "http"], ["-c", "0"],
                                  ["--theme", "neon"]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    done = run_wsinspect(["read", capture_path("echo"), *args])
    assert done.returncode == 2 and b"Traceback" not in done.stderr and done.stdout == b""


def test_escape_sequences_in_a_file_name_are_shown_escaped(tmp_path: Path) -> None:
    name = tmp_path / "evil\x1b]0;pwned\x07\x1b[2J.pcapng"
    name.write_bytes(b"not a capture at all")
    done = run_wsinspect(["read", name])
    assert done.returncode == 2
    assert b"\x1b" not in done.stderr and b"\x07" not in done.stderr and b"\\x1b]0;pwned\\x07" in done.stderr


# ---- widths --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [40, 60, 80, 100, 120, 200])
def test_header_lines_up_with_rows(columns: int) -> None:
    out = read_out("ipv6", columns=columns)
    header = next(line for line in out.splitlines() if line.lstrip().startswith("No."))
    rows = list(frame_rows(out).values())
    assert rows
    number_end = header.index("No.") + 3
    info = header.index("Info")
    for row in rows:
        assert len(row) <= columns, row
        assert row[:number_end].strip().isdigit() and row[number_end] == " ", (header, row)
        assert row[info - 1] == " " and row[info] != " ", (header, row)  # Info starts where its header does
        if "Length" in header:
            length_end = header.index("Length") + len("Length")
            assert row[length_end - 1].isdigit() and row[length_end] == " ", (header, row)


def test_close_code_and_reason_survive_80_columns() -> None:
    out = read_out("close-codes", columns=80)
    rows = frame_rows(out)
    closes = [f for f in json_frames(shipped_json("close-codes")) if f["websocket.opcode"] == 8]
    for frame in closes:
        payload = bytes.fromhex(frame["payload"])
        if len(payload) >= 2:
            code, reason = int.from_bytes(payload[:2], "big"), payload[2:].decode()
            row = rows[frame["packet"]]
            assert str(code) in row and (not reason or f'"{reason}"' in row), row


def test_forty_columns_still_say_what_each_frame_is() -> None:
    out = read_out("echo", columns=40)
    rows = frame_rows(out)
    for frame in json_frames(shipped_json("echo")):
        assert frame["opcode_name"] in rows[frame["packet"]]


# ---- --detail ------------------------------------------------------------------------------------------------------


def test_detail_shows_values_and_a_legend_once() -> None:
    out = read_out("echo", "--detail")
    assert out.count("Frame fields (RFC 6455 5.2)") == 1
    assert out.count("4 random bytes chosen per frame") == 1  # meanings in the legend, not under each frame
    assert "Status code: 1000" in out and 'Reason: "bye"' in out
    assert 'Text: "hello"' in out and 'Text: "héllo wörld ✓ 😀"' in out
    conn = SCENARIOS["deflate"].connections[0]
    deflate = read_out("deflate", "--detail")
    text = next(m.text for m in conn.messages("c2s") if m.kind == "text" and m.payload)
    assert text[:30] in deflate  # a compressed frame: what its message inflated to is under it


# ---- themes and colour ---------------------------------------------------------------------------------------------


def colours(data: bytes) -> set[str]:
    """The colour parameters of every SGR sequence (bold, dim, underline, reverse and resets left out)."""
    found = set()
    for params in SGR.findall(data):
        parts = params.decode().split(";")
        i = 0
        while i < len(parts):
            code = parts[i]
            if code in ("38", "48"):
                found.add(";".join(parts[i : i + 3]))
                i += 3
                continue
            if code and int(code) not in (0, 1, 2, 3, 4, 7, 22, 23, 24, 27):
                found.add(code)
            i += 1
    return found


def test_mono_theme_uses_no_colour() -> None:
    done = run_wsinspect(["read", capture_path("hostile"), "--color", "always", "--theme", "mono"])
    assert done.returncode == 0 and SGR.search(done.stdout)  # bold and underline are there
    assert colours(done.stdout) == set()


def test_light_theme_avoids_what_vanishes_on_white() -> None:
    done = run_wsinspect(["read", capture_path("hostile"), "--color", "always", "--theme", "light"])
    found = colours(done.stdout)
    assert found, "no colour at all"
    for vanishing in ("93", "96", "33", "36", "38;5;11", "38;5;14", "38;5;3", "38;5;6"):  # yellows and cyans
        assert vanishing not in found
    dims = [params for params in SGR.findall(done.stdout) if b"2" in params.split(b";")]
    assert not dims, "dim text on a projector"


def test_themes_resolve_from_the_environment() -> None:
    assert resolve_theme("auto", {"NO_COLOR": "1"}) == "mono"
    assert resolve_theme("auto", {"COLORFGBG": "0;15"}) == "light"
    assert resolve_theme("auto", {"COLORFGBG": "15;0"}) == "dark"
    assert resolve_theme("auto", {}) == "dark"
    assert resolve_theme("light", {"NO_COLOR": "1"}) == "light"


def run_on_a_terminal(extra_env: dict[str, str]) -> bytes:
    """``wsinspect read captures/echo.pcapng`` with a pseudo-terminal as its output (colour is automatic there)."""
    leader, follower = pty.openpty()
    env = cli_env(TERM="xterm-256color", **extra_env)
    child = subprocess.Popen([sys.executable, "-m", "wsinspect", "read", str(capture_path("echo"))], stdout=follower,
                             stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    child.wait(timeout=30)
    os.close(leader)
    return out


def test_no_color_is_honoured_on_a_terminal() -> None:
    coloured = run_on_a_terminal({})
    assert colours(coloured), "no colour on a terminal without NO_COLOR"
    plain = run_on_a_terminal({"NO_COLOR": "1"})
    assert b"Stream 0" in plain and colours(plain) == set()


def test_flow_bounds_from_the_command_line() -> None:
    """--max-flows reaches the reassembler: with room for one conversation, overlapping ones are let go, and said."""
    out = read_out("multi", "--max-flows", "1")
    assert "capture.flow-let-go" in out and "let go: more than 1 conversation" in out
    whole = read_out("multi")
    assert "let go" not in whole


def test_compact_is_one_line_per_handshake_and_frame() -> None:
    out = read_out("bad-handshake", "--compact", "--no-summary")
    conversations = len(SCENARIOS["bad-handshake"].connections)
    handshakes = [line for line in out.splitlines() if re.match(r"^Stream \d+ \S+ (GET|POST) ", line)]
    assert len(handshakes) == conversations
    assert all(len(line) <= 120 for line in out.splitlines())
    assert "✗ refused: 426 Upgrade Required" in out and "Header" not in out
    multi = read_out("multi", "--compact", "--no-summary")
    frames = json_frames(shipped_json("multi"))
    assert sorted(frame_rows(multi)) == sorted(f["packet"] for f in frames)
    assert len(multi.splitlines()) == len(frames) + 2 * 3 + 1  # frames, 3 handshakes and 3 ends, one header


# ---- --flow --------------------------------------------------------------------------------------------------------


def test_flow_draws_one_arrow_per_frame_in_its_direction() -> None:
    out = read_out("fragmentation", "--flow", "--no-summary", columns=100)
    arrows = [line for line in out.splitlines() if re.match(r"^ *\d+\.\d{6} │", line)]
    frames = json_frames(shipped_json("fragmentation"))
    handshakes = 2  # the request and the 101
    assert len(arrows) == len(frames) + handshakes
    rightward = [line for line in arrows if line.rstrip().endswith("▶│")]
    leftward = [line for line in arrows if "│◀" in line]
    assert len(rightward) == sum(f["direction"] == "c2s" for f in frames) + 1
    assert len(leftward) == sum(f["direction"] == "s2c" for f in frames) + 1
    assert all(len(line) <= 100 for line in out.splitlines())
    assert re.search(r"│─ GET /fragmentation/0 .*▶│", out) and re.search(r"│◀─+ 101 Switching Protocols ─│", out)
    assert re.search(r'Continuation "world" 5 B ─+▶│', out)  # a continuation of a text message shows its text


# ---- --explain -----------------------------------------------------------------------------------------------------


def test_explain_says_each_thing_once_where_it_first_appears() -> None:
    out = read_out("large", "--explain", "--no-summary")
    lines = out.splitlines()
    notes = [line for line in lines if "↳ RFC" in line]
    assert len(notes) == len(set(notes)), "a note was printed twice"
    # Each header of the request is explained under its own row, the first time only.
    key_row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Sec-WebSocket-Key "))
    assert "↳ RFC 6455 4.1: 16 random bytes" in lines[key_row + 1]
    assert out.count("16 random bytes in base64") == 1
    # The length forms, where a frame first uses them (large.pcapng has 16- and 64-bit lengths).
    frames = json_frames(shipped_json("large"))
    rows = frame_rows(out)
    first_16 = min(f["packet"] for f in frames if f["length_bits"] == 16)
    first_64 = min(f["packet"] for f in frames if f["length_bits"] == 64)
    after = lambda packet: out[out.index(rows[packet]):].split("\n", 3)  # noqa: E731 - the lines under a row
    assert any("126 in the 7-bit length field" in line for line in after(first_16)[1:3])
    assert any("127 in the 7-bit length field" in line for line in after(first_64)[1:3])
    assert out.count("126 in the 7-bit length field") == 1 and out.count("XOR key byte i") == 1


def test_explain_gives_the_rule_under_a_violation_once() -> None:
    out = read_out("hostile", "--explain", "--no-summary")
    violations = [v for v in shipped_json("hostile") if v["type"] == "violation"]
    assert violations
    rule_ids = {v["check"] for v in violations}
    from wsinspect.core.checks import CHECKS

    for check_id in rule_ids:
        assert out.count(CHECKS[check_id].rule[:50]) >= 1, check_id


def test_filter_help_lists_the_fields_without_a_capture() -> None:
    from wsinspect.filters import FIELDS

    done = run_wsinspect(["read", "-Y", "help"])
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0
    for name in ("websocket.opcode", "tcp.stream", "text", "check"):
        assert name in FIELDS and re.search(rf"^{re.escape(name)} ", out, re.MULTILINE), name
    missing = run_wsinspect(["read"])
    assert missing.returncode == 2 and b"required: capture" in missing.stderr


# ---- --export ------------------------------------------------------------------------------------------------------


def test_export_saves_what_was_shown(tmp_path: Path) -> None:
    import html.parser
    import xml.etree.ElementTree as ElementTree

    text_file, html_file, svg_file = tmp_path / "echo.txt", tmp_path / "echo.html", tmp_path / "echo.svg"
    shown = run_wsinspect(["read", capture_path("echo"), "--color", "never", "--export", text_file]).stdout.decode()
    strip = lambda text: [line.rstrip() for line in text.splitlines()]  # noqa: E731 - trailing blanks differ
    assert strip(text_file.read_text("utf-8")) == strip(shown)  # the terminal got the handout's 100 columns
    assert max(len(line) for line in shown.splitlines()) <= 100
    run_wsinspect(["read", capture_path("hostile"), "--color", "never", "--export", html_file])

    class Collect(html.parser.HTMLParser):
        text = ""

        def handle_data(self, data: str) -> None:
            self.text += data

    page = Collect()
    page.feed(html_file.read_text("utf-8"))
    assert '"\\x1b[2J\\x1b]0;pwned\\x07[b' in page.text  # escaped in the handout as on the terminal
    assert "color:" in html_file.read_text("utf-8")  # the theme's colours, though the terminal had none
    run_wsinspect(["read", capture_path("echo"), "--export", svg_file])
    ElementTree.parse(svg_file)  # well-formed XML


def test_export_refuses_a_capture_too_long_for_a_handout(tmp_path: Path) -> None:
    target = tmp_path / "large.html"
    done = run_wsinspect(["read", capture_path("large"), "--detail", "--max-bytes", "100k", "--export", target])
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2 and not target.exists()
    assert "--stream" in err and "-Y" in err and "-c" in err and err.count("\n") == 1
    bad = run_wsinspect(["read", capture_path("echo"), "--export", tmp_path / "echo.pdf"])
    assert bad.returncode == 2 and b"FILE.html" in bad.stderr and bad.stdout == b""


def test_tls_is_reported_apart_from_websocket_conversations() -> None:
    done = run_wsinspect(["read", capture_path("wss"), "--color", "never"])
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert done.returncode == 1 and "TLS stream" in err and err.count("\n") == 1
    assert re.search(r"conversations +0\b", out) and re.search(r"TLS streams +1\b", out)
    assert "session keys are needed" in out and not frame_rows(out)
