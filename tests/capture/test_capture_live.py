"""Real loopback traffic recorded by dumpcap: reassembled streams must be exactly the bytes sent,
in every link-layer wrapping, with flow numbers equal to tshark's tcp.stream."""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from capture_test_support import (
    LiveCapture,
    Record,
    add_vlan_tags,
    assert_tshark_agrees,
    collect,
    convert_ethernet,
    pcap_bytes,
    pcapng_bytes,
    records_of,
)

from wsinspect.capture import CaptureFile, read_flows
from wsinspect.capture import live as sniffer


def assert_streams_as_sent(path: Path, live: LiveCapture) -> None:
    flows = collect(read_flows(path))
    assert len(flows) == len(live.expected)
    for number, expected in enumerate(live.expected):
        flow = flows[number]
        assert (flow.opened.client, flow.opened.server) == (expected.client, expected.server), expected.name
        assert flow.opened.client_reason == "SYN"
        assert not flow.opened.mid_stream
        assert flow.data("c2s") == expected.c2s, expected.name
        assert flow.data("s2c") == expected.s2c, expected.name
        assert flow.closed is not None and flow.closed.reason == expected.closed_by, expected.name
    assert_tshark_agrees(path, flows)


def test_dumpcap_capture_reassembles_to_the_bytes_sent(live: LiveCapture) -> None:
    with CaptureFile(live.path) as capture:
        assert capture.format == "pcapng"
        linktypes = {packet.linktype for packet in capture}
        assert capture.position == capture.size and not capture.truncated
    assert linktypes == {1}
    assert_streams_as_sent(live.path, live)


def test_records_over_65535_bytes_come_through_whole(live: LiveCapture) -> None:
    records = records_of(live.path)
    largest = max(records, key=lambda record: len(record.data))
    # A 65,535-byte IP packet plus the Ethernet header; scapy's raw readers would cut this to 65,535.
    assert len(largest.data) > 65535
    assert all(len(record.data) == record.wire for record in records)


LINK_CONVERSIONS = {
    "null-bsd-af24": (0, 24),
    "null-freebsd-af28": (0, 28),
    "null-darwin-af30": (0, 30),
    "loop": (108, 24),
    "linux-sll": (113, 0),
    "linux-sll2": (276, 0),
    "raw-ip": (101, 0),
}


@pytest.mark.parametrize("name", sorted(LINK_CONVERSIONS))
def test_other_link_types_give_the_same_streams(name: str, live: LiveCapture, tmp_path: Path) -> None:
    linktype, ipv6_family = LINK_CONVERSIONS[name]
    records = [
        Record(record.time, convert_ethernet(record.data, linktype, ipv6_family)) for record in records_of(live.path)
    ]
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(pcap_bytes(records, linktype))
    assert_streams_as_sent(path, live)


def test_vlan_tagged_ethernet_gives_the_same_streams(live: LiveCapture, tmp_path: Path) -> None:
    records = []
    for index, record in enumerate(records_of(live.path)):
        # Alternate single 802.1Q tags and QinQ (802.1ad outer, 802.1Q inner) stacks.
        tags = [(0x8100, 42)] if index % 2 else [(0x88A8, 7), (0x8100, 42)]
        records.append(Record(record.time, add_vlan_tags(record.data, tags)))
    path = tmp_path / "vlan.pcap"
    path.write_bytes(pcap_bytes(records, 1))
    assert_streams_as_sent(path, live)


def test_pcapng_with_ipv4_and_ipv6_interfaces(live: LiveCapture, tmp_path: Path) -> None:
    """Raw IPv4 (228) on one interface and raw IPv6 (229) on another, with different time resolutions."""
    records = []
    for record in records_of(live.path):
        ip = convert_ethernet(record.data, 101)
        records.append(Record(record.time, ip, interface=0 if ip[0] >> 4 == 4 else 1))
    path = tmp_path / "two-interfaces.pcapng"
    path.write_bytes(pcapng_bytes(records, [(228, 9), (229, 0x80 | 20)]))
    with CaptureFile(path) as capture:
        packets = list(capture)
    assert {packet.linktype for packet in packets} == {228, 229}
    for packet, record in zip(packets, records, strict=True):
        assert packet.time == pytest.approx(record.time, abs=2e-6)  # 2^-20 s resolution on interface 1
    assert_streams_as_sent(path, live)


@pytest.mark.parametrize(("order", "nanoseconds"), [("<", True), (">", False), (">", True)])
def test_pcap_byte_orders_and_nanosecond_magic(
    order: str, nanoseconds: bool, live: LiveCapture, tmp_path: Path
) -> None:
    records = records_of(live.path)
    path = tmp_path / "converted.pcap"
    path.write_bytes(pcap_bytes(records, 1, order, nanoseconds))
    with CaptureFile(path) as capture:
        packets = list(capture)
    assert [packet.data for packet in packets] == [record.data for record in records]
    for packet, record in zip(packets, records, strict=True):
        assert packet.time == pytest.approx(record.time, abs=1e-6)
    assert_streams_as_sent(path, live)


