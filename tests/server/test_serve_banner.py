"""The banner on a narrow terminal and in the light theme (review findings 20 and 11): a URL is never folded across
lines, listening on every interface it lists addresses that can be opened (not 0.0.0.0), and its colours are the
theme's roles: the light theme has no yellow and nothing that matters only dim."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from serve_support import WSINSPECT

YELLOW_OR_DIM = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:33|93|2)(?:;[0-9;]*)?m")


def banner(*args: str, columns: int) -> str:
    """The banner of a ``wsinspect serve`` on a terminal ``columns`` wide, up to its last line."""
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "PYTHONUNBUFFERED": "1"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([*WSINSPECT, "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    out = b""
    deadline = time.monotonic() + 15
    try:
        while b"Ctrl-C closes every connection" not in out and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
    finally:
        process.terminate()
        process.wait(10)
    return out.decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_urls_are_never_folded(host: str) -> None:
    text = banner("--host", host, "--color", "never", columns=40)
    port = re.search(r"mode on ws://[^:]+:(\d+)/", text)
    assert port, text
    urls = re.findall(rf"^  http://(\S+):{port.group(1)}/$", text, re.M)
    assert urls, text  # each demo-page URL whole, alone on its line
    assert "0.0.0.0" not in urls
    if host == "0.0.0.0":
        assert urls[-1] == "127.0.0.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_light_theme_has_no_yellow_and_nothing_only_dim(host: str) -> None:
    text = banner("--host", host, "--color", "always", "--theme", "light", columns=80)
    assert "Ctrl-C closes every connection" in text
    assert not YELLOW_OR_DIM.search(text), repr(text)
    if host == "0.0.0.0":
        assert "\x1b[1;31mwarning: listening on every interface" in text  # the theme's warning: bold red
