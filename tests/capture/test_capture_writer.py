"""The recorder's timestamps, read back by tshark (the reference) and by wsinspect's own reader."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wsinspect.capture.files import CaptureFile
from wsinspect.capture.writer import SessionRecorder

# Times whose float times 10**6 falls just below the microsecond they name (1.001: 1000999.99...); truncating
# them, as scapy's pcapng writer does, writes one microsecond less.
TIMES = [1.001, 1.003, 1764432000.123456, 0.000001, 2.009]


@pytest.mark.parametrize("suffix", [".pcapng", ".pcap"])
def test_recorded_times_are_the_microseconds_given(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"times{suffix}"
    recorder = SessionRecorder(path)
    recorder.open(0, ("127.0.0.1", 50000), ("127.0.0.1", 80), TIMES[0])
    for time in TIMES[1:]:
        recorder.data(0, "c2s", b"x", time)
    recorder.finish(TIMES[-1])
    expected = [f"{time:.6f}" for time in TIMES[:1] * 3 + TIMES[1:]]  # the TCP handshake's 3 packets, then data
    with CaptureFile(path) as capture:
        read = [f"{packet.time:.6f}" for packet in capture]
    assert read[: len(expected)] == expected
    if shutil.which("tshark"):
        fields = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                                capture_output=True, text=True, timeout=60, check=True).stdout.split()
        assert [f"{float(value):.6f}" for value in fields[: len(expected)]] == expected
