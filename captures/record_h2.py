#!/usr/bin/env python3
"""Record WebSocket over HTTP/2 (RFC 8441) in cleartext: captures/h2-websocket.pcapng and its manifest (issue 9, 6).

``dumpcap -i lo -f "tcp port 47220"`` writes the capture while ``captures/h2_peers.js`` (Node 20's built-in http2
module, no npm package) runs a server with SETTINGS_ENABLE_CONNECT_PROTOCOL and a client on one h2c connection (prior
knowledge, RFC 9113 3.3): a plain GET on stream 1, the WebSocket's extended CONNECT on stream 3 (subprotocol chat.v1,
permessage-deflate without context takeover) with text, fragmented, binary, ping and compressed messages echoed and
a close 1000 "bye", and a second extended CONNECT on stream 5 while the first is open. What the peers sent goes to
``captures/h2-websocket.json``; the tests compare wsinspect's decoding with it, and tshark
(``-d tcp.port==47220,http2``) with wsinspect's HTTP/2 frames and headers.

Must run as root (capturing on ``lo``)::

    python captures/record_h2.py
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 47220
CAPTURE = HERE / "h2-websocket.pcapng"
MANIFEST = HERE / "h2-websocket.json"
TIMEOUT = 30


def main() -> int:
    if shutil.which("node") is None or shutil.which("dumpcap") is None:
        print("needs node (20 or newer) and dumpcap", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        partial = Path(directory) / "capture.pcapng"
        manifest = Path(directory) / "manifest.json"
        dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {PORT}", "-w", str(partial)],
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert dumpcap.stderr is not None
            for line in dumpcap.stderr:
                if "Capturing on" in line:
                    break
            time.sleep(1.0)  # the capture filter is not live yet when dumpcap says it is capturing
            subprocess.run(["node", str(HERE / "h2_peers.js"), str(PORT), str(manifest)], check=True,
                           timeout=TIMEOUT)
            time.sleep(0.5)
        finally:
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(TIMEOUT)
        CAPTURE.write_bytes(partial.read_bytes())
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    MANIFEST.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{CAPTURE.name}: {CAPTURE.stat().st_size} bytes; {len(recorded['c2s'])} client messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
