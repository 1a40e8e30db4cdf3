"""``serve --json -``: the JSON lines own stdout (one object per line, nothing else), the live log goes to stderr."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from websockets.asyncio.client import connect

from tests.server.serve_support import LISTENING, REPO


def test_json_lines_alone_on_stdout_and_the_log_on_stderr() -> None:
    server = subprocess.Popen([sys.executable, "-m", "wsinspect", "serve", "--port", "0", "--json", "-",
                               "--color", "never"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    try:
        assert server.stderr is not None
        banner = b""
        deadline = time.monotonic() + 20
        while (match := LISTENING.search(banner.decode(errors="replace"))) is None:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([server.stderr], [], [], left)[0], f"no banner on stderr: {banner!r}"
            banner += os.read(server.stderr.fileno(), 4096)

        async def echo() -> str:
            async with connect(f"ws://127.0.0.1:{match.group(3)}/", open_timeout=5) as client:
                await client.send("hello over stdout")
                return str(await asyncio.wait_for(client.recv(), 5))

        assert asyncio.run(echo()) == "hello over stdout"
        time.sleep(0.3)  # the log of the closing handshake
    finally:
        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=20)
    assert server.returncode == 0, stderr
    events = [json.loads(line) for line in stdout.decode().splitlines()]  # every line is JSON, nothing else
    texts = [event.get("text") for event in events if event["type"] == "message"]
    assert texts == ["hello over stdout", "hello over stdout"]  # the client's message and the echo
    log = (banner + stderr).decode()
    assert "Ctrl-C closes every connection" in log and re.search(r'text message .*"hello over stdout"', log)
