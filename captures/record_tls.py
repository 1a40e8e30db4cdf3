#!/usr/bin/env python3
"""Record wss:// captures together with the TLS key logs that decrypt them (issue 9, item 5).

For each capture: a `websockets` echo server with TLS (a self-signed certificate for ``wsinspect.test`` made now
with `cryptography`) on a fixed loopback port, ``dumpcap -i lo -f "tcp port P"`` writing ``captures/NAME.pcapng``,
and `websockets` clients whose ``SSLContext.keylog_filename`` is ``captures/NAME.pcapng.keys``: the NSS key log
that OpenSSL writes, as browsers and curl do for SSLKEYLOGFILE. Each capture holds two connections, one without
compression (text, binary, ping, close) and one with permessage-deflate (compressed messages, close), each with
its own TLS session. What the clients sent and received, as the peers saw it, goes into ``NAME.json`` beside the
capture: the tests compare wsinspect's decoding with it.

* ``wss-tls12``: the client's ``maximum_version`` is TLS 1.2; the first connection offers only
  ECDHE-ECDSA-AES256-GCM-SHA384 (RFC 5289: AES-GCM with the SHA-384 PRF), the second only
  ECDHE-ECDSA-CHACHA20-POLY1305 (RFC 7905). Port 47210.
* ``wss-tls12-cbc``: TLS 1.2 with ECDHE-ECDSA-AES128-SHA256 (CBC, RFC 5289), which wsinspect does not decrypt:
  for the notice that says so. Port 47214.
* ``wss-tls13``: TLS 1.3, OpenSSL's default suite (TLS_AES_256_GCM_SHA384); Python's ``ssl`` cannot choose
  TLS 1.3 suites. Port 47211.
* ``wss-tls13-keyupdate``: TLS 1.3 KeyUpdate (RFC 8446 4.6.3), which Python's ``ssl`` cannot send. The client is
  ``openssl s_client -keylogfile`` (the same key log format), fed on stdin a handshake request and hand-masked
  frames (mask ``37fa213d``); between two messages it reads a line ``K`` (s_client's command: send a KeyUpdate
  asking the peer to update too) in the first connection, ``k`` (update only its own keys) in the second. The
  suites are TLS_CHACHA20_POLY1305_SHA256 and TLS_AES_128_GCM_SHA256, chosen with ``-ciphersuites``. Port 47212.
* ``wss-tls13-hrr``: a HelloRetryRequest (RFC 8446 4.1.4): the server accepts only P-256 (``set_ecdh_curve``) and
  s_client's first key share is X25519, so the server asks for another ClientHello. Then as above, with ``k``.
  Port 47213.
* ``wss-tls12-renegotiation``: TLS 1.2 (ECDHE-ECDSA-AES128-GCM-SHA256) renegotiated between the two messages by
  s_client's ``R`` command; the server allows it (OpenSSL 3 refuses a client's renegotiation unless told
  ``SSL_OP_ALLOW_CLIENT_RENEGOTIATION``). The key log has a CLIENT_RANDOM line per handshake. Port 47215.
* ``wss-chromium``: headless Chromium started with ``SSLKEYLOGFILE`` in its environment (how a browser's key log is
  had), ``--ignore-certificate-errors`` for the self-signed certificate and a host rule so that it connects to
  ``wss://wsinspect.test:47216`` on loopback (SNI ``wsinspect.test``). Its page (served on 47217, not captured)
  sends a text, a binary and a UTF-8 text message, each after the echo of the one before, then closes. The manifest
  is what the server received and echoed.
* ``tls13-early-data``: TLS 1.3 0-RTT early data (RFC 8446 2.3), which neither Python's ``ssl`` nor a browser's
  WebSocket sends; no WebSocket inside. ``openssl s_server -early_data`` on port 47218 and three ``s_client``
  connections: a full handshake that saves its session ticket, a resumption with early data (accepted), and a
  second resumption with the same ticket (its early data rejected: OpenSSL takes a ticket's early data once).
  Each client sends a line after its handshake; the manifest is what each sent, and whether s_client was told its
  early data was accepted. Written to ``captures/tls/``, apart from the WebSocket captures.

Must run as root (capturing on ``lo``)::

    python captures/record_tls.py                 # both
    python captures/record_tls.py wss-tls13
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

HERE = Path(__file__).resolve().parent
HOSTNAME = "wsinspect.test"
TIMEOUT = 10.0

# name -> (port, TLS 1.2 cipher per connection, or None for TLS 1.3 with OpenSSL's default suite)
CAPTURES: dict[str, tuple[int, tuple[str | None, str | None]]] = {
    "wss-tls12": (47210, ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305")),
    "wss-tls13": (47211, (None, None)),
    "wss-tls12-cbc": (47214, ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA256")),
}
# Captures made with openssl s_client: name -> (port, the server's only group or None, (suite, s_client's command
# between the two messages) per connection). Commands: K, a TLS 1.3 KeyUpdate asking the peer to update too; k, one
# not asking; R, a TLS 1.2 renegotiation.
S_CLIENT_CAPTURES: dict[str, tuple[int, str | None, tuple[tuple[str, str], ...]]] = {
    "wss-tls13-keyupdate": (47212, None, (("TLS_CHACHA20_POLY1305_SHA256", "K"), ("TLS_AES_128_GCM_SHA256", "k"))),
    "wss-tls13-hrr": (47213, "prime256v1", (("TLS_AES_256_GCM_SHA384", "k"),)),
    "wss-tls12-renegotiation": (47215, None, (("ECDHE-ECDSA-AES128-GCM-SHA256", "R"),)),
}
# command -> (what it does, what s_client says on stderr when it does it)
COMMANDS = {"K": ("KeyUpdate", b"KEYUPDATE"), "k": ("KeyUpdate", b"KEYUPDATE"),
            "R": ("renegotiation", b"RENEGOTIATING")}
SSL_OP_ALLOW_CLIENT_RENEGOTIATION = 0x100  # OpenSSL 3.0 ssl.h; Python's ssl module does not name it
MASK = bytes.fromhex("37fa213d")
EARLY_DATA_CAPTURE, EARLY_DATA_PORT = "tls13-early-data", 47218
CHROMIUM_CAPTURE, CHROMIUM_PORT, CHROMIUM_PAGE_PORT = "wss-chromium", 47216, 47217
CHROMIUM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsinspect wss capture</title></head><body><script>
const ws = new WebSocket('__URL__');
ws.binaryType = 'arraybuffer';
const sends = [() => ws.send('hello from chromium over TLS'), () => ws.send(new Uint8Array([0, 1, 2, 254, 255]).buffer),
               () => ws.send('h\u00e9llo \u2713'), () => ws.close(1000, 'done')];
let next = 0;
ws.onopen = () => sends[next++]();
ws.onmessage = () => sends[next++]();
</script></body></html>
""".replace("__URL__", f"wss://{HOSTNAME}:{CHROMIUM_PORT}/chromium/0")

