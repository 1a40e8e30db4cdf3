"""A fast, representative slice of the Autobahn|Testsuite against ``wsinspect serve`` (via run_autobahn.py).

The whole suite (517 cases, ``python tests/conformance/run_autobahn.py``) takes longer than a unit-test run should;
this slice touches every group: framing, pings/pongs, reserved bits and opcodes, fragmentation, UTF-8, close
handling, limits (a few 9.x), and permessage-deflate with and without context takeover (12.x/13.x). It runs in well
under a minute on 2 cores. Skipped if kosoku (the Python 3 driver of the Autobahn case files) is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kosoku", reason="kosoku (pip install kosoku) drives the Autobahn case files")

RUNNER = Path(__file__).resolve().parent / "run_autobahn.py"

SUBSET = [
    "1.1.*", "1.2.1", "1.2.8",  # text and binary echo
    "2.*",  # pings and pongs
    "3.*",  # reserved bits
    "4.*",  # reserved opcodes
    "5.*",  # fragmentation
    "6.1.*", "6.2.*", "6.3.*", "6.4.*",  # UTF-8 handling, incl. fail-fast on invalid UTF-8
    "7.*",  # closing handshake, close codes
    "9.1.1", "9.2.1", "9.3.1", "9.4.1", "9.7.1", "9.8.1",  # large messages/frames, round trips
    "10.1.1",  # auto-fragmentation
    "12.1.1", "12.1.2", "12.1.3",  # permessage-deflate, context takeover
    "13.1.1", "13.1.2", "13.1.3",  # permessage-deflate, no context takeover offered
    "13.3.1", "13.7.1",  # server_max_window_bits / client_max_window_bits offers
]


def test_autobahn_subset(tmp_path: Path) -> None:
    outdir = tmp_path / "reports"
    completed = subprocess.run(
        [sys.executable, str(RUNNER), "--cases", ",".join(SUBSET), "--outdir", str(outdir),
         "--case-timeout", "30", "--timeout", "90"],
        capture_output=True, text=True, timeout=150, check=False,
    )
    output = completed.stdout + completed.stderr[-4000:]
    assert (outdir / "index.json").exists(), output
    assert completed.returncode == 0, f"Autobahn cases failed against wsinspect serve:\n{output}"
