"""``wsinspect read`` as a user runs it: ``-c N``, ``read -``, link types it does not decode, ``--export`` past the
handout limit, and the colours of its own messages. Every run is the real command in a child process, on the
shipped captures (or captures built here with ``struct``); references come from editcap and tshark.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsinspect.views.palette import resolve_theme

from .support import ROOT, capture_path, cli_env, run_wsinspect

needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is not installed")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def sgr_colours(text: str) -> set[str]:
    """The plain SGR attributes and 8/16-colour codes in ``text`` ("1" bold, "2" dim, "33" yellow...); the
    parameters of 256-colour and true-colour codes (38;5;N, 38;2;R;G;B) are skipped, not read as codes."""
    found: set[str] = set()
    for match in _SGR.finditer(text):
        params = match.group(1).split(";")
        index = 0
        while index < len(params):
            param = params[index]
            if param in ("38", "48") and index + 1 < len(params):
                index += 3 if params[index + 1] == "5" else 5
                continue
            found.add(param)
            index += 1
    return found


YELLOW = {"33", "93", "43", "103"}
DIM = "2"


# -- -c N ----------------------------------------------------------------------------------------------------------


def packet_count(path: Path) -> int:
    done = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"], capture_output=True,
                          check=True)
    return len(done.stdout.split())


@needs_editcap
@needs_tshark
@pytest.mark.parametrize("name", ["echo", "multi"])
def test_count_reads_what_editcap_cuts(tmp_path: Path, name: str) -> None:
    """``read F -c N`` shows and exits exactly as ``read`` of the first N packets cut out by editcap."""
    path = capture_path(name)
    total = packet_count(path)
    for count in sorted({1, 3, 4, 6, 9, 13, total - 1, total}):
        cut = tmp_path / f"{name}-{count}.pcapng"
        subprocess.run(["editcap", "-r", path, cut, f"1-{count}"], check=True, capture_output=True)
        for view in ([], ["--json"], ["--follow"]):
            limited = run_wsinspect(["read", path, "-c", str(count), "--color", "never", *view])
            whole = run_wsinspect(["read", cut, "--color", "never", *view])
            assert limited.returncode == whole.returncode, (count, view, limited.stderr)
            assert limited.stdout == whole.stdout, (count, view)


def test_count_on_syn_only_start_is_no_conversation() -> None:
    """echo.pcapng's first 3 packets are the TCP handshake alone: no WebSocket conversation, exit 1 (the README's
    exit table: read, but no WebSocket conversation in it), and the message says only 3 packets were read."""
    done = run_wsinspect(["read", capture_path("echo"), "-c", "3", "--color", "never"])
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Stream 0" not in done.stdout.decode()
    assert "conversations  0" in done.stdout.decode()
    assert "in the first 3 packets (-c 3" in err and err.count("\n") == 1


def test_count_stops_reading_at_packet_n(tmp_path: Path) -> None:
    """Nothing after packet N is read: damage after it is not reported (as with tshark -c), and the JSON ends at N."""
    data = capture_path("echo").read_bytes()
    cut = tmp_path / "echo-cut.pcapng"
    cut.write_bytes(data[: len(data) * 3 // 4])  # the end of the file is cut inside a record
    assert run_wsinspect(["read", cut, "--json"]).returncode == 3
    done = run_wsinspect(["read", cut, "--json", "-c", "10"])
    assert done.returncode == 0, done.stderr
    packets = [event["packet"] for event in map(json.loads, done.stdout.decode().splitlines())]
    assert packets and max(packets) <= 10


def test_count_does_not_read_a_capture_without_websocket_to_its_end(tmp_path: Path) -> None:
    """ARP only, cut inside its last record: -c 10 stops at packet 10 although no packet gave an event (it used to
    read on to the damage, exit 3)."""
    path = tmp_path / "arp.pcap"
    record = struct.pack("<IIII", 0, 0, 42, 42) + b"\xff" * 12 + b"\x08\x06" + bytes(28)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + record * 1000 + record[:30])
    whole = run_wsinspect(["read", path])
    assert whole.returncode == 3 and b"truncated" in whole.stderr, whole.stderr
    limited = run_wsinspect(["read", path, "-c", "10"])
    assert limited.returncode == 1, limited.stderr
    assert b"no WebSocket conversation found in the first 10 packets (-c 10" in limited.stderr


# -- read - --------------------------------------------------------------------------------------------------------


def read_stdin(data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wsinspect", "read", "-", *args], input=data, capture_output=True,
                          env=cli_env(), cwd=ROOT, timeout=60, check=False)


@needs_tshark
def test_read_stdin_pcapng_pcap_and_gzip(tmp_path: Path) -> None:
    path = capture_path("echo")
    expected = run_wsinspect(["read", path, "--json"])
    assert expected.returncode == 0
    for data in (path.read_bytes(), gzip.compress(path.read_bytes())):
        done = read_stdin(data, "--json")
        assert done.returncode == 0, done.stderr
        assert done.stdout == expected.stdout
    pcap = tmp_path / "echo.pcap"
    subprocess.run(["tshark", "-F", "pcap", "-r", path, "-w", pcap], check=True, capture_output=True)
    from_file = run_wsinspect(["read", pcap, "--color", "never"])
    done = read_stdin(pcap.read_bytes(), "--color", "never")
    assert done.returncode == from_file.returncode == 0
    assert done.stdout == from_file.stdout
    assert read_stdin(path.read_bytes(), "-c", "3").returncode == 1


def test_read_stdin_errors_are_one_line() -> None:
    empty = read_stdin(b"")
    assert empty.returncode == 2 and empty.stderr.decode() == "wsinspect: standard input: empty file\n"
    garbage = read_stdin(b"\x1b[2Jnot a capture")
    assert garbage.returncode == 2 and b"\x1b" not in garbage.stderr and garbage.stderr.count(b"\n") == 1


def test_read_stdin_from_a_terminal_is_refused() -> None:
    leader, follower = os.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "wsinspect", "read", "-"], stdin=follower, capture_output=True,
                              env=cli_env(), cwd=ROOT, timeout=60, check=False)
    finally:
        os.close(follower)
        os.close(leader)
    err = done.stderr.decode()
    assert done.returncode == 2 and err.count("\n") == 1 and "terminal" in err, err


# -- link types ----------------------------------------------------------------------------------------------------

_WIFI_RECORD = bytes.fromhex("08020000") + bytes(20) + bytes.fromhex("aaaa030000000800") + bytes(40)


def pcap_of(linktype: int, records: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for record in records:
        out += struct.pack("<IIII", 1, 0, len(record), len(record)) + record
    return out


def pcapng_interface(linktype: int) -> bytes:
    return struct.pack("<IIHHII", 1, 20, linktype, 0, 65535, 20)


def pcapng_packet(interface: int, record: bytes) -> bytes:
    padded = record + bytes(-len(record) % 4)
    length = 32 + len(padded)
    return struct.pack("<IIIIIII", 6, length, interface, 0, 0, len(record), len(record)) + padded + \
        struct.pack("<I", length)


def pcapng_of(linktype: int, records: list[bytes]) -> bytes:
    section = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    return section + pcapng_interface(linktype) + b"".join(pcapng_packet(0, record) for record in records)


@pytest.mark.parametrize(("linktype", "name"), [(105, "IEEE 802.11"), (189, "Linux USB"), (147, None)])
@pytest.mark.parametrize("form", ["pcap", "pcapng"])
def test_unsupported_link_type_is_named(tmp_path: Path, linktype: int, name: str | None, form: str) -> None:
    path = tmp_path / f"capture.{form}"
    path.write_bytes((pcap_of if form == "pcap" else pcapng_of)(linktype, [_WIFI_RECORD] * 5))
    done = run_wsinspect(["read", path, "--color", "never"])
    err = done.stderr.decode()
    named = f"link type {linktype} ({name})" if name else f"link type {linktype} is"
    assert done.returncode == 2, err
    assert named in err and "not supported" in err and "Ethernet" in err and err.count("\n") == 1, err
    assert done.stdout == b""  # nothing decoded, nothing shown


@needs_tshark
def test_unsupported_link_type_is_what_tshark_sees(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcapng"
    path.write_bytes(pcapng_of(105, [_WIFI_RECORD]))
    done = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.encap_type"], capture_output=True,
                          check=True)
    assert done.stdout.split() == [b"20"]  # Wireshark's WTAP_ENCAP_IEEE_802_11
    assert b"link type 105 (IEEE 802.11)" in run_wsinspect(["read", path]).stderr


def test_a_second_interface_of_another_link_type_does_not_hide_websocket(tmp_path: Path) -> None:
    """echo.pcapng with an 802.11 interface and packet added: the WebSocket conversation is still decoded."""
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(capture_path("echo").read_bytes() + pcapng_interface(105) + pcapng_packet(1, _WIFI_RECORD))
    done = run_wsinspect(["read", path, "--json"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == run_wsinspect(["read", capture_path("echo"), "--json"]).stdout


# -- --export past the handout limit -------------------------------------------------------------------------------


def test_export_over_the_limit_stops_early(tmp_path: Path) -> None:
    target = tmp_path / "big.html"
    # At the handout's width (100 columns), which is also the terminal's layout while exporting.
    whole = run_wsinspect(["read", capture_path("budget"), "--detail", "--color", "never"], env=cli_env(COLUMNS="100"))
    assert whole.stdout.count(b"\n") > 20_000
    done = run_wsinspect(["read", capture_path("budget"), "--detail", "--color", "never", "--export", target])
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert not target.exists()
    assert "more than 5,000 lines" in err and "stopped at packet" in err and err.count("\n") == 1, err
    shown = done.stdout.count(b"\n")
    assert 5_000 <= shown <= 5_600  # the handout's lines, and at most the batch that passed the limit
    assert whole.stdout.startswith(done.stdout)


def test_export_under_the_limit_is_saved(tmp_path: Path) -> None:
    target = tmp_path / "echo.txt"
    done = run_wsinspect(["read", capture_path("echo"), "--color", "never", "--export", target])
    assert done.returncode == 0, done.stderr
    assert target.read_text().splitlines() == done.stdout.decode().splitlines()


# -- colours of read's and proxy's own lines -----------------------------------------------------------------------


@pytest.mark.parametrize(("theme", "yellow"), [("dark", True), ("light", False), ("mono", False)])
def test_read_messages_follow_the_theme(theme: str, yellow: bool) -> None:
    done = run_wsinspect(["read", capture_path("midstream"), "--theme", theme, "--color", "always"])
    assert done.returncode == 1
    codes = sgr_colours(done.stderr.decode())
    assert bool(codes & YELLOW) is yellow, codes
    assert DIM not in codes
    if theme == "light":
        assert "31" in codes  # the warning is red there
    if theme == "mono":
        assert not {code for code in codes if code.startswith(("3", "4", "9"))}, codes


def test_no_color_with_color_always() -> None:
    """https://no-color.org: an explicit --color always wins over NO_COLOR; the auto theme is then chosen as
    without NO_COLOR (dark here), since a mono theme would give no colour at all."""
    assert resolve_theme("auto", {"NO_COLOR": "1"}) == "mono"
    assert resolve_theme("auto", {"NO_COLOR": "1"}, colour="always") == "dark"
    assert resolve_theme("auto", {"NO_COLOR": "1", "COLORFGBG": "0;15"}, colour="always") == "light"
    assert resolve_theme("light", {"NO_COLOR": "1"}) == "light"
    forced = run_wsinspect(["read", capture_path("echo"), "--color", "always"], env=cli_env(NO_COLOR="1"))
    assert sgr_colours(forced.stdout.decode()) & {"31", "32", "36", "96", "93", "33"}
    plain = run_wsinspect(["read", capture_path("echo")], env=cli_env(NO_COLOR="1"))
    assert b"\x1b" not in plain.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_proxy_banner_follows_the_theme(theme: str) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "wsinspect", "proxy", "--upstream", "ws://127.0.0.1:9/", "--listen",
            f"0.0.0.0:{port}", "--theme", theme, "--color", "always"]
    proxy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), cwd=ROOT)
    try:
        assert proxy.stdout is not None
        banner = b""
        deadline = time.monotonic() + 30
        while b"Ctrl-C" not in banner and time.monotonic() < deadline:
            line = proxy.stdout.readline()
            if not line:
                break
            banner += line
    finally:
        proxy.send_signal(signal.SIGINT)
        rest, _ = proxy.communicate(timeout=30)
    text = (banner + rest).decode()
    assert "listening on every interface" in text, text
    codes = sgr_colours(text)
    if theme == "light":
        assert not codes & YELLOW and DIM not in codes, codes
    else:
        assert codes & YELLOW and DIM in codes, codes  # the same roles, dark: unchanged
