"""``wsinspect sniff`` on loopback while real peers talk: a ``websockets`` server and client on 127.0.0.1.

What the sniffer decodes is checked against what the peers sent (every message, text and binary, fragmented and
not, with and without permessage-deflate); its recording is read back by ``wsinspect read`` and by tshark. Every
sniff runs as a child process with a --duration or -c and a subprocess timeout, and is stopped (SIGINT) by its own
process id only. Capturing needs root (or CAP_NET_RAW): those tests are skipped without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIFF_TIMEOUT = 60  # seconds any one sniff child may run, whatever goes wrong
SAFETY_DURATION = "30"  # every sniff's own bound, in case the test never stops it

can_capture = sys.platform == "linux" and os.geteuid() == 0
needs_capture = pytest.mark.skipif(not can_capture, reason="capturing needs root on Linux (CAP_NET_RAW)")

# Messages chosen to exercise the decoder: non-ASCII text, an escape sequence (shown escaped, never interpreted),
# every byte value, a message larger than a loopback segment (several TCP segments), and one sent in fragments.
TEXT_ESCAPE = "clear \x1b[2J screen"
MESSAGES: list[str | bytes | list[str]] = [
    "hello, wsinspect",
    "héllo wörld ✓",
    TEXT_ESCAPE,
    bytes(range(256)),
    b"\x00" * 10 + os.urandom(100_000),
    ["frag", "mented"],
]


def _sent(message: str | bytes | list[str]) -> bytes:
    """The message's bytes as the receiver gets them (a fragmented one, reassembled)."""
    if isinstance(message, list):
        return "".join(message).encode()
    return message.encode() if isinstance(message, str) else message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sniff:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def wait_until_capturing(self) -> None:
        """The sniffer prints 'Capturing on' once its socket is bound: from then on no packet is missed."""
        deadline = time.monotonic() + 20
        while b"Capturing on" not in self.stderr.read_bytes():
            assert self.process.poll() is None, self.stderr.read_bytes().decode("utf-8", "replace")
            assert time.monotonic() < deadline, "the sniffer did not start"
            time.sleep(0.05)

    def interrupt(self) -> None:
        """Ctrl-C, sent to our own child by its pid."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=SNIFF_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return code, self.stdout.read_text("utf-8"), self.stderr.read_text("utf-8")


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    env.update({"COLUMNS": "120", "PYTHONIOENCODING": "utf-8"})
    return env


@pytest.fixture
def sniff(tmp_path: Path) -> Iterator[Any]:
    """Start ``wsinspect sniff ARGS`` (bounded by --duration unless -c is given); each child is killed at the end."""
    started: list[Sniff] = []

    def start(args: Sequence[str]) -> Sniff:
        number = len(started)
        stdout, stderr = tmp_path / f"sniff{number}.out", tmp_path / f"sniff{number}.err"
        bound = [] if "--duration" in args else ["--duration", SAFETY_DURATION]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "wsinspect", "sniff", *args, *bound, "--color", "never"],
                                       stdout=out, stderr=err, cwd=ROOT, env=_environment())
        started.append(Sniff(process, stdout, stderr))
        started[-1].wait_until_capturing()
        return started[-1]

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def talk(port: int, *, compression: bool, messages: Sequence[str | bytes | list[str]] = MESSAGES) -> None:
    """A websockets echo server and a client on 127.0.0.1:port; the client sends each message, waits for its echo,
    then closes cleanly."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async def main() -> None:
        deflate = "deflate" if compression else None
        async with serve(echo, "127.0.0.1", port, compression=deflate, max_size=None), \
                connect(f"ws://127.0.0.1:{port}/", compression=deflate, max_size=None) as client:
            for message in messages:
                await client.send(message)
                answer = await client.recv()
                assert (answer.encode() if isinstance(answer, str) else answer) == _sent(message)

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _messages(events: list[dict[str, Any]], direction: str) -> list[tuple[int, bytes]]:
    return [(event["opcode"], bytes.fromhex(event["data"])) for event in events
            if event["type"] == "message" and event["direction"] == direction]


def _expected() -> list[tuple[int, bytes]]:
    return [(2 if isinstance(message, bytes) else 1, _sent(message)) for message in MESSAGES]


def _read_json(path: Path, *extra: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "wsinspect", "read", str(path), "--json", *extra],
                          capture_output=True, cwd=ROOT, env=_environment(), timeout=SNIFF_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return _events(done.stdout.decode("ascii"))


