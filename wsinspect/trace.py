"""From a capture file to WebSocket events: finds the conversations and feeds each one's bytes to the core.

A TCP stream becomes a WebSocket conversation when its first bytes are an HTTP request asking for an upgrade (on any
port), or when it runs on a port the user named with ``--port`` (Wireshark's "Decode As"): then, if it does not start
with a handshake, decoding starts mid-connection. Other streams (plain HTTP, anything else) are counted and skipped.
Streams are numbered as Wireshark numbers them (``tcp.stream``), so ``--stream N`` means the same thing in both.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from wsinspect.capture.files import CaptureFile
from wsinspect.capture.packets import decode_tcp
from wsinspect.capture.reassembly import (
    FlowClosed,
    FlowData,
    FlowGap,
    FlowItem,
    FlowNotice,
    FlowOpened,
    TcpReassembler,
)
from wsinspect.core.checks import CHECKS
from wsinspect.core.connection import Connection, Limits
from wsinspect.core.events import ConnectionOpened, Direction, Event, Notice, other
from wsinspect.core.fields import is_known_opcode
from wsinspect.core.handshake import find_header_end, looks_like_http_request, parse_request

_SNIFF_BYTES = 64 * 1024  # how much of a stream's start is held while deciding whether it is an upgrade request


@dataclass(slots=True)
class _Flow:
    opened: FlowOpened
    flip: bool = False  # the capture layer guessed the client wrong: the GET came from the other side
    connection: Connection | None = None
    head: bytearray = field(default_factory=bytearray)  # start of the stream while deciding
    held: list[tuple[Direction, bytes, float, int]] = field(default_factory=list)
    skipped: bool = False


@dataclass(slots=True)
class TraceStats:
    packets: int = 0
    tcp_streams: int = 0
    skipped_streams: int = 0
    port_hints: list[str] = field(default_factory=list)  # for skipped streams that look like WebSocket frames
    truncated: bool = False
    problem: str | None = None  # why the file stopped early, in one line


class CaptureTrace:
    """Iterate over a capture's WebSocket events. ``position``/``size`` tell progress while iterating."""

    def __init__(self, path: str | os.PathLike[str], *, server_ports: Collection[int] = (),
                 streams: Collection[int] | None = None, limits: Limits | None = None) -> None:
        self.capture = CaptureFile(path)  # raises CaptureError with a one-line reason
        self.server_ports = frozenset(server_ports)
        self.streams = frozenset(streams) if streams is not None else None
        self.limits = limits or Limits()
        self.stats = TraceStats()
        self._flows: dict[int, _Flow] = {}

    @property
    def size(self) -> int:
        return self.capture.size

    @property
    def position(self) -> int:
        return self.capture.position

    def __iter__(self) -> Iterator[Event]:
        reassembler = TcpReassembler(server_ports=self.server_ports)
        stats = self.stats
        items: list[FlowItem] = []
        flows = self._flows
        with self.capture as capture:
            for raw in capture:
                segment = decode_tcp(raw)
                if segment is None:
                    continue
                reassembler.feed_into(segment, items)
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
                stats.packets = raw.number
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
            del self._flows[item.flow]
            if flow.connection is not None:
                yield from flow.connection.end(time=item.time, packet=item.packet, reason=item.reason)
            elif not flow.skipped and (flow.head or flow.held):
                yield from self._decide(flow, final=True)
                if flow.connection is not None:
                    yield from flow.connection.end(time=item.time, packet=item.packet, reason=item.reason)
            return
        if flow.skipped:
            return
        direction: Direction = item.direction
        if flow.flip:
            direction = "s2c" if direction == "c2s" else "c2s"
        if isinstance(item, FlowNotice):
            # A fact about the capture, not the peers: passed on as it is, whatever state the stream is in.
            yield Notice(stream=item.flow, direction=direction, time=item.time, packet=item.packet,
                         check=CHECKS[item.check], message=item.message)
            return
        connection = flow.connection
        if connection is not None:
            if isinstance(item, FlowData):
                yield from connection.receive(direction, item.data, time=item.time, packet=item.packet)
            else:
                yield from connection.gap(direction, item.missing, time=item.time, packet=item.packet)
            return
        if isinstance(item, FlowGap):
            if self._is_decode_as(flow):
                yield from self._start(flow, mid_stream=True)
                assert flow.connection is not None
                yield from flow.connection.gap(direction, item.missing, time=item.time, packet=item.packet)
            else:
                self._skip(flow)
            return
        flow.held.append((direction, item.data, item.time, item.packet))
        if not flow.head and direction == "s2c" and not self._is_decode_as(flow) and \
                looks_like_http_request(item.data):
            # The capture layer had no SYN to go by and guessed the client wrong.
            flow.flip = True
            flow.held = [("c2s" if d == "s2c" else "s2c", b, t, p) for d, b, t, p in flow.held]
            direction = "c2s"
        if direction == "c2s":
            flow.head += item.data[: _SNIFF_BYTES - len(flow.head)]
        yield from self._decide(flow, final=False)

    def _is_decode_as(self, flow: _Flow) -> bool:
        return flow.opened.server[1] in self.server_ports

    def _decide(self, flow: _Flow, *, final: bool) -> Iterator[Event]:
        """Is this stream a WebSocket conversation? Decide as soon as the first request is in."""
        head = bytes(flow.head)
        if head and looks_like_http_request(head):
            end = find_header_end(head)
            if end < 0 and not final and len(head) < _SNIFF_BYTES:
                return  # wait for the whole request header block
            request = parse_request(head[:end] if end >= 0 else head)
            headers = request.headers
            wants_upgrade = "upgrade" in headers or any(name.lower().startswith("sec-websocket-")
                                                          for name, _ in headers)
            if wants_upgrade or self._is_decode_as(flow):
                yield from self._start(flow, mid_stream=False)
            else:
                self._skip(flow)
        elif self._is_decode_as(flow):
            yield from self._start(flow, mid_stream=True)
        elif head or final or sum(len(b) for _, b, _, _ in flow.held) >= 16:
            self._skip(flow)

    def _start(self, flow: _Flow, *, mid_stream: bool) -> Iterator[Event]:
        opened = flow.opened
        client, server = (opened.server, opened.client) if flow.flip else (opened.client, opened.server)
        how = "it sent the HTTP upgrade request" if flow.flip else opened.client_reason
        connection = flow.connection = Connection(opened.flow, mid_stream=mid_stream, limits=self.limits)
        yield ConnectionOpened(stream=opened.flow, direction="c2s", time=opened.time, packet=opened.packet,
                               client=client, server=server, how=how, mid_stream=mid_stream)
        held, flow.held, flow.head = flow.held, [], bytearray()
        for direction, data, data_time, data_packet in held:
            yield from connection.receive(direction, data, time=data_time, packet=data_packet)

    def _skip(self, flow: _Flow) -> None:
        hint = self._port_hint(flow)
        if hint:
            self.stats.port_hints.append(hint)
        flow.skipped = True
        flow.held.clear()
        flow.head.clear()
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
