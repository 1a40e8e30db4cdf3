"""Every shipped capture, decoded through ``CaptureTrace``, against ``captures/scenarios.py``.

``scenarios.py`` says what each real peer was told to send (and, for ``auto``/``observed`` entries, what the peer
library was seen to answer). The decoder must find exactly that: one conversation per connection, the handshake's
outcome, every data message per direction in order with its exact bytes after inflating, how it was split into
frames, every ping/pong payload, every close code and reason, and -- for the broken traffic -- the rule that was
broken, as the RFC words it. Connections are matched by request path (``tcp.stream`` order is not the order the
scenario lists concurrent connections in); a connection captured mid-stream, or inside TLS, by its server port.

What a decoder cannot see is not expected of it: nothing inside TLS (wss), and no inflated bytes for a compressed
message that refers back into what was sent before a capture started (``refers_before_capture``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct
from collections.abc import Iterator

import pytest

from captures.scenarios import (
    LARGE_SIZES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    SCENARIOS,
    WRONG_ACCEPT,
    Ping,
)
from captures.scenarios import Close as ScriptedClose
from captures.scenarios import Connection as ScriptedConnection
from captures.scenarios import Frame as ScriptedFrame
from captures.scenarios import Message as ScriptedMessage
from wsinspect.core.checks import Severity
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Event,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.frames import Frame
from wsinspect.trace import CaptureTrace

from .support import WELL_FORMED, capture_path, decode

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
DIRECTIONS: tuple[Direction, Direction] = ("c2s", "s2c")
NAMES = sorted(SCENARIOS)
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)


def hand_accept(key: str) -> str:
    """RFC 6455 4.2.2 item 5.4, computed here rather than by the code under test."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def wire(frame: Frame) -> bytes:
    """The frame's bytes as they were on the wire: the header, then the payload masked again (RFC 6455 5.3)."""
    assert frame.complete
    if frame.masking_key is None:
        return frame.header + frame.payload
    return frame.header + bytes(b ^ frame.masking_key[i % 4] for i, b in enumerate(frame.payload))


# ---- matching decoded conversations to the scenario ------------------------------------------------------------


def matched(name: str) -> list[tuple[ScriptedConnection, list[Event]]]:
    """Each scenario connection with the events of the conversation that is it."""
    streams = decode(name).streams()
    by_path: dict[str, list[int]] = {}
    for stream, events in streams.items():
        requests = [e for e in events if isinstance(e, HandshakeRequest)]
        if requests:
            by_path.setdefault(requests[0].request.target, []).append(stream)
    out: list[tuple[ScriptedConnection, list[Event]]] = []
    used: set[int] = set()
    for conn in SCENARIOS[name].connections:
        if conn.handshake_captured and not conn.tls:
            found = by_path.get(conn.path, [])
        else:
            found = [s for s, events in streams.items() if s not in used
                     and not any(isinstance(e, HandshakeRequest) for e in events)
                     and opened(events).server[1] == conn.server_port]
        assert len(found) == 1, f"{conn.name}: expected one conversation for {conn.path}, found streams {found}"
        used.add(found[0])
        out.append((conn, streams[found[0]]))
    return out


def connection_params() -> Iterator[object]:
    for name in NAMES:
        for index, conn in enumerate(SCENARIOS[name].connections):
            yield pytest.param(name, index, id=f"{name}/{conn.name}")


CONNECTIONS = list(connection_params())


def conversation(name: str, index: int) -> tuple[ScriptedConnection, list[Event]]:
    return matched(name)[index]


def opened(events: list[Event]) -> ConnectionOpened:
    found = [e for e in events if isinstance(e, ConnectionOpened)]
    assert len(found) == 1
    return found[0]


def frames(events: list[Event], direction: Direction) -> list[FrameEvent]:
    return [e for e in events if isinstance(e, FrameEvent) and e.direction == direction]