def _tshark(*args: str) -> str:
    done = subprocess.run(["tshark", *args], capture_output=True, timeout=SNIFF_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout.decode("utf-8", "replace")


@needs_capture
@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "no-compression"])
def test_messages_decoded_live_are_the_messages_sent(sniff: Any, tmp_path: Path, compression: bool) -> None:
    port, other_port = free_port(), free_port()
    record = tmp_path / "sniffed.pcapng"
    child = sniff(["-i", "lo", "--port", str(port), "--json", "--record", str(record)])
    talk(port, compression=compression)
    # Traffic on another port, which the default filter (tcp port N) must keep out of the capture.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", other_port))
        listener.listen()
        socket.create_connection(("127.0.0.1", other_port)).close()
    child.interrupt()
    code, out, err = child.finish()
    assert code == 0, err

    events = _events(out)
    assert _messages(events, "c2s") == _expected()
    assert _messages(events, "s2c") == _expected()
    compressed = [event["compressed"] for event in events if event["type"] == "message"]
    assert any(compressed) if compression else not any(compressed)
    response = next(event for event in events if event["type"] == "handshake_response")
    assert response["status"] == 101
    assert ("permessage-deflate" in json.dumps(response["extensions"])) == compression
    closes = [event for event in events if event["type"] == "close"]
    assert [close["code"] for close in closes] == [1000, 1000]

    # The recording, read back: by wsinspect read (the same messages) ...
    recorded = _read_json(record)
    assert _messages(recorded, "c2s") == _expected()
    assert _messages(recorded, "s2c") == _expected()
    # ... and by tshark, whose own dissector finds the same frames (opcode by opcode, both directions), and no
    # packet of the other port. The port is decoded as HTTP: its dissector sees the upgrade and hands on.
    if shutil.which("tshark") is None:
        return
    ports = _tshark("-n", "-r", str(record), "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport")
    assert {int(value) for line in ports.split() for value in line.split(",")} == {
        port, *(int(event["client"].rsplit(":", 1)[1]) for event in events if event["type"] == "connection")}
    opcodes = _tshark("-n", "-r", str(record), "-d", f"tcp.port=={port},http", "-Y", "websocket", "-T", "fields",
                      "-e", "websocket.opcode")
    theirs = [int(value) for line in opcodes.split() for value in line.split(",")]
    ours = [event["websocket.opcode"] for event in events if event["type"] == "frame"]
    assert theirs == ours


@needs_capture
def test_ctrl_c_prints_the_views_and_summary_and_exits_0(sniff: Any) -> None:
    port = free_port()
    child = sniff(["-i", "lo", "--port", str(port), "--follow"])
    talk(port, compression=True, messages=["hello, wsinspect", TEXT_ESCAPE])
    child.interrupt()
    code, out, err = child.finish()
    assert code == 0, err
    assert "hello, wsinspect" in out
    assert "\x1b" not in out and "\\x1b[2J" in out  # the escape sequence a peer sent is shown, not obeyed
    assert "Summary" in out and "conversations  1" in out
    assert f"Capturing on lo (filter: tcp port {port})" in err


@needs_capture
def test_count_stops_after_n_packets_and_the_pcap_keeps_their_times(sniff: Any, tmp_path: Path) -> None:
    port = free_port()
    record = tmp_path / "first.pcap"
    started = time.monotonic()
    child = sniff(["-i", "lo", "--port", str(port), "-c", "5", "--record", str(record), "--json"])
    talk(port, compression=False)
    code, out, err = child.finish()
    assert time.monotonic() - started < float(SAFETY_DURATION), "stopped by its duration, not by -c"
    assert code == 0, err
    events = _events(out)
    assert max(event["packet"] for event in events) <= 5
    from wsinspect.capture import CaptureFile

    with CaptureFile(record) as capture:
        assert capture.format == "pcap"
        packets = list(capture)
    assert [packet.number for packet in packets] == [1, 2, 3, 4, 5]
    # The SYN's kernel timestamp, as decoded live and as kept in the file (pcap: to the microsecond).
    opened = next(event for event in events if event["type"] == "connection")
    assert opened["packet"] == 1
    assert abs(packets[0].time - opened["time"]) < 1e-6
    if shutil.which("tshark") is not None:
        fields = _tshark("-n", "-r", str(record), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch")
        rows = [line.split("\t") for line in fields.splitlines()]
        assert [int(number) for number, _ in rows] == [1, 2, 3, 4, 5]
        assert [round(float(epoch), 6) for _, epoch in rows] == [round(packet.time, 6) for packet in packets]


@needs_capture
def test_duration_ends_a_quiet_capture_with_status_1(sniff: Any) -> None:
    port = free_port()
    started = time.monotonic()
    child = sniff(["-i", "lo", "--port", str(port), "--duration", "1.5"])
    code, _, err = child.finish()
    assert 1.5 <= time.monotonic() - started < 20
    assert code == 1
    assert "no WebSocket conversation found in 0 packets" in err


@needs_capture
def test_ctrl_c_right_after_capturing_on_is_a_clean_stop(sniff: Any) -> None:
    # From 'Capturing on' on, Ctrl-C ends the capture (exit 1 here: nothing was seen), never a KeyboardInterrupt
    # (130) from the moment before the packets are first read.
    child = sniff(["-i", "lo", "--port", str(free_port())])
    child.interrupt()
    code, _, err = child.finish()
    assert code == 1, err
    assert "no WebSocket conversation found in 0 packets" in err


@needs_capture
def test_any_interface_decodes_the_same_messages_and_y_chooses_what_is_shown(sniff: Any) -> None:
    port = free_port()
    child = sniff(["-i", "any", "--port", str(port), "--json", "-Y", "message"])
    talk(port, compression=True)
    child.interrupt()
    code, out, err = child.finish()
    assert code == 0, err
    events = _events(out)
    assert {event["type"] for event in events} == {"message"}
    assert _messages(events, "c2s") == _expected()
    assert _messages(events, "s2c") == _expected()


@needs_capture
def test_the_end_says_how_many_packets_were_captured_each_loopback_packet_once(sniff: Any, tmp_path: Path) -> None:
    # As tshark ends ("N packets captured"), with what the kernel dropped; on lo each packet is seen once, though it
    # passes the interface twice (leaving and arriving).
    port = free_port()
    record = tmp_path / "all.pcapng"
    child = sniff(["-i", "lo", "--port", str(port), "-B", "16", "--record", str(record), "--json"])
    talk(port, compression=False)
    child.interrupt()
    code, out, err = child.finish()
    assert code == 0, err
    from wsinspect.capture import CaptureFile

    with CaptureFile(record) as capture:
        packets = [packet.data for packet in capture]
    assert len(set(packets)) == len(packets)  # no copy twice (TCP's checksums and sequence numbers tell them apart)
    assert f"wsinspect: lo: {len(packets):,} packets captured, none dropped by the kernel" in err.splitlines()
    assert _messages(_events(out), "c2s") == _expected()


def test_buffer_size_is_whole_mib_within_bounds() -> None:
    from wsinspect.capture.live import KERNEL_BUFFER_MIB
    from wsinspect.commands.sniff import KERNEL_BUFFER_MIB as DEFAULT_SHOWN_IN_HELP

    assert DEFAULT_SHOWN_IN_HELP == KERNEL_BUFFER_MIB
    for wrong in ("0", "1025", "1.5", "-3"):
        done = _run(["-i", "lo", "-B", wrong])
        assert done.returncode == 2, done.stderr
        assert "not a whole number of MiB from 1 to 1024" in done.stderr


def _run(args: Sequence[str], prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "wsinspect", "sniff", *args, "--color", "never"],
                          capture_output=True, text=True, cwd=ROOT, env=_environment(), timeout=SNIFF_TIMEOUT,
                          check=False)


