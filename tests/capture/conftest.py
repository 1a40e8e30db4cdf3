"""Fixtures for the capture tests: one real loopback capture (dumpcap), recorded once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import wsinspect  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from capture_test_support import LiveCapture, record_live_traffic


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> LiveCapture:
    path = tmp_path_factory.mktemp("live") / "loopback.pcapng"
    expected = record_live_traffic(path)
    return LiveCapture(path, expected)
