"""Measure the reassembler's memory per open flow: many connections that never close, fed to TcpReassembler alone.

Not a test (pytest does not collect it). Run from the repository root:
    python tests/capture/measure_memory.py [flows] [-- reassembler options as key=value]
e.g. ``python tests/capture/measure_memory.py 100000 max_open_flows=1000000`` (no flow let go: the raw cost).

Each measurement runs in a fresh child process: peak RSS (ru_maxrss) after feeding every flow's handshake, a small
exchange each way and the client's last ACK, minus the peak RSS of the same child before feeding. Segments are made
on the fly, so only the reassembler's own state is measured (the items it returns are dropped at once).
"""

from __future__ import annotations

import resource
import subprocess
import sys

from wsinspect.capture import TcpReassembler, TcpSegment
from wsinspect.capture.packets import TCP_ACK, TCP_PSH, TCP_SYN

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


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), _parse_options(sys.argv[3:]))
        return
    flows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    options = _parse_options(sys.argv[2:])
    open_flows, kib = measure(flows, options)
    print(f"{flows:,} flows fed, {open_flows:,} still open: peak RSS +{kib / 1024:.1f} MiB, "
          f"{kib * 1024 / max(flows, 1):,.0f} bytes per flow fed")


if __name__ == "__main__":
    main()