PLAIN_SCRIPT: list[tuple[str, Any]] = [
    ("text", "hello over TLS ✓"),
    ("binary", bytes(range(40))),
    ("ping", b"tls-ping"),
    ("text", "second text"),
]
COMPRESSED_SCRIPT: list[tuple[str, Any]] = [
    ("text", "compress me " * 30),
    ("binary", b"\x00\x01" * 200),
]


def make_certificate(directory: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = directory / "wss-test.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )  # fmt: skip
    return path


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def run_client(port: int, path: str, certificate: Path, keylog: Path, cipher: str | None,
                     compression: str | None) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(certificate))
    context.keylog_filename = str(keylog)  # OpenSSL appends this session's secrets (NSS key log format)
    context.set_alpn_protocols(["http/1.1"])
    if cipher is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []
    script = PLAIN_SCRIPT if compression is None else COMPRESSED_SCRIPT
    async with connect(f"wss://{HOSTNAME}:{port}{path}", host="127.0.0.1", port=port, ssl=context,
                       server_hostname=HOSTNAME, compression=compression, ping_interval=None,
                       open_timeout=TIMEOUT, close_timeout=TIMEOUT) as websocket:
        ssl_object = websocket.transport.get_extra_info("ssl_object")
        facts = {"version": ssl_object.version(), "cipher": ssl_object.cipher()[0],
                 "alpn": ssl_object.selected_alpn_protocol(), "sni": HOSTNAME}
        for kind, payload in script:
            if kind == "ping":
                waiter = await websocket.ping(payload)
                await asyncio.wait_for(waiter, TIMEOUT)
                sent.append({"kind": "ping", "hex": payload.hex()})
                continue
            await websocket.send(payload)
            answer = await asyncio.wait_for(websocket.recv(), TIMEOUT)
            if answer != payload:
                raise RuntimeError(f"echo differs: sent {payload!r}, got {answer!r}")
            entry = {"opcode": 1, "text": payload} if kind == "text" else {"opcode": 2, "hex": payload.hex()}
            sent.append(entry)
            received.append(entry)
        await websocket.close(1000, "tls bye")
    return {"path": path, "compression": compression, "tls": facts, "c2s": sent, "s2c": received,
            "close": {"code": 1000, "reason": "tls bye"}}