def violating_packets(conn: ScriptedConnection, events: list[Event]) -> set[tuple[Direction, int | None]]:
    """Where the scenario's deliberately broken frames are: found by their exact wire bytes (fixed masking key)."""
    out: set[tuple[Direction, int | None]] = set()
    for bad in conn.violations():
        hits = [e for e in frames(events, bad.direction) if wire(e.frame) == bad.wire()]
        assert len(hits) == 1, f"{conn.name}: the hand-built frame {bad.wire().hex()} is not decoded exactly once"
        out.add((bad.direction, hits[0].packet))
    return out


def valid(events: list[Event], skip: set[tuple[Direction, int | None]]) -> list[Event]:
    """The events that do not come from a deliberately broken frame."""
    return [e for e in events if (e.direction, e.packet) not in skip]


def data_frame_groups(events: list[Event], direction: Direction, *,
                      unfinished_ok: bool = False) -> list[list[FrameEvent]]:
    """Data frames of one direction, grouped into messages by the FIN bit (finished messages only)."""
    groups: list[list[FrameEvent]] = []
    current: list[FrameEvent] = []
    for event in frames(events, direction):
        if event.frame.opcode in DATA_OPCODES:
            current.append(event)
            if event.frame.fin:
                groups.append(current)
                current = []
    assert unfinished_ok or not current, "a fragmented message never got its final frame"
    return groups


def never_finished(conn: ScriptedConnection) -> bool:
    """The scenario's client stops inside a fragmented message (budget.pcapng)."""
    data = [ev for ev in conn.events if isinstance(ev, ScriptedFrame) and ev.opcode in DATA_OPCODES]
    return bool(data) and not data[-1].fin


def visible_messages(conn: ScriptedConnection, direction: Direction) -> list[ScriptedMessage]:
    """The messages a passive decoder can show: none inside TLS."""
    return [] if conn.tls else conn.messages(direction)


def opcode_of(message: ScriptedMessage) -> int:
    return OP_TEXT if message.kind == "text" else OP_BINARY


# ---- whole captures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_one_conversation_per_connection(name: str) -> None:
    scenario = SCENARIOS[name]
    decoded = decode(name)
    assert decoded.stats.tcp_streams == scenario.tcp_streams
    assert decoded.stats.skipped_streams == 0
    assert not decoded.stats.truncated
    streams = [e.stream for e in decoded.opened()]
    assert len(streams) == len(scenario.connections)
    assert sorted(streams) == list(range(len(streams)))  # Wireshark's tcp.stream numbering
    assert len(matched(name)) == len(scenario.connections)  # and each one is a scripted connection


@pytest.mark.parametrize("name", WELL_FORMED)
def test_no_violation_in_well_formed_traffic(name: str) -> None:
    events = decode(name).events
    assert [e for e in events if isinstance(e, Violation)] == []
    assert [e for e in events if isinstance(e, Notice)] == []  # loopback captures: no gap, nothing cut off
    for event in events:
        if isinstance(event, (HandshakeRequest, HandshakeResponse)):
            serious = [f.check.id for f in event.findings if f.severity is not Severity.INFO]
            assert serious == [], f"stream {event.stream}: {serious}"


def test_midstream_capture_is_decoded_without_complaint() -> None:
    events = decode("midstream").events
    assert [e for e in events if isinstance(e, Violation)] == []
    assert [e.check.id for e in events if isinstance(e, Notice) and e.check.severity is not Severity.INFO] == []


def test_midstream_without_the_port_is_skipped() -> None:
    """Without ``--port`` there is no handshake to recognise: the stream is skipped, not mis-decoded."""
    trace = CaptureTrace(capture_path("midstream"))
    assert list(trace) == []
    assert trace.stats.skipped_streams == 1


def test_midstream_hint_names_the_server_port() -> None:
    """The skipped-stream note tells the user which port to pass to --port. In midstream.pcapng the client's
    ephemeral port (46304) is lower than the server's (47070); the client is the side whose frames are masked
    (RFC 6455 5.1), so the server port is knowable -- and naming the client port sends the user astray."""
    trace = CaptureTrace(capture_path("midstream"))
    list(trace)
    server_port = SCENARIOS["midstream"].connections[0].server_port
    assert [hint for hint in trace.stats.port_hints if hint.endswith(f"--port {server_port}")], trace.stats.port_hints


