"""Shared helpers for the end-to-end tests: where the captures are, decoding them once, running the CLI.

Expected values never come from here: they come from ``captures/scenarios.py`` (what the real peers were told to
send), from the RFC (through hand computations in the tests) or from tshark.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captures.scenarios import SCENARIOS, Scenario
from wsinspect.core.events import ConnectionOpened, Event
from wsinspect.trace import CaptureTrace, TraceStats

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"

#: Captures whose traffic follows the RFC everywhere: not one violation may be reported on them.
WELL_FORMED = ("echo", "multi", "fragmentation", "deflate", "close-codes", "large", "ipv6", "browser")


def capture_path(name: str) -> Path:
    return CAPTURES / SCENARIOS[name].file


def decode_as_ports(scenario: Scenario) -> tuple[int, ...]:
    """Server ports to name with ``--port`` (Wireshark's Decode As): those of connections without a handshake."""
    return tuple(sorted({c.server_port for c in scenario.connections if not c.handshake_captured}))


def port_args(name: str) -> list[str]:
    return [arg for port in decode_as_ports(SCENARIOS[name]) for arg in ("--port", str(port))]


@dataclass(frozen=True)
class Decoded:
    events: tuple[Event, ...]
    stats: TraceStats

    def streams(self) -> dict[int, list[Event]]:
        out: dict[int, list[Event]] = {}
        for event in self.events:
            out.setdefault(event.stream, []).append(event)
        return out

    def opened(self) -> list[ConnectionOpened]:
        return [e for e in self.events if isinstance(e, ConnectionOpened)]


@functools.cache
def decode(name: str) -> Decoded:
    """Every event of a shipped capture, through the library API (decoded once per test session)."""
    trace = CaptureTrace(capture_path(name), server_ports=decode_as_ports(SCENARIOS[name]))
    events = tuple(trace)
    return Decoded(events, trace.stats)


def cli_env(**extra: str) -> dict[str, str]:
    """A deterministic environment for the console: 120 columns, no colour hints inherited from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")}
    env.update({"COLUMNS": "120", "LINES": "50", "PYTHONIOENCODING": "utf-8"})
    env.update(extra)
    return env


def run_wsinspect(args: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None,
                  cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``wsinspect ARGS`` in a child process (the same interpreter), stdout/stderr as bytes."""
    argv = [sys.executable, "-m", "wsinspect", *(os.fspath(a) for a in args)]
    return subprocess.run(argv, capture_output=True, env=env or cli_env(), cwd=cwd or ROOT, timeout=timeout,
                          check=False)


def read_json(path: str | os.PathLike[str], *extra: str) -> list[dict[str, Any]]:
    """``wsinspect read PATH --json``: one dict per line; fails the test on a non-zero exit."""
    done = run_wsinspect(["read", path, "--json", *extra])
    # Exit status 1: read to the end, but nothing WebSocket to show (a capture of TLS only, for one).
    nothing_found = done.returncode == 1 and b"no WebSocket conversation" in done.stderr
    assert done.returncode == 0 or nothing_found, done.stderr.decode("utf-8", "replace")
    return [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]


@functools.cache
def shipped_json(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(read_json(capture_path(name), *port_args(name)))


@functools.cache
def console(name: str, *args: str) -> str:
    """``wsinspect read captures/NAME.pcapng ARGS --color never`` on 120 columns: stdout as text (exit 0, or 1 for
    a capture with nothing WebSocket in it)."""
    done = run_wsinspect(["read", capture_path(name), "--color", "never", *args])
    nothing_found = done.returncode == 1 and b"no WebSocket conversation" in done.stderr  # e.g. TLS only
    assert done.returncode == 0 or nothing_found, done.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in done.stderr
    return done.stdout.decode("utf-8")


#: A packet-list row: frame number, then the time column (seconds, 6 decimals).
ROW = re.compile(r"^\s*(\d+)\s+(\d+\.\d{6})\s", re.MULTILINE)


def read_json_in_process(path: str | os.PathLike[str], *extra: str) -> list[dict[str, Any]]:
    """``wsinspect read PATH --json`` through the CLI's ``main`` in this process (no interpreter start-up)."""
    from wsinspect.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["read", os.fspath(path), "--json", *extra])
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def prefetch_shipped_json(names: Sequence[str]) -> None:
    """Decode several captures through the CLI at once (threads: the work is in the child processes)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(shipped_json, names))


def json_frames(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["type"] == "frame"]


# ---- a minimal pcapng reader (struct only), to cut and convert the shipped captures independently -------------


@dataclass(frozen=True)
class PacketRecord:
    number: int  # 1-based, as Wireshark numbers frames
    start: int  # file offset of the Enhanced Packet Block
    end: int
    timestamp: int  # in units of 1/units_per_second
    original_length: int
    data: bytes


@dataclass(frozen=True)
class Pcapng:
    linktype: int
    units_per_second: int
    packets: tuple[PacketRecord, ...]


def read_pcapng(path: Path) -> Pcapng:
    """Section header, one interface, Enhanced Packet Blocks (what dumpcap wrote); little-endian only."""
    data = path.read_bytes()
    block_type, _length, magic = struct.unpack_from("<III", data, 0)
    assert block_type == 0x0A0D0D0A and magic == 0x1A2B3C4D, "expected a little-endian pcapng file"
    linktype, units, packets, offset = None, 1_000_000, [], 0
    while offset < len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        if block_type == 1:  # Interface Description Block: link type, then options (if_tsresol = 9)
            linktype = struct.unpack_from("<H", data, offset + 8)[0]
            option = offset + 16
            while option < offset + length - 4:
                code, size = struct.unpack_from("<HH", data, option)
                if code == 0:
                    break
                if code == 9:
                    value = data[option + 4]
                    units = 2 ** (value & 0x7F) if value & 0x80 else 10 ** value
                option += 4 + (size + 3) // 4 * 4
        elif block_type == 6:  # Enhanced Packet Block
            interface, high, low, captured, original = struct.unpack_from("<IIIII", data, offset + 8)
            assert interface == 0
            packets.append(PacketRecord(len(packets) + 1, offset, offset + length, high << 32 | low, original,
                                        data[offset + 28: offset + 28 + captured]))
        offset += length
    assert linktype is not None
    return Pcapng(linktype, units, tuple(packets))
