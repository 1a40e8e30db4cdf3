"""TCP reassembly: TcpSegments in, per-connection, per-direction ordered byte streams out.

The output is a flat stream of small items (FlowOpened, FlowData, FlowGap, FlowNotice, FlowClosed). Flow numbers
are Wireshark's tcp.stream numbers (until a flow is let go: see below). Only open connections are kept in memory.

Real capture shapes, and what is done about each:

* One direction only (a capture filter, asymmetric routing): the side that was captured is delivered in order as
  usual (its holes wait for the out-of-order limit or the end, as no ACK from the other side will ever say they were
  sent). Once it is clear -- 32 packets of one side with none from the other, or that side's FIN, or the end of the
  flow, whichever comes first -- one FlowNotice("capture.one-sided") names the missing direction. "The other side
  exists" is proved by the captured side's ACK flag (it acknowledged something), so a SYN nobody answered is not
  called one-sided. A one-sided flow ends at its captured side's FIN: nothing more can be delivered.
* Conflicting retransmissions (the same bytes sent twice with different contents): the first copy in the capture is
  used, as Wireshark does, because it has usually been delivered already (a stream reader cannot take bytes back)
  and because it is what the receiver most likely acted on. (Copies held out of order come out by stream position:
  of two overlapping ones, the one starting earlier wins the overlap.) A later copy is compared with the last piece
  delivered in its direction while the peer has not acknowledged all of it (and with any copy still held out of
  order); a difference gives one FlowNotice("capture.retransmission-conflict") naming the stream offsets, both
  frames and which was used, at most ``_CONFLICTS_REPORTED`` per direction. A copy of older bytes than the last piece
  delivered is dropped unchecked.
* Many connections, and connections that never end: at most ``max_open_flows`` are open at once (the least recently
  active is let go first when another one opens), and a flow with no packet for ``idle_timeout`` seconds of capture
  time is let go. Letting go is a FlowNotice("capture.flow-let-go") then a FlowClosed whose reason starts with
  "let go:"; what was held is delivered (holes become gaps). Later packets of that connection start a new flow
  (mid-stream, with a new number: from there on the numbers differ from Wireshark's tcp.stream).

Memory budget: about 1.3 KB per open flow (``tests/capture/measure_memory.py``), plus the last piece delivered per
direction until the peer acknowledges it (a reference to a segment's payload, to compare retransmissions with), plus
bytes held out of order: at most ``max_out_of_order_bytes`` per direction and ``max_held_bytes`` across all flows
(past either, the oldest hole of the direction being fed is given up as a gap). With the defaults (10,000 open
flows, 64 MiB held): about 13 MB of flows, plus what is in flight, plus at most 64 MiB behind holes.
"""

from __future__ import annotations

import heapq
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Collection, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from wsinspect.capture.fastbuild import frozen_builder
from wsinspect.capture.files import CaptureFile
from wsinspect.capture.packets import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegment, decode_tcp

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

_new_data = frozen_builder(FlowData)
_new_gap = frozen_builder(FlowGap)
_new_opened = frozen_builder(FlowOpened)
_new_closed = frozen_builder(FlowClosed)

_SYN_FIN_RST = TCP_SYN | TCP_FIN | TCP_RST
_PORTS = struct.Struct("!HH")
_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 1 << 31
# The largest window TCP can advertise (65535 << 14). A segment or ACK further ahead than this is
# not a plausible part of the stream (a corrupt packet, or a stray from another connection).
_MAX_WINDOW = 1 << 30
DEFAULT_MAX_OUT_OF_ORDER_BYTES = 4 * 1024 * 1024  # per direction
DEFAULT_MAX_HELD_BYTES = 64 * 1024 * 1024  # out-of-order bytes across all flows
DEFAULT_MAX_OPEN_FLOWS = 10_000
DEFAULT_IDLE_TIMEOUT = 300.0  # seconds of capture time without a packet
_CLOSED_REMEMBERED = 65536  # connections whose late packets are still recognised after closing
# Packets of one side with none from the other after which a flow is called one-sided. A TCP sender gets ACKs at
# least every other full segment, so a two-sided capture does not show this many in a row at the start of a flow.
_ONE_SIDED_PACKETS = 32
# A flow's place in the least-recently-active order is refreshed at most once per this much capture time: one
# comparison per packet instead of a reordering.
_ACTIVITY_QUANTUM = 1.0
# What one held segment costs beyond its bytes (tuple, list slot): segments cut before their payload hold no bytes,
# and must still count against the limits.
_HELD_ENTRY_COST = 64
_CONFLICTS_REPORTED = 8  # conflicting retransmissions reported per direction; more are only counted