def test_big_endian_pcapng_with_two_sections(live: LiveCapture, tmp_path: Path) -> None:
    """Interface numbering restarts per section; the second section is big-endian."""
    records = records_of(live.path)
    half = len(records) // 2
    path = tmp_path / "sections.pcapng"
    path.write_bytes(
        pcapng_bytes(records[:half], [(1, 9)], "<", extra_blocks=True)
        + pcapng_bytes(records[half:], [(1, None)], ">", extra_blocks=True)
    )
    with CaptureFile(path) as capture:
        assert [packet.data for packet in capture] == [record.data for record in records]
        assert not capture.truncated
    assert_streams_as_sent(path, live)


# ---------------------------------------------------------------------------------------------------------------
# wsinspect.capture.live.LiveCapture itself, on lo (root only): its receive ring, read in blocks


needs_capture = pytest.mark.skipif(not (sys.platform == "linux" and os.geteuid() == 0),
                                   reason="capturing needs root on Linux (CAP_NET_RAW)")


def _loopback_exchanges(port: int, rounds: int, size: int) -> None:
    """On 127.0.0.1:port, ``rounds`` times: the client sends ``size`` bytes, the server sends them back (each its own
    TCP segment, since each waits for the other); then both sides close."""
    with socket.create_server(("127.0.0.1", port)) as server:
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        with client, accepted:
            for side in (client, accepted):
                side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                side.settimeout(10)
            for _ in range(rounds):
                client.sendall(b"x" * size)
                _receive(accepted, size)
                accepted.sendall(b"y" * size)
                _receive(client, size)


def _receive(side: socket.socket, size: int) -> None:
    received = 0
    while received < size:
        received += len(side.recv(size - received))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _capture_while(live_capture: Any, traffic: Callable[[], None]) -> list[Any]:
    """Every packet the capture gets while ``traffic`` runs in a thread (and up to 1 s after it ends)."""
    thread = threading.Thread(target=traffic)
    thread.start()
    stop_at: list[float] = []

    def stop_once_idle() -> None:
        if not thread.is_alive():
            stop_at.append(time.monotonic())
            live_capture.stop()

    live_capture.before_waiting = stop_once_idle
    with live_capture:
        packets = list(live_capture)
    thread.join(timeout=30)
    return packets


@needs_capture
def test_packets_go_round_the_ring_in_order_each_loopback_packet_once() -> None:
    port = _free_port()
    live_capture = sniffer.LiveCapture("lo", capture_filter=f"tcp port {port}", duration=30, buffer_mib=1)
    rounds, size = 3000, 200  # 6,000 segments: 1.6 MB, more than a ring of 8 blocks of 128 KiB holds
    packets = _capture_while(live_capture, lambda: _loopback_exchanges(port, rounds, size))
    assert live_capture.dropped == 0
    assert sum(len(packet.data) for packet in packets) > 8 * sniffer.RING_BLOCK_BYTES
    assert [packet.number for packet in packets] == list(range(1, len(packets) + 1))
    assert all(earlier.time <= later.time for earlier, later in itertools.pairwise(packets))
    assert abs(packets[0].time - time.time()) < 60  # the kernel's wall-clock stamp, in seconds
    assert all(len(packet.data) == packet.wire_length for packet in packets)
    # Ethernet 14 + IPv4 20 + TCP 32 (with timestamps): each segment once, lo's leaving copies not kept.
    assert [len(packet.data) - 66 for packet in packets].count(size) == 2 * rounds


@needs_capture
def test_a_loopback_packet_over_64_kib_is_kept_whole() -> None:
    port = _free_port()
    live_capture = sniffer.LiveCapture("lo", capture_filter=f"tcp port {port}", duration=30)
    packets = _capture_while(live_capture, lambda: _loopback_exchanges(port, 2, 200_000))
    largest = max(packets, key=lambda packet: packet.wire_length)
    assert largest.wire_length > 65535
    assert len(largest.data) == largest.wire_length


@needs_capture
def test_a_lone_packet_is_handed_over_without_waiting_for_its_block_to_fill() -> None:
    port = _free_port()
    live_capture = sniffer.LiveCapture("lo", capture_filter=f"tcp port {port}", count=1, duration=10)
    with socket.create_server(("127.0.0.1", port)), live_capture:
        sent = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)):
            packets = list(live_capture)  # the SYN
        waited = time.monotonic() - sent
    assert len(packets) == 1
    assert waited < 20 * sniffer.BLOCK_TIMEOUT_MS / 1000  # 0.4 s: the block timeout, with room for a loaded machine


@needs_capture
def test_record_batches_give_a_block_of_packets_at_a_time_and_stop_at_the_count() -> None:
    port = _free_port()
    live_capture = sniffer.LiveCapture("lo", capture_filter=f"tcp port {port}", count=500, duration=30)
    thread = threading.Thread(target=_loopback_exchanges, args=(port, 1000, 100))
    thread.start()
    with live_capture:
        batches = list(live_capture.record_batches())
    thread.join(timeout=30)
    records = [record for batch in batches for record in batch]
    assert [number for number, *_ in records] == list(range(1, 501))  # -c 500, though blocks end elsewhere
    assert len(batches) < len(records)  # a list per block, not per packet
    for number, stamp, linktype, buffer, start, end, wire_length in records:
        assert linktype == 1 and end - start == wire_length and abs(stamp - time.time()) < 60, number
        assert buffer[start + 12:start + 14] == b"\x08\x00"  # an Ethernet header's IPv4 type: the slice is a packet
    assert live_capture.packets == 500
