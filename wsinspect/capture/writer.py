"""Live TCP sessions written as a capture: Ethernet/IP/TCP packets with consistent sequence numbers.

The live server knows each connection's two byte streams, not the packets the kernel made of them, so the recorder
makes the packets: a three-way handshake when a connection opens, data in segments no larger than a loopback MSS
(each acknowledging everything the other side sent so far), and FIN/ACK when it closes. Checksums are computed so
tools that verify them stay quiet. scapy's raw writers do the file format (pcap or pcapng, chosen by extension).
"""

from __future__ import annotations

import ipaddress
import os
import struct
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from scapy.utils import RawPcapNgWriter, RawPcapWriter

LINKTYPE_ETHERNET = 1
MSS = 65_495  # loopback's MTU (65,536) minus IPv4 and TCP headers, rounded as Linux does
_FIN, _SYN, _RST, _PSH, _ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MAC_CLIENT = bytes.fromhex("020000000001")
_MAC_SERVER = bytes.fromhex("020000000002")


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, summed over native 16-bit words (no per-byte loop)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    return ((total & 0xFF) << 8 | total >> 8) if sys.byteorder == "little" else total


@dataclass(slots=True)
class _Session:
    client: tuple[str, int]
    server: tuple[str, int]
    next_seq: dict[str, int]  # direction -> next sequence number of its sender


class SessionRecorder:
    """Writes every connection's bytes, in the order they crossed the socket, to one capture file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._writer: RawPcapWriter | RawPcapNgWriter
        if self.path.endswith(".pcap"):
            self._writer = RawPcapWriter(self.path, linktype=LINKTYPE_ETHERNET)
        else:
            self._writer = RawPcapNgWriter(self.path)
            self._writer.linktype = LINKTYPE_ETHERNET
        self._writer.write_header(None)
        self._sessions: dict[int, _Session] = {}
        self.packets = 0

    def open(self, stream: int, client: tuple[str, int], server: tuple[str, int], time: float) -> None:
        # Fixed initial sequence numbers keep recordings reproducible; they are per connection anyway.
        session = _Session(client, server, {"c2s": 1_000_000 + stream, "s2c": 2_000_000 + stream})
        self._sessions[stream] = session
        self._packet(session, "c2s", _SYN, b"", time, ack=0)
        session.next_seq["c2s"] += 1
        self._packet(session, "s2c", _SYN | _ACK, b"", time)
        session.next_seq["s2c"] += 1
        self._packet(session, "c2s", _ACK, b"", time)

    def data(self, stream: int, direction: Literal["c2s", "s2c"], data: bytes, time: float) -> None:
        session = self._sessions.get(stream)
        if session is None:
            return
        for start in range(0, len(data), MSS):
            chunk = data[start : start + MSS]
            self._packet(session, direction, _PSH | _ACK, chunk, time)
            session.next_seq[direction] = (session.next_seq[direction] + len(chunk)) & 0xFFFFFFFF

    def close(self, stream: int, time: float) -> None:
        session = self._sessions.pop(stream, None)
        if session is None:
            return
        for direction in ("s2c", "c2s"):  # the server closes the TCP connection first (RFC 6455 7.1.1)
            self._packet(session, direction, _FIN | _ACK, b"", time)
            session.next_seq[direction] += 1
        self._packet(session, "s2c", _ACK, b"", time)
        self._writer.flush()

    def finish(self, time: float) -> None:
        for stream in list(self._sessions):
            self.close(stream, time)
        self._writer.close()

    def _packet(
        self,
        session: _Session,
        direction: str,
        flags: int,
        payload: bytes,
        time: float,
        ack: int | None = None,
    ) -> None:
        source, target = (
            (session.client, session.server) if direction == "c2s" else (session.server, session.client)
        )
        other = "s2c" if direction == "c2s" else "c2s"
        ack_number = session.next_seq[other] if ack is None else ack
        frame = _ethernet_ip_tcp(
            source,
            target,
            session.next_seq[direction],
            ack_number,
            flags,
            payload,
            from_client=direction == "c2s",
        )
        seconds = int(time)
        if isinstance(self._writer, RawPcapNgWriter):
            # scapy's pcapng writer truncates ``sec * 10**6`` to whole microseconds, and a float such as 1.001 times
            # 10**6 is 1000999.99...: a Decimal of the rounded microseconds converts exactly, as the pcap branch does.
            exact = Decimal(round(time * 1_000_000)) / 1_000_000  # scapy's own EDecimal times are Decimals too
            self._writer.write_packet(frame, sec=exact)  # type: ignore[arg-type]
        else:
            self._writer.write_packet(frame, sec=seconds, usec=round((time - seconds) * 1_000_000))
        self.packets += 1


def _ethernet_ip_tcp(
    source: tuple[str, int],
    target: tuple[str, int],
    seq: int,
    ack: int,
    flags: int,
    payload: bytes,
    *,
    from_client: bool,
) -> bytes:
    src_ip = ipaddress.ip_address(source[0])
    dst_ip = ipaddress.ip_address(target[0])
    tcp = struct.pack("!HHIIBBHHH", source[1], target[1], seq, ack, 5 << 4, flags, 65_535, 0, 0)
    if src_ip.version == 4:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    else:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!IxxxB", len(tcp) + len(payload), 6)
    checksum = internet_checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", checksum) + tcp[18:]
    if src_ip.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp) + len(payload),
            0,
            0x4000,
            64,
            6,
            0,
            src_ip.packed,
            dst_ip.packed,
        )
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64, src_ip.packed, dst_ip.packed)
        ethertype = 0x86DD
    macs = _MAC_SERVER + _MAC_CLIENT if from_client else _MAC_CLIENT + _MAC_SERVER
    return macs + struct.pack("!H", ethertype) + ip + tcp + payload
