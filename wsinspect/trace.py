"""From a capture file to WebSocket events: finds the conversations and feeds each one's bytes to the core.

A TCP stream becomes a WebSocket conversation when its first bytes are an HTTP request asking for an upgrade (on any
port), when a plain HTTP request is answered as a WebSocket endpoint answers one (426 Upgrade Required, or an
``Upgrade: websocket`` header: a proxy dropped the hop-by-hop headers), or when it runs on a port the user named with
``--port`` (Wireshark's "Decode As"): then, if it does not start with a handshake, decoding starts mid-connection.
A stream that starts with a TLS record (wss://) is decrypted when the key log (``--keylog``, or the capture's
Decryption Secrets Blocks) holds its session's secrets: ``capture.tls.TlsDecryptor`` turns its records into each
direction's plaintext, which goes to a Connection as a plain stream's bytes would, with ``capture.tls-decrypted`` and
``capture.tls-undecryptable`` notices for what TLS itself says. Without its secrets it is a conversation nobody can
see into: it yields ConnectionOpened, one ``capture.tls`` Notice naming its client random and saying what the
ClientHello shows in clear (TLS versions offered, server name, ALPN), and ConnectionClosed; it is never decoded as
WebSocket, ``--port`` or not. A stream that starts with the HTTP/2 connection preface (cleartext with prior
knowledge), or a decrypted one whose ALPN is h2, goes to a ``core.http2.Http2Connection``, which finds the WebSocket
of an RFC 8441 extended CONNECT in it and gives the conversation's events itself. Other streams (plain
HTTP, anything else) are counted and skipped. Streams are numbered as Wireshark numbers them (``tcp.stream``), so
``--stream N`` means the same thing in both.

Every connection of a trace shares one ``MemoryBudget`` for the bytes its unfinished messages hold.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from itertools import chain
from types import TracebackType
from typing import Protocol

from wsinspect.capture.fastbuild import frozen_builder
from wsinspect.capture.files import CaptureFile, RawPacket, Record, new_raw_packet
from wsinspect.capture.keylog import KeyLog, SessionSecrets
from wsinspect.capture.packets import (
    ETHERNET_IPV4_TCP_ENDPOINTS,
    LINKTYPE_ETHERNET,
    TcpSegment,
    decode_tcp,
    ethernet_ipv4_segment,
)
from wsinspect.capture.reassembly import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OPEN_FLOWS,
    FlowClosed,
    FlowData,
    FlowGap,
    FlowItem,
    FlowNotice,
    FlowOpened,
    TcpReassembler,
)
from wsinspect.capture.tls import Plaintext, TlsDecryptor, client_random_of
from wsinspect.core.checks import CHECKS
from wsinspect.core.connection import (
    DEFAULT_MEMORY_BUDGET,
    HEAD_LET_GO_FROM,
    Connection,
    Limits,
    MemoryBudget,
    Phase,
)
from wsinspect.core.construct import fast_constructor
from wsinspect.core.events import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Event,
    HandshakeRequest,
    HandshakeResponse,
    Notice,
    other,
)
from wsinspect.core.fields import is_known_opcode
from wsinspect.core.handshake import (
    HttpRequest,
    HttpResponse,
    find_header_end,
    looks_like_http_request,
    parse_request,
    parse_response,
)
from wsinspect.core.http2 import PREFACE, Http2Connection

# The bytes of a stream not decided yet, as the reassembler would give them: positional (see capture.fastbuild).
_new_flow_data = frozen_builder(FlowData)
# Once per conversation: positional (every field, in the order core.events declares them; see core.construct).
_new_connection_opened = fast_constructor(ConnectionOpened)
_SNIFF_BYTES = 64 * 1024  # how much of a stream's start is held while deciding whether it is an upgrade request
ONE_SIDED = "capture.one-sided"  # the reassembler's notice that one direction is not in the capture
_MAX_TLS_RECORD = 2**14 + 2048  # RFC 8446 5.2: the largest TLSCiphertext fragment


def looks_like_tls(data: bytes) -> bool:
    """Does a byte stream start with a TLS record header (RFC 8446 5.1)?

    Content type 20-23 (change_cipher_spec, alert, handshake, application_data), then legacy version 3.x. No
    WebSocket stream starts so: as a frame's first byte, 0x14-0x17 has RSV3 set (RFC 6455 5.2); nor does HTTP.
    """
    return len(data) >= 3 and 20 <= data[0] <= 23 and data[1] == 3 and data[2] <= 4


_TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def _printable(raw: bytes) -> str:
    """Wire text for a message: printable ASCII kept, every other byte escaped (no control byte reaches a view)."""
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def describe_client_hello(data: bytes) -> str:
    """What a ClientHello says in clear (RFC 8446 4.1.2): TLS versions offered, server name, ALPN. Never raises.

    ``data`` is the start of the client's byte stream. Only the first record is read, every length is checked
    against what is there, and anything that does not parse ends the reading with what was found so far.
    """
    if len(data) < 9 or data[0] != 22 or data[5] != 1:
        return "No ClientHello at the start of the stream (the capture began after the TLS handshake)."
    record_end = min(len(data), 5 + (data[3] << 8 | data[4]))
    found: dict[str, str] = {}
    versions: list[int] = []
    pos = 9  # record header (5), handshake type (1) and length (3)

    def take(size: int) -> bytes | None:
        nonlocal pos
        if pos + size > record_end:
            return None
        chunk = data[pos : pos + size]
        pos += size
        return chunk

    def take_sized(length_bytes: int) -> bytes | None:
        length = take(length_bytes)
        return take(int.from_bytes(length, "big")) if length is not None else None

    legacy = take(2)
    if legacy is not None:
        versions = [int.from_bytes(legacy, "big")]
    if take(32) is not None and take_sized(1) is not None and take_sized(2) is not None and \
            take_sized(1) is not None:
        extensions = take_sized(2) or b""
        at = 0
        while at + 4 <= len(extensions):
            kind = int.from_bytes(extensions[at : at + 2], "big")
            body = extensions[at + 4 : at + 4 + int.from_bytes(extensions[at + 2 : at + 4], "big")]
            at += 4 + len(body)
            if kind == 0 and len(body) >= 5 and body[2] == 0:  # server_name, host_name (RFC 6066 3)
                found["server name (SNI)"] = _printable(body[5 : 5 + int.from_bytes(body[3:5], "big")])
            elif kind == 16 and len(body) >= 2:  # ALPN (RFC 7301 3.1)
                names, index = [], 2
                while index < len(body):
                    size = body[index]
                    names.append(_printable(body[index + 1 : index + 1 + size]))
                    index += 1 + size
                found["ALPN"] = ", ".join(names)
            elif kind == 43 and body:  # supported_versions (RFC 8446 4.2.1): these replace the legacy field
                listed = body[1 : 1 + body[0]]
                versions = [int.from_bytes(listed[i : i + 2], "big") for i in range(0, len(listed) - 1, 2)]
    known = [_TLS_VERSIONS[v] for v in versions if v in _TLS_VERSIONS]  # GREASE values (RFC 8701) left out
    parts = [f"offers {' and '.join(known)}" if known else "offers no known TLS version"]
    parts += [f"{name} {value}" for name, value in found.items()]
    return f"The ClientHello {', '.join(parts)}."


@dataclass(slots=True)
class _Flow:
    opened: FlowOpened
    flip: bool = False  # the capture layer guessed the client wrong: the GET came from the other side
    connection: Connection | Http2Connection | None = None
    head: bytearray = field(default_factory=bytearray)  # start of the stream while deciding
    held: list[tuple[Direction, bytes, float, int]] = field(default_factory=list)
    held_bytes: int = 0
    charged: int = 0  # bytes of ``held`` and ``head`` counted in the trace's memory budget
    # Capture notices that arrived before the stream was decided: passed on after its ConnectionOpened.
    notices: list[FlowNotice] = field(default_factory=list)
    skipped: bool = False
    tls_hello: bytearray | None = None  # a TLS stream: the start of the client's bytes, until the ClientHello is in
    tls_reported: bool = False
    tls: TlsDecryptor | None = None  # a TLS stream whose secrets are known: decrypted into tls_connection
    tls_connection: Connection | Http2Connection | None = None
    tls_plaintext_seen: bool = False  # until then, an ALPN of h2 makes tls_connection an Http2Connection
    # A plain HTTP/1.1 stream that may still carry an upgrade on the same connection (keep-alive, RFC 9112 9.3):
    # decoded unseen until a request asks for a WebSocket; only the events of its latest exchange are kept.
    probe: Connection | None = None
    probe_events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class TraceStats:
    packets: int = 0
    tcp_streams: int = 0
    skipped_streams: int = 0
    port_hints: list[str] = field(default_factory=list)  # for skipped streams that look like WebSocket frames
    truncated: bool = False
    problem: str | None = None  # why the file stopped early, in one line


class PacketSource(Protocol):
    """Where a trace's packets come from: a capture file (``CaptureFile``) or a live sniffer (``capture.live``).

    Iterating yields the records in order; ``size``/``position`` tell progress (0 when unknown), ``truncated`` and
    ``problem`` why the records stopped early, ``tls_key_logs`` the key logs found on the way (the trace takes them).
    """

    size: int
    position: int
    truncated: bool
    problem: str | None
    tls_key_logs: list[bytes]

    def __iter__(self) -> Iterator[RawPacket]: ...

    def record_batches(self) -> Iterator[list[Record]]:
        """The records as (number, time, linktype, buffer, start, end, wire length), in batches: a file's as read,
        a live sniffer's one ring block at a time."""
        ...

    def __enter__(self) -> PacketSource: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None: ...


