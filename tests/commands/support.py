"""Running ``wsinspect handshake`` and ``wsinspect frame`` in tests, and reading back what they printed.

Expected values never come from here: the tests take them from the RFC's text, from tshark, from the ``websockets``
library or from hand computation.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsinspect.cli import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run(args: Sequence[str]) -> Run:
    """``wsinspect ARGS --color never`` through ``main`` in this process (fast: for property tests)."""
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "160"  # rich reads the width of a console that is not a terminal from COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--color", "never"])
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return Run(code, out.getvalue(), err.getvalue())


def run_process(args: Sequence[str], *, stdin: bytes = b"", columns: int = 100,
                env: dict[str, str] | None = None) -> Run:
    """``wsinspect ARGS`` in a child process, as a user runs it (stdin, exit status, stderr)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    environment.update({"COLUMNS": str(columns), "PYTHONIOENCODING": "utf-8", **(env or {})})
    done = subprocess.run([sys.executable, "-m", "wsinspect", *args], input=stdin, capture_output=True,
                          env=environment, cwd=ROOT, timeout=60, check=False)
    return Run(done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8"))


_HEX_STRING = re.compile(r"^\s*(?:as one line|as hex, \d+ bytes a line [^\n]*):\n((?:    [0-9a-f]+\n)+)",
                         re.MULTILINE)
_BYTES_ROW = re.compile(r"^  ([0-9a-f]{4,})  ((?:[0-9a-f]{2} ?)+)$", re.MULTILINE)
_TABLE_ROW = re.compile(r"^\s*\d+\s+\d+\s")
_TABLE_BYTE = re.compile(r"(?<![0-9a-f])[0-9a-f]{2}(?![0-9a-f])")


def one_lines(out: str) -> list[bytes]:
    """Every frame's bytes as printed in its copy-pasteable hex string (one line, or lines of whole bytes)."""
    return [bytes.fromhex(block) for block in _HEX_STRING.findall(out)]


def byte_rows(out: str) -> bytes:
    """The bytes of the hex rows (``  0000  81 05 ...``) of a single frame's output, in order."""
    data = bytearray()
    for offset, row in _BYTES_ROW.findall(out):
        assert int(offset, 16) == len(data)
        data += bytes.fromhex(row)
    return bytes(data)


def masking_rows(out: str) -> list[tuple[int, int, str, str, str]]:
    """The masking table: (i, i mod 4, the byte XORed, the key byte, the result), as printed."""
    rows = []
    for line in out.splitlines():
        if " XOR " not in line or not _TABLE_ROW.match(line):
            continue
        index, key_index, rest = line.split(None, 2)
        source, key, result = _TABLE_BYTE.findall(rest)
        rows.append((int(index), int(key_index), source, key, result))
    return rows


def has_no_escape(text: str) -> bool:
    return "\x1b" not in text and "\x07" not in text and "\x9b" not in text