class _HeldBudget:
    """Out-of-order bytes held across all the flows of one reassembler (shared by every _HalfStream)."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.held = 0
        self.limit = limit


class _HalfStream:
    """Reassembly state of the bytes one endpoint sends.

    Positions are stream offsets (0 = first byte after the SYN, or the first byte seen), unbounded
    integers, so 32-bit sequence wraparound only matters when a sequence number is converted.
    """

    __slots__ = (
        "acked",
        "budget",
        "conflicts",
        "direction",
        "expected",
        "fin_offset",
        "finished",
        "first_seq",
        "flow",
        "held_bytes",
        "pending",
        "recent",
        "recent_number",
        "seq_base",
        "solo",
    )

    def __init__(self, flow: int, direction: Direction, budget: _HeldBudget) -> None:
        self.flow = flow
        self.direction: Direction = direction
        self.budget = budget
        self.seq_base: int | None = None  # sequence number of stream offset 0
        self.expected = 0  # offset of the next byte to deliver (counts gaps, and the FIN once reached)
        # Segments held until the bytes before them arrive: (start, -captured length, end, frame number, data);
        # the first `captured` bytes of [start, end) are in `data`, the rest was cut at capture time. The frame
        # number breaks ties between copies of the same range: the first captured comes out first. None until used.
        self.pending: list[tuple[int, int, int, int, bytes]] | None = None
        self.held_bytes = 0  # bytes held plus _HELD_ENTRY_COST per held segment
        # Highest offset the peer has acknowledged: bytes below it existed even if never captured.
        # A hole is declared missing only once data after it shows up (or the flow ends), so an ACK
        # that a capture happens to store before the data it acknowledges costs nothing.
        self.acked = 0
        self.fin_offset: int | None = None  # offset of the FIN's sequence slot
        self.finished = False  # FIN reached: every byte before it was delivered or declared missing
        # Wireshark's base_seq for this sender (SYN seq, else first seq - 1, else peer's first ACK - 1):
        # a later SYN with a different sequence number starts a new tcp.stream.
        self.first_seq: int | None = None
        # The last piece delivered and the frame that carried it, to compare retransmissions with. It always ends
        # at `expected` (a gap forgets it), so its offset need not be kept; it is a reference, not a copy, and it is
        # forgotten once the peer acknowledges everything (so idle flows do not keep their last segment).
        self.recent: bytes | None = None
        self.recent_number = 0
        self.conflicts = 0
        # Packets this endpoint sent while none came from the other (-1: both seen; -2: called one-sided).
        self.solo = 0

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
        if start - self.expected > _MAX_WINDOW:
            return  # implausibly far ahead
        if start < self.expected:
            self._compare_with_recent(start, data, segment.number, segment, out)
            if end <= self.expected:
                return  # a retransmission of delivered bytes
        pending = self.pending
        if pending is None:
            pending = self.pending = []
        heapq.heappush(pending, (start, -len(data), end, segment.number, data))
        cost = len(data) + _HELD_ENTRY_COST
        self.held_bytes += cost
        budget = self.budget
        budget.held += cost
        self.drain(segment, out)
        if pending and self.acked > self.expected:
            self.skip_to(self.acked, segment, out)  # the peer already acknowledged the hole
        while (self.held_bytes > limit or budget.held > budget.limit) and pending:
            # Too much held behind a hole that is not filling: give the hole up.
            self.skip_to(pending[0][0], segment, out)

    def drain(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Deliver held segments that are now in order (trimming overlaps); note a reached FIN."""
        pending = self.pending
        released: list[bytes] = []  # joined once: one item, and no quadratic copying
        while pending and pending[0][0] <= self.expected:
            start, negative_captured, end, number, data = heapq.heappop(pending)
            cost = _HELD_ENTRY_COST - negative_captured
            self.held_bytes -= cost
            self.budget.held -= cost
            expected = self.expected
            if start < expected:
                self._compare_with_recent(start, data, number, segment, out)
            if end <= expected:
                continue  # everything in it was delivered already
            captured_end = start - negative_captured
            if captured_end > expected:
                piece = data[expected - start :] if expected > start else data
                released.append(piece)
                self.recent = piece
                self.recent_number = number
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
            self._release_all()

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
            target = max([self.acked, *(end for _, _, end, _, _ in self.pending or ())])
        self.skip_to(target, segment, out)
        self._release_all()  # segments that started after a FIN-bounded target (none are delivered any more)

    def forget_recent(self) -> None:
        self.recent = None
        self.recent_number = 0  # (a frame number is an int object of its own: not kept for nothing either)

    def _release_all(self) -> None:
        """Forget every held segment (the stream is finished)."""
        self.budget.held -= self.held_bytes
        self.held_bytes = 0
        self.pending = None

    def _compare_with_recent(self, start: int, data: bytes, number: int, segment: TcpSegment,
                             out: list[FlowItem]) -> None:
        """`data` at `start` repeats bytes already delivered: say so if it differs from the copy that was used."""
        used = self.recent
        if used is None or self.conflicts >= _CONFLICTS_REPORTED:
            return
        used_start, used_number = self.expected - len(used), self.recent_number
        low = max(start, used_start)
        high = min(start + len(data), used_start + len(used))
        if low >= high or number == used_number:
            return
        if data[low - start : high - start] == used[low - used_start : high - used_start]:
            return
        self.conflicts += 1
        why = "the first copy captured, as in Wireshark" if used_number < number else "it reached these bytes first"
        message = (
            f"Stream bytes {low} to {high - 1} of this direction are in the capture twice with different contents: "
            f"frame {used_number} was used ({why}), frame {number} ignored."
        )
        if self.conflicts == _CONFLICTS_REPORTED:
            message += " Further conflicts in this direction are not reported."
        out.append(FlowNotice(self.flow, segment.time, segment.number, self.direction,
                              "capture.retransmission-conflict", message))

    def _emit_data(self, released: list[bytes], segment: TcpSegment, out: list[FlowItem]) -> None:
        """One item for the bytes in `released` (emptied), if any."""
        if released:
            data = released[0] if len(released) == 1 else b"".join(released)
            released.clear()
            out.append(_new_data(self.flow, segment.time, segment.number, self.direction, data))

    def _emit_gap(self, missing: int, segment: TcpSegment, out: list[FlowItem]) -> None:
        self.forget_recent()  # it no longer ends where the next byte goes
        out.append(_new_gap(self.flow, segment.time, segment.number, self.direction, missing))


