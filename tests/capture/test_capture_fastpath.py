"""The per-packet fast path (``TcpReassembler.feed_in_order`` and the trace's loop around it) decides as the general
path (``decode_tcp`` and ``TcpReassembler.feed_into``) does, on every shape: it may only take a packet whose outcome
is the same either way, and must leave the rest untouched for the general path."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import pytest
from capture_test_support import Record, pcap_bytes, pcapng_bytes

import wsinspect.trace as trace_module
from wsinspect.capture import FlowData, FlowItem, TcpReassembler, TcpSegment
from wsinspect.capture.keylog import KeyLog
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, decode_tcp
from wsinspect.trace import CaptureTrace

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)


def _segment(number: int, time: float, sender: tuple[str, int], receiver: tuple[str, int], seq: int, ack: int,
             flags: int, payload: bytes, missing: int = 0) -> TcpSegment:
    return TcpSegment(number, time, sender[0], receiver[0], sender[1], receiver[1], seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, flags, payload, missing)


def _conversation(rng: random.Random, packets: int) -> list[TcpSegment]:
    """A connection with every kind of trouble: losses, duplicates, conflicting copies, reordering, ACKs of unseen
    bytes, cut segments, idle pauses, a port reused, and a FIN or RST at the end (or nothing)."""
    seqs = {CLIENT: rng.randrange(1 << 32), SERVER: rng.randrange(1 << 32)}
    segments: list[TcpSegment] = []
    time = 1000.0
    number = 0

    def add(sender: tuple[str, int], flags: int, payload: bytes = b"", *, seq_shift: int = 0, ack_shift: int = 0,
            missing: int = 0) -> None:
        nonlocal number
        number += 1
        receiver = SERVER if sender == CLIENT else CLIENT
        segments.append(_segment(number, time, sender, receiver, seqs[sender] + seq_shift,
                                 seqs[receiver] + ack_shift, flags, payload, missing))

    one_sided = rng.random() < 0.2  # only the client's packets are in the capture
    if rng.random() < 0.6:
        add(CLIENT, TCP_SYN)
        seqs[CLIENT] += 1
        if not one_sided:
            add(SERVER, TCP_SYN | TCP_ACK)
        seqs[SERVER] += 1
        add(CLIENT, TCP_ACK)
    elif rng.random() < 0.5:  # mid-stream, starting with a segment without ACK
        add(CLIENT, 0, b"first")
        seqs[CLIENT] += 5
    sent: list[tuple[tuple[str, int], int, bytes]] = []
    for _ in range(packets):
        time += rng.choice([0.001, 0.01, 0.5, 1.2, 2.0]) if rng.random() < 0.9 else rng.choice([299.0, 301.0])
        sender = CLIENT if one_sided or rng.random() < 0.6 else SERVER
        roll = rng.random()
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        if roll < 0.05 and sent:  # the last piece sent again, maybe with other contents
            old_sender, old_seq, old_payload = sent[-1]
            if rng.random() < 0.5:
                old_payload = old_payload[:-1] + b"?"
            add(old_sender, TCP_ACK, old_payload, seq_shift=old_seq - seqs[old_sender])
        elif roll < 0.45:
            add(sender, TCP_ACK | TCP_PSH, payload)
            sent.append((sender, seqs[sender], payload))
            seqs[sender] += len(payload)
        elif roll < 0.6:
            add(sender, TCP_ACK)
        elif roll < 0.65:  # lost
            seqs[sender] += len(payload)
        elif roll < 0.72 and sent:  # a retransmission, sometimes with other contents
            old_sender, old_seq, old_payload = rng.choice(sent)
            if rng.random() < 0.5:
                old_payload = bytes(byte ^ 0xFF for byte in old_payload)
            add(old_sender, TCP_ACK, old_payload, seq_shift=old_seq - seqs[old_sender])
        elif roll < 0.78 and len(segments) > 2:  # out of order
            add(sender, TCP_ACK | TCP_PSH, payload)
            seqs[sender] += len(payload)
            segments[-1], segments[-2] = segments[-2], segments[-1]
        elif roll < 0.82:  # acknowledges bytes not seen yet, or implausibly far ahead
            add(sender, TCP_ACK, ack_shift=rng.choice([5, 1 << 31]))
        elif roll < 0.86:  # cut at capture time
            add(sender, TCP_ACK, payload[:3], missing=len(payload) - 3)
            seqs[sender] += len(payload)
        elif roll < 0.88:  # no ACK flag
            add(sender, 0, payload)
            seqs[sender] += len(payload)
        elif roll < 0.9:  # stray, far out of the window
            add(sender, TCP_ACK, payload, seq_shift=1 << 31)
        elif roll < 0.91:  # the port reused by a new SYN
            seqs[CLIENT] = rng.randrange(1 << 32)
            add(CLIENT, TCP_SYN)
            seqs[CLIENT] += 1
        else:
            add(sender, TCP_ACK | TCP_PSH, payload)
            seqs[sender] += len(payload)
    ending = rng.random()
    if ending < 0.4:
        add(CLIENT, TCP_ACK | TCP_FIN)
        seqs[CLIENT] += 1
        add(SERVER, TCP_ACK | TCP_FIN)
        seqs[SERVER] += 1
        add(CLIENT, TCP_ACK)
        add(SERVER, TCP_ACK, b"late")
    elif ending < 0.55:
        add(rng.choice([CLIENT, SERVER]), TCP_RST | TCP_ACK)
        add(CLIENT, TCP_ACK, b"after the reset")
    elif ending < 0.7:
        add(CLIENT, TCP_ACK | TCP_FIN, b"bye")
    return segments


def _header_key(src: str, sport: int, dst: str, dport: int) -> bytes:
    """The endpoints as the IPv4 and TCP headers hold them (what the trace hands feed_in_order)."""
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def _feed_general(segments: list[TcpSegment], max_out_of_order_bytes: int) -> list[FlowItem]:
    reassembler = TcpReassembler(max_out_of_order_bytes=max_out_of_order_bytes)
    out: list[FlowItem] = []
    for segment in segments:
        reassembler.feed_into(segment, out)
    return out + reassembler.finish()


def _feed_fast_first(segments: list[TcpSegment], max_out_of_order_bytes: int) -> tuple[list[FlowItem], int]:
    """As the trace feeds: feed_in_order first; what it does not take goes to feed_into."""
    reassembler = TcpReassembler(max_out_of_order_bytes=max_out_of_order_bytes)
    out: list[FlowItem] = []
    taken = 0
    for segment in segments:
        if not segment.missing:
            sender = reassembler.feed_in_order(_header_key(segment.src, segment.sport, segment.dst, segment.dport),
                                               segment.number, segment.time, segment.seq, segment.ack,
                                               segment.flags, segment.payload)
            if sender is not None:
                taken += 1
                if segment.payload:
                    out.append(FlowData(sender.flow, segment.time, segment.number, sender.direction,
                                        segment.payload))
                continue
        reassembler.feed_into(segment, out)
    return out + reassembler.finish(), taken


@pytest.mark.parametrize("seed", range(300))
def test_feed_in_order_decides_as_feed_into(seed: int) -> None:
    rng = random.Random(seed)
    segments = _conversation(rng, rng.randrange(5, 120))
    limit = rng.choice([30, 4 * 1024 * 1024])  # (30: holes are given up early)
    fast, _ = _feed_fast_first(segments, limit)
    assert fast == _feed_general(segments, limit)


def test_feed_in_order_takes_a_good_share_of_these_segments() -> None:
    """(Else the test above would prove little.)"""
    taken = total = 0
    for seed in range(50):
        rng = random.Random(seed)
        segments = _conversation(rng, rng.randrange(5, 120))
        taken += _feed_fast_first(segments, 4 * 1024 * 1024)[1]
        total += len(segments)
    assert taken > total // 6


def test_feed_in_order_leaves_the_rest_untouched() -> None:
    """A segment it does not take has changed nothing: feeding it to feed_into afterwards gives the same."""
    reassembler = TcpReassembler()
    out: list[FlowItem] = []
    reassembler.feed_into(_segment(1, 1.0, CLIENT, SERVER, 100, 0, TCP_SYN, b""), out)
    reassembler.feed_into(_segment(2, 1.0, SERVER, CLIENT, 500, 101, TCP_SYN | TCP_ACK, b""), out)
    endpoints = _header_key(CLIENT[0], CLIENT[1], SERVER[0], SERVER[1])
    assert reassembler.feed_in_order(endpoints, 3, 1.1, 101, 501, TCP_ACK, b"x") is not None
    for number, (seq, ack, flags, payload, time) in enumerate([
        (105, 501, TCP_ACK, b"hole", 1.2),  # out of order
        (102, 510, TCP_ACK, b"", 1.2),  # acknowledges unseen bytes
        (102, 501, TCP_ACK | TCP_FIN, b"", 1.2),  # FIN
        (102, 501, TCP_ACK, b"y", 5.0),  # past the activity check
    ], start=4):
        assert reassembler.feed_in_order(endpoints, number, time, seq, ack, flags, payload) is None
    assert reassembler.feed_in_order(_header_key("10.9.9.9", 1, *SERVER), 9, 1.2, 1, 1, TCP_ACK, b"z") is None


def test_feed_in_order_forgets_a_flow_let_go() -> None:
    """With room for one flow, a second one lets the first go; the first one's next segment starts a new flow."""
    other = ("10.0.0.3", 40001)
    segments = [
        _segment(1, 1.0, CLIENT, SERVER, 100, 0, TCP_SYN, b""),
        _segment(2, 1.0, SERVER, CLIENT, 500, 101, TCP_SYN | TCP_ACK, b""),
        _segment(3, 1.0, CLIENT, SERVER, 101, 501, TCP_ACK, b"one"),
        _segment(4, 1.1, other, SERVER, 700, 0, TCP_SYN, b""),
        _segment(5, 1.1, CLIENT, SERVER, 104, 501, TCP_ACK, b"two"),
        _segment(6, 1.2, SERVER, CLIENT, 501, 107, TCP_ACK, b"three"),
    ]

    def feed(fast_first: bool) -> list[FlowItem]:
        reassembler = TcpReassembler(max_open_flows=1)
        out: list[FlowItem] = []
        for segment in segments:
            if fast_first:
                sender = reassembler.feed_in_order(
                    _header_key(segment.src, segment.sport, segment.dst, segment.dport), segment.number,
                    segment.time, segment.seq, segment.ack, segment.flags, segment.payload)
                if sender is not None:
                    out.append(FlowData(sender.flow, segment.time, segment.number, sender.direction, segment.payload))
                    continue
            reassembler.feed_into(segment, out)
        return out + reassembler.finish()

    general = feed(fast_first=False)
    assert [item.flow for item in general if isinstance(item, FlowData)] == [0, 2, 2]  # a new flow after the let-go
    assert feed(fast_first=True) == general