async def record_connections(port: int, ciphers: tuple[str | None, str | None], certificate: Path,
                             keylog: Path) -> list[dict[str, Any]]:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(certificate))
    server_context.set_alpn_protocols(["http/1.1"])
    async with serve(echo, "127.0.0.1", port, ssl=server_context, ping_interval=None):
        connections = []
        for index, (cipher, compression) in enumerate(zip(ciphers, (None, "deflate"), strict=True)):
            connections.append(await run_client(port, f"/tls/{index}", certificate, keylog, cipher, compression))
        return connections


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame (RFC 6455 5.2), payload under 126 bytes, masked with MASK (RFC 6455 5.3)."""
    masked = bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


def run_s_client(port: int, index: int, suite: str, command: str, certificate: Path, keylog: Path) -> dict[str, Any]:
    """One connection by openssl s_client: upgrade, a text message, the command, a text message, a close."""
    what, said = COMMANDS[command]
    before, after = f"before {what} {index}", f"after {what} {index} ✓"
    version = ["-tls1_2", "-cipher", suite] if command == "R" else ["-tls1_3", "-ciphersuites", suite]
    request = (f"GET /tls/{index} HTTP/1.1\r\nHost: {HOSTNAME}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    close_payload = (1000).to_bytes(2, "big") + b"tls bye"
    # Each piece is its own read on s_client's side (the pauses), so the command letter is the first byte of one.
    pieces = [request, masked_frame(1, before.encode()), f"{command}\n".encode(), masked_frame(1, after.encode()),
              masked_frame(8, close_payload)]
    client = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME, "-alpn", "http/1.1",
         *version, "-CAfile", str(certificate), "-verify_return_error",
         "-keylogfile", str(keylog), "-quiet", "-no_ign_eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert client.stdin is not None
    for piece in pieces:
        time.sleep(0.5)
        client.stdin.write(piece)
        client.stdin.flush()
    time.sleep(0.5)
    output, errors = client.communicate(timeout=TIMEOUT)
    for expected in (b"HTTP/1.1 101 ", before.encode(), after.encode(), close_payload):
        if expected not in output:
            raise RuntimeError(f"s_client did not receive {expected!r}: {output!r} {errors!r}")
    if said not in errors:
        raise RuntimeError(f"s_client did not do its {what}: {errors!r}")
    sent = [{"opcode": 1, "text": before}, {"opcode": 1, "text": after}]
    return {"path": f"/tls/{index}", "compression": None, "s_client_command": command,
            "tls": {"version": "TLSv1.2" if command == "R" else "TLSv1.3", "cipher": suite, "alpn": "http/1.1",
                    "sni": HOSTNAME},
            "c2s": sent, "s2c": sent, "close": {"code": 1000, "reason": "tls bye"}}


def record_s_client(name: str, certificate: Path, keylog: Path) -> list[dict[str, Any]]:
    port, server_group, connections = S_CLIENT_CAPTURES[name]

    async def serve_while(clients: asyncio.Future[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(str(certificate))
        server_context.set_alpn_protocols(["http/1.1"])
        if server_group is not None:
            server_context.set_ecdh_curve(server_group)
        if any(command == "R" for _, command in connections):
            server_context.options |= SSL_OP_ALLOW_CLIENT_RENEGOTIATION
        async with serve(echo, "127.0.0.1", port, ssl=server_context, ping_interval=None, compression=None):
            return await clients

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        clients = loop.run_in_executor(None, lambda: [
            run_s_client(port, index, suite, command, certificate, keylog)
            for index, (suite, command) in enumerate(connections)])
        return await serve_while(clients)

    return asyncio.run(main())


def record_chromium(certificate: Path, keylog: Path) -> list[dict[str, Any]]:
    """One connection from headless Chromium; what the server received (and echoed) is the manifest."""
    page = CHROMIUM_PAGE.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    received: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}

    async def main() -> dict[str, Any]:
        closed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def record_echo(connection: ServerConnection) -> None:
            ssl_object = connection.transport.get_extra_info("ssl_object")
            facts.update(version=ssl_object.version(), cipher=ssl_object.cipher()[0],
                         alpn=ssl_object.selected_alpn_protocol())
            async for message in connection:
                received.append({"opcode": 1, "text": message} if isinstance(message, str)
                                else {"opcode": 2, "hex": bytes(message).hex()})
                await connection.send(message)
            closed.set_result({"code": connection.close_code, "reason": connection.close_reason})

        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(str(certificate))
        server_context.set_alpn_protocols(["http/1.1"])
        server_context.sni_callback = lambda _socket, name, _context: facts.update(sni=name)
        async with serve(record_echo, "127.0.0.1", CHROMIUM_PORT, ssl=server_context, ping_interval=None):
            profile = tempfile.mkdtemp(prefix="wsinspect-chromium-")
            browser = subprocess.Popen(
                ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--ignore-certificate-errors",
                 f"--host-resolver-rules=MAP {HOSTNAME} 127.0.0.1", f"--user-data-dir={profile}",
                 "--remote-debugging-port=0", f"http://127.0.0.1:{CHROMIUM_PAGE_PORT}/"],
                env={**os.environ, "SSLKEYLOGFILE": str(keylog)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                return await asyncio.wait_for(closed, 60)
            finally:
                os.killpg(browser.pid, signal.SIGTERM)  # the browser we started, with its own process group
                browser.wait(TIMEOUT)
                shutil.rmtree(profile, ignore_errors=True)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", CHROMIUM_PAGE_PORT), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        close = asyncio.run(main())
    finally:
        httpd.shutdown()
        httpd.server_close()
    if len(received) != 3 or close != {"code": 1000, "reason": "done"}:
        raise RuntimeError(f"Chromium's session was not the page's script: {received} {close}")
    return [{"path": "/chromium/0", "compression": "deflate", "tls": facts, "c2s": received, "s2c": received,
             "close": close}]


def record_early_data(certificate: Path, keylog: Path, directory: Path) -> list[dict[str, Any]]:
    """Three s_client connections to s_server -early_data; see the module's docstring."""
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", str(EARLY_DATA_PORT), "-cert", str(certificate), "-key", str(certificate),
         "-tls1_3", "-early_data", "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    session = directory / "session.pem"
    connections = []
    try:
        time.sleep(1.0)
        for index, early in enumerate((None, "0-RTT request 1\n", "0-RTT request 2\n")):
            after = f"after handshake {index}\n"
            options = ["-sess_out", str(session)] if early is None else ["-sess_in", str(session)]
            if early is not None:
                early_file = directory / f"early{index}.txt"
                early_file.write_text(early)
                options += ["-early_data", str(early_file)]
            client = subprocess.Popen(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{EARLY_DATA_PORT}", "-servername", HOSTNAME,
                 "-tls1_3", "-keylogfile", str(keylog), "-no_ign_eof", *options],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert client.stdin is not None
            time.sleep(1.0)
            client.stdin.write(after.encode())
            client.stdin.flush()
            time.sleep(1.0)
            output = client.communicate(timeout=TIMEOUT)[0]
            accepted = None if early is None else b"Early data was accepted" in output
            if early is not None and not accepted and b"Early data was rejected" not in output:
                raise RuntimeError(f"s_client said nothing of its early data: {output!r}")
            connections.append({"early_data": early, "early_data_accepted": accepted, "after_handshake": after})
    finally:
        server.terminate()  # the s_server we started
        received = server.communicate(timeout=TIMEOUT)[0]
    for connection in connections:
        sent = [connection["after_handshake"]] + ([connection["early_data"]] if connection["early_data_accepted"]
                                                  else [])
        if not all(text.encode() in received for text in sent):
            raise RuntimeError(f"s_server did not receive {sent!r}: {received!r}")
    if [c["early_data_accepted"] for c in connections] != [None, True, False]:
        raise RuntimeError(f"early data was not accepted once and then rejected: {connections}")
    return connections


