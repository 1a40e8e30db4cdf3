#!/usr/bin/env python3
"""Record WebSocket over HTTP/2 (RFC 8441) in cleartext: captures/h2-websocket.pcapng and its manifest (issue 9, 6).

``dumpcap -i lo -f "tcp port 47220"`` writes the capture while ``captures/h2_peers.js`` (Node 20's built-in http2
module, no npm package) runs a server with SETTINGS_ENABLE_CONNECT_PROTOCOL and a client on one h2c connection (prior
knowledge, RFC 9113 3.3): a plain GET on stream 1, the WebSocket's extended CONNECT on stream 3 (subprotocol chat.v1,
permessage-deflate without context takeover) with text, fragmented, binary, ping and compressed messages echoed and
a close 1000 "bye", and a second extended CONNECT on stream 5 while the first is open. What the peers sent goes to
``captures/h2-websocket.json``; the tests compare wsinspect's decoding with it, and tshark
(``-d tcp.port==47220,http2``) with wsinspect's HTTP/2 frames and headers.

``h2-websocket-tls`` is the same over TLS on port 47221 (ALPN h2, a self-signed certificate for ``wsinspect.test``
made now with the openssl command), with the client's key log (Node's ``keylog`` event: the NSS format that
SSLKEYLOGFILE gives) in ``captures/h2-websocket-tls.pcapng.keys``.

``h2-websocket-chromium`` is a real browser on port 47222: headless Chromium, started with ``SSLKEYLOGFILE``,
``--ignore-certificate-errors`` and a host rule for ``wsinspect.test``, loads a page over HTTP/2 from the same Node
server (h2_peers.js in its ``browser`` mode) and opens ``wss://wsinspect.test:47222/chat`` from it; Chromium reuses
the HTTP/2 connection for the WebSocket because the server's SETTINGS allow the extended CONNECT. The manifest is
what the server received and echoed; the key log is Chromium's.

Must run as root (capturing on ``lo``)::

    python captures/record_h2.py                      # all three
    python captures/record_h2.py h2-websocket-tls
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CAPTURES = {"h2-websocket": 47220, "h2-websocket-tls": 47221, "h2-websocket-chromium": 47222}  # name -> port
CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 30


def make_certificate(directory: Path) -> list[str]:
    """A self-signed P-256 certificate for wsinspect.test: the certificate and key files h2_peers.js takes."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=wsinspect.test",
                    "-addext", "subjectAltName=DNS:wsinspect.test"], check=True, capture_output=True)
    return [str(cert), str(key)]


def run_chromium(port: int, keylog: Path, server: subprocess.Popen[bytes]) -> None:
    """Headless Chromium loads the page and runs its WebSocket; stopped once the server has written the manifest."""
    profile = tempfile.mkdtemp(prefix="wsinspect-chromium-")
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--ignore-certificate-errors", "--host-resolver-rules=MAP wsinspect.test 127.0.0.1",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", f"https://wsinspect.test:{port}/"],
        env={**os.environ, "SSLKEYLOGFILE": str(keylog)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        server.wait(60)
    finally:
        os.killpg(browser.pid, signal.SIGTERM)  # the browser we started, with its own process group
        browser.wait(TIMEOUT)
        shutil.rmtree(profile, ignore_errors=True)


def record(name: str) -> None:
    port = CAPTURES[name]
    capture, manifest_file, keylog = HERE / f"{name}.pcapng", HERE / f"{name}.json", HERE / f"{name}.pcapng.keys"
    with tempfile.TemporaryDirectory() as directory:
        partial = Path(directory) / "capture.pcapng"
        manifest = Path(directory) / "manifest.json"
        tls_args: list[str] = []
        if name != "h2-websocket":
            keylog.unlink(missing_ok=True)
            tls_args = [*make_certificate(Path(directory)), "browser" if name.endswith("chromium") else str(keylog)]
        dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(partial)],
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert dumpcap.stderr is not None
            for line in dumpcap.stderr:
                if "Capturing on" in line:
                    break
            time.sleep(1.0)  # the capture filter is not live yet when dumpcap says it is capturing
            peers = subprocess.Popen(["node", str(HERE / "h2_peers.js"), str(port), str(manifest), *tls_args])
            if name.endswith("chromium"):
                time.sleep(0.5)  # the server is listening
                run_chromium(port, keylog, peers)
            if peers.wait(TIMEOUT) != 0:
                raise RuntimeError(f"h2_peers.js failed for {name}")
            time.sleep(0.5)
        finally:
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(TIMEOUT)
        capture.write_bytes(partial.read_bytes())
        if keylog.exists():
            keylog.chmod(0o644)  # Chromium writes its key log for its user alone; this one is a test fixture
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    manifest_file.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{capture.name}: {capture.stat().st_size} bytes; {len(recorded['c2s'])} client messages")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*CAPTURES, []], help="captures to record (default: all)")
    names = parser.parse_args().names or list(CAPTURES)
    if shutil.which("node") is None or shutil.which("dumpcap") is None:
        print("needs node (20 or newer) and dumpcap", file=sys.stderr)
        return 2
    for name in names:
        record(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
