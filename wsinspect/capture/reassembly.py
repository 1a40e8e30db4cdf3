"""TCP reassembly: TcpSegments in, per-connection, per-direction ordered byte streams out.

The output is a flat stream of small items (FlowOpened, FlowData, FlowGap, FlowClosed). Flow numbers
are Wireshark's tcp.stream numbers. Only open connections are kept in memory.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Collection, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from wsinspect.capture.files import CaptureFile
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegment, decode_tcp
from wsinspect.core.construct import fast_constructor

__all__ = [
    "Direction",
    "FlowClosed",
    "FlowData",
    "FlowGap",
    "FlowItem",
    "FlowNotice",
    "FlowOpened",
    "FlowReader",
    "TcpReassembler",
    "read_flows",
]

Direction = Literal["c2s", "s2c"]


@dataclass(frozen=True, slots=True)
class FlowOpened:
    """First packet of a TCP connection (Wireshark's tcp.stream == flow)."""

    flow: int
    time: float
    packet: int  # frame number
    client: tuple[str, int]  # (address, port)
    server: tuple[str, int]
    client_reason: str  # how the client was told apart: "SYN", "SYN-ACK", "port N is ...", "guess: ..."
    mid_stream: bool  # no SYN seen: the capture started after the connection did


@dataclass(frozen=True, slots=True)
class FlowData:
    """Next bytes of one direction, in order; every byte is delivered exactly once."""

    flow: int
    time: float
    packet: int  # frame that made these bytes deliverable
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class FlowGap:
    """Bytes that were sent but never captured; the stream resumes right after them."""

    flow: int
    time: float
    packet: int  # frame at which the bytes were given up on
    direction: Direction
    missing: int


@dataclass(frozen=True, slots=True)
class FlowClosed:
    """Last item of a connection; nothing more is said about it."""

    flow: int
    time: float
    packet: int
    reason: str  # "FIN" (both sides), "RST", "port reused by a new SYN", "end of capture"


@dataclass(frozen=True, slots=True)
class FlowNotice:
    """A fact about what the capture holds of one direction (not about what the peers sent).

    ``check`` names an entry of ``wsinspect.core.checks.CHECKS`` (``capture.*``); ``message`` says the specifics.
    """

    flow: int
    time: float
    packet: int
    direction: Direction
    check: str
    message: str


FlowItem = FlowOpened | FlowData | FlowGap | FlowNotice | FlowClosed

_new_data = fast_constructor(FlowData)

_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 1 << 31
# The largest window TCP can advertise (65535 << 14). A segment or ACK further ahead than this is
# not a plausible part of the stream (a corrupt packet, or a stray from another connection).
_MAX_WINDOW = 1 << 30
DEFAULT_MAX_OUT_OF_ORDER_BYTES = 4 * 1024 * 1024  # per direction
_CLOSED_REMEMBERED = 65536  # connections whose late packets are still recognised after closing


class _HalfStream:
    """Reassembly state of the bytes one endpoint sends.

    Positions are stream offsets (0 = first byte after the SYN, or the first byte seen), unbounded
    integers, so 32-bit sequence wraparound only matters when a sequence number is converted.
    """

    __slots__ = (
        "acked",
        "direction",
        "expected",
        "fin_offset",
        "finished",
        "first_seq",
        "flow",
        "held_bytes",
        "pending",
        "seq_base",
    )

    def __init__(self, flow: int, direction: Direction) -> None:
        self.flow = flow
        self.direction: Direction = direction
        self.seq_base: int | None = None  # sequence number of stream offset 0
        self.expected = 0  # offset of the next byte to deliver (counts gaps, and the FIN once reached)
        # Segments held until the bytes before them arrive: (start, -captured length, end, data);
        # the first `captured` bytes of [start, end) are in `data`, the rest was cut at capture time.
        self.pending: list[tuple[int, int, int, bytes]] = []
        self.held_bytes = 0
        # Highest offset the peer has acknowledged: bytes below it existed even if never captured.
        # A hole is declared missing only once data after it shows up (or the flow ends), so an ACK
        # that a capture happens to store before the data it acknowledges costs nothing.
        self.acked = 0
        self.fin_offset: int | None = None  # offset of the FIN's sequence slot
        self.finished = False  # FIN reached: every byte before it was delivered or declared missing
        # Wireshark's base_seq for this sender (SYN seq, else first seq - 1, else peer's first ACK - 1):
        # a later SYN with a different sequence number starts a new tcp.stream.
        self.first_seq: int | None = None

    def offset_of(self, seq: int, seq_base: int) -> int:
        """Stream offset of `seq`: the candidate nearest to `expected`, which undoes the wraparound."""
        delta = (seq - seq_base - self.expected) & _SEQ_MASK
        return self.expected + (delta - (1 << 32) if delta >= _SEQ_HALF else delta)

    def add(self, start: int, data: bytes, end: int, segment: TcpSegment, out: list[FlowItem], limit: int) -> None:
        """Take bytes [start, end) of which the first len(data) were captured; deliver what is in order."""
        if self.finished:
            return
        fin_offset = self.fin_offset
        if fin_offset is not None and end > fin_offset:
            # Nothing follows a FIN; bytes claiming to are not part of the stream.
            if start >= fin_offset:
                return
            data = data[: fin_offset - start]
            end = fin_offset
        if end <= self.expected or start - self.expected > _MAX_WINDOW:
            return  # retransmission of delivered bytes, or implausibly far ahead
        heapq.heappush(self.pending, (start, -len(data), end, data))
        self.held_bytes += len(data)
        self.drain(segment, out)
        if self.pending and self.acked > self.expected:
            self.skip_to(self.acked, segment, out)  # the peer already acknowledged the hole
        while self.held_bytes > limit and self.pending:
            # Too much held behind a hole that is not filling: give the hole up.
            self.skip_to(self.pending[0][0], segment, out)

    def drain(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Deliver held segments that are now in order (trimming overlaps); note a reached FIN."""
        pending = self.pending
        released: list[bytes] = []  # joined once: one item, and no quadratic copying
        while pending and pending[0][0] <= self.expected:
            start, negative_captured, end, data = heapq.heappop(pending)
            self.held_bytes += negative_captured
            expected = self.expected
            if end <= expected:
                continue  # everything in it was delivered already
            captured_end = start - negative_captured
            if captured_end > expected:
                released.append(data[expected - start :] if expected > start else data)
                expected = captured_end
            if end > expected:
                # Cut at capture time: a copy of these bytes may be held further on; it gets trimmed.
                self._emit_data(released, segment, out)
                self._emit_gap(end - expected, segment, out)
                expected = end
            self.expected = expected
        self._emit_data(released, segment, out)
        if self.fin_offset is not None and self.expected >= self.fin_offset and not self.finished:
            self.finished = True
            self.expected = self.fin_offset + 1  # the FIN takes one sequence number
            pending.clear()
            self.held_bytes = 0

    def skip_to(self, target: int, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Declare every byte before `target` that is not held as missing, delivering held ones."""
        if self.fin_offset is not None and target > self.fin_offset:
            target = self.fin_offset
        pending = self.pending
        while self.expected < target and not self.finished:
            if pending and pending[0][0] <= self.expected:
                self.drain(segment, out)
                continue
            stop = min(target, pending[0][0]) if pending else target
            self._emit_gap(stop - self.expected, segment, out)
            self.expected = stop
        self.drain(segment, out)

    def acknowledged(self, ahead: int, segment: TcpSegment, out: list[FlowItem]) -> None:
        """The peer acknowledged `ahead` bytes past what was delivered: they were sent."""
        self.acked = max(self.acked, self.expected + ahead)
        if self.pending:
            self.skip_to(self.acked, segment, out)

    def flush(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """At the end of the connection: deliver what is held, declaring the holes before it missing."""
        if self.finished:
            return
        target = self.fin_offset
        if target is None:
            # (An acknowledged FIN that was not captured counts as one missing byte here: an ACK
            # cannot tell a FIN from data.)
            target = max([self.acked, *(end for _, _, end, _ in self.pending)])
        self.skip_to(target, segment, out)

    def _emit_data(self, released: list[bytes], segment: TcpSegment, out: list[FlowItem]) -> None:
        """One item for the bytes in `released` (emptied), if any."""
        if released:
            data = released[0] if len(released) == 1 else b"".join(released)
            released.clear()
            out.append(_new_data(self.flow, segment.time, segment.number, self.direction, data))

    def _emit_gap(self, missing: int, segment: TcpSegment, out: list[FlowItem]) -> None:
        out.append(FlowGap(self.flow, segment.time, segment.number, self.direction, missing))


class _Flow:
    __slots__ = ("client", "number", "server", "to_client", "to_server")

    def __init__(self, number: int, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.number = number
        self.client = client
        self.server = server
        self.to_server = _HalfStream(number, "c2s")
        self.to_client = _HalfStream(number, "s2c")


class _Side:
    """A flow as seen from one sender; what the endpoint table maps (src, sport, dst, dport) to."""

    __slots__ = ("flow", "receiver", "sender")

    def __init__(self, flow: _Flow, sender: _HalfStream, receiver: _HalfStream) -> None:
        self.flow = flow
        self.sender = sender
        self.receiver = receiver


_Endpoints = tuple[str, int, str, int]  # (src, sport, dst, dport)


class TcpReassembler:
    """Feed it every TcpSegment of a capture in file order; it returns the flow items they produce."""

    def __init__(
        self, server_ports: Collection[int] = (), max_out_of_order_bytes: int = DEFAULT_MAX_OUT_OF_ORDER_BYTES
    ) -> None:
        self.server_ports = frozenset(server_ports)
        self.max_out_of_order_bytes = max_out_of_order_bytes
        self.late_segments = 0  # segments of connections that had already closed (dropped)
        self._sides: dict[_Endpoints, _Side] = {}
        self._open: dict[int, _Flow] = {}
        # Recently closed connections, both orientations, to the sender's Wireshark base_seq: their
        # late packets (the last ACK of a FIN exchange, say) must not count as new connections.
        self._closed: dict[_Endpoints, int | None] = {}
        self._next_flow = 0
        self._last_segment: TcpSegment | None = None

    @property
    def open_flows(self) -> int:
        return len(self._open)

    def feed(self, segment: TcpSegment) -> list[FlowItem]:
        out: list[FlowItem] = []
        self.feed_into(segment, out)
        return out

    def feed_into(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Like feed(), appending to `out` (saves a list per packet on the hot path)."""
        self._last_segment = segment
        side = self._sides.get((segment.src, segment.sport, segment.dst, segment.dport))
        flags = segment.flags
        if side is None or flags & (TCP_SYN | TCP_FIN | TCP_RST) or segment.icmp_error:
            self._feed_unusual(segment, side, out)
            return
        # The common case: an established connection's ACK, possibly with in-order data.
        sender = side.sender
        receiver = side.receiver
        if sender.first_seq is None or receiver.first_seq is None:
            self._note_first_seqs(segment, sender, receiver)
        if flags & TCP_ACK:
            base = receiver.seq_base
            if base is not None:
                ahead = (segment.ack - base - receiver.expected) & _SEQ_MASK
                if ahead and ahead < _MAX_WINDOW:
                    # The peer acknowledges bytes not seen (yet): they were sent.
                    receiver.acknowledged(ahead, segment, out)
        payload = segment.payload
        if payload or segment.missing:
            base = sender.seq_base
            if base is None:
                base = sender.seq_base = segment.seq
            expected = sender.expected
            if (
                (segment.seq - base - expected) & _SEQ_MASK == 0
                and not segment.missing
                and not sender.pending
                and sender.fin_offset is None
            ):
                out.append(_new_data(sender.flow, segment.time, segment.number, sender.direction, payload))
                sender.expected = expected + len(payload)
            else:
                start = sender.offset_of(segment.seq, base)
                sender.add(
                    start,
                    payload,
                    start + len(payload) + segment.missing,
                    segment,
                    out,
                    self.max_out_of_order_bytes,
                )

    def finish(self) -> list[FlowItem]:
        """End of capture: deliver what is held (holes become gaps) and close every open flow."""
        out: list[FlowItem] = []
        last = self._last_segment
        if last is not None:
            for flow in list(self._open.values()):
                self._close(flow, "end of capture", last, out)
        self._open.clear()
        self._sides.clear()
        self._closed.clear()
        return out

    # -- the less common cases -----------------------------------------------------------------------

    @staticmethod
    def _note_first_seqs(segment: TcpSegment, sender: _HalfStream, receiver: _HalfStream) -> None:
        if sender.first_seq is None:
            sender.first_seq = segment.seq if segment.flags & TCP_SYN else (segment.seq - 1) & _SEQ_MASK
        if receiver.first_seq is None and segment.flags & TCP_ACK:
            receiver.first_seq = (segment.ack - 1) & _SEQ_MASK

    def _feed_unusual(self, segment: TcpSegment, side: _Side | None, out: list[FlowItem]) -> None:
        flags = segment.flags
        # Wireshark's rule: a SYN without ACK whose sequence number differs from the sender's
        # base_seq starts a new tcp.stream; anything else belongs to the connection already there.
        pure_syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN and not segment.icmp_error
        if side is None:
            endpoints = (segment.src, segment.sport, segment.dst, segment.dport)
            if endpoints in self._closed:
                first_seq = self._closed[endpoints]
                if not (pure_syn and first_seq is not None and segment.seq != first_seq):
                    self.late_segments += 1
                    return
                self._forget_closed(endpoints)
            side = self._open_flow(segment, out)
        elif pure_syn and side.sender.first_seq is not None and segment.seq != side.sender.first_seq:
            self._close(side.flow, "port reused by a new SYN", segment, out)
            self._forget_closed((segment.src, segment.sport, segment.dst, segment.dport))
            side = self._open_flow(segment, out)
        if segment.icmp_error:
            return  # a quoted header names the connection (and so counts) but carries no stream data

        sender = side.sender
        receiver = side.receiver
        self._note_first_seqs(segment, sender, receiver)
        if flags & TCP_ACK and receiver.seq_base is not None:
            ahead = (segment.ack - receiver.seq_base - receiver.expected) & _SEQ_MASK
            if ahead and ahead < _MAX_WINDOW:
                receiver.acknowledged(ahead, segment, out)
        if flags & TCP_RST:
            # Any text in a RST is a diagnostic, not stream data.
            self._close(side.flow, "RST", segment, out)
            return

        data_seq = segment.seq
        if flags & TCP_SYN:
            data_seq = (data_seq + 1) & _SEQ_MASK  # the SYN takes one sequence number
            if sender.seq_base is None:
                sender.seq_base = data_seq
        payload = segment.payload
        fin = flags & TCP_FIN
        if payload or segment.missing or fin:
            base = sender.seq_base
            if base is None:
                base = sender.seq_base = data_seq
            start = sender.offset_of(data_seq, base)
            end = start + len(payload) + segment.missing
            if fin and sender.fin_offset is None and not sender.finished and sender.expected <= end:
                sender.fin_offset = end
            if payload or segment.missing:
                sender.add(start, payload, end, segment, out, self.max_out_of_order_bytes)
            else:
                sender.drain(segment, out)
        if fin and sender.fin_offset is not None and receiver.fin_offset is not None:
            # Both sides said FIN: whatever is still missing will not come.
            self._close(side.flow, "FIN", segment, out)

    def _open_flow(self, segment: TcpSegment, out: list[FlowItem]) -> _Side:
        number = self._next_flow
        self._next_flow += 1
        sender = (segment.src, segment.sport)
        receiver = (segment.dst, segment.dport)
        handshake = segment.flags & (TCP_SYN | TCP_ACK)
        sender_is_client = True
        if handshake == TCP_SYN:
            reason = "SYN"
        elif handshake == TCP_SYN | TCP_ACK:
            sender_is_client, reason = False, "SYN-ACK"
        elif segment.dport in self.server_ports:
            reason = f"port {segment.dport} is the server (--port)"
        elif segment.sport in self.server_ports:
            sender_is_client, reason = False, f"port {segment.sport} is the server (--port)"
        elif segment.sport != segment.dport:
            sender_is_client, reason = segment.dport < segment.sport, "guess: lower port is the server"
        else:
            reason = "guess: first sender is the client"
        client, server = (sender, receiver) if sender_is_client else (receiver, sender)
        flow = _Flow(number, client, server)
        client_side = _Side(flow, flow.to_server, flow.to_client)
        server_side = _Side(flow, flow.to_client, flow.to_server)
        self._sides[client + server] = client_side
        self._sides[server + client] = server_side
        self._open[number] = flow
        out.append(
            FlowOpened(number, segment.time, segment.number, client, server, reason, not segment.flags & TCP_SYN)
        )
        return client_side if sender_is_client else server_side

    def _close(self, flow: _Flow, reason: str, segment: TcpSegment, out: list[FlowItem]) -> None:
        flow.to_server.flush(segment, out)
        flow.to_client.flush(segment, out)
        out.append(FlowClosed(flow.number, segment.time, segment.number, reason))
        to_server_key = flow.client + flow.server
        to_client_key = flow.server + flow.client
        self._sides.pop(to_server_key, None)
        self._sides.pop(to_client_key, None)
        del self._open[flow.number]
        closed = self._closed
        closed[to_server_key] = flow.to_server.first_seq
        closed[to_client_key] = flow.to_client.first_seq
        while len(closed) > 2 * _CLOSED_REMEMBERED:
            del closed[next(iter(closed))]  # the oldest: dicts keep insertion order

    def _forget_closed(self, endpoints: _Endpoints) -> None:
        src, sport, dst, dport = endpoints
        self._closed.pop(endpoints, None)
        self._closed.pop((dst, dport, src, sport), None)


class FlowReader:
    """Iterator over the flow items of a capture file; `capture` gives progress and truncation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        server_ports: Collection[int] = (),
        max_out_of_order_bytes: int = DEFAULT_MAX_OUT_OF_ORDER_BYTES,
    ) -> None:
        self.capture = CaptureFile(path)
        self.reassembler = TcpReassembler(server_ports, max_out_of_order_bytes)
        self._items = self._generate()

    def __iter__(self) -> FlowReader:
        return self

    def __next__(self) -> FlowItem:
        return next(self._items)

    def __enter__(self) -> FlowReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._items.close()
        self.capture.close()

    def _generate(self) -> Generator[FlowItem, None, None]:
        feed_into = self.reassembler.feed_into
        out: list[FlowItem] = []
        try:
            for packet in self.capture:
                segment = decode_tcp(packet)
                if segment is not None:
                    feed_into(segment, out)
                    if out:
                        yield from out
                        out.clear()
            yield from self.reassembler.finish()
        finally:
            self.capture.close()


def read_flows(
    path: str | os.PathLike[str],
    server_ports: Collection[int] = (),
    max_out_of_order_bytes: int = DEFAULT_MAX_OUT_OF_ORDER_BYTES,
) -> FlowReader:
    """Flow items of the capture at `path`. Raises CaptureError at once if it is not a capture."""
    return FlowReader(path, server_ports, max_out_of_order_bytes)
