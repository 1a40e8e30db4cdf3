"""Link layer + IPv4/IPv6 + TCP header decoding: RawPacket in, TcpSegment (or None) out."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from wsinspect.capture.fastbuild import frozen_builder
from wsinspect.capture.files import MAX_RECORD_BYTES, RawPacket

__all__ = [
    "TCP_ACK",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "TcpSegment",
    "decode_tcp",
    "describe_linktype",
    "ethernet_ipv4_segment",
    "is_decoded_linktype",
]

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """The parts of one TCP segment that stream reassembly needs."""

    number: int  # frame number of the packet that carried it
    time: float
    src: str  # IP address as text, v4 or v6
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int  # TCP_* bits (NS is 0x100)
    payload: bytes  # the captured payload
    missing: int = 0  # payload bytes that were on the wire after `payload` but cut at capture time
    icmp_error: bool = False  # header quoted inside an ICMP error: names a connection, carries no data


_new_segment = frozen_builder(TcpSegment)

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW is 12 on most systems and 14 on OpenBSD; some writers store the DLT instead of LINKTYPE_RAW.
_RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})
# Every link type decode_tcp reads; the records of any other are skipped (they never hold a TCP segment for it).
DECODED_LINKTYPES = frozenset({LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
                               LINKTYPE_LINUX_SLL2, *_RAW_IP_LINKTYPES})
DECODED_LINKTYPES_TEXT = "Ethernet, Linux cooked (SLL/SLL2), raw IP, loopback/null"
# Names (as tcpdump.org/linktypes.html gives them) of the link types a capture not read here is most likely in.
_LINKTYPE_NAMES = {
    6: "IEEE 802.5 Token Ring", 9: "PPP", 10: "FDDI", 50: "PPP in HDLC framing", 104: "Cisco HDLC",
    105: "IEEE 802.11", 107: "Frame Relay", 119: "802.11 with Prism header", 127: "802.11 with radiotap header",
    163: "802.11 with AVS header", 169: "GPRS LLC", 187: "Bluetooth HCI H4",
    189: "Linux USB", 192: "802.11 with PPI header", 195: "IEEE 802.15.4", 201: "Bluetooth HCI H4 with direction",
    215: "IEEE 802.15.4 without FCS", 220: "Linux USB, memory-mapped", 227: "SocketCAN",
    249: "USBPcap", 251: "Bluetooth LE link layer", 252: "Wireshark upper PDU", 253: "Linux netlink",
    254: "Bluetooth Linux monitor", 256: "Bluetooth LE link layer with pseudo-header",
}


def is_decoded_linktype(linktype: int) -> bool:
    return linktype in DECODED_LINKTYPES


def describe_linktype(linktype: int) -> str:
    """``link type 105 (IEEE 802.11)``: the number as pcap stores it, and a name where it is a known one."""
    name = _LINKTYPE_NAMES.get(linktype)
    return f"link type {linktype} ({name})" if name else f"link type {linktype}"

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad (QinQ), old QinQ
# Address families in BSD loopback headers: AF_INET is 2 everywhere, AF_INET6 differs per BSD.
_NULL_FAMILY_VERSION = {2: 4, 24: 6, 28: 6, 30: 6}

_PROTO_IPV4_IN_IP = 4
_PROTO_TCP = 6
_PROTO_IPV6_IN_IP = 41
_PROTO_ICMP = 1
_PROTO_ICMPV6 = 58
_IPV6_SKIPPED_HEADERS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_IP_NESTING = 8  # IP-in-IP tunnels decoded around a TCP segment (real ones nest once or twice)
# unreachable, source quench, redirect, time exceeded, parameter problem
_ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
_ICMPV6_ERROR_TYPES = frozenset({1, 2, 3, 4})  # unreachable, too big, time exceeded, parameter problem

_IPV4_HEADER = struct.Struct("!BxH2xHxB2xII")  # version/IHL, total length, flags/fragment, protocol, src, dst
_IPV6_HEADER = struct.Struct("!4xHB1x16s16s")  # payload length, next header, src, dst
_TCP_HEADER = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags
_unpack_ipv4 = _IPV4_HEADER.unpack_from
_unpack_ipv6 = _IPV6_HEADER.unpack_from
_unpack_tcp = _TCP_HEADER.unpack_from
# The shape of nearly every packet in a capture: Ethernet, IPv4 without options (IHL 5), TCP. One unpack from the
# start of the record gives the EtherType, the IPv4 fields above and the TCP fields above.
_ETHERNET_IPV4_TCP = struct.Struct("!12xH" "BxH2xHxB2xII" "HHIIBB")
_unpack_ethernet_ipv4_tcp = _ETHERNET_IPV4_TCP.unpack_from
_ETHERNET_IPV4_TCP_SIZE = _ETHERNET_IPV4_TCP.size
# The same shape for the trace's per-packet fast path, which takes it straight from the reader's buffer: the
# addresses and ports as the 12 bytes that hold them (TcpReassembler.feed_in_order's header_key), not as numbers.
ETHERNET_IPV4_TCP_ENDPOINTS = struct.Struct("!12xH" "BxH2xHxB2x12s" "IIBB")

# The 12 bytes of ETHERNET_IPV4_TCP_ENDPOINTS that name the endpoints, as numbers.
_ENDPOINT_NUMBERS = struct.Struct("!IIHH")
_unpack_endpoint_numbers = _ENDPOINT_NUMBERS.unpack

# Address to text is ~150 ns per call; a capture has few distinct addresses, so remember them.
_ADDRESS_CACHE_LIMIT = 65536
_ipv4_text: dict[int, str] = {}
_ipv6_text: dict[bytes, str] = {}


def _ipv4_address(address: int) -> str:
    text = _ipv4_text.get(address)
    if text is None:
        if len(_ipv4_text) >= _ADDRESS_CACHE_LIMIT:
            _ipv4_text.clear()
        text = _ipv4_text[address] = socket.inet_ntop(socket.AF_INET, address.to_bytes(4, "big"))
    return text


def _ipv6_address(address: bytes) -> str:
    text = _ipv6_text.get(address)
    if text is None:
        if len(_ipv6_text) >= _ADDRESS_CACHE_LIMIT:
            _ipv6_text.clear()
        text = _ipv6_text[address] = socket.inet_ntop(socket.AF_INET6, address)
    return text


def decode_tcp(packet: RawPacket) -> TcpSegment | None:
    """The TCP segment in `packet`, or None if it holds none (other protocols, IP fragments, damage)."""
    data = packet.data
    linktype = packet.linktype
    if linktype == LINKTYPE_ETHERNET and len(data) >= _ETHERNET_IPV4_TCP_SIZE:
        # Fast path for the common shape; anything it does not take (VLAN tags, IPv6, IP options, fragments, a zero
        # IP total length, a header longer than the IP packet) goes the general way below, which decides the same.
        (ethertype, version_and_length, total_length, fragment, protocol, src_number, dst_number,
         sport, dport, seq, ack, data_offset, flag_bits) = _unpack_ethernet_ipv4_tcp(data)
        payload_start = 34 + (data_offset >> 4) * 4  # 14 (Ethernet) + 20 (IPv4) + the TCP header
        ip_end = 14 + total_length
        if (
            ethertype == _ETHERTYPE_IPV4
            and version_and_length == 0x45
            and protocol == _PROTO_TCP
            and not fragment & 0x3FFF
            and data_offset >= 0x50
            and payload_start <= ip_end
        ):
            payload = data[payload_start:ip_end]
            return _new_segment(
                packet.number,
                packet.time,
                _ipv4_text.get(src_number) or _ipv4_address(src_number),
                _ipv4_text.get(dst_number) or _ipv4_address(dst_number),
                sport,
                dport,
                seq,
                ack,
                flag_bits | ((data_offset & 1) << 8),
                payload,
                ip_end - payload_start - len(payload),
                False,
            )
    try:
        if linktype == LINKTYPE_ETHERNET:
            ethertype = (data[12] << 8) | data[13]
            offset = 14
        elif linktype == LINKTYPE_LINUX_SLL:
            ethertype = (data[14] << 8) | data[15]
            offset = 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            ethertype = (data[0] << 8) | data[1]
            offset = 20
        elif linktype in _RAW_IP_LINKTYPES:
            return _decode_ip(packet, data, 0, data[0] >> 4, False)
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            # The family is in the capturing host's byte order (NULL) or big-endian (LOOP), but
            # writers get this wrong often enough that either order is accepted for both.
            family = data[0] | data[3] if data[1] == 0 and data[2] == 0 else -1
            version = _NULL_FAMILY_VERSION.get(family)
            if version is None:
                return None
            return _decode_ip(packet, data, 4, version, False)
        else:
            return None
        while ethertype in _VLAN_ETHERTYPES:
            ethertype = (data[offset + 2] << 8) | data[offset + 3]
            offset += 4
        if ethertype == _ETHERTYPE_IPV4:
            return _decode_ip(packet, data, offset, 4, False)
        if ethertype == _ETHERTYPE_IPV6:
            return _decode_ip(packet, data, offset, 6, False)
        return None
    except (IndexError, struct.error):
        # A record cut before the end of a header: nothing usable in it.
        return None


def ethernet_ipv4_segment(number: int, time: float, endpoints: bytes, seq: int, ack: int, flags: int,
                          payload: bytes) -> TcpSegment:
    """What decode_tcp gives for a record its fast path takes whole (nothing cut: the IPv4 packet ends within the
    record), from the fields ETHERNET_IPV4_TCP_ENDPOINTS unpacked from it: ``endpoints`` its 12 bytes naming the
    addresses and ports, ``flags`` the TCP flags with NS (the data offset byte's low bit) as 0x100, ``payload`` the
    TCP payload. For the trace, whose fast path has unpacked the record already: no RawPacket, no second unpack."""
    src_number, dst_number, sport, dport = _unpack_endpoint_numbers(endpoints)
    return _new_segment(
        number,
        time,
        _ipv4_text.get(src_number) or _ipv4_address(src_number),
        _ipv4_text.get(dst_number) or _ipv4_address(dst_number),
        sport,
        dport,
        seq,
        ack,
        flags,
        payload,
        0,
        False,
    )


def _decode_ip(
    packet: RawPacket, data: bytes, offset: int, version: int, quoted: bool, depth: int = 0
) -> TcpSegment | None:
    """Decode the IP packet at `offset`; `quoted` means it is the copy inside an ICMP error.

    `depth` counts the IP headers around this one (IP in IP); past _MAX_IP_NESTING the packet is not decoded.
    """
    if data[offset] >> 4 != version:
        return None
    # Where the IP packet ends on the wire, as an offset into `data` (may be past its end when cut).
    # (Bounded: a record's wire length is any 32-bit number; no real packet is cut by more than a record holds.)
    cut_bytes = min(packet.wire_length - len(data), MAX_RECORD_BYTES) if packet.wire_length > len(data) else 0
    if version == 4:
        version_and_length, total_length, fragment, protocol, src_number, dst_number = _unpack_ipv4(data, offset)
        header_length = (version_and_length & 0x0F) * 4
        if header_length < 20 or (fragment & 0x3FFF and not quoted):
            return None  # bogus header, or a fragment (the offset or More Fragments set)
        # A zero total length is what TSO captures show: the packet then ends where the record does.
        ip_end = offset + total_length if total_length else len(data) + cut_bytes
        if ip_end < offset + header_length:
            return None
        transport = offset + header_length
        if protocol != _PROTO_TCP:
            return None if quoted else _decode_carried(packet, data, transport, protocol, depth)
        src = _ipv4_text.get(src_number) or _ipv4_address(src_number)
        dst = _ipv4_text.get(dst_number) or _ipv4_address(dst_number)
    else:
        payload_length, protocol, src_bytes, dst_bytes = _unpack_ipv6(data, offset)
        transport = offset + 40
        # Zero means a jumbogram (length in a hop-by-hop option) or TSO: use the record's length.
        ip_end = transport + payload_length if payload_length else len(data) + cut_bytes
        while protocol in _IPV6_SKIPPED_HEADERS:
            protocol = data[transport]
            transport += (data[transport + 1] + 1) * 8
        if protocol == _IPV6_FRAGMENT and not quoted:
            return None
        if transport > ip_end:
            return None
        if protocol != _PROTO_TCP:
            return None if quoted else _decode_carried(packet, data, transport, protocol, depth)
        src = _ipv6_text.get(src_bytes) or _ipv6_address(src_bytes)
        dst = _ipv6_text.get(dst_bytes) or _ipv6_address(dst_bytes)
    sport, dport, seq, ack, data_offset, flag_bits = _unpack_tcp(data, transport)
    header_length = (data_offset >> 4) * 4
    if header_length < 20:
        return None
    payload_start = transport + header_length
    if quoted:
        # Wireshark only dissects (and so counts) a quoted header that is there in full.
        if transport + 20 > len(data):
            return None
        return _new_segment(packet.number, packet.time, src, dst, sport, dport, seq, ack, flag_bits, b"", 0, True)
    if payload_start > ip_end:
        return None
    # When the record was cut inside the TCP options, the payload is all missing; its length is
    # still known from the IP header, so the stream keeps its place.
    payload = data[payload_start:ip_end]
    missing = ip_end - payload_start - len(payload)
    return _new_segment(
        packet.number,
        packet.time,
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flag_bits | ((data_offset & 1) << 8),
        payload,
        missing,
        False,
    )


def _decode_carried(packet: RawPacket, data: bytes, offset: int, protocol: int, depth: int) -> TcpSegment | None:
    """TCP inside what an IP packet carries other than TCP: an ICMP error's quote, or IP in IP."""
    if protocol in (_PROTO_ICMP, _PROTO_ICMPV6):
        return _decode_icmp_error(packet, data, offset, protocol)
    if depth >= _MAX_IP_NESTING:
        return None  # a hostile record can nest thousands of IP headers: each level is a Python call
    if protocol == _PROTO_IPV4_IN_IP:
        return _decode_ip(packet, data, offset, 4, False, depth + 1)
    if protocol == _PROTO_IPV6_IN_IP:
        return _decode_ip(packet, data, offset, 6, False, depth + 1)
    return None


def _decode_icmp_error(packet: RawPacket, data: bytes, offset: int, protocol: int) -> TcpSegment | None:
    """The TCP header quoted in an ICMP error, so the connection it names is counted like Wireshark does."""
    icmp_type = data[offset]
    if protocol == _PROTO_ICMP:
        if icmp_type not in _ICMP_ERROR_TYPES:
            return None
        quoted_version = 4
    else:
        if icmp_type not in _ICMPV6_ERROR_TYPES:
            return None
        quoted_version = 6
    # The quoted packet starts after the 8-byte ICMP header.
    return _decode_ip(packet, data, offset + 8, quoted_version, True)
