"""Helpers for the capture tests: capture writers, frame surgery, tshark, and live loopback traffic."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wsinspect.capture import (
    CaptureFile,
    FlowClosed,
    FlowData,
    FlowGap,
    FlowItem,
    FlowOpened,
    RawPacket,
    decode_tcp,
)

# -- writing capture files -----------------------------------------------------------------------------


@dataclass
class Record:
    time: float
    data: bytes
    wire_length: int = -1  # -1: same as len(data)
    interface: int = 0

    @property
    def wire(self) -> int:
        return len(self.data) if self.wire_length < 0 else self.wire_length


def records_of(path: str | os.PathLike[str]) -> list[Record]:
    with CaptureFile(path) as capture:
        return [Record(packet.time, packet.data, packet.wire_length) for packet in capture]


def pcap_bytes(records: Iterable[Record], linktype: int, order: str = "<", nanoseconds: bool = False) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    units = 1_000_000_000 if nanoseconds else 1_000_000
    parts = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for record in records:
        seconds = int(record.time)
        fraction = round((record.time - seconds) * units)
        if fraction >= units:
            seconds, fraction = seconds + 1, fraction - units
        parts.append(struct.pack(order + "IIII", seconds, fraction, len(record.data), record.wire))
        parts.append(record.data)
    return b"".join(parts)


def _pcapng_block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def pcapng_bytes(
    records: Iterable[Record],
    interfaces: list[tuple[int, int | None]],
    order: str = "<",
    extra_blocks: bool = False,
    simple_blocks: bool = False,
) -> bytes:
    """One pcapng section. interfaces: (linktype, if_tsresol byte or None for the 10^-6 default)."""
    parts = [_pcapng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    units_per_second: list[float] = []
    for linktype, resolution in interfaces:
        options = b""
        if resolution is not None:
            options = struct.pack(order + "HH", 9, 1) + bytes([resolution]) + b"\x00\x00\x00"
            options += struct.pack(order + "HH", 0, 0)
        parts.append(_pcapng_block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + options))
        if resolution is None:
            units_per_second.append(1e6)
        elif resolution & 0x80:
            units_per_second.append(float(2 ** (resolution & 0x7F)))
        else:
            units_per_second.append(float(10**resolution))
    if extra_blocks:
        # A name resolution block and a custom block: readers must skip both.
        parts.append(_pcapng_block(order, 4, struct.pack(order + "HH", 0, 0)))
        parts.append(_pcapng_block(order, 0x00000BAD, struct.pack(order + "I", 32473) + b"custom data"))
    for record in records:
        if simple_blocks:
            parts.append(_pcapng_block(order, 3, struct.pack(order + "I", record.wire) + record.data))
            continue
        timestamp = round(record.time * units_per_second[record.interface])
        header = struct.pack(
            order + "IIIII",
            record.interface,
            timestamp >> 32,
            timestamp & 0xFFFFFFFF,
            len(record.data),
            record.wire,
        )
        parts.append(_pcapng_block(order, 6, header + record.data))
    return b"".join(parts)


# -- frame surgery --------------------------------------------------------------------------------------


def ip_of_ethernet(frame: bytes) -> bytes:
    assert frame[12:14] in (b"\x08\x00", b"\x86\xdd"), "expected an untagged IPv4/IPv6 Ethernet frame"
    return frame[14:]


def convert_ethernet(frame: bytes, linktype: int, ipv6_family: int = 30) -> bytes:
    """Re-wrap an Ethernet frame's IP packet in another link layer's header."""
    ip = ip_of_ethernet(frame)
    ipv6 = ip[0] >> 4 == 6
    ethertype = 0x86DD if ipv6 else 0x0800
    if linktype == 0:  # BSD loopback, host byte order (little-endian here)
        return struct.pack("<I", ipv6_family if ipv6 else 2) + ip
    if linktype == 108:  # OpenBSD loopback, network byte order
        return struct.pack(">I", ipv6_family if ipv6 else 2) + ip
    if linktype == 113:  # Linux cooked v1: packet type, ARPHRD, address length, address, protocol
        return struct.pack(">HHH8sH", 0, 772, 6, b"\x00" * 6, ethertype) + ip
    if linktype == 276:  # Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, addr len, addr
        return struct.pack(">HHIHBB8s", ethertype, 0, 1, 772, 0, 6, b"\x00" * 6) + ip
    if linktype in (101, 228, 229):
        return ip
    raise ValueError(linktype)


def add_vlan_tags(frame: bytes, tags: list[tuple[int, int]]) -> bytes:
    """Insert (TPID, VLAN id) tags after the MAC addresses, outermost first."""
    inserted = b"".join(struct.pack(">HH", tpid, vlan) for tpid, vlan in tags)
    return frame[:12] + inserted + frame[12:]


def _tcp_offset(frame: bytes) -> int:
    ip = 14
    if frame[ip] >> 4 == 4:
        return ip + (frame[ip] & 0x0F) * 4
    return ip + 40


def rewrite_tcp(frame: bytes, *, seq: int | None = None, ack: int | None = None, payload: bytes | None = None) -> bytes:
    """An Ethernet/IP/TCP frame with new sequence number, ack number and/or payload (lengths fixed)."""
    tcp = _tcp_offset(frame)
    header_end = tcp + (frame[tcp + 12] >> 4) * 4
    out = bytearray(frame[:header_end])
    if seq is not None:
        struct.pack_into(">I", out, tcp + 4, seq & 0xFFFFFFFF)
    if ack is not None:
        struct.pack_into(">I", out, tcp + 8, ack & 0xFFFFFFFF)
    if payload is None:
        payload = frame[header_end : header_end + len(decode_tcp(_raw(frame)).payload)]  # type: ignore[union-attr]
    if frame[14] >> 4 == 4:
        struct.pack_into(">H", out, 16, header_end - 14 + len(payload))
    else:
        struct.pack_into(">H", out, 18, header_end - 54 + len(payload))
    return bytes(out) + payload


def _raw(frame: bytes, number: int = 1) -> RawPacket:
    return RawPacket(number, 0.0, 1, frame, len(frame))


@dataclass
class SegmentInfo:
    index: int  # position in the record list
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    payload: bytes


def segments_of(records: list[Record]) -> list[SegmentInfo]:
    infos = []
    for index, record in enumerate(records):
        segment = decode_tcp(RawPacket(index + 1, record.time, 1, record.data, record.wire))
        assert segment is not None
        infos.append(
            SegmentInfo(
                index,
                (segment.src, segment.sport),
                (segment.dst, segment.dport),
                segment.seq,
                segment.ack,
                segment.flags,
                segment.payload,
            )
        )
    return infos


# -- reading results ------------------------------------------------------------------------------------

Piece = bytes | int  # delivered bytes, or the size of a gap


@dataclass
class FlowResult:
    opened: FlowOpened
    closed: FlowClosed | None = None
    pieces: dict[str, list[Piece]] = field(default_factory=lambda: {"c2s": [], "s2c": []})
    data_packets: list[int] = field(default_factory=list)
    gap_packets: list[int] = field(default_factory=list)

    def data(self, direction: str) -> bytes:
        assert all(isinstance(piece, bytes) for piece in self.pieces[direction]), self.pieces[direction]
        return b"".join(piece for piece in self.pieces[direction] if isinstance(piece, bytes))

    def gaps(self, direction: str) -> list[int]:
        return [piece for piece in self.pieces[direction] if isinstance(piece, int)]


def collect(items: Iterable[FlowItem]) -> dict[int, FlowResult]:
    """Group flow items by flow, checking the item protocol (opened first, closed last, once each)."""
    flows: dict[int, FlowResult] = {}
    for item in items:
        if isinstance(item, FlowOpened):
            assert item.flow not in flows, f"flow {item.flow} opened twice"
            assert item.flow == len(flows), "flows are numbered in order"
            flows[item.flow] = FlowResult(item)
            continue
        result = flows[item.flow]
        assert result.closed is None, f"item after flow {item.flow} closed: {item}"
        if isinstance(item, FlowClosed):
            result.closed = item
        elif isinstance(item, FlowData):
            assert item.data, "empty FlowData"
            pieces = result.pieces[item.direction]
            if pieces and isinstance(pieces[-1], bytes):
                pieces[-1] += item.data
            else:
                pieces.append(item.data)
            result.data_packets.append(item.packet)
        elif isinstance(item, FlowGap):
            assert item.missing > 0
            result.pieces[item.direction].append(item.missing)
            result.gap_packets.append(item.packet)
    assert all(result.closed is not None for result in flows.values()), "every flow is closed at the end"
    return flows


def assert_pieces_match(pieces: list[Piece], expected: bytes) -> None:
    """Delivered pieces are `expected` with some ranges replaced by gaps of the same size."""
    offset = 0
    for piece in pieces:
        if isinstance(piece, int):
            offset += piece
        else:
            assert piece == expected[offset : offset + len(piece)], f"bytes differ at offset {offset}"
            offset += len(piece)
    assert offset == len(expected), f"stream length {offset}, expected {len(expected)}"


# -- tshark ---------------------------------------------------------------------------------------------


def tshark_streams(path: str | os.PathLike[str]) -> dict[int, tuple[int, int]]:
    """frame number -> (tcp.stream, tcp.len) for every frame tshark dissects TCP in."""
    result = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            os.fspath(path),
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.len",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    frames = {}
    for line in result.stdout.splitlines():
        number, stream, length = [*line.split("\t"), "", ""][:3]
        if stream:
            frames[int(number)] = (int(stream.split(",")[0]), int(length.split(",")[0] or 0))
    return frames


def assert_tshark_agrees(path: str | os.PathLike[str], flows: dict[int, FlowResult]) -> None:
    frames = tshark_streams(path)
    streams = {stream for stream, _ in frames.values()}
    assert streams == set(flows), f"tshark streams {sorted(streams)}, ours {sorted(flows)}"
    first_frames: dict[int, int] = {}
    for number in sorted(frames):
        first_frames.setdefault(frames[number][0], number)
    for flow, result in flows.items():
        assert result.opened.packet == first_frames[flow], f"flow {flow} starts at a different frame"
        for number in result.data_packets:
            assert frames[number][0] == flow, f"frame {number}: tshark stream {frames[number][0]}, ours {flow}"


# -- live loopback traffic ------------------------------------------------------------------------------


@dataclass
class ExpectedFlow:
    name: str
    client: tuple[str, int]
    server: tuple[str, int]
    c2s: bytes
    s2c: bytes
    closed_by: str  # FlowClosed.reason we expect


def _recv_exactly(connection: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = connection.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_all(connection: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


_BIG_BUFFER = 4 * 1024 * 1024  # with room to spare, loopback sends full 64 KiB segments (65,549-byte frames)


def _listener(family: socket.AddressFamily, host: str, receive_buffer: int = 0) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM)
    if receive_buffer:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    listener.bind((host, 0))
    listener.listen(8)
    listener.settimeout(10)
    return listener


def _serve(listener: socket.socket, handler: Callable[[socket.socket], None]) -> threading.Thread:
    def run() -> None:
        connection, _ = listener.accept()
        connection.settimeout(10)
        with connection:
            handler(connection)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _connect(family: socket.AddressFamily, address: tuple[str, int], send_buffer: int = 0) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    if send_buffer:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    client.settimeout(10)
    client.connect(address)
    return client


def _endpoint(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


CHAT_CLIENT = [b"hello", bytes(range(256)) * 5, b"x" * 3000, b"\r\n\r\n"]
CHAT_SERVER = [b"welcome\n", b"y" * 1200, bytes(range(255, -1, -1)), b"bye"]
BULK_BYTES = bytes(i * 7 % 251 for i in range(300 * 1024))


def _chat(family: socket.AddressFamily, host: str, listener: socket.socket) -> ExpectedFlow:
    """Ping-pong of known messages, then the client half-closes and the server closes: FIN both ways."""

    def handler(connection: socket.socket) -> None:
        for request, reply in zip(CHAT_CLIENT, CHAT_SERVER, strict=True):
            _recv_exactly(connection, len(request))
            connection.sendall(reply)
        _recv_all(connection)

    server = _serve(listener, handler)
    with _connect(family, listener.getsockname()[:2]) as client:
        for request, reply in zip(CHAT_CLIENT, CHAT_SERVER, strict=True):
            client.sendall(request)
            _recv_exactly(client, len(reply))
        client.shutdown(socket.SHUT_WR)
        _recv_all(client)
        endpoint = _endpoint(client)
    server.join(10)
    return ExpectedFlow(
        f"chat {host}", endpoint, _endpoint(listener), b"".join(CHAT_CLIENT), b"".join(CHAT_SERVER), "FIN"
    )


def _bulk(listener: socket.socket) -> ExpectedFlow:
    """300 KB in one sendall; the server waits before reading so full 64 KiB segments build up."""

    def handler(connection: socket.socket) -> None:
        time.sleep(0.1)
        _recv_exactly(connection, len(BULK_BYTES))
        connection.sendall(b"ok")
        _recv_all(connection)

    server = _serve(listener, handler)
    with _connect(socket.AF_INET, listener.getsockname(), _BIG_BUFFER) as client:
        client.sendall(BULK_BYTES)
        _recv_exactly(client, 2)
        client.shutdown(socket.SHUT_WR)
        _recv_all(client)
        endpoint = _endpoint(client)
    server.join(10)
    return ExpectedFlow("bulk", endpoint, _endpoint(listener), BULK_BYTES, b"ok", "FIN")


def _reset(family: socket.AddressFamily, host: str, listener: socket.socket) -> ExpectedFlow:
    """The server speaks first, then aborts the connection (SO_LINGER 0): closed by RST."""
    banner, request, reply = b"220 ready\r\n", b"QUIT please" * 50, b"\x00\x01\x02 gone"

    def handler(connection: socket.socket) -> None:
        connection.sendall(banner)
        _recv_exactly(connection, len(request))
        connection.sendall(reply)
        _recv_exactly(connection, 4)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = _serve(listener, handler)
    with _connect(family, listener.getsockname()[:2]) as client:
        _recv_exactly(client, len(banner))
        client.sendall(request)
        _recv_exactly(client, len(reply))
        client.sendall(b"done")
        _recv_all(client)
        endpoint = _endpoint(client)
    server.join(10)
    return ExpectedFlow(f"reset {host}", endpoint, _endpoint(listener), request + b"done", banner + reply, "RST")


def _empty(listener: socket.socket) -> ExpectedFlow:
    """Connect and close without a byte either way."""

    def handler(connection: socket.socket) -> None:
        _recv_all(connection)

    server = _serve(listener, handler)
    with _connect(socket.AF_INET, listener.getsockname()) as client:
        client.shutdown(socket.SHUT_WR)
        _recv_all(client)
        endpoint = _endpoint(client)
    server.join(10)
    return ExpectedFlow("empty", endpoint, _endpoint(listener), b"", b"", "FIN")


def _refused(port: int) -> ExpectedFlow:
    """SYN to a port nobody listens on: the kernel answers RST."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with client:
        client.settimeout(5)
        with contextlib.suppress(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
        endpoint = _endpoint(client)
    return ExpectedFlow("refused", endpoint, ("127.0.0.1", port), b"", b"", "RST")


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def dumpcap(ports: list[int], path: Path) -> Iterator[None]:
    """Record loopback TCP traffic on `ports` into `path` (pcapng) while the block runs."""
    if shutil.which("dumpcap") is None:
        raise RuntimeError("dumpcap is not installed")
    capture_filter = " or ".join(f"tcp port {port}" for port in ports)
    process = subprocess.Popen(
        ["dumpcap", "-q", "-i", "lo", "-f", capture_filter, "-w", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        said = b""
        deadline = time.monotonic() + 15
        while b"Capturing on" not in said:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise RuntimeError(f"dumpcap did not start: {said.decode(errors='replace').strip()}")
            ready, _, _ = select.select([process.stderr], [], [], remaining)
            if ready:
                said += os.read(process.stderr.fileno(), 4096)
        time.sleep(0.2)  # the message comes as capture starts; give the socket a moment to be attached
        yield
        time.sleep(0.5)  # let the last packets reach dumpcap before it stops
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        process.stderr.close()


@dataclass
class LiveCapture:
    path: Path
    expected: list[ExpectedFlow]


def record_live_traffic(path: Path) -> list[ExpectedFlow]:
    """Run every traffic scenario on loopback under dumpcap; return what each connection carried."""
    listeners = {
        "chat4": _listener(socket.AF_INET, "127.0.0.1"),
        "bulk": _listener(socket.AF_INET, "127.0.0.1", _BIG_BUFFER),
        "reset4": _listener(socket.AF_INET, "127.0.0.1"),
        "empty": _listener(socket.AF_INET, "127.0.0.1"),
    }
    if ipv6_loopback_works():
        listeners["chat6"] = _listener(socket.AF_INET6, "::1")
        listeners["reset6"] = _listener(socket.AF_INET6, "::1")
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
        ports = [listener.getsockname()[1] for listener in listeners.values()] + [closed_port]
        expected = []
        try:
            with dumpcap(ports, path):
                expected.append(_chat(socket.AF_INET, "127.0.0.1", listeners["chat4"]))
                expected.append(_bulk(listeners["bulk"]))
                expected.append(_reset(socket.AF_INET, "127.0.0.1", listeners["reset4"]))
                expected.append(_empty(listeners["empty"]))
                expected.append(_refused(closed_port))
                if "chat6" in listeners:
                    expected.append(_chat(socket.AF_INET6, "::1", listeners["chat6"]))
                    expected.append(_reset(socket.AF_INET6, "::1", listeners["reset6"]))
        finally:
            for listener in listeners.values():
                listener.close()
    return expected
