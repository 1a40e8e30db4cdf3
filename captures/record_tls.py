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
* ``wss-tls13``: TLS 1.3, OpenSSL's default suite (TLS_AES_256_GCM_SHA384); Python's ``ssl`` cannot choose
  TLS 1.3 suites. Port 47211.

Must run as root (capturing on ``lo``)::

    python captures/record_tls.py                 # both
    python captures/record_tls.py wss-tls13
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import signal
import ssl
import subprocess
import sys
import tempfile
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
}

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


def record(name: str) -> None:
    port, ciphers = CAPTURES[name]
    capture = HERE / f"{name}.pcapng"
    keylog = HERE / f"{name}.pcapng.keys"
    manifest = HERE / f"{name}.json"
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
            connections = asyncio.run(record_connections(port, ciphers, certificate, keylog))
            time.sleep(0.5)
        finally:
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(TIMEOUT)
        capture.write_bytes(partial.read_bytes())
    manifest.write_text(json.dumps({"port": port, "connections": connections}, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"{capture.name}: {capture.stat().st_size} bytes; {keylog.name}: "
          f"{len(keylog.read_text().splitlines())} lines; {[c['tls'] for c in connections]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*CAPTURES, []], help="captures to record (default: all)")
    for name in parser.parse_args().names or CAPTURES:
        record(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
