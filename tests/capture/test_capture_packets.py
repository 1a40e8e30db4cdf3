"""decode_tcp: link layers, IP options and extension headers, fragments, cut records, ICMP quotes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from capture_test_support import Record, assert_tshark_agrees, collect, pcap_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from wsinspect.capture import RawPacket, TcpSegment, decode_tcp, read_flows
from wsinspect.capture.packets import TCP_ACK, TCP_PSH, TCP_SYN

TCP_OPTIONS = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 2))]


def raw(packet: Packet | bytes, linktype: int = 1, wire_length: int | None = None) -> RawPacket:
    data = bytes(packet)
    return RawPacket(7, 1.5, linktype, data, len(data) if wire_length is None else wire_length)


def decoded(packet: Packet | bytes, linktype: int = 1) -> TcpSegment:
    segment = decode_tcp(raw(packet, linktype))
    assert segment is not None
    return segment


def test_ipv4_options_and_tcp_options() -> None:
    packet = (
        Ether()
        / IP(src="192.0.2.1", dst="198.51.100.2", options=[IPOption_RR(routers=["1.2.3.4"])])
        / TCP(sport=1234, dport=80, seq=4_000_000_000, ack=17, flags="PA", options=TCP_OPTIONS)
        / b"payload"
    )
    segment = decoded(packet)
    assert (segment.src, segment.dst, segment.sport, segment.dport) == ("192.0.2.1", "198.51.100.2", 1234, 80)
    assert (segment.seq, segment.ack, segment.flags) == (4_000_000_000, 17, TCP_PSH | TCP_ACK)
    assert (segment.payload, segment.missing, segment.icmp_error) == (b"payload", 0, False)
    assert (segment.number, segment.time) == (7, 1.5)


def test_ipv6_extension_headers_are_skipped() -> None:
    packet = (
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0)
        / IPv6ExtHdrDestOpt()
        / TCP(sport=5555, dport=443, flags="S", options=TCP_OPTIONS)
    )
    segment = decoded(packet)
    assert (segment.src, segment.dst, segment.sport, segment.dport) == ("2001:db8::1", "2001:db8::2", 5555, 443)
    assert segment.flags == TCP_SYN and segment.payload == b""


def test_ethernet_padding_is_not_payload() -> None:
    packet = Ether() / IP() / TCP(flags="A") / b"ab"
    padded = bytes(packet) + b"\x00" * (60 - len(bytes(packet)))
    assert decoded(padded).payload == b"ab"


def test_ns_flag() -> None:
    packet = bytearray(bytes(Ether() / IP() / TCP(flags="A")))
    packet[14 + 20 + 12] |= 1
    assert decoded(bytes(packet)).flags == 0x100 | TCP_ACK


@pytest.mark.parametrize(
    "packet",
    [
        Ether() / IP(flags="MF") / TCP(),
        Ether() / IP(frag=100) / Raw(b"x" * 20),
        Ether() / IPv6() / IPv6ExtHdrFragment() / TCP(),
        Ether() / IP() / UDP() / b"hi",
        Ether() / ARP(),
        Ether() / IP() / ICMP(type=8) / b"ping",
        Ether() / IP(ihl=4) / TCP(),
        Ether() / IP() / TCP(dataofs=4),
        b"",
        b"\x00" * 13,
    ],
    ids=["mf", "offset", "v6-fragment", "udp", "arp", "echo", "bad-ihl", "bad-dataofs", "empty", "short"],
)
def test_not_a_usable_tcp_segment(packet: Packet | bytes) -> None:
    assert decode_tcp(raw(packet)) is None


def test_dont_fragment_is_not_a_fragment() -> None:
    assert decoded(Ether() / IP(flags="DF") / TCP()).sport == 20


def test_tso_zero_total_length_runs_to_the_end_of_the_record() -> None:
    packet = bytearray(bytes(Ether() / IP() / TCP(flags="PA") / (b"z" * 3000)))
    packet[16:18] = b"\x00\x00"
    assert decoded(bytes(packet)).payload == b"z" * 3000


def test_every_cut_of_a_record_decodes_or_is_skipped() -> None:
    packet = bytes(Ether() / IP() / TCP(flags="PA", options=TCP_OPTIONS) / (b"d" * 100))
    header = 14 + 20 + 20
    for length in range(len(packet) + 1):
        segment = decode_tcp(RawPacket(1, 0.0, 1, packet[:length], len(packet)))
        if length < header - 6:  # the ports, sequence numbers and flags are needed
            assert segment is None
            continue
        assert segment is not None
        assert len(segment.payload) + segment.missing == 100
        assert segment.payload == b"d" * len(segment.payload)


@pytest.mark.parametrize(
    ("linktype", "header"),
    [
        (0, struct.pack("<I", 2)),
        (0, struct.pack(">I", 2)),
        (108, struct.pack(">I", 2)),
        (108, struct.pack("<I", 2)),
        (113, struct.pack(">HHH8sH", 0, 772, 0, b"", 0x0800)),
        (276, struct.pack(">HHIHBB8s", 0x0800, 0, 1, 772, 0, 0, b"")),
        (101, b""),
        (228, b""),
        (12, b""),
    ],
)
def test_link_layers_ipv4(linktype: int, header: bytes) -> None:
    ip: Packet = IP(src="1.1.1.1")
    segment = decoded(header + bytes(ip / TCP() / b"x"), linktype)  # type: ignore[operator]  # scapy stubs
    assert (segment.src, segment.payload) == ("1.1.1.1", b"x")


@pytest.mark.parametrize("family", [24, 28, 30])
def test_bsd_loopback_ipv6_families(family: int) -> None:
    for header in (struct.pack("<I", family), struct.pack(">I", family)):
        for linktype in (0, 108):
            ip: Packet = IPv6(src="::1")
            segment = decoded(header + bytes(ip / TCP() / b"x"), linktype)  # type: ignore[operator]  # scapy stubs
            assert segment.src == "::1"
    assert decode_tcp(raw(struct.pack("<I", 10) + bytes(IPv6() / TCP()), 0)) is None  # not a BSD family
    assert decoded(bytes(IPv6() / TCP()), 229).payload == b""


def test_vlan_stacks_and_unknown_link_types() -> None:
    tagged = Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="9.9.9.9") / TCP()
    assert decoded(tagged).src == "9.9.9.9"
    assert decode_tcp(raw(bytes(IP() / TCP()), linktype=147)) is None


def test_icmp_error_quoting_a_tcp_header() -> None:
    quoted = IP(src="10.0.0.1", dst="10.0.0.9") / TCP(sport=7, dport=81, flags="S", seq=99)
    packet = Ether() / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP(type=3, code=3) / quoted
    segment = decoded(packet)
    assert (segment.src, segment.sport, segment.dst, segment.dport) == ("10.0.0.1", 7, "10.0.0.9", 81)
    assert (segment.icmp_error, segment.payload, segment.flags, segment.seq) == (True, b"", TCP_SYN, 99)
    short_quote = Ether() / IP() / ICMP(type=3) / bytes(quoted)[:28]  # only 8 bytes of TCP
    assert decode_tcp(raw(short_quote)) is None
    six = Ether() / IPv6(src="2001:db8::3") / ICMPv6DestUnreach() / IPv6(src="2001:db8::1") / TCP(sport=9)
    assert decoded(six).src == "2001:db8::1" and decoded(six).icmp_error


def test_ip_in_ip() -> None:
    outer: Packet = Ether() / IP(src="1.0.0.1")
    packet = outer / IP(src="2.0.0.2") / TCP() / b"inner"
    assert (decoded(packet).src, decoded(packet).payload) == ("2.0.0.2", b"inner")
    packet6 = Ether() / IP(src="1.0.0.1") / IPv6(src="2001:db8::7") / TCP()
    assert decoded(packet6).src == "2001:db8::7"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276, 9999]))
def test_random_bytes_never_raise(data: bytes, linktype: int) -> None:
    decode_tcp(RawPacket(1, 0.0, linktype, data, len(data) + 5))


def test_tshark_counts_the_same_connections(tmp_path: Path) -> None:
    """A mix of encapsulations and odd packets: our flow numbers are tshark's tcp.stream."""
    a, b = "10.1.0.1", "10.1.0.2"
    packets: list[Packet] = [
        Ether() / IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="S", seq=10),
        Ether() / IP(src=b, dst=a) / TCP(sport=80, dport=1000, flags="SA", seq=50, ack=11),
        Ether()
        / IP(src="10.0.0.3", dst=a)
        / ICMP(type=3, code=4)
        / IP(src=a, dst="10.9.9.9")
        / TCP(sport=1001, dport=81, flags="S", seq=5),  # new connection
        Ether() / IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="PA", seq=11, ack=51) / b"hello",
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=2000, dport=443, flags="PA", seq=1, ack=1)
        / b"six",
        Ether() / Dot1Q(vlan=3) / IP(src=a, dst=b, options=[IPOption_RR()]) / TCP(sport=1002, dport=80, flags="A"),
        Ether() / IP(src=a, dst=b) / UDP(sport=1003, dport=53),
        Ether() / IP(src=b, dst=a) / TCP(sport=80, dport=1000, flags="PA", seq=51, ack=16) / b"world",
        Ether()
        / IP(src="10.0.0.3", dst=a)
        / ICMP(type=3, code=4)
        / IP(src=a, dst=b)
        / TCP(sport=1000, dport=80, flags="PA", seq=11, ack=51),  # existing one
        Ether() / IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="S", seq=777),  # port reuse
        Ether() / IP(src=a, dst="1.2.3.4") / IP(src="5.6.7.8", dst="9.9.9.9") / TCP(sport=1, dport=2, flags="S"),
    ]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_bytes([Record(float(i), bytes(packet)) for i, packet in enumerate(packets)], 1))
    flows = collect(read_flows(path))
    assert len(flows) == 6
    assert flows[0].data("c2s") == b"hello" and flows[0].data("s2c") == b"world"
    assert_tshark_agrees(path, flows)