class _Flow:
    # `key` is (client address, client port, server address, server port): the endpoint-table key of the client's
    # side, shared with that table rather than kept twice.
    __slots__ = ("check_at", "key", "number", "to_client", "to_server")

    def __init__(self, number: int, key: _Endpoints, budget: _HeldBudget, time: float) -> None:
        self.number = number
        self.key = key
        self.to_server = _HalfStream(number, "c2s", budget)
        self.to_client = _HalfStream(number, "s2c", budget)
        # Capture time from which the next packet refreshes this flow's place in the activity order: its last
        # refresh plus _ACTIVITY_QUANTUM, or the last packet's time itself while the one-sided watch looks at every
        # packet. Either way the flow's last packet came at or before it, and at most a quantum after it.
        self.check_at = time

    @property
    def client(self) -> tuple[str, int]:
        return self.key[0], self.key[1]

    @property
    def server(self) -> tuple[str, int]:
        return self.key[2], self.key[3]


class _Side:
    """A flow as seen from one sender; what the endpoint table maps (src, sport, dst, dport) to."""

    __slots__ = ("flow", "receiver", "sender")

    def __init__(self, flow: _Flow, sender: _HalfStream, receiver: _HalfStream) -> None:
        self.flow = flow
        self.sender = sender
        self.receiver = receiver


_Endpoints = tuple[str, int, str, int]  # (src, sport, dst, dport)