def record(name: str) -> None:
    if name in CAPTURES:
        port, ciphers = CAPTURES[name]
    elif name == EARLY_DATA_CAPTURE:
        port, ciphers = EARLY_DATA_PORT, (None, None)
    else:
        port, ciphers = CHROMIUM_PORT if name == CHROMIUM_CAPTURE else S_CLIENT_CAPTURES[name][0], (None, None)
    # A capture with no WebSocket in it goes apart, in tls/: tests that read every captures/*.pcapng expect one.
    place = HERE / "tls" if name == EARLY_DATA_CAPTURE else HERE
    place.mkdir(exist_ok=True)
    capture = place / f"{name}.pcapng"
    keylog = place / f"{name}.pcapng.keys"
    manifest = place / f"{name}.json"
    for path in (capture, keylog):
        path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        certificate = make_certificate(Path(directory))
        partial = Path(directory) / "capture.pcapng"
        dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(partial)],
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert dumpcap.stderr is not None
            for line in dumpcap.stderr:
                if "Capturing on" in line:
                    break
            time.sleep(1.0)  # the capture filter is not live yet when dumpcap says it is capturing
            if name == EARLY_DATA_CAPTURE:
                connections = record_early_data(certificate, keylog, Path(directory))
            elif name == CHROMIUM_CAPTURE:
                connections = record_chromium(certificate, keylog)
            elif name in S_CLIENT_CAPTURES:
                connections = record_s_client(name, certificate, keylog)
            else:
                connections = asyncio.run(record_connections(port, ciphers, certificate, keylog))
            time.sleep(0.5)
        finally:
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(TIMEOUT)
        capture.write_bytes(partial.read_bytes())
    manifest.write_text(json.dumps({"port": port, "connections": connections}, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"{capture.name}: {capture.stat().st_size} bytes; {keylog.name}: "
          f"{len(keylog.read_text().splitlines())} lines; {[c.get('tls') for c in connections]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [*CAPTURES, *S_CLIENT_CAPTURES, CHROMIUM_CAPTURE, EARLY_DATA_CAPTURE]
    parser.add_argument("names", nargs="*", choices=[*names, []], help="captures to record (default: all)")
    for name in parser.parse_args().names or names:
        record(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