# ---- per connection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_endpoints(name: str, index: int) -> None:
    conn, events = conversation(name, index)
    start = opened(events)
    assert start.server == (conn.host, conn.server_port)
    assert start.client[0] == conn.host
    assert start.client[1] != conn.server_port
    assert start.mid_stream is (not conn.handshake_captured)
    assert events[0] is start
    ends = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(ends) == 1 and events[-1] is ends[0]


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_handshake(name: str, index: int) -> None:
    conn, events = conversation(name, index)
    requests = [e for e in events if isinstance(e, HandshakeRequest)]
    responses = [e for e in events if isinstance(e, HandshakeResponse)]
    if not conn.handshake_captured or conn.tls:
        assert requests == [] and responses == []
        return
    assert len(requests) == 1 and requests[0].direction == "c2s"
    request = requests[0].request
    assert request.target == conn.path
    if conn.request is not None:  # raw-socket client: the exact bytes it sent
        assert request.raw == conn.request
        assert request.method == conn.request.split(b" ", 1)[0].decode()
    else:
        assert request.method == "GET"
    assert conn.handshake_status is not None
    assert len(responses) == 1 and responses[0].direction == "s2c"
    answer = responses[0]
    assert answer.response.status == conn.handshake_status
    assert answer.upgraded is (conn.handshake_status == 101)
    if conn.response is not None:  # raw-socket server: the exact bytes it sent
        assert answer.response.raw + answer.response.body == conn.response
    findings = [*requests[0].findings, *answer.findings]
    errors = [f for f in findings if f.severity is Severity.ERROR]
    data = [e for e in events if isinstance(e, FrameEvent)]
    if conn.handshake_ok:
        assert errors == []
        key = request.headers.get("Sec-WebSocket-Key")
        assert key is not None
        assert answer.response.headers.get("Sec-WebSocket-Accept") == hand_accept(key)
        assert answer.response.headers.get("Sec-WebSocket-Extensions") == conn.extensions
        assert (answer.deflate is not None) is (conn.extensions is not None)
        assert data, "an accepted handshake is followed by frames here"
    else:
        assert errors, "a handshake a conforming peer must refuse needs at least one error"
        assert data == [], "no frame may follow a failed opening handshake"


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_messages(name: str, index: int) -> None:
    """Every data message per direction, in order: opcode, exact bytes after inflating, frames, compression."""
    conn, all_events = conversation(name, index)
    events = valid(all_events, violating_packets(conn, all_events))
    for direction in DIRECTIONS:
        want = visible_messages(conn, direction)
        got = [e for e in events if isinstance(e, Message) and e.direction == direction]
        # RFC 7692 7.2.3.2: a message that refers back into the uncaptured window cannot be inflated: no bytes
        assert [(m.opcode, m.data) for m in got] == [
            (opcode_of(w), b"" if w.refers_before_capture else w.payload) for w in want], direction
        groups = data_frame_groups(events, direction, unfinished_ok=never_finished(conn))
        assert len(groups) == len(want)
        for message, expected, group in zip(got, want, groups, strict=True):
            first, pieces = group[0].frame, [e.frame for e in group]
            assert message.complete is not expected.refers_before_capture
            assert message.compressed is expected.compressed
            if expected.refers_before_capture:
                assert message.text is None
            else:
                assert message.text == (expected.payload.decode("utf-8") if expected.kind == "text" else None)
            assert message.frames == len(group) == (len(expected.fragments) if expected.fragments else 1)
            assert first.opcode == opcode_of(expected)
            assert all(f.opcode == OP_CONT for f in pieces[1:])
            if not expected.compressed and expected.fragments:
                assert [f.payload_length for f in pieces] == list(expected.fragments)
            # RFC 7692 6.1: RSV1 on the first frame of a compressed message only; RSV2/RSV3 never here.
            assert [f.rsv1 for f in pieces] == [expected.compressed] + [False] * (len(pieces) - 1)
            assert not any(f.rsv2 or f.rsv3 for f in pieces)
            assert message.wire_length == sum(f.payload_length for f in pieces)
            assert message.first_packet == group[0].packet
            assert message.packet == group[-1].packet


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_masking_by_direction(name: str, index: int) -> None:
    """RFC 6455 5.1: every client frame masked, no server frame masked (the broken ones aside)."""
    conn, all_events = conversation(name, index)
    events = valid(all_events, violating_packets(conn, all_events))
    for direction in DIRECTIONS:
        for event in frames(events, direction):
            assert event.frame.masked is (direction == "c2s"), event.packet
            assert (event.frame.masking_key is not None) is event.frame.masked


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_hand_built_frames_exact(name: str, index: int) -> None:
    """Frames built by hand with the fixed masking key are decoded to exactly the bytes that were sent."""
    conn, events = conversation(name, index)
    for direction in DIRECTIONS:
        expected = [ev.wire() for ev in conn.events if isinstance(ev, ScriptedFrame) and ev.direction == direction]
        if not expected:
            continue
        seen = [wire(e.frame) for e in frames(events, direction)]
        remaining = iter(seen)
        assert all(any(w == s for s in remaining) for w in expected), f"{direction}: not in order"


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_pings_and_pongs(name: str, index: int) -> None:
    conn, all_events = conversation(name, index)
    events = valid(all_events, violating_packets(conn, all_events))
    for direction in DIRECTIONS:
        got = [(e.frame.opcode, e.frame.payload) for e in frames(events, direction)
               if e.frame.opcode in (OP_PING, OP_PONG)]
        want = [(OP_PING if isinstance(c, Ping) else OP_PONG, c.payload) for c in conn.controls(direction)]
        assert got == want, direction


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_closes(name: str, index: int) -> None:
    conn, all_events = conversation(name, index)
    events = valid(all_events, violating_packets(conn, all_events))
    for direction in DIRECTIONS:
        got = [(c.code, c.reason) for c in events if isinstance(c, Close) and c.direction == direction]
        want = [] if conn.tls else [(c.code, c.reason) for c in conn.closes(direction)]
        assert got == want, direction
    # Who closed first: the first close frame the scenario has on the wire, broken ones included.
    scripted = [] if conn.tls else [
        ev for ev in conn.events
        if isinstance(ev, ScriptedClose) or (isinstance(ev, ScriptedFrame) and ev.opcode == OP_CLOSE)]
    closes = [e for e in all_events if isinstance(e, Close)]
    assert len(closes) == len(scripted)
    if closes:
        assert [c.initiator for c in closes] == [True] + [False] * (len(closes) - 1)
        assert closes[0].direction == scripted[0].direction
    ended = next(e for e in all_events if isinstance(e, ConnectionClosed))
    both_sent_close = {ev.direction for ev in scripted} == set(DIRECTIONS)
    assert ended.clean is both_sent_close