class CaptureTrace:
    """Iterate over a capture's WebSocket events. ``position``/``size`` tell progress while iterating."""

    def __init__(self, source: str | os.PathLike[str] | PacketSource, *, server_ports: Collection[int] = (),
                 streams: Collection[int] | None = None, limits: Limits | None = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, keylog: KeyLog | None = None) -> None:
        # A file name is opened here (CaptureError, with a one-line reason, if it is no capture).
        self.capture: PacketSource = CaptureFile(source) if isinstance(source, (str, os.PathLike)) else source
        # TLS secrets: the --keylog file's, joined by those of the capture's Decryption Secrets Blocks as they come.
        self.keylog = keylog
        self.server_ports = frozenset(server_ports)
        self.streams = frozenset(streams) if streams is not None else None
        self.limits = limits or Limits()
        # Bytes the unfinished messages of all conversations may hold together (see core.connection.MemoryBudget).
        self.budget = MemoryBudget(memory_budget)
        self.max_open_flows = max_open_flows  # TCP conversations open at once before the least active is let go
        self.idle_timeout = idle_timeout  # seconds of capture time without a packet before a conversation is let go
        self.stats = TraceStats()
        self._flows: dict[int, _Flow] = {}
        # Made anew by each iteration; the streams it skips are told to it (TcpReassembler.forget_recent).
        self._reassembler = TcpReassembler(server_ports=self.server_ports, max_open_flows=max_open_flows,
                                           idle_timeout=idle_timeout)

    @property
    def size(self) -> int:
        return self.capture.size

    @property
    def position(self) -> int:
        return self.capture.position

    def __iter__(self) -> Iterator[Event]:
        reassembler = self._reassembler = TcpReassembler(server_ports=self.server_ports,
                                                         max_open_flows=self.max_open_flows,
                                                         idle_timeout=self.idle_timeout)
        feed_in_order = reassembler.feed_in_order
        feed_into = reassembler.feed_into
        unpack_common_shape = ETHERNET_IPV4_TCP_ENDPOINTS.unpack_from
        common_shape_size = ETHERNET_IPV4_TCP_ENDPOINTS.size
        stats = self.stats
        items: list[FlowItem] = []
        flows = self._flows
        with self.capture as capture:
            for number, time, linktype, buffer, start, end, wire_length in chain.from_iterable(
                    capture.record_batches()):
                if linktype == LINKTYPE_ETHERNET and end - start >= common_shape_size:
                    # The fast path, for nearly every packet of a WebSocket conversation: Ethernet, IPv4 without
                    # options, TCP, whole, taken by the reassembler's in-order case (feed_in_order), its payload
                    # handed on with no RawPacket, TcpSegment or FlowData made. Any other packet (another shape, a
                    # connection not yet open, a SYN/FIN/RST, data out of order...) goes the general way below, from
                    # scratch: nothing has been changed for it, and the general way decides the same.
                    (ethertype, version_and_length, total_length, fragment, protocol, endpoints, seq, ack,
                     data_offset, flags) = unpack_common_shape(buffer, start)
                    payload_start = start + 34 + (data_offset >> 4) * 4  # 14 (Ethernet) + 20 (IPv4) + TCP header
                    ip_end = start + 14 + total_length
                    if (
                        ethertype == 0x0800
                        and version_and_length == 0x45
                        and protocol == 6
                        and not fragment & 0x3FFF
                        and data_offset >= 0x50
                        and payload_start <= ip_end <= end
                    ):
                        payload = buffer[payload_start:ip_end]
                        sender = feed_in_order(endpoints, number, time, seq, ack, flags, payload)
                        if sender is not None:
                            if payload:
                                flow = flows.get(sender.flow)
                                if flow is not None:
                                    connection = flow.connection
                                    if connection is not None:
                                        direction = sender.direction if not flow.flip else other(sender.direction)
                                        yield from connection.receive(direction, payload, time=time, packet=number)
                                    elif not flow.skipped:
                                        yield from self._flow_item(_new_flow_data(
                                            sender.flow, time, number, sender.direction, payload))
                            stats.packets = number
                            continue
                        # A SYN, a FIN, a flow not open... the general way, with the segment decode_tcp would give.
                        segment: TcpSegment | None = ethernet_ipv4_segment(
                            number, time, endpoints, seq, ack, flags | (data_offset & 1) << 8, payload)
                    else:
                        segment = decode_tcp(new_raw_packet(number, time, linktype, buffer[start:end], wire_length))
                else:
                    segment = decode_tcp(new_raw_packet(number, time, linktype, buffer[start:end], wire_length))
                if segment is None:
                    continue
                feed_into(segment, items)
                if items:
                    for item in items:
                        if type(item) is FlowData:  # the hot path: bytes for a conversation already decoding
                            flow = flows.get(item.flow)
                            if flow is not None and flow.connection is not None:
                                direction = item.direction if not flow.flip else other(item.direction)
                                yield from flow.connection.receive(direction, item.data, time=item.time,
                                                                   packet=item.packet)
                                continue
                        yield from self._flow_item(item)
                    items.clear()
                stats.packets = number
            for item in reassembler.finish():
                yield from self._flow_item(item)
            stats.truncated = capture.truncated
            stats.problem = capture.problem

    def _flow_item(self, item: FlowItem) -> Iterator[Event]:
        if isinstance(item, FlowOpened):
            self.stats.tcp_streams += 1
            if self.streams is None or item.flow in self.streams:
                self._flows[item.flow] = _Flow(item)
            return
        flow = self._flows.get(item.flow)
        if flow is None:
            return
        if isinstance(item, FlowClosed):
            yield from self._closed(flow, item)
            return
        if flow.skipped:
            return
        if isinstance(item, FlowNotice):
            if item.check == ONE_SIDED and flow.connection is None and not flow.tls_reported and \
                    self._only_the_server_answering(flow):
                yield from self._start(flow, mid_stream=False)  # a 101 with no request captured: still WebSocket
            if flow.connection is not None or flow.tls_reported:
                if isinstance(flow.connection, Http2Connection):  # it may not have shown its conversation yet
                    yield from flow.connection.announce(time=item.time, packet=item.packet)
                yield self._notice(flow, item)
                yield from self._one_sided(flow, item)
            else:
                flow.notices.append(item)  # the stream is not decided yet: after its ConnectionOpened, if any
            return
        direction: Direction = item.direction
        if flow.flip:
            direction = "s2c" if direction == "c2s" else "c2s"
        if flow.tls_hello is not None:
            yield from self._tls_data(flow, item, direction)
            return
        connection = flow.connection
        if connection is not None:
            if isinstance(item, FlowData):
                yield from connection.receive(direction, item.data, time=item.time, packet=item.packet)
            else:
                yield from connection.gap(direction, item.missing, time=item.time, packet=item.packet)
            return
        if flow.probe is not None:
            if isinstance(item, FlowData):
                yield from self._probed(flow, flow.probe.receive(direction, item.data, time=item.time,
                                                                 packet=item.packet))
            else:
                self._skip(flow)  # a plain HTTP stream with bytes missing: no upgrade can be found in it for sure
            return
        if isinstance(item, FlowGap):
            if self._is_decode_as(flow):
                yield from self._start(flow, mid_stream=True)
                assert flow.connection is not None
                yield from flow.connection.gap(direction, item.missing, time=item.time, packet=item.packet)
            else:
                self._skip(flow)
            return
        if not flow.held and looks_like_tls(item.data):
            if direction == "s2c" and item.data[0] == 22 and item.data[5:6] == b"\x01":
                flow.flip = True  # the ClientHello came from the side the capture layer took for the server
                direction = "c2s"
            flow.tls_hello = bytearray()
            yield from self._tls_data(flow, item, direction)
            return
        flow.held.append((direction, item.data, item.time, item.packet))
        flow.held_bytes += len(item.data)
        if not flow.head and direction == "s2c" and not self._is_decode_as(flow) and \
                looks_like_http_request(item.data):
            # The capture layer had no SYN to go by and guessed the client wrong.
            flow.flip = True
            flow.held = [("c2s" if d == "s2c" else "s2c", b, t, p) for d, b, t, p in flow.held]
            direction = "c2s"
        if direction == "c2s":
            flow.head += item.data[: _SNIFF_BYTES - len(flow.head)]
        # What an undecided stream holds counts in the memory budget; past it, the stream is decided on what is in.
        over_budget = self._charge_held(flow) and bool(flow.head)
        yield from self._decide(flow, final=over_budget)
        if over_budget:  # its bytes were let go (or the stream skipped): the reassembler's copy need not stay
            self._reassembler.forget_recent(flow.opened.flow)

    def _charge_held(self, flow: _Flow) -> bool:
        """Count what ``flow`` holds while undecided in the budget; True when past it, holding enough to let go."""
        budget = self.budget
        held = flow.held_bytes + len(flow.head)
        if held != flow.charged:
            budget.take(held - flow.charged)
            flow.charged = held
        return budget.held > budget.limit and held >= HEAD_LET_GO_FROM

    def _closed(self, flow: _Flow, item: FlowClosed) -> Iterator[Event]:
        del self._flows[item.flow]
        if flow.tls_hello is not None:
            if not flow.tls_reported:
                yield from self._report_tls(flow, item.time, item.packet)
            if flow.tls_connection is not None:
                yield from flow.tls_connection.end(time=item.time, packet=item.packet, reason=item.reason)
                return
            yield ConnectionClosed(stream=item.flow, direction="c2s", time=item.time, packet=item.packet,
                                   reason=item.reason, clean=False)
            return
        if flow.probe is not None:
            self._skip(flow)  # plain HTTP to its end: no request on it asked for a WebSocket
        if flow.connection is None and not flow.skipped and (flow.head or flow.held):
            yield from self._decide(flow, final=True)
        if flow.connection is not None:
            yield from flow.connection.end(time=item.time, packet=item.packet, reason=item.reason)

    def _one_sided(self, flow: _Flow, item: FlowNotice) -> Iterator[Event]:
        """After a ``capture.one-sided`` notice: the connection stops waiting for the side that is not there."""
        connection = flow.connection or flow.tls_connection
        if item.check == ONE_SIDED and connection is not None:
            missing = other(item.direction) if flow.flip else item.direction
            yield from connection.direction_missing(missing, time=item.time, packet=item.packet)

    @staticmethod
    def _only_the_server_answering(flow: _Flow) -> bool:
        """Nothing from the client side yet, and the server's first bytes are an HTTP 101 (an upgrade answered)."""
        if flow.head:
            return False
        first = next((data for direction, data, _, _ in flow.held if direction == "s2c"), b"")
        return first.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101"))

    def _notice(self, flow: _Flow, item: FlowNotice) -> Notice:
        """A fact about the capture, not the peers: passed on as it is, whatever state the stream is in."""
        direction = other(item.direction) if flow.flip else item.direction
        return Notice(stream=item.flow, direction=direction, time=item.time, packet=item.packet,
                      check=CHECKS[item.check], message=item.message)

    def _tls_data(self, flow: _Flow, item: FlowData | FlowGap, direction: Direction) -> Iterator[Event]:
        """A TLS stream: keep the client's first bytes until its first record (the ClientHello) is complete."""
        hello = flow.tls_hello
        assert hello is not None
        if flow.tls is not None:
            yield from self._tls_decrypt(flow, item, direction)
            return
        if flow.tls_reported:
            return
        if isinstance(item, FlowGap):
            if direction == "c2s":
                yield from self._report_tls(flow, item.time, item.packet)  # the rest of the hello was not captured
            return
        if direction != "c2s":
            return
        hello += item.data[: _MAX_TLS_RECORD + 5 - len(hello)]
        if len(hello) >= 5 and len(hello) >= min(5 + (hello[3] << 8 | hello[4]), _MAX_TLS_RECORD + 5):
            yield from self._report_tls(flow, item.time, item.packet)

    def _report_tls(self, flow: _Flow, time: float, packet: int) -> Iterator[Event]:
        assert flow.tls_hello is not None
        flow.tls_reported = True
        yield self._opened(flow, mid_stream=flow.opened.mid_stream)
        hello = bytes(flow.tls_hello)
        flow.tls_hello = bytearray()  # nothing more is held: a TLS stream is decrypted as it comes, or not read
        client_random = client_random_of(hello)
        secrets = self._tls_secrets(client_random) if client_random is not None else None
        if secrets is not None:
            flow.tls = TlsDecryptor(self._tls_secrets)
            flow.tls_connection = Connection(flow.opened.flow, mid_stream=False, limits=self.limits,
                                             budget=self.budget)
            yield from self._release_notices(flow)
            yield from self._tls_decrypt(flow, FlowData(flow=flow.opened.flow, time=time, packet=packet,
                                                          direction="c2s", data=hello), "c2s")
            return
        if client_random is None:
            which = "no key for this session (its ClientHello was not captured)"
        else:
            where = f" in the key log ({len(self.keylog)} sessions)" if self.keylog is not None else ""
            which = f"no key for this session (client random {client_random.hex()}){where}"
        wanted = "the key log its client wrote" if self.keylog is not None else "--keylog FILE"
        yield Notice(stream=flow.opened.flow, direction="c2s", time=time, packet=packet, check=CHECKS["capture.tls"],
                     message=f"TLS; {which}: the session keys are needed to see inside ({wanted}). "
                             f"{describe_client_hello(hello)}")
        yield from self._release_notices(flow)

    def _tls_secrets(self, client_random: bytes) -> SessionSecrets | None:
        """The key log's secrets for a session, after taking in the Decryption Secrets Blocks read so far."""
        blocks = self.capture.tls_key_logs
        if blocks:
            if self.keylog is None:
                self.keylog = KeyLog()
            for text in blocks:
                self.keylog.add_text(text, source="the capture's Decryption Secrets Block, ")
            blocks.clear()
        return self.keylog.secrets_for(client_random) if self.keylog is not None else None

    def _tls_decrypt(self, flow: _Flow, item: FlowData | FlowGap, direction: Direction) -> Iterator[Event]:
        """A TLS stream with its secrets: records in, plaintext to the connection, TLS's own facts as notices."""
        decryptor, connection = flow.tls, flow.tls_connection
        assert decryptor is not None and connection is not None
        time, packet = item.time, item.packet
        outputs = decryptor.receive(direction, item.data) if isinstance(item, FlowData) else \
            decryptor.gap(direction, item.missing)
        for output in outputs:
            if isinstance(output, Plaintext):
                if not flow.tls_plaintext_seen:
                    flow.tls_plaintext_seen = True
                    if decryptor.alpn == "h2":  # RFC 7301: the server chose HTTP/2 (RFC 9113 3.2)
                        connection = flow.tls_connection = Http2Connection(
                            self._opened(flow, mid_stream=False), announced=True, limits=self.limits,
                            budget=self.budget)
                yield from connection.receive(output.direction, output.data, time=time, packet=packet)
            else:
                check = CHECKS["capture.tls-undecryptable" if output.stopped else "capture.tls-decrypted"]
                yield Notice(stream=flow.opened.flow, direction=output.direction, time=time, packet=packet,
                             check=check, message=output.message)

    def _release_notices(self, flow: _Flow) -> Iterator[Event]:
        notices, flow.notices = flow.notices, []
        for notice in notices:
            yield self._notice(flow, notice)

    def _is_decode_as(self, flow: _Flow) -> bool:
        return flow.opened.server[1] in self.server_ports

    def _decide(self, flow: _Flow, *, final: bool) -> Iterator[Event]:
        """Is this stream a WebSocket conversation? Decide as soon as the first request (and, for a request that
        does not ask for a WebSocket, the first response) is in."""
        head = bytes(flow.head)
        if head and PREFACE.startswith(head[: len(PREFACE)]):  # HTTP/2 with prior knowledge (RFC 9113 3.3)
            if len(head) >= len(PREFACE):
                yield from self._start_h2(flow)
            elif final or flow.held_bytes >= _SNIFF_BYTES:  # the rest of the preface never came
                self._skip(flow)
            return
        if head and looks_like_http_request(head):
            end = find_header_end(head)
            if end < 0 and not final and len(head) < _SNIFF_BYTES:
                return  # wait for the whole request header block
            request = parse_request(head[:end] if end >= 0 else head)
            if _asks_for_websocket(request) or self._is_decode_as(flow):
                yield from self._start(flow, mid_stream=False)
                return
            answered_as_websocket = self._answered_as_websocket(flow, final)
            if answered_as_websocket:
                yield from self._start(flow, mid_stream=False)
            elif answered_as_websocket is not None:
                if final:
                    self._skip(flow)
                else:
                    yield from self._start_probe(flow)
        elif self._is_decode_as(flow):
            yield from self._start(flow, mid_stream=True)
        elif self._only_the_server_answering(flow) and flow.held_bytes < _SNIFF_BYTES:
            # The server's 101 with no request (yet): wait for the request, or for the reassembler to say the
            # client's side is not in the capture at all; at the end, it is a conversation of the server alone.
            if final:
                yield from self._start(flow, mid_stream=False)
                assert flow.connection is not None
                yield from flow.connection.direction_missing("c2s", time=flow.opened.time)
        elif head or final or flow.held_bytes >= 16:
            self._skip(flow)

    def _answered_as_websocket(self, flow: _Flow, final: bool) -> bool | None:
        """Did the server answer a plain HTTP request as a WebSocket endpoint does? None: not known yet.

        A WebSocket server that receives a request without Upgrade (a proxy dropped the hop-by-hop headers)
        answers 426 Upgrade Required, with ``Upgrade: websocket`` (RFC 9110 15.5.22); the request alone cannot say.
        """
        answer = bytearray()
        for direction, data, _, _ in flow.held:
            if direction == "s2c":
                answer += data[: _SNIFF_BYTES - len(answer)]
        end = find_header_end(answer)
        if end < 0 and not final and len(answer) < _SNIFF_BYTES and flow.held_bytes < _SNIFF_BYTES:
            return None
        if not answer.startswith(b"HTTP/"):
            return False
        return _answers_as_websocket(parse_response(bytes(answer[:end] if end >= 0 else answer)))

    def _start_probe(self, flow: _Flow) -> Iterator[Event]:
        """A plain HTTP exchange: keep reading the connection, unseen, for a later request asking for a WebSocket."""
        probe = flow.probe = Connection(flow.opened.flow, limits=self.limits, budget=self.budget)
        held, flow.held, flow.head, flow.held_bytes = flow.held, [], bytearray(), 0
        self._charge_held(flow)
        for direction, data, data_time, data_packet in held:
            events = probe.receive(direction, data, time=data_time, packet=data_packet)
            if flow.probe is not None:
                yield from self._probed(flow, events)
            elif flow.connection is probe:  # decided by what came before: shown as it comes
                yield from events
            else:
                break  # skipped

    def _probed(self, flow: _Flow, events: list[Event]) -> Iterator[Event]:
        """Events of a plain HTTP stream read unseen: shown from the exchange before a request for a WebSocket
        (or an answer as a WebSocket endpoint gives) on; the stream is skipped once no request can follow."""
        probe = flow.probe
        assert probe is not None
        for index, event in enumerate(events):
            if (isinstance(event, HandshakeRequest) and _asks_for_websocket(event.request)) or \
                    (isinstance(event, HandshakeResponse) and _answers_as_websocket(event.response)):
                flow.connection, flow.probe = probe, None
                yield self._opened(flow, mid_stream=False)
                yield from self._release_notices(flow)
                shown, flow.probe_events = flow.probe_events, []
                yield from shown
                yield from events[index:]
                return
            if isinstance(event, HandshakeRequest):
                flow.probe_events.clear()  # a new exchange: only the latest one before the upgrade is shown
            flow.probe_events.append(event)
        if probe.phase is Phase.REFUSED:
            self._skip(flow)

    def _start(self, flow: _Flow, *, mid_stream: bool) -> Iterator[Event]:
        opened = flow.opened
        connection = flow.connection = Connection(opened.flow, mid_stream=mid_stream, limits=self.limits,
                                                  budget=self.budget)
        yield self._opened(flow, mid_stream=mid_stream)
        notices = flow.notices
        if notices:
            notices = list(notices)
            yield from self._release_notices(flow)
        held, flow.held, flow.head, flow.held_bytes = flow.held, [], bytearray(), 0
        self._charge_held(flow)
        for direction, data, data_time, data_packet in held:
            yield from connection.receive(direction, data, time=data_time, packet=data_packet)
        for notice in notices:
            yield from self._one_sided(flow, notice)

    def _start_h2(self, flow: _Flow) -> Iterator[Event]:
        """An HTTP/2 connection: it announces the conversation itself, when a WebSocket (or a problem) shows."""
        connection = flow.connection = Http2Connection(self._opened(flow, mid_stream=False), limits=self.limits,
                                                       budget=self.budget)
        notices = list(flow.notices)
        if notices:  # facts about the capture are shown whether or not a WebSocket turns up
            yield from connection.announce(time=flow.opened.time, packet=flow.opened.packet)
            yield from self._release_notices(flow)
        held, flow.held, flow.head, flow.held_bytes = flow.held, [], bytearray(), 0
        self._charge_held(flow)
        for direction, data, data_time, data_packet in held:
            yield from connection.receive(direction, data, time=data_time, packet=data_packet)
        for notice in notices:
            yield from self._one_sided(flow, notice)

    def _opened(self, flow: _Flow, *, mid_stream: bool) -> ConnectionOpened:
        opened = flow.opened
        if flow.flip:
            return _new_connection_opened(opened.flow, "c2s", opened.time, opened.packet, opened.server,
                                          opened.client, "it sent the HTTP upgrade request", mid_stream)
        return _new_connection_opened(opened.flow, "c2s", opened.time, opened.packet, opened.client, opened.server,
                                      opened.client_reason, mid_stream)

    def _skip(self, flow: _Flow) -> None:
        hint = self._port_hint(flow)
        if hint:
            self.stats.port_hints.append(hint)
        flow.skipped = True
        self._reassembler.forget_recent(flow.opened.flow)
        if flow.probe is not None:
            flow.probe.end(time=flow.opened.time)  # what it held goes back to the budget
            flow.probe = None
        flow.probe_events.clear()
        flow.held.clear()
        flow.head.clear()
        flow.held_bytes = 0
        self._charge_held(flow)
        flow.notices.clear()  # facts about a stream nobody will be shown
        self.stats.skipped_streams += 1

    @staticmethod
    def _port_hint(flow: _Flow) -> str | None:
        """For a stream that started before the capture: does it look like WebSocket, and which side serves?

        Only a client masks its frames (RFC 6455 5.1), so the side whose first bytes look like a masked frame
        header is the client, and the other side's port is the one to name with --port.
        """
        if not flow.opened.mid_stream:
            return None
        for direction, data, _, _ in flow.held:
            if len(data) >= 2 and is_known_opcode(data[0] & 0x0F) and not data[0] & 0x30:
                client_side = (data[1] & 0x80) != 0
                opened = flow.opened
                sender, receiver = (opened.client, opened.server) if direction == "c2s" else (opened.server,
                                                                                             opened.client)
                server = receiver if client_side else sender
                return (f"stream {opened.flow} ({sender[0]}:{sender[1]} ↔ {receiver[0]}:{receiver[1]}) started "
                        f"before the capture and looks like WebSocket: try --port {server[1]}")
        return None


def _asks_for_websocket(request: HttpRequest) -> bool:
    """An upgrade request, or one whose hop-by-hop Upgrade a proxy dropped (its Sec-WebSocket-* fields remain)."""
    headers = request.headers
    return "upgrade" in headers or any(name.lower().startswith("sec-websocket-") for name, _ in headers)


def _answers_as_websocket(response: HttpResponse) -> bool:
    """A WebSocket endpoint's answer (RFC 9110 15.5.22: 426 Upgrade Required, naming websocket)."""
    return response.status in (101, 426) or "websocket" in response.headers.tokens("Upgrade")
