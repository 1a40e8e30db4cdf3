"""Measure capture-edge throughput (packets/s) on a synthetic capture of small packets.

Not a test (pytest does not collect it). Run from the repository root:
    PYTHONPATH=. python tests/capture/measure_speed.py [packets]
Builds a pcap and a pcapng of small Ethernet/IPv4/TCP packets (a few connections, small data
segments each answered by a pure ACK, like a WebSocket chat), then times each stage.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable

from wsinspect.capture import CaptureFile, TcpReassembler, decode_tcp, read_flows


def _frame(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x18 if payload else 0x10, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload


def build_frames(count: int, connections: int = 8) -> list[bytes]:
    frames: list[bytes] = []
    client_seq = [1000] * connections
    server_seq = [5000] * connections
    client, server = 0x7F000001, 0x7F000002
    message = b"\x81\x14" + b"hello websocket fast"  # a 22-byte WebSocket text frame
    while len(frames) < count:
        flow = len(frames) // 2 % connections
        port = 40000 + flow
        if len(frames) % 4 < 2:  # client sends, server ACKs
            frames.append(_frame(client, server, port, 8765, client_seq[flow], server_seq[flow], message))
            client_seq[flow] += len(message)
            frames.append(_frame(server, client, 8765, port, server_seq[flow], client_seq[flow], b""))
        else:  # server sends, client ACKs
            frames.append(_frame(server, client, 8765, port, server_seq[flow], client_seq[flow], message))
            server_seq[flow] += len(message)
            frames.append(_frame(client, server, port, 8765, client_seq[flow], server_seq[flow], b""))
    return frames[:count]


def write_pcap(path: str, frames: list[bytes]) -> None:
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for number, frame in enumerate(frames):
            out.write(
                struct.pack("<IIII", 1_700_000_000 + number // 1000, number % 1000 * 1000, len(frame), len(frame))
            )
            out.write(frame)


def write_pcapng(path: str, frames: list[bytes]) -> None:
    with open(path, "wb") as out:
        out.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        out.write(struct.pack("<IIHHII", 1, 20, 1, 0, 262144, 20))
        for number, frame in enumerate(frames):
            padded = frame + b"\x00" * (-len(frame) % 4)
            timestamp = 1_700_000_000_000_000 + number
            length = 32 + len(padded)
            out.write(
                struct.pack("<IIIIIII", 6, length, 0, timestamp >> 32, timestamp & 0xFFFFFFFF, len(frame), len(frame))
            )
            out.write(padded)
            out.write(struct.pack("<I", length))


def _timed(label: str, packets: int, run: Callable[[], object], repeats: int = 3) -> float:
    """Best of `repeats` runs: the machine is shared, and the best run is the least disturbed."""
    elapsed = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        elapsed = min(elapsed, time.perf_counter() - started)
    rate = packets / elapsed
    print(f"{label:<52} {elapsed:6.2f} s  {rate:>10,.0f} packets/s")
    return rate


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    frames = build_frames(count)
    with tempfile.TemporaryDirectory() as directory:
        pcap = os.path.join(directory, "small.pcap")
        pcapng = os.path.join(directory, "small.pcapng")
        write_pcap(pcap, frames)
        write_pcapng(pcapng, frames)
        print(f"{count:,} packets of {len(frames[0])} / {len(frames[1])} bytes, {os.path.getsize(pcap):,} byte pcap")

        def read_only(path: str) -> None:
            with CaptureFile(path) as capture:
                for _packet in capture:
                    pass

        def decode_only(path: str) -> None:
            with CaptureFile(path) as capture:
                for packet in capture:
                    decode_tcp(packet)

        def full_pipeline(path: str) -> None:
            reassembler = TcpReassembler(server_ports=(8765,))
            with CaptureFile(path) as capture:
                for packet in capture:
                    segment = decode_tcp(packet)
                    if segment is not None:
                        reassembler.feed(segment)
            reassembler.finish()

        def via_read_flows(path: str) -> None:
            for _item in read_flows(path):
                pass

        def scapy_raw_reader(path: str) -> None:
            from scapy.utils import RawPcapReader

            with RawPcapReader(path) as reader:
                for _packet in reader:
                    pass

        _timed("scapy RawPcapReader (records only, for comparison)", count, lambda: scapy_raw_reader(pcap))
        _timed("CaptureFile pcap (records only)", count, lambda: read_only(pcap))
        _timed("CaptureFile pcapng (records only)", count, lambda: read_only(pcapng))
        _timed("CaptureFile + decode_tcp", count, lambda: decode_only(pcap))
        _timed("CaptureFile + decode_tcp + TcpReassembler.feed", count, lambda: full_pipeline(pcap))
        _timed("read_flows (pcap)", count, lambda: via_read_flows(pcap))
        _timed("read_flows (pcapng)", count, lambda: via_read_flows(pcapng))


if __name__ == "__main__":
    main()