def _reversed(endpoints: _Endpoints) -> _Endpoints:
    src, sport, dst, dport = endpoints
    return dst, dport, src, sport


def _header_key(endpoints: _Endpoints) -> bytes | None:
    """The endpoints as an IPv4 header (without options) and the TCP header after it hold them: bytes 12 to 19 of the
    IPv4 header (source and destination address) and 0 to 3 of the TCP header (ports). None for IPv6 endpoints."""
    src, sport, dst, dport = endpoints
    if ":" in src or ":" in dst:
        return None
    return socket.inet_aton(src) + socket.inet_aton(dst) + _PORTS.pack(sport, dport)


def _reversed_header_key(header_key: bytes) -> bytes:
    return header_key[4:8] + header_key[0:4] + header_key[10:12] + header_key[8:10]


class TcpReassembler:
    """Feed it every TcpSegment of a capture in file order; it returns the flow items they produce.

    ``max_open_flows`` and ``idle_timeout`` (seconds of capture time) bound how many connections are held and for
    how long without a packet; ``max_out_of_order_bytes`` (per direction) and ``max_held_bytes`` (all flows) bound
    the bytes held behind holes. See the module's docstring.
    """

    def __init__(
        self,
        server_ports: Collection[int] = (),
        max_out_of_order_bytes: int = DEFAULT_MAX_OUT_OF_ORDER_BYTES,
        *,
        max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
    ) -> None:
        if max_open_flows < 1:
            raise ValueError("max_open_flows must be at least 1")
        self.server_ports = frozenset(server_ports)
        self.max_out_of_order_bytes = max_out_of_order_bytes
        self.max_open_flows = max_open_flows
        self.idle_timeout = idle_timeout
        self.late_segments = 0  # segments of connections that had already closed (dropped)
        self.flows_let_go = 0
        self._budget = _HeldBudget(max_held_bytes)
        self._sides: dict[_Endpoints, _Side] = {}
        # The same sides of the IPv4 flows, by the bytes that name the endpoints in their packets (_header_key), for
        # feed_in_order: the packet's own bytes are the key, with no address made text.
        self._sides_by_header: dict[bytes, _Side] = {}
        # Open flows, least recently active first (refreshed once per _ACTIVITY_QUANTUM).
        self._open: OrderedDict[int, _Flow] = OrderedDict()
        # Recently closed connections, both orientations, to the sender's Wireshark base_seq: their
        # late packets (the last ACK of a FIN exchange, say) must not count as new connections.
        self._closed: OrderedDict[_Endpoints, int | None] = OrderedDict()
        self._next_flow = 0
        self._next_idle_check = float("-inf")
        # The last segment fed (its time and frame number): the end of the capture closes the flows still open there.
        self._last_time = 0.0
        self._last_number: int | None = None  # None: nothing fed yet

    @property
    def open_flows(self) -> int:
        return len(self._open)

    @property
    def held_bytes(self) -> int:
        """Bytes (plus per-segment overhead) held out of order across all flows."""
        return self._budget.held

    def forget_recent(self, flow_number: int) -> None:
        """Its reader no longer needs ``flow_number``'s bytes checked against retransmissions (it skipped the stream,
        or let its bytes go): the last piece of each direction, kept until acknowledged, is dropped now."""
        flow = self._open.get(flow_number)
        if flow is not None:
            flow.to_server.forget_recent()
            flow.to_client.forget_recent()

    def feed(self, segment: TcpSegment) -> list[FlowItem]:
        out: list[FlowItem] = []
        self.feed_into(segment, out)
        return out

    def feed_into(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Like feed(), appending to `out` (saves a list per packet on the hot path)."""
        self._last_time = segment.time
        self._last_number = segment.number
        side = self._sides.get((segment.src, segment.sport, segment.dst, segment.dport))
        flags = segment.flags
        if side is None or flags & (TCP_SYN | TCP_FIN | TCP_RST) or segment.icmp_error:
            self._feed_unusual(segment, side, out)
            return
        # The common case: an established connection's ACK, possibly with in-order data.
        sender = side.sender
        receiver = side.receiver
        if segment.time >= side.flow.check_at and self._note_activity(side, segment, out):
            self._feed_unusual(segment, None, out)  # its flow was let go for idleness: this starts a new one
            return
        if sender.first_seq is None or receiver.first_seq is None:
            self._note_first_seqs(segment, sender, receiver)
        if flags & TCP_ACK:
            base = receiver.seq_base
            if base is not None:
                ahead = (segment.ack - base - receiver.expected) & _SEQ_MASK
                if ahead:
                    if ahead < _MAX_WINDOW:
                        # The peer acknowledges bytes not seen (yet): they were sent.
                        receiver.acknowledged(ahead, segment, out)
                elif receiver.recent is not None:
                    # All acknowledged: nothing left to retransmit, so not worth keeping (forget_recent(), inlined).
                    receiver.recent = None
                    receiver.recent_number = 0
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
                sender.recent = payload
                sender.recent_number = segment.number
            else:
                start = sender.offset_of(segment.seq, base)
                sender.add(
                    start,
                    payload,
                    start + len(payload) + min(segment.missing, _MAX_WINDOW),
                    segment,
                    out,
                    self.max_out_of_order_bytes,
                )

    def feed_in_order(
        self, header_key: bytes, number: int, time: float, seq: int, ack: int, flags: int, payload: bytes
    ) -> _HalfStream | None:
        """feed_into's commonest case without a TcpSegment: a segment of an established IPv4 flow, whole (nothing cut
        at capture time), neither SYN, FIN nor RST, acknowledging nothing unseen, its payload (if any) the next bytes
        of its direction with nothing held out of order. ``header_key`` names its endpoints as its IPv4 and TCP
        headers do: source and destination address, source and destination port (12 bytes, see _header_key).

        Returns None, having changed nothing, for any other segment: the caller then feeds it to feed_into, which
        decides the same for this case. Else the sender's half-stream; a non-empty `payload` was then delivered as
        its next bytes, and the caller hands it on as the FlowData feed_into would have made.
        """
        side = self._sides_by_header.get(header_key)
        if side is None or flags & _SYN_FIN_RST or time >= side.flow.check_at:
            return None
        sender = side.sender
        receiver = side.receiver
        if sender.first_seq is None or receiver.first_seq is None:
            return None
        acknowledged_all = False
        if flags & TCP_ACK:
            base = receiver.seq_base
            if base is not None:
                ahead = (ack - base - receiver.expected) & _SEQ_MASK
                if ahead:
                    if ahead < _MAX_WINDOW:
                        return None  # the peer acknowledges bytes not seen (yet)
                else:
                    acknowledged_all = True
        if payload:
            base = sender.seq_base
            if base is None or (seq - base - sender.expected) & _SEQ_MASK or sender.pending or \
                    sender.fin_offset is not None:
                return None
            sender.expected += len(payload)
            sender.recent = payload
            sender.recent_number = number
        if acknowledged_all and receiver.recent is not None:
            receiver.recent = None
            receiver.recent_number = 0
        self._last_time = time
        self._last_number = number
        return sender

    def finish(self) -> list[FlowItem]:
        """End of capture: deliver what is held (holes become gaps) and close every open flow."""
        out: list[FlowItem] = []
        if self._last_number is not None:
            # Closing reads only the time and frame number of the segment it is given: those of the last one fed.
            last = TcpSegment(self._last_number, self._last_time, "", "", 0, 0, 0, 0, 0, b"")
            for flow in sorted(self._open.values(), key=lambda flow: flow.number):
                self._close(flow, "end of capture", last, out)
        self._open.clear()
        self._sides.clear()
        self._sides_by_header.clear()
        self._closed.clear()
        return out

    # -- the less common cases -----------------------------------------------------------------------

    @staticmethod
    def _note_first_seqs(segment: TcpSegment, sender: _HalfStream, receiver: _HalfStream) -> None:
        if sender.first_seq is None:
            sender.first_seq = segment.seq if segment.flags & TCP_SYN else (segment.seq - 1) & _SEQ_MASK
        if receiver.first_seq is None and segment.flags & TCP_ACK:
            receiver.first_seq = (segment.ack - 1) & _SEQ_MASK

    def _note_activity(self, side: _Side, segment: TcpSegment, out: list[FlowItem]) -> bool:
        """Keep the activity order and the one-sided watch up to date; let idle flows go.

        True when the flow of `side` itself was let go (idle): the segment then starts a new flow.
        """
        flow = side.flow
        time = segment.time
        if time >= self._next_idle_check:
            self._let_go_idle(segment, out)
            if flow.number not in self._open:
                return True
        self._open.move_to_end(flow.number)
        sender = side.sender
        if sender.solo >= 0:
            receiver = side.receiver
            if receiver.solo > 0 or receiver.solo == -2:
                sender.solo = receiver.solo = -1  # both directions are in the capture
            else:
                sender.solo += 1
                if sender.solo >= _ONE_SIDED_PACKETS and receiver.first_seq is not None:
                    self._say_one_sided(flow, sender, segment, out)
        # While one side is being watched, every packet comes here; else once per quantum.
        flow.check_at = time if sender.solo >= 0 else time + _ACTIVITY_QUANTUM
        return False

    @staticmethod
    def _is_one_sided(sender: _HalfStream, receiver: _HalfStream) -> bool:
        """Has only `sender` been seen, while it acknowledged something (so the other side exists)?"""
        return receiver.solo == 0 and (sender.solo > 0 or sender.solo == -2) and receiver.first_seq is not None

    def _say_one_sided(self, flow: _Flow, sender: _HalfStream, segment: TcpSegment, out: list[FlowItem]) -> None:
        """The FlowNotice that the direction towards `sender` is missing from the capture (once per flow)."""
        if sender.solo == -2:
            return
        missing: Direction = "s2c" if sender.direction == "c2s" else "c2s"
        seen = "client → server" if sender.direction == "c2s" else "server → client"
        client, server = flow.client, flow.server
        out.append(FlowNotice(
            flow.number, segment.time, segment.number, missing, "capture.one-sided",
            f"Only the {seen} direction of {client[0]}:{client[1]} ↔ {server[0]}:{server[1]} is in the capture "
            f"({sender.solo} packets, none the other way): it is decoded alone; the other direction is missing.",
        ))
        sender.solo = -2

    def _let_go_idle(self, segment: TcpSegment, out: list[FlowItem]) -> None:
        """Let go every flow with no packet for longer than idle_timeout; schedule the next check."""
        time = segment.time
        # A flow's last packet came at or before its check_at (see _Flow): judging by check_at, none goes early.
        cutoff = time - self.idle_timeout
        while self._open:
            flow = next(iter(self._open.values()))
            if flow.check_at >= cutoff:
                self._next_idle_check = flow.check_at + self.idle_timeout
                return
            self._let_go(flow, f"let go: idle for {self.idle_timeout:g} s (still open in the capture)",
                         f"No packet for more than {self.idle_timeout:g} s of capture time (the idle timeout): the "
                         f"conversation is summarised and let go.", segment, out)
        self._next_idle_check = time + self.idle_timeout

    def _let_go(self, flow: _Flow, reason: str, why: str, segment: TcpSegment, out: list[FlowItem]) -> None:
        out.append(FlowNotice(flow.number, segment.time, segment.number, "c2s", "capture.flow-let-go",
                              f"{why} Later packets of this connection start a new conversation."))
        self.flows_let_go += 1
        self._close(flow, reason, segment, out, remember=False)

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
        elif self._note_activity(side, segment, out):
            side = self._open_flow(segment, out)  # its flow was let go for idleness: this starts a new one
        if segment.icmp_error:
            return  # a quoted header names the connection (and so counts) but carries no stream data

        sender = side.sender
        receiver = side.receiver
        self._note_first_seqs(segment, sender, receiver)
        if flags & TCP_ACK and receiver.seq_base is not None:
            ahead = (segment.ack - receiver.seq_base - receiver.expected) & _SEQ_MASK
            if ahead:
                if ahead < _MAX_WINDOW:
                    receiver.acknowledged(ahead, segment, out)
            elif receiver.recent is not None:
                receiver.forget_recent()
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
            end = start + len(payload) + min(segment.missing, _MAX_WINDOW)
            if fin and sender.fin_offset is None and not sender.finished and sender.expected <= end:
                sender.fin_offset = end
            if payload or segment.missing:
                sender.add(start, payload, end, segment, out, self.max_out_of_order_bytes)
            else:
                sender.drain(segment, out)
        if fin and sender.fin_offset is not None:
            if receiver.fin_offset is not None:
                # Both sides said FIN: whatever is still missing will not come.
                self._close(side.flow, "FIN", segment, out)
            elif sender.finished and self._is_one_sided(sender, receiver):
                # The only side captured is done sending: nothing more can be delivered.
                self._close(side.flow, "FIN from the only side captured", segment, out)

    def _open_flow(self, segment: TcpSegment, out: list[FlowItem]) -> _Side:
        if len(self._open) >= self.max_open_flows:
            least_active = next(iter(self._open.values()))
            self._let_go(least_active, f"let go: more than {self.max_open_flows} conversations open",
                         f"More than {self.max_open_flows} conversations were open at once (the limit): the least "
                         f"recently active one is summarised and let go.", segment, out)
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
        to_server_key = client + server
        flow = _Flow(number, to_server_key, self._budget, segment.time)
        client_side = _Side(flow, flow.to_server, flow.to_client)
        server_side = _Side(flow, flow.to_client, flow.to_server)
        self._sides[to_server_key] = client_side
        self._sides[server + client] = server_side
        header_key = _header_key(to_server_key)
        if header_key is not None:
            self._sides_by_header[header_key] = client_side
            self._sides_by_header[_reversed_header_key(header_key)] = server_side
        self._open[number] = flow
        if len(self._open) == 1:
            self._next_idle_check = segment.time + self.idle_timeout
        out.append(
            _new_opened(number, segment.time, segment.number, client, server, reason, not segment.flags & TCP_SYN)
        )
        side = client_side if sender_is_client else server_side
        side.sender.solo = 1
        return side

    def _close(self, flow: _Flow, reason: str, segment: TcpSegment, out: list[FlowItem], remember: bool = True) -> None:
        to_server, to_client = flow.to_server, flow.to_client
        if self._is_one_sided(to_server, to_client):
            self._say_one_sided(flow, to_server, segment, out)
        elif self._is_one_sided(to_client, to_server):
            self._say_one_sided(flow, to_client, segment, out)
        to_server.flush(segment, out)
        to_client.flush(segment, out)
        out.append(_new_closed(flow.number, segment.time, segment.number, reason))
        to_server_key = flow.key
        to_client_key = _reversed(to_server_key)
        self._sides.pop(to_server_key, None)
        self._sides.pop(to_client_key, None)
        header_key = _header_key(to_server_key)
        if header_key is not None:
            self._sides_by_header.pop(header_key, None)
            self._sides_by_header.pop(_reversed_header_key(header_key), None)
        del self._open[flow.number]
        if not remember:
            return  # let go while still open: its later packets start a new flow
        closed = self._closed
        closed[to_server_key] = to_server.first_seq
        closed[to_client_key] = to_client.first_seq
        while len(closed) > 2 * _CLOSED_REMEMBERED:
            closed.popitem(last=False)  # the oldest

    def _forget_closed(self, endpoints: _Endpoints) -> None:
        self._closed.pop(endpoints, None)
        self._closed.pop(_reversed(endpoints), None)


class FlowReader:
    """Iterator over the flow items of a capture file; `capture` gives progress and truncation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        server_ports: Collection[int] = (),
        max_out_of_order_bytes: int = DEFAULT_MAX_OUT_OF_ORDER_BYTES,
        *,
        max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
    ) -> None:
        self.capture = CaptureFile(path)
        self.reassembler = TcpReassembler(
            server_ports,
            max_out_of_order_bytes,
            max_open_flows=max_open_flows,
            idle_timeout=idle_timeout,
            max_held_bytes=max_held_bytes,
        )
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
    *,
    max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
) -> FlowReader:
    """Flow items of the capture at `path`. Raises CaptureError at once if it is not a capture."""
    return FlowReader(
        path,
        server_ports,
        max_out_of_order_bytes,
        max_open_flows=max_open_flows,
        idle_timeout=idle_timeout,
        max_held_bytes=max_held_bytes,
    )
