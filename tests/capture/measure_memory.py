"""Measure the reassembler's memory per open flow: many connections that never close, fed to TcpReassembler alone.

Not a test (pytest does not collect it). Run from the repository root:
    python tests/capture/measure_memory.py [flows] [-- reassembler options as key=value]
e.g. ``python tests/capture/measure_memory.py 100000 max_open_flows=1000000`` (no flow let go: the raw cost).
    python tests/capture/measure_memory.py --read FILE [flows]
writes FILE (if missing): `flows` WebSocket connections (handshake, one text frame each way) that never close, and
reports the peak RSS of ``python -m wsinspect read FILE --json`` (the whole pipeline) on it.

Each measurement runs in a fresh child process: peak RSS (ru_maxrss) after feeding every flow's handshake, a small
exchange each way and the client's last ACK, minus the peak RSS of the same child before feeding. Segments are made
on the fly, so only the reassembler's own state is measured (the items it returns are dropped at once).
"""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

from wsinspect.capture import TcpReassembler, TcpSegment
from wsinspect.capture.packets import TCP_ACK, TCP_PSH, TCP_SYN
from wsinspect.capture.writer import _ethernet_ip_tcp

REQUEST = b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n\r\n"
ANSWER = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


def feed_flows(flows: int, **options: object) -> TcpReassembler:
    reassembler = TcpReassembler(**options)  # type: ignore[arg-type]
    number = 0
    for flow in range(flows):
        client = f"10.{flow >> 16 & 255}.{flow >> 8 & 255}.{flow & 255}"
        port = 1024 + flow % 60000
        segments = [
            (client, port, "192.0.2.1", 80, 1000, 0, TCP_SYN, b""),
            ("192.0.2.1", 80, client, port, 5000, 1001, TCP_SYN | TCP_ACK, b""),
            (client, port, "192.0.2.1", 80, 1001, 5001, TCP_ACK | TCP_PSH, REQUEST),
            ("192.0.2.1", 80, client, port, 5001, 1001 + len(REQUEST), TCP_ACK | TCP_PSH, ANSWER),
            (client, port, "192.0.2.1", 80, 1001 + len(REQUEST), 5001 + len(ANSWER), TCP_ACK, b""),
        ]
        for src, sport, dst, dport, seq, ack, flags, payload in segments:
            number += 1
            # A millisecond of capture time per flow: 100,000 flows take 100 s, short of the default idle timeout.
            # A fresh copy of the payload, as each packet read from a file has.
            data = bytes(bytearray(payload))
            reassembler.feed(TcpSegment(number, flow / 1000, src, dst, sport, dport, seq, ack, flags, data))
    return reassembler


def _child(flows: int, options: dict[str, object]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reassembler = feed_flows(flows, **options)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{reassembler.open_flows} {after - before}")


def measure(flows: int, options: dict[str, object]) -> tuple[int, int]:
    """(open flows at the end, peak RSS growth in KiB), measured in a fresh interpreter."""
    arguments = [f"{key}={value}" for key, value in options.items()]
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(flows), *arguments], capture_output=True, text=True, check=True
    )
    open_flows, kib = result.stdout.split()
    return int(open_flows), int(kib)


def _parse_options(arguments: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for argument in arguments:
        key, _, value = argument.partition("=")
        options[key] = float(value) if "." in value else int(value)
    return options


def write_endless_websocket_capture(path: Path, flows: int) -> None:
    """`flows` WebSocket connections, 1 ms apart, each: handshake, a text frame each way, all ACKed; never closed."""
    from scapy.utils import RawPcapNgWriter

    writer = RawPcapNgWriter(str(path))
    writer.linktype = 1
    writer.write_header(None)
    server = ("192.0.2.1", 80)
    key = base64.b64encode(b"0123456789abcdef").decode()
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    request = (f"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    answer = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    client_frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # "Hello", masked (RFC 6455 5.7)
    server_frame = b"\x81\x05Hello"
    for flow in range(flows):
        client = (f"10.{flow >> 16 & 255}.{flow >> 8 & 255}.{flow & 255}", 1024 + flow % 60000)
        client_seq, server_seq = 1001, 5001
        packets = [(True, 1000, 0, TCP_SYN, b""), (False, 5000, 1001, TCP_SYN | TCP_ACK, b""),
                   (True, client_seq, server_seq, TCP_ACK, b"")]
        for from_client, payload in ((True, request), (False, answer), (True, client_frame), (False, server_frame)):
            if from_client:
                packets.append((True, client_seq, server_seq, TCP_ACK | TCP_PSH, payload))
                client_seq += len(payload)
            else:
                packets.append((False, server_seq, client_seq, TCP_ACK | TCP_PSH, payload))
                server_seq += len(payload)
        packets.append((True, client_seq, server_seq, TCP_ACK, b""))
        for from_client, seq, ack, flags, payload in packets:
            source, target = (client, server) if from_client else (server, client)
            frame = _ethernet_ip_tcp(source, target, seq, ack, flags, payload, from_client=from_client)
            writer.write_packet(frame, sec=1_700_000_000 + flow / 1000)
    writer.close()


def measure_read(path: Path, flows: int) -> None:
    if not path.exists():
        write_endless_websocket_capture(path, flows)
    with open(os.devnull, "wb") as devnull:
        subprocess.run([sys.executable, "-m", "wsinspect", "read", str(path), "--json"], stdout=devnull, check=False)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"wsinspect read --json {path.name}: peak RSS {peak / 1024:.0f} MiB")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), _parse_options(sys.argv[3:]))
        return
    if sys.argv[1:2] == ["--read"]:
        measure_read(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 100_000)
        return
    flows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    options = _parse_options(sys.argv[2:])
    open_flows, kib = measure(flows, options)
    print(f"{flows:,} flows fed, {open_flows:,} still open: peak RSS +{kib / 1024:.1f} MiB, "
          f"{kib * 1024 / max(flows, 1):,.0f} bytes per flow fed")


if __name__ == "__main__":
    main()
