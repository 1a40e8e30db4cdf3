#!/usr/bin/env python3
"""Record a WebSocket opened on a reused keep-alive HTTP/1.1 connection: captures/keepalive.pcapng and its manifest.

``dumpcap -i lo -f "tcp port 47230"`` writes the capture while a real keep-alive client, Python's
``http.client.HTTPConnection``, makes three requests on one TCP connection to a real server, Node's ``http`` module
(``captures/keepalive_server.js``): ``GET /`` (200 with Content-Length), ``GET /app.js`` (200 in chunked transfer
coding, two chunks), then ``GET /ws`` asking for a WebSocket, which Node hands to its 'upgrade' event, answered 101
as servers built on the ``ws`` package answer it. On the same socket the client then sends two masked text frames
(mask ``37fa213d``), each echoed, and a close 1000 "bye", answered. What was sent and received goes to
``captures/keepalive.json``; the tests compare wsinspect's decoding with it and with tshark's.

Must run as root (capturing on ``lo``)::

    python captures/record_keepalive.py
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 47230
MASK = bytes.fromhex("37fa213d")
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MESSAGES = ("hello over a reused connection", "second message ✓")
CLOSE = struct.pack("!H", 1000) + b"bye"
TIMEOUT = 30


def masked_frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode, 0x80 | len(payload)]) if len(payload) < 126 else \
        bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload))
    return head + MASK + bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame (at most 64 KiB): its opcode and payload."""
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            piece = sock.recv(count - len(data))
            if not piece:
                raise RuntimeError("the server closed the connection inside a frame")
            data += piece
        return data

    first, second = exactly(2)
    length = second & 127
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    return first & 15, exactly(length)


def run_client() -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    exchanges: list[dict[str, object]] = []
    for path in ("/", "/app.js"):
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        exchanges.append({"path": path, "status": response.status, "body": body.decode("utf-8"),
                          "transfer_encoding": response.getheader("Transfer-Encoding")})
    connection.request("GET", "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                              "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"})
    response = connection.getresponse()
    accept = base64.b64encode(__import__("hashlib").sha1(
        (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    if response.status != 101 or response.getheader("Sec-WebSocket-Accept") != accept:
        raise RuntimeError(f"the upgrade was not accepted: {response.status}")
    exchanges.append({"path": "/ws", "status": 101})
    sock = connection.sock
    assert sock is not None
    echoed: list[str] = []
    for text in MESSAGES:
        sock.sendall(masked_frame(1, text.encode("utf-8")))
        opcode, payload = read_frame(sock)
        if opcode != 1:
            raise RuntimeError(f"expected a text frame back, got opcode {opcode}")
        echoed.append(payload.decode("utf-8"))
    sock.sendall(masked_frame(8, CLOSE))
    opcode, payload = read_frame(sock)
    if opcode != 8 or payload != CLOSE:
        raise RuntimeError(f"expected the close echoed, got opcode {opcode} {payload!r}")
    sock.close()
    return {"port": PORT, "exchanges": exchanges, "c2s": list(MESSAGES), "s2c": echoed,
            "close": {"code": 1000, "reason": "bye"}}


def main() -> int:
    if shutil.which("node") is None or shutil.which("dumpcap") is None:
        print("needs node and dumpcap", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("capturing on lo needs root", file=sys.stderr)
        return 2
    capture, manifest = HERE / "keepalive.pcapng", HERE / "keepalive.json"
    with tempfile.TemporaryDirectory(prefix="wsinspect-keepalive-") as scratch:
        partial = Path(scratch) / "keepalive.pcapng"
        dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {PORT}", "-w", str(partial)],
                                   stderr=subprocess.PIPE, text=True)
        server: subprocess.Popen[str] | None = None
        try:
            assert dumpcap.stderr is not None
            for line in dumpcap.stderr:
                if "Capturing on" in line:
                    break
            time.sleep(1.0)  # the capture filter is not live yet when dumpcap says it is capturing
            server = subprocess.Popen(["node", str(HERE / "keepalive_server.js"), str(PORT)], stdout=subprocess.PIPE,
                                      text=True)
            assert server.stdout is not None
            if server.stdout.readline().strip() != "listening":
                raise RuntimeError("keepalive_server.js did not start")
            recorded = run_client()
            if server.wait(TIMEOUT) != 0:
                raise RuntimeError("keepalive_server.js failed")
            time.sleep(0.5)
        finally:
            if server is not None and server.poll() is None:
                server.send_signal(signal.SIGTERM)
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(TIMEOUT)
        capture.write_bytes(partial.read_bytes())
    manifest.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{capture.name}: {capture.stat().st_size} bytes; {len(recorded['c2s'])} client messages")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