def _ethernet_ipv4_tcp(sender: tuple[str, int], receiver: tuple[str, int], seq: int, ack: int, flags: int,
                       payload: bytes, options: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sender[1], receiver[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (5 + len(options) // 4) << 4, flags, 65535, 0, 0) + options
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
                     socket.inet_aton(sender[0]), socket.inet_aton(receiver[0]))
    return b"\x02" * 12 + b"\x08\x00" + ip + tcp + payload


def _websocket_records(rng: random.Random) -> list[Record]:
    """A WebSocket conversation on Ethernet/IPv4/TCP, with some of the trouble of _conversation."""
    request = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    # Without a SYN, and the client on the lower port, the capture layer takes the client for the server: the trace
    # then turns the directions round (flip) once it sees who sent the request.
    flipped = rng.random() < 0.3
    client, server = (("10.0.0.1", 1000), ("10.0.0.2", 40000)) if flipped else (CLIENT, SERVER)
    seqs = {client: 1000, server: 9000}
    records: list[Record] = []
    time = 50.0

    def send(sender: tuple[str, int], flags: int, payload: bytes = b"", options: bytes = b"") -> None:
        receiver = server if sender == client else client
        records.append(Record(time, _ethernet_ipv4_tcp(sender, receiver, seqs[sender], seqs[receiver], flags,
                                                       payload, options)))
        seqs[sender] += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)

    if not flipped:
        send(client, TCP_SYN)
        send(server, TCP_SYN | TCP_ACK)
        send(client, TCP_ACK)
    send(client, TCP_ACK | TCP_PSH, request)
    send(server, TCP_ACK | TCP_PSH, response)
    for _ in range(rng.randrange(10, 60)):
        time += rng.choice([0.01, 0.3, 1.5])
        size = rng.randrange(0, 30)
        if rng.random() < 0.5:
            frame = bytes([0x81, 0x80 | size]) + b"\x01\x02\x03\x04" + bytes(rng.randrange(256) for _ in range(size))
            sender = client
        else:
            frame = bytes([0x82, size]) + bytes(rng.randrange(256) for _ in range(size))
            sender = server
        roll = rng.random()
        if roll < 0.1:  # lost
            seqs[sender] += len(frame)
        elif roll < 0.2:  # TCP options (timestamps): another shape
            send(sender, TCP_ACK | TCP_PSH, frame, options=b"\x01\x01\x08\x0a" + bytes(8))
        elif roll < 0.3 and len(records) > 6:  # out of order
            send(sender, TCP_ACK | TCP_PSH, frame)
            records[-1], records[-2] = records[-2], records[-1]
        elif roll < 0.35:  # retransmitted, maybe with other contents
            send(sender, TCP_ACK | TCP_PSH, frame)
            seqs[sender] -= len(frame)
            send(sender, TCP_ACK | TCP_PSH, frame if rng.random() < 0.5 else bytes(len(frame)))
        else:
            send(sender, TCP_ACK | TCP_PSH, frame)
        if rng.random() < 0.3:
            send(client if sender == server else server, TCP_ACK)
    send(client, TCP_ACK | TCP_FIN)
    send(server, TCP_ACK | TCP_FIN)
    send(client, TCP_ACK)
    return records


def _events(path: Path, monkeypatch: pytest.MonkeyPatch, *, fast: bool, **options: object) -> tuple[list[str], int]:
    """The trace's events (as text) and how many packets went through decode_tcp."""
    decoded = 0

    def counting_decode_tcp(packet: object) -> object:
        nonlocal decoded
        decoded += 1
        return decode_tcp(packet)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(trace_module, "decode_tcp", counting_decode_tcp)
        if not fast:
            patch.setattr(trace_module, "LINKTYPE_ETHERNET", -1)  # no packet is of the fast path's shape
        trace = CaptureTrace(path, **options)  # type: ignore[arg-type]
        events = [repr(event) for event in trace]
        events.append(repr(trace.stats))
    return events, decoded


SHIPPED = sorted(CAPTURES.glob("*.pcapng")) + sorted((CAPTURES / "tls").glob("*.pcapng"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_trace_fast_path_decides_as_the_general_path_on_the_shipped_captures(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = path.with_name(path.name + ".keys")
    options: dict[str, object] = {"keylog": KeyLog.read(keys)} if keys.exists() else {}
    if path.name.startswith("midstream"):
        options["server_ports"] = (47070,)
    fast, fast_decoded = _events(path, monkeypatch, fast=True, **options)
    general, general_decoded = _events(path, monkeypatch, fast=False, **options)
    assert fast == general
    assert fast_decoded <= general_decoded


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("container", ["pcapng", "pcap"])
def test_trace_fast_path_decides_as_the_general_path_on_troubled_conversations(
        seed: int, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    records = _websocket_records(rng)
    path = tmp_path / f"c.{container}"
    path.write_bytes(pcapng_bytes(records, [(1, None)]) if container == "pcapng" else pcap_bytes(records, 1))
    options = {"idle_timeout": rng.choice([1.0, 300.0]), "max_open_flows": 1}
    fast, fast_decoded = _events(path, monkeypatch, fast=True, **options)
    general, general_decoded = _events(path, monkeypatch, fast=False, **options)
    assert fast == general
    assert any("Frame" in event for event in fast)
    assert fast_decoded < general_decoded  # the fast path took some packets