# ---- capture-specific facts -------------------------------------------------------------------------------------


def test_large_lengths_use_the_minimal_form() -> None:
    """RFC 6455 5.2: 0-125 in 7 bits, 126-65535 in 16 bits, more in 64 bits."""
    (_conn, events), = matched("large")
    for direction in DIRECTIONS:
        data = [e.frame for e in frames(events, direction) if e.frame.opcode in DATA_OPCODES]
        assert [f.payload_length for f in data] == list(LARGE_SIZES)
        assert [f.length_bits for f in data] == [7, 16, 16, 64, 64]
        assert [len(f.header) for f in data] == [2 + 4 * (direction == "c2s") + extra for extra in (0, 2, 2, 8, 8)]
        assert all(f.complete and len(f.payload) == f.payload_length for f in data)


def test_multi_streams_interleave() -> None:
    """The three connections really overlap in time: a per-packet decoder would mix them up."""
    spans = []
    for _conn, events in matched("multi"):
        packets = [e.packet for e in events if isinstance(e, FrameEvent)]
        spans.append((min(packets), max(packets)))
    spans.sort()
    assert all(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def _compressed_sizes(name: str, index: int) -> list[int]:
    _conn, events = matched(name)[index]
    return [e.wire_length for e in events if isinstance(e, Message) and e.direction == "c2s"][:2]


def test_deflate_context_takeover() -> None:
    """RFC 7692 7.2.3.2: with context takeover the second copy refers back to the first and shrinks; with
    client_no_context_takeover it cannot."""
    takeover, fresh = _compressed_sizes("deflate", 0), _compressed_sizes("deflate", 1)
    assert takeover[1] < takeover[0] / 4
    assert fresh[0] == fresh[1]
    (_conn0, events0), (_conn1, events1) = matched("deflate")
    params0 = next(e for e in events0 if isinstance(e, HandshakeResponse)).deflate
    params1 = next(e for e in events1 if isinstance(e, HandshakeResponse)).deflate
    assert params0 is not None and params1 is not None
    assert (params0.client_no_context_takeover, params0.server_no_context_takeover) == (False, False)
    assert (params0.client_max_window_bits, params0.server_max_window_bits) == (12, 12)
    assert (params1.client_no_context_takeover, params1.server_no_context_takeover) == (True, True)
    assert params1.server_max_window_bits == 10


def test_deflate_empty_and_tail_frames() -> None:
    """The compressed empty message is the single byte 0x00 (RFC 7692 7.2.3.6), and so is the final empty
    continuation websockets adds to a compressed fragmented message; neither carries RSV1 beyond the first frame."""
    (_conn, events), _ = matched("deflate")
    for direction in DIRECTIONS:
        groups = data_frame_groups(events, direction)
        empties = [g for g in groups if len(g) == 1 and g[0].frame.rsv1 and g[0].frame.payload == b"\x00"]
        assert len(empties) == 1
        fragmented = [g for g in groups if len(g) > 1]
        assert len(fragmented) == 1
        assert fragmented[0][-1].frame.payload == b"\x00" and not fragmented[0][-1].frame.rsv1
        controls = [e.frame for e in frames(events, direction) if e.frame.opcode >= OP_CLOSE]
        assert controls and not any(f.rsv1 for f in controls)


@pytest.mark.parametrize(("name", "index"), [("deflate", 0), ("deflate", 1), ("browser", 0)],
                         ids=["deflate/context-takeover", "deflate/no-context-takeover", "browser"])
def test_inflated_with_zlib_independently(name: str, index: int) -> None:
    """RFC 7692 7.2.2: append 00 00 ff ff to the compressed payload and inflate it (raw DEFLATE), keeping the
    LZ77 window between messages unless that sender agreed to no_context_takeover. Done here with zlib on the
    frames wsinspect reports, it must give wsinspect's messages and the scenario's bytes."""
    import zlib

    conn, events = matched(name)[index]
    params = next(e for e in events if isinstance(e, HandshakeResponse)).deflate
    assert params is not None
    for direction in DIRECTIONS:
        reset = params.client_no_context_takeover if direction == "c2s" else params.server_no_context_takeover
        inflater = zlib.decompressobj(-15)
        inflated = []
        for group in data_frame_groups(events, direction):
            if not group[0].frame.rsv1:
                inflated.append(b"".join(e.frame.payload for e in group))
                continue
            if reset:
                inflater = zlib.decompressobj(-15)
            inflated.append(inflater.decompress(b"".join(e.frame.payload for e in group) + b"\x00\x00\xff\xff"))
        assert inflated == [m.payload for m in conn.messages(direction)]
        assert inflated == [e.data for e in events if isinstance(e, Message) and e.direction == direction]


def test_browser_handshake_and_compression() -> None:
    (_conn, events), = matched("browser")
    request = next(e for e in events if isinstance(e, HandshakeRequest)).request
    assert request.headers.get("Origin") == "http://127.0.0.1:47111"  # RFC 6455 4.1 item 8: browsers send one
    assert "permessage-deflate" in (request.headers.get("Sec-WebSocket-Extensions") or "")
    for direction in DIRECTIONS:
        data = [e.frame for e in frames(events, direction) if e.frame.opcode in DATA_OPCODES]
        assert data and all(f.rsv1 for f in data)


def test_fragmentation_ping_between_fragments() -> None:
    """RFC 6455 5.4: a control frame may be injected in the middle of a fragmented message."""
    (_conn, events), = matched("fragmentation")
    c2s = [e.frame for e in frames(events, "c2s")]
    i = next(i for i, f in enumerate(c2s) if f.opcode == OP_PING)
    assert (c2s[i - 1].opcode, c2s[i - 1].fin, c2s[i + 1].opcode, c2s[i + 1].fin) == (OP_TEXT, False, OP_CONT, True)
    assert [e.text for e in events if isinstance(e, Message) and e.direction == "c2s"][1] == "fragmented"


def test_ipv6_addresses() -> None:
    (_conn, events), = matched("ipv6")
    start = opened(events)
    assert start.client[0] == start.server[0] == "::1"


# ---- broken traffic: what the RFC says about each case ----------------------------------------------------------

#: hostile connection -> (check id, close code a conforming receiver fails the connection with, RFC reason)
HOSTILE: dict[str, tuple[str, int] | None] = {
    # 8.1 + 7.4.1: text must be UTF-8; a receiver of invalid data fails with 1007
    "hostile-invalid-utf8": ("message.invalid-utf8", 1007),
    # 5.1: "a server MUST close the connection upon receiving a frame that is not masked ... status code 1002"
    "hostile-unmasked": ("frame.client-unmasked", 1002),
    # 5.2: opcodes 0x3-0x7 are reserved; "If an unknown opcode is received, the receiving endpoint MUST _Fail_"
    "hostile-reserved-opcode-3": ("frame.opcode-reserved", 1002),
    # 5.2: RSV1 must be 0 unless an extension defines it: nothing was negotiated
    "hostile-rsv1-without-extension": ("frame.rsv", 1002),
    # 5.5: "All control frames MUST have a payload length of 125 bytes or less"
    "hostile-ping-126": ("control.too-long", 1002),
    # 5.5: "Control frames ... MUST NOT be fragmented"
    "hostile-fragmented-ping": ("control.fragmented", 1002),
    # 7.4.1: 1005 "MUST NOT be set as a status code in a Close control frame by an endpoint"
    "hostile-close-1005-on-wire": ("close.code-invalid", 1002),
    # 5.2: "the minimal number of bytes MUST be used to encode the length" -- broken even though websockets
    # accepted it (the scenario marks it violation=None because the server let it through)
    "hostile-non-minimal-length": ("frame.length-not-minimal", 1002),
    "hostile-terminal-escapes": None,  # valid UTF-8 text: escapes and markup are data, not a violation
}


def test_hostile_table_covers_every_connection() -> None:
    assert sorted(HOSTILE) == sorted(c.name for c in SCENARIOS["hostile"].connections)


@pytest.mark.parametrize("index", range(len(SCENARIOS["hostile"].connections)),
                         ids=[c.name for c in SCENARIOS["hostile"].connections])
def test_hostile_violation(index: int) -> None:
    conn, events = matched("hostile")[index]
    violations = [e for e in events if isinstance(e, Violation)]
    expected = HOSTILE[conn.name]
    if expected is None:
        assert violations == []
        return
    check_id, close_code = expected
    assert [(v.check.id, v.check.close_code, v.direction) for v in violations] == [(check_id, close_code, "c2s")]
    # reported at the frame that broke the rule: the hand-built frame (exact bytes) or the one with 16-bit length
    culprits = [ev for ev in conn.events if isinstance(ev, ScriptedFrame) and ev.direction == "c2s"][:1]
    hits = [e for e in frames(events, "c2s") if wire(e.frame) == culprits[0].wire()]
    assert len(hits) == 1 and violations[0].packet == hits[0].packet
    assert violations[0].offset == hits[0].frame.offset
    assert violations[0].check.rfc.startswith("RFC 6455")
    # the real server (websockets) agreed: where it reacted, it failed the connection with the same code
    reactions = [c for c in conn.closes("s2c") if c.observed]
    if reactions:
        assert reactions[0].code == close_code
    assert not [e for e in events if isinstance(e, Notice)]


def test_hostile_close_1005_is_still_shown() -> None:
    """The broken close frame is decoded for what it says (code 1005, no reason), besides being flagged."""
    _conn, events = next((c, e) for c, e in matched("hostile") if c.name == "hostile-close-1005-on-wire")
    assert [(c.direction, c.code, c.reason) for c in events if isinstance(c, Close)] == [
        ("c2s", 1005, ""), ("s2c", 1002, "invalid status code")]
    assert struct.pack("!H", 1005) == next(e.frame.payload for e in frames(events, "c2s"))


#: bad-handshake connection -> the errors RFC 6455 makes of it (the rule a server/client enforces)
BAD_HANDSHAKE: dict[str, set[str]] = {
    # 4.2.1 item 6: |Sec-WebSocket-Version| must be 13; and 4.4: the refusal must list the supported versions,
    # which websockets' 400 does not.
    "bad-version-8": {"request.websocket-version", "response.version-list"},
    "bad-missing-key": {"request.key"},  # 4.2.1 item 5
    "bad-key-not-16-bytes": {"request.key"},  # 4.2.1 item 5: base64 of a 16-byte nonce
    "bad-post": {"request.method"},  # 4.2.1 item 1: "An HTTP/1.1 or higher GET request"
    "bad-missing-upgrade": {"request.upgrade"},  # 4.2.1 item 3
    "bad-wrong-accept": {"response.accept"},  # 4.1: the client MUST fail the connection (item 4)
}


@pytest.mark.parametrize("index", range(len(SCENARIOS["bad-handshake"].connections)),
                         ids=[c.name for c in SCENARIOS["bad-handshake"].connections])
def test_bad_handshake_findings(index: int) -> None:
    conn, events = matched("bad-handshake")[index]
    request = next(e for e in events if isinstance(e, HandshakeRequest))
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    errors = {f.check.id for f in (*request.findings, *response.findings) if f.severity is Severity.ERROR}
    assert errors == BAD_HANDSHAKE[conn.name]
    statuses = [f for f in response.findings if f.check.id == "response.status"]
    assert bool(statuses) is (conn.handshake_status != 101)  # 4.1 item 1: only 101 upgrades
    assert not [e for e in events if isinstance(e, (FrameEvent, Message, Close, Violation))]
    ended = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(ended) == 1 and not ended[0].clean


def test_bad_handshake_wrong_accept_expected_vs_got() -> None:
    _conn, events = next((c, e) for c, e in matched("bad-handshake") if c.name == "bad-wrong-accept")
    assert hand_accept(SAMPLE_KEY) == SAMPLE_ACCEPT  # the RFC 6455 1.3 example, computed independently
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    accept = [f for f in response.findings if f.check.id == "response.accept"]
    assert len(accept) == 1
    assert (accept[0].expected, accept[0].got) == (SAMPLE_ACCEPT, WRONG_ACCEPT)


def test_version_refusal_must_list_versions() -> None:
    """RFC 6455 4.4: "If the server doesn't support the requested version, it MUST respond with a
    |Sec-WebSocket-Version| header field ... containing all versions it is willing to use" (also 4.2.2 item 4 of
    /version/: "such as 426 Upgrade Required" -- the status is an example, the header is required). websockets
    answered version 8 with a 400 that has no Sec-WebSocket-Version: the response must get a finding about it."""
    _conn, events = next((c, e) for c, e in matched("bad-handshake") if c.name == "bad-version-8")
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert response.response.headers.get("Sec-WebSocket-Version") is None
    assert [f for f in response.findings if "version" in f.check.id], [f.check.id for f in response.findings]


def test_426_for_missing_upgrade_needs_no_version_list() -> None:
    """The request asked for version 13 and lacked Upgrade; the server answered 426 with ``Upgrade: websocket``
    (what RFC 7231 6.5.15 asks of a 426). Nothing in RFC 6455 asks this answer to carry Sec-WebSocket-Version."""
    _conn, events = next((c, e) for c, e in matched("bad-handshake") if c.name == "bad-missing-upgrade")
    request = next(e for e in events if isinstance(e, HandshakeRequest)).request
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert request.headers.get("Sec-WebSocket-Version") == "13"
    assert response.response.headers.get("Upgrade") == "websocket"
    assert [f.check.id for f in response.findings if "version" in f.check.id] == []
