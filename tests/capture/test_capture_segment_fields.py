"""packets.ethernet_ipv4_segment (the trace's general way for a SYN, FIN or any packet its fast path does not take,
from the fields that fast path unpacked) gives exactly the TcpSegment decode_tcp gives for the same record."""

from __future__ import annotations

import random
from pathlib import Path

from wsinspect.capture.files import CaptureFile, new_raw_packet
from wsinspect.capture.packets import ETHERNET_IPV4_TCP_ENDPOINTS, LINKTYPE_ETHERNET, decode_tcp, ethernet_ipv4_segment

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def _by_fields(number: int, time: float, data: bytes):  # type: ignore[no-untyped-def]
    """What the trace's loop does with an Ethernet record of the common shape (None: not that shape)."""
    if len(data) < ETHERNET_IPV4_TCP_ENDPOINTS.size:
        return None
    (ethertype, version_and_length, total_length, fragment, protocol, endpoints, seq, ack, data_offset,
     flags) = ETHERNET_IPV4_TCP_ENDPOINTS.unpack_from(data, 0)
    payload_start = 34 + (data_offset >> 4) * 4
    ip_end = 14 + total_length
    if not (ethertype == 0x0800 and version_and_length == 0x45 and protocol == 6 and not fragment & 0x3FFF
            and data_offset >= 0x50 and payload_start <= ip_end <= len(data)):
        return None
    return ethernet_ipv4_segment(number, time, endpoints, seq, ack, flags | (data_offset & 1) << 8,
                                 data[payload_start:ip_end])


def test_every_shipped_record_of_the_common_shape_decodes_the_same() -> None:
    compared = 0
    for capture in sorted(CAPTURES.glob("*.pcapng")):
        with CaptureFile(capture) as packets:
            for packet in packets:
                if packet.linktype != LINKTYPE_ETHERNET:
                    continue
                segment = _by_fields(packet.number, packet.time, packet.data)
                if segment is not None:
                    assert segment == decode_tcp(packet), (capture.name, packet.number)
                    compared += 1
    assert compared > 1000


def test_flags_ns_bit_and_odd_headers_decode_the_same() -> None:
    """Random TCP flags (NS included), data offsets, addresses and payloads around the common shape."""
    rng = random.Random(7)
    compared = 0
    for number in range(3000):
        tcp_header_words = rng.choice((5, 5, 6, 8, 15))
        payload = rng.randbytes(rng.choice((0, 0, 1, 40, 300)))
        tcp = (rng.randbytes(4) + rng.randbytes(8) + bytes([tcp_header_words << 4 | rng.randrange(2),
                                                             rng.randrange(256)]) + rng.randbytes(6)
               + bytes(4 * (tcp_header_words - 5)))
        total_length = 20 + len(tcp) + len(payload) - rng.choice((0, 0, 0, 1, 30))
        ip = (bytes([0x45, 0]) + (total_length & 0xFFFF).to_bytes(2, "big") + rng.randbytes(2)
              + rng.choice((b"\x40\x00", b"\x00\x00", b"\x20\x00")) + bytes([64, rng.choice((6, 6, 17))]) + bytes(2)
              + rng.randbytes(8))
        data = rng.randbytes(12) + b"\x08\x00" + ip + tcp + payload
        segment = _by_fields(number, number / 10, data)
        if segment is not None:
            assert segment == decode_tcp(new_raw_packet(number, number / 10, LINKTYPE_ETHERNET, data, len(data)))
            compared += 1
    assert compared > 1000