def _without_capture_privilege() -> list[str] | None:
    """A command prefix that runs this interpreter without CAP_NET_RAW: as nobody when it can reach this Python,
    else as root with the capability taken out of the bounding set. None when neither can be arranged."""
    if os.geteuid() != 0:
        return []  # already unprivileged (unless this Python was given the capability: checked below)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-c", "import rich, scapy, wsinspect"], capture_output=True,
                           cwd=ROOT, timeout=SNIFF_TIMEOUT, check=False)
    if probe.returncode == 0:
        return nobody
    return [setpriv, "--bounding-set=-net_raw"]


def test_without_privilege_one_line_says_what_is_needed() -> None:
    prefix = _without_capture_privilege()
    if prefix is None:
        pytest.skip("setpriv is needed to drop the capture privilege")
    done = _run(["-i", "lo", "--duration", "5"], prefix)
    if done.returncode == 0:
        pytest.skip("this Python may capture without root (it has CAP_NET_RAW)")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "root" in lines[0] and "CAP_NET_RAW" in lines[0]
    assert f"setcap cap_net_raw,cap_net_admin+eip {os.path.realpath(sys.executable)}" in lines[0]
    assert done.stdout == ""


def test_unknown_interface_lists_the_interfaces_escaped() -> None:
    done = _run(["-i", "nosuch\x1b[2J0"])
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "no interface" in lines[0] and "\x1b" not in lines[0] and "\\x1b" in lines[0]
    for _, name in socket.if_nameindex():
        assert name in lines[0]


def test_list_interfaces_as_tshark_does() -> None:
    done = _run(["-D"])
    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()
    for index, name in socket.if_nameindex():
        assert any(line.startswith(f"{index}. {name}") for line in listed), (index, name, listed)
    assert any(line.split()[-3:] == ["any", "(every", "interface)"] for line in listed)


def test_interface_is_required() -> None:
    done = _run([])
    assert done.returncode == 2
    assert "-i IFACE is required" in done.stderr


def test_keylog_is_refused_with_what_to_do_instead() -> None:
    done = _run(["-i", "lo", "--keylog", "keys.log"])
    assert done.returncode == 2
    assert "--record FILE, then: wsinspect read FILE --keylog KEYS" in done.stderr


def test_a_capture_filter_libpcap_refuses_is_one_line_before_any_capture() -> None:
    # Compiled by libpcap before the packet socket is opened: no privilege is needed to be told.
    done = _run(["-i", "lo", "-f", "tcp port nope"])
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["wsinspect: sniff: -f 'tcp port nope' is not a filter libpcap can compile: "
                                        "unknown port 'nope'"]
