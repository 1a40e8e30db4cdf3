"""The README's "Teaching with wsinspect" section, run end to end.

The commands are taken out of the section's ```sh code blocks, so the README and this test cannot drift apart, and run
in order, in one empty directory (later steps read what earlier ones wrote), each as a child process with
``python -m wsinspect`` (this checkout) for ``wsinspect``, a 100-column terminal and a timeout:

- a command exits with the status its comment names ("exit status N"), 0 when it names none;
- ``demo --step`` gets its Enter presses on stdin;
- ``serve`` is started on a free loopback port (``--port 0`` added; ``--host 0.0.0.0`` becomes 127.0.0.1, the tests
  stay on loopback), checked with a real ``websockets`` client that connects as the demo page does (to ``/demo``, with
  an Origin), and stopped with SIGINT by PID; with ``--misbehave`` the client must fail the way the comment says
  ("websockets ... close N": the close code it sends; "handshake is refused": it never opens);
- a line marked "projector only" needs a screen and is skipped, as is a tool that is not installed (tshark).

Then what the walkthrough wrote is read back: the recording with ``wsinspect read --json``, the HTML handout with
html.parser, the SVG as XML. Expected values come from the README's words and RFC 6455 (computed here), never from
wsinspect's code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

websockets = pytest.importorskip("websockets", reason="the 'websockets' library (pip install '.[test]') is missing")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosedError, InvalidHandshake  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
HEADING = "## Teaching with wsinspect"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example Sec-WebSocket-Key
COMMAND_TIMEOUT = 30.0
SERVE_READY = "Ctrl-C closes every connection"  # the last line serve prints before it serves (README, serve --help)
SERVE_LISTENING = re.compile(r"on wss?://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
SIGNAL_SETTLE = 0.15  # serve installs its SIGINT handler a moment after its ready line (tests/server/serve_support.py)


# -- the section and its commands --------------------------------------------------------------------------------


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.find("\n" + HEADING + "\n")
    assert start >= 0, f"README.md has no {HEADING!r} section"
    end = text.find("\n## ", start + 1)
    return text[start + 1:end if end >= 0 else len(text)]


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one shell line: the comment starts at a '#' outside quotes after a space."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


@dataclass(frozen=True)
class Command:
    index: int
    step: str  # the ### heading the command is under
    code: str  # as the README has it (a here-document with its lines), the comment left out
    comment: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.code.splitlines()[0])

    @property
    def is_wsinspect(self) -> bool:
        return self.words[0] == "wsinspect"

    @property
    def subcommand(self) -> str:
        return self.words[1] if self.is_wsinspect else ""

    @property
    def expected_status(self) -> int:
        found = re.search(r"exit status (\d+)", self.comment)
        return int(found.group(1)) if found else 0

    @property
    def projector_only(self) -> bool:
        return "projector only" in self.comment

    @property
    def simple(self) -> bool:
        """One line of plain words: run without a shell."""
        return "\n" not in self.code and not re.search(r"[|&;<>()$`]", self.code)

    @property
    def slug(self) -> str:
        return f"{self.index:02d}-" + re.sub(r"[^A-Za-z0-9.]+", "-", self.code.splitlines()[0])[:60].strip("-")


def extract_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    step = ""
    for block in re.finditer(r"^### ([^\n]*)$|^```sh\n(.*?)^```$", text, re.M | re.S):
        if block.group(1) is not None:
            step = block.group(1)
            continue
        lines = block.group(2).splitlines()
        i = 0
        while i < len(lines):
            code, comment = split_comment(lines[i])
            i += 1
            if not code:
                continue
            while code.endswith("\\") and i < len(lines):  # a continued line
                more, more_comment = split_comment(lines[i])
                code, comment = code[:-1].rstrip() + " " + more.lstrip(), comment or more_comment
                i += 1
            heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1", code)
            if heredoc:  # the here-document's lines, up to its delimiter, belong to the command
                body = []
                while i < len(lines) and lines[i].strip() != heredoc.group(2):
                    body.append(lines[i])
                    i += 1
                assert i < len(lines), f"here-document {heredoc.group(2)} is not closed in the README"
                code = "\n".join([code, *body, lines[i]])
                i += 1
            commands.append(Command(len(commands), step, code, comment))
    return commands


COMMANDS = extract_commands(section())


# -- running them ------------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "COLORFGBG", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    path = env.get("PYTHONPATH")
    env.update({"COLUMNS": "100", "LINES": "50", "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")})
    return env


WSINSPECT = [sys.executable, "-m", "wsinspect"]


def argv_of(command: Command) -> list[str]:
    words = command.words
    return [*WSINSPECT, *words[1:]] if command.is_wsinspect else words


def shell_code(command: Command) -> str:
    """The command for bash, ``wsinspect`` in command position replaced by ``python -m wsinspect``."""
    python = " ".join(shlex.quote(word) for word in WSINSPECT)
    return re.sub(r"(^|[|;&(]\s*|\$\(\s*)wsinspect(?=\s|$)", lambda m: m.group(1) + python, command.code, flags=re.M)


@dataclass
class Outcome:
    command: Command
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: BaseException | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class _Reader(threading.Thread):
    """Collects a pipe's text as it arrives."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.cond = threading.Condition()

    def run(self) -> None:
        while chunk := os.read(self.pipe.fileno(), 65536):
            with self.cond:
                self.data += chunk
                self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return self.data.decode("utf-8", "replace")

    def wait_for(self, *needles: str, timeout: float = 5.0) -> bool:
        """Wait until one of ``needles`` has arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(needle.encode() in self.data for needle in needles):
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    return any(needle.encode() in self.data for needle in needles)
                self.cond.wait(min(left, 0.2))
            return True


class Walkthrough:
    """The section's commands, run in order in one directory as the tests ask for them (each at most once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.outcomes: list[Outcome] = []

    def outcome(self, index: int) -> Outcome:
        while len(self.outcomes) <= index:
            command = COMMANDS[len(self.outcomes)]
            outcome = Outcome(command)
            started = time.monotonic()
            try:
                self._run(command, outcome)
            except BaseException as error:  # a failed check or a skip: reported by the command's own test
                if isinstance(error, KeyboardInterrupt):
                    raise
                outcome.error = error
            outcome.seconds = time.monotonic() - started
            self.outcomes.append(outcome)
        return self.outcomes[index]

    def run_all(self) -> list[Outcome]:
        return [self.outcome(i) for i in range(len(COMMANDS))]

    def find(self, predicate: Any) -> Outcome:
        found = [o for o in self.run_all() if predicate(o.command)]
        assert len(found) == 1, f"{len(found)} commands of the walkthrough match"
        return found[0]

    # -- one command -------------------------------------------------------------------------------------------

    def _run(self, command: Command, outcome: Outcome) -> None:
        if command.projector_only:
            pytest.skip(f"marked 'projector only' in the README (needs a screen): {command.code}")
        if not command.is_wsinspect and command.simple and shutil.which(command.words[0]) is None:
            pytest.skip(f"{command.words[0]} is not installed")
        if command.subcommand == "serve":
            self._serve(command, outcome)
            return
        stdin = ""
        if command.subcommand == "demo" and "--step" in command.words:
            # Enter before each step after the first; the README's class has 8 of them.
            assert "8 steps" in command_prose(command), "the README no longer says how many steps the demo has"
            stdin = "\n" * 7
        if command.simple:
            args: list[str] = argv_of(command)
        else:
            args = ["bash", "-c", "set -o pipefail\n" + shell_code(command)]
        done = subprocess.run(args, input=stdin.encode(), capture_output=True, cwd=self.directory, env=child_env(),
                              timeout=COMMAND_TIMEOUT, check=False)
        outcome.returncode = done.returncode
        outcome.stdout = done.stdout.decode("utf-8", "replace")
        outcome.stderr = done.stderr.decode("utf-8", "replace")
        assert done.returncode == command.expected_status, (
            f"{command.code}\nexited {done.returncode}, the README says {command.expected_status}\n"
            f"stdout:\n{outcome.stdout[-3000:]}\nstderr:\n{outcome.stderr[-3000:]}")
        if command.is_wsinspect or command.words[0] == "tshark":
            assert outcome.stdout.strip(), f"{command.code} printed nothing"

    def _serve(self, command: Command, outcome: Outcome) -> None:
        argv = argv_of(command)
        argv = ["127.0.0.1" if word == "0.0.0.0" else word for word in argv]  # loopback only
        argv += ["--port", "0"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=self.directory, env=child_env())
        out, err = _Reader(proc.stdout), _Reader(proc.stderr)
        out.start()
        err.start()
        try:
            ready = out.wait_for(SERVE_READY, timeout=20.0)
            ready_at = time.monotonic()
            assert ready, f"{argv} did not start\nstdout:\n{out.text}\nstderr:\n{err.text}"
            listening = SERVE_LISTENING.search(out.text)
            assert listening, out.text
            port = int(listening.group(2))
            kind = next((w for prev, w in itertools.pairwise(argv) if prev == "--misbehave"), None)
            if kind is None:
                outcome.details = check_good_server(port, command, out)
            else:
                outcome.details = check_broken_server(port, command, out)
            time.sleep(max(0.0, ready_at + SIGNAL_SETTLE - time.monotonic()))
            os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
            outcome.returncode = proc.wait(10)
            out.join(5)
            err.join(5)
            outcome.stdout, outcome.stderr = out.text, err.text
            assert outcome.returncode == 0, (f"serve exited {outcome.returncode} after Ctrl-C (0 expected)\n"
                                             f"stderr:\n{outcome.stderr[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            outcome.stdout, outcome.stderr = out.text, err.text


def command_prose(command: Command) -> str:
    """The README's text under the command's ### heading."""
    text = section()
    start = text.index("### " + command.step)
    end = text.find("\n### ", start + 1)
    return text[start:end if end >= 0 else len(text)]


# -- the checks on a running server ------------------------------------------------------------------------------


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(data: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(data)
    parser.close()
    return parser


def check_good_server(port: int, command: Command, log: _Reader) -> dict[str, Any]:
    """The demo page is served, and a client connecting as the page does is welcomed with its number and echoed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/html"
        page = parse_html(response.read().decode("utf-8"))
    assert "script" in page.tags, "the demo page has no script to open a WebSocket with"

    async def talk() -> dict[str, Any]:
        async with connect(f"ws://127.0.0.1:{port}/demo", origin=f"http://127.0.0.1:{port}",
                           open_timeout=5, close_timeout=3) as ws:
            welcome = await asyncio.wait_for(ws.recv(), 5)
            text = "hello from seat 12"
            await ws.send(text)
            echo = await asyncio.wait_for(ws.recv(), 5)
            return {"welcome": welcome, "sent": text, "echo": echo}

    got = asyncio.run(talk())
    number = re.search(r"you are connection #(\d+)", str(got["welcome"]))
    assert number, f"the page's first message does not say 'you are connection #N': {got['welcome']!r}"
    assert got["echo"] == got["sent"], got
    # README: each page's number is the number on its lines in the log; the echo shows in the log.
    assert log.wait_for(f"#{number.group(1)} "), log.text
    if "--no-compression" in command.words:  # README: the text stays readable in --compact's one line
        assert log.wait_for(got["sent"]), f"{got['sent']!r} not in the live log:\n{log.text}"
    return got


def check_broken_server(port: int, command: Command, log: _Reader) -> dict[str, Any]:
    """The client fails the way the command's comment says, and the live log flags the server's fault."""
    code = re.search(r"websockets\b.*?\bclose (\d{4})", command.comment)
    refused = "handshake is refused" in command.comment
    assert code or refused, f"the comment does not say what the client does: {command.comment!r}"
    url, origin = f"ws://127.0.0.1:{port}/demo", f"http://127.0.0.1:{port}"

    async def refused_handshake() -> BaseException | None:
        try:
            async with connect(url, origin=origin, open_timeout=5, close_timeout=2):
                return None
        except InvalidHandshake as error:
            return error

    async def failed_connection() -> ConnectionClosedError | None:
        async with connect(url, origin=origin, open_timeout=5, close_timeout=2) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # the page's welcome
            await ws.send("hello, broken server")
            try:
                while True:  # until the connection fails (an echo would be a failure of the test)
                    message = await asyncio.wait_for(ws.recv(), 5)
                    raise AssertionError(f"the broken server answered normally: {message!r}")
            except ConnectionClosedError as error:
                return error

    if refused:
        error = asyncio.run(refused_handshake())
        assert error is not None, "the client opened the connection; the README says the handshake is refused"
        details: dict[str, Any] = {"refused": repr(error)}
    else:
        assert code is not None
        closed = asyncio.run(failed_connection())
        assert closed is not None and closed.sent is not None, f"the client sent no close frame: {closed!r}"
        assert closed.sent.code == int(code.group(1)), (
            f"websockets sent close {closed.sent.code}, the README says {code.group(1)}")
        details = {"sent": closed.sent.code}
    assert log.wait_for("\u26a0", "\u2717"), (
        f"the live log does not flag the server's fault (⚠ or ✗):\n{log.text}")
    return details


# -- the tests ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    yield Walkthrough(tmp_path_factory.mktemp("class"))


def test_section_is_a_15_minute_class() -> None:
    """Seven steps whose minutes follow one another from 0 to 15, each with a command and an RFC section."""
    text = section()
    steps = re.findall(r"^### (\d+)\. Minutes (\d+)-(\d+): .*$", text, re.M)
    assert [int(number) for number, _, _ in steps] == list(range(1, 8)), steps
    minutes = [(int(a), int(b)) for _, a, b in steps]
    assert minutes[0][0] == 0 and minutes[-1][1] == 15, minutes
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(minutes)), minutes
    for heading in re.findall(r"^### (.*)$", text, re.M):
        part = command_prose(Command(0, heading, "", ""))
        assert "```sh" in part, f"step {heading!r} has no command"
        assert re.search(r"RFC \d{4}", part), f"step {heading!r} names no RFC section"
    assert len(COMMANDS) >= 15, [c.code for c in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.slug for c in COMMANDS])
def test_command(walk: Walkthrough, command: Command) -> None:
    outcome = walk.outcome(command.index)
    if outcome.error is not None:
        raise outcome.error


def test_handshake_step_shows_the_rfc_value(walk: Walkthrough) -> None:
    """README: the walk ends at the value RFC 6455 1.3 gives, base64(SHA-1(key + GUID)), computed here."""
    accept = base64.b64encode(hashlib.sha1((RFC_KEY + GUID).encode()).digest()).decode()
    assert accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # the RFC's own text
    assert accept in section()
    done = walk.find(lambda c: c.words[:2] == ["wsinspect", "handshake"] and len(c.words) == 2)
    assert done.returncode == 0 and accept in done.stdout, done.stdout


def masked(text: str, key: bytes) -> bytes:
    """RFC 6455 5.2/5.3 by hand: FIN + text opcode, MASK + 7-bit length, the key, payload byte i XOR key[i % 4]."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_frame_step_shows_the_masked_bytes(walk: Walkthrough) -> None:
    """README: "Hi" masked with 37fa213d; 48 XOR 37 = 7f and 69 XOR fa = 93, and the RFC's "Hello" is 5.7's."""
    frame = masked("Hi", bytes.fromhex("37fa213d"))
    assert frame[-2:].hex() == "7f93"
    built = walk.find(lambda c: c.words[:3] == ["wsinspect", "frame", "build"] and "--export" not in c.words)
    assert built.returncode == 0
    assert frame.hex(" ") in built.stdout or frame.hex() in built.stdout, built.stdout
    hello = masked("Hello", bytes.fromhex("37fa213d"))
    assert hello.hex(" ") == "81 85 37 fa 21 3d 7f 9f 4d 51 58"  # RFC 6455 5.7
    decoded = walk.find(lambda c: c.words[:3] == ["wsinspect", "frame", "decode"] and hello.hex(" ") in c.code)
    assert decoded.returncode == 0 and "Hello" in decoded.stdout


def read_json(walk: Walkthrough, capture: Path) -> list[dict[str, Any]]:
    done = subprocess.run([*WSINSPECT, "read", str(capture), "--json"], capture_output=True, cwd=walk.directory,
                          env=child_env(), timeout=COMMAND_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    lines = done.stdout.decode("ascii").splitlines()
    assert lines, "wsinspect read --json printed nothing"
    return [json.loads(line) for line in lines]


def test_recording_reads_back(walk: Walkthrough) -> None:
    """The demo's recording holds what the README says step 3 shows: two upgraded connections, text, a 130-byte
    binary frame with the 16-bit length, fragments, ping and pong, closes 1000 and 1001, and one compressed frame;
    clients mask, servers do not (RFC 6455 5.1)."""
    walk.run_all()
    capture = walk.directory / "class.pcapng"
    assert capture.is_file() and capture.stat().st_size > 0, "the demo wrote no class.pcapng"
    events = read_json(walk, capture)
    responses = [e for e in events if e["type"] == "handshake_response"]
    assert len(responses) == 2 and all(e["status"] == 101 and e["upgraded"] for e in responses), responses
    frames = [e for e in events if e["type"] == "frame"]
    opcodes = {e["websocket.opcode"] for e in frames}
    assert {0, 1, 2, 8, 9, 10} <= opcodes, opcodes  # continuation, text, binary, close, ping, pong
    assert all(e["websocket.mask"] == (e["direction"] == "c2s") for e in frames)
    binary = [e for e in frames if e["websocket.opcode"] == 2]
    assert [e["websocket.payload_length"] for e in binary] == [130]
    assert [e["length_bits"] for e in binary] == [16]  # 126, then two more bytes
    assert [e["websocket.opcode"] for e in frames if not e["websocket.fin"]] == [1, 0], "three fragments: FIN 0 twice"
    assert any(e["websocket.rsv"] & 4 for e in frames), "no frame with RSV1 (compressed)"
    assert {e["websocket.opcode"] for e in frames if e["stream"] == 1 and e["websocket.rsv"] & 4} == {1}
    codes = {e.get("code") for e in events if e["type"] == "close"}
    assert {1000, 1001} <= codes, codes


def test_recording_decodes_in_tshark(walk: Walkthrough) -> None:
    """README: port 80, so Wireshark decodes the recording as WebSocket without Decode As."""
    done = walk.find(lambda c: c.words[0] == "tshark")
    if isinstance(done.error, pytest.skip.Exception):
        raise done.error
    assert done.error is None, done.error
    rows = [line for line in done.stdout.splitlines() if "WebSocket" in line]
    assert len(rows) >= 10, done.stdout


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_handouts_open(walk: Walkthrough) -> None:
    """The three handouts exist; HTML parses and holds what the terminal showed, the text file is what it showed,
    the SVG is well-formed XML with the frame's bytes in it."""
    walk.run_all()
    exports = {Path(o.command.words[o.command.words.index("--export") + 1]).suffix: o
               for o in walk.outcomes if "--export" in o.command.words}
    assert set(exports) == {".html", ".svg", ".txt"}, exports
    for suffix, outcome in exports.items():
        assert outcome.error is None, outcome.error
        path = walk.directory / ("handout" + suffix)
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} was not written"

    html = walk.directory / "handout.html"
    parser = _Text()
    parser.feed(html.read_text(encoding="utf-8"))
    parser.close()
    shown = exports[".html"].stdout
    assert shown.strip() and shown.strip() in "".join(parser.parts), "the HTML handout is not what was shown"

    text = (walk.directory / "handout.txt").read_text(encoding="utf-8")
    assert text.strip() == exports[".txt"].stdout.strip(), "the text handout is not what was shown"

    root = ET.parse(walk.directory / "handout.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    svg_text = "".join(root.itertext()).replace("\xa0", " ")
    assert masked("Hi", bytes.fromhex("37fa213d")).hex() in svg_text.replace(" ", ""), "the frame is not in the SVG"


def test_walkthrough_is_quick(walk: Walkthrough) -> None:
    """A class's worth of commands, each well within its timeout (the whole file is meant to run in under 60 s)."""
    outcomes = walk.run_all()
    slow = [(o.command.code, round(o.seconds, 1)) for o in outcomes if o.seconds > 15]
    assert not slow, slow
