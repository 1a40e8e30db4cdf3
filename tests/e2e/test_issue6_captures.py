"""What real captures exposed (issue 6): each case with its capture under ``captures/`` and what the decoder must say.

* ``midstream-deflate``: joined after the handshake on a compressed session. Every frame shown as compressed, every
  message inflated that can be without the earlier window, the one that cannot said plainly (RFC 7692 7.2.3.2).
* ``wss``: TLS is reported as TLS, with what the ClientHello says in clear; never decoded as WebSocket.
* ``plain-http``: a GET whose hop-by-hop Upgrade/Connection a proxy dropped is a failed opening handshake.
* ``budget``: 20 open compressed fragmented messages stay within the memory budget; every frame still shown.

Expected values come from ``captures/scenarios.py`` (what the peers were told to send), from zlib run here on the
scenario's bytes, or from the Python ``ssl`` module; never from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib

from captures.scenarios import (
    BUDGET_CONNECTIONS,
    BUDGET_FRAGMENTS,
    BUDGET_PIECE,
    SCENARIOS,
)
from captures.scenarios import Message as ScriptedMessage
from wsinspect.core.checks import Severity
from wsinspect.core.connection import Connection
from wsinspect.core.events import (
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
from wsinspect.trace import CaptureTrace

from .support import ROOT, capture_path, decode

DIRECTIONS: tuple[Direction, Direction] = ("c2s", "s2c")
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: appended before inflating


def of_stream(events: tuple[Event, ...] | list[Event], stream: int) -> list[Event]:
    return [e for e in events if e.stream == stream]


# ---- midstream-deflate ------------------------------------------------------------------------------------------

MIDSTREAM = SCENARIOS["midstream-deflate"].connections[0]


def test_midstream_deflate_every_frame_is_shown_as_compressed() -> None:
    events = decode("midstream-deflate").events
    frames = [e.frame for e in events if isinstance(e, FrameEvent)]
    captured = [ev for ev in MIDSTREAM.events if isinstance(ev, ScriptedMessage)]
    closes = 2
    assert len(frames) == len(captured) + closes  # one frame per message here, then the close and its answer
    data = [f for f in frames if f.opcode in (1, 2)]
    assert len(data) == len(captured) and all(f.rsv1 for f in data)  # RSV1: compressed (RFC 7692 6.1)
    assert [e for e in events if isinstance(e, Violation)] == []  # RSV1 without a seen handshake is no violation
    start = next(e for e in events if isinstance(e, ConnectionOpened))
    assert start.mid_stream and start.server[1] == MIDSTREAM.server_port
    assert [m.compressed for m in events if isinstance(m, Message)] == [True] * len(captured)


def test_midstream_deflate_says_which_messages_cannot_be_inflated() -> None:
    events = decode("midstream-deflate").events
    for direction in DIRECTIONS:
        want = MIDSTREAM.messages(direction)
        got = [e for e in events if isinstance(e, Message) and e.direction == direction]
        assert [m.complete for m in got] == [not w.refers_before_capture for w in want]
        assert [m.data for m in got if m.complete] == [w.payload for w in want if not w.refers_before_capture]
        notices = [e for e in events if isinstance(e, Notice) and e.direction == direction]
        lost = [n for n in notices if n.check.id == "message.inflate-context-lost"]
        assert len(lost) == sum(w.refers_before_capture for w in want)
        assert all(n.check.rfc.startswith("RFC 7692") and "cannot be inflated" in n.message for n in lost)
        # the notice comes with the message it is about: just before that message's event
        for notice in lost:
            after = events[events.index(notice) + 1]
            assert isinstance(after, Message) and not after.complete and after.direction == direction


def test_midstream_deflate_verdicts_agree_with_zlib() -> None:
    """zlib itself, on the frames' payloads: each message the decoder could not inflate really refers back before
    the capture (a fresh raw inflater stops with "too far back"; given the scenario's uncaptured messages as its
    window, it gives the scenario's bytes); each message it inflated, zlib inflates to the same bytes from the window
    of the messages seen since."""
    events = decode("midstream-deflate").events
    for direction in DIRECTIONS:
        payloads = [e.frame.payload for e in events
                    if isinstance(e, FrameEvent) and e.direction == direction and e.frame.opcode in (1, 2)]
        before = b"".join(m.payload for m in MIDSTREAM.before_capture
                          if isinstance(m, ScriptedMessage) and m.direction == direction)
        seen = b""  # what was inflated since the capture started, as a window for the next message
        for payload, want in zip(payloads, MIDSTREAM.messages(direction), strict=True):
            fresh = zlib.decompressobj(-15, zdict=seen) if seen else zlib.decompressobj(-15)
            if want.refers_before_capture:
                try:
                    fresh.decompress(payload + TAIL)
                except zlib.error as error:
                    assert "too far back" in str(error)
                else:
                    raise AssertionError("a message the scenario says refers back inflated without the window")
                full = zlib.decompressobj(-15, zdict=before)
                assert full.decompress(payload + TAIL) == want.payload
                seen = b""  # its bytes are in the sender's window but not in ours
            else:
                assert fresh.decompress(payload + TAIL) == want.payload
                seen = (seen + want.payload)[-32768:]


def test_midstream_deflate_without_the_port_is_skipped_with_a_hint() -> None:
    trace = CaptureTrace(capture_path("midstream-deflate"))
    assert list(trace) == []
    assert trace.stats.skipped_streams == 1
    assert [h for h in trace.stats.port_hints if h.endswith(f"--port {MIDSTREAM.server_port}")]


# ---- wss --------------------------------------------------------------------------------------------------------

WSS = SCENARIOS["wss"].connections[0]


def test_tls_is_reported_as_tls_and_nothing_inside_is_decoded() -> None:
    for ports in ((), (WSS.server_port,)):  # --port does not make TLS bytes into WebSocket frames
        events = list(CaptureTrace(capture_path("wss"), server_ports=ports))
        assert [type(e) for e in events] == [ConnectionOpened, Notice, ConnectionClosed], ports
        opened, notice, closed = events
        assert isinstance(opened, ConnectionOpened) and opened.server == (WSS.host, WSS.server_port)
        assert isinstance(notice, Notice) and notice.check.id == "capture.tls"
        assert notice.check.severity is Severity.INFO and notice.direction == "c2s"
        assert f"server name (SNI) {WSS.sni}" in notice.message
        assert f"ALPN {', '.join(WSS.alpn)}" in notice.message
        assert "TLS 1.3" in notice.message  # Python's ssl module offers TLS 1.3 and 1.2 by default
        assert isinstance(closed, ConnectionClosed) and not closed.clean


# ---- plain-http -------------------------------------------------------------------------------------------------


def test_plain_http_requests_are_failed_handshakes_with_the_hop_by_hop_diagnosis() -> None:
    decoded = decode("plain-http")
    assert decoded.stats.skipped_streams == 0
    by_path = {}
    for events in decoded.streams().values():
        request = next(e for e in events if isinstance(e, HandshakeRequest))
        by_path[request.request.target] = (request, next(e for e in events if isinstance(e, HandshakeResponse)),
                                           events)
    for conn in SCENARIOS["plain-http"].connections:
        request, response, events = by_path[conn.path]
        assert request.request.raw == conn.request
        ids = [f.check.id for f in request.findings]
        assert {"request.upgrade", "request.connection", "request.upgrade-stripped"} <= set(ids)
        stripped = next(f for f in request.findings if f.check.id == "request.upgrade-stripped")
        assert stripped.check.rfc == "RFC 9110 7.6.1"
        if "Sec-WebSocket-Key" in request.request.headers:
            assert "proxy" in stripped.message and "Sec-WebSocket-Key" in stripped.message
        assert response.response.status == conn.handshake_status and not response.upgraded
        status = next(f for f in response.findings if f.check.id == "response.status")
        assert str(conn.handshake_status) in status.message and "plain HTTP request" in status.message
        assert "response.version-list" not in [f.check.id for f in response.findings]  # no version was asked for
        assert not any(isinstance(e, FrameEvent) for e in events)


# ---- budget -----------------------------------------------------------------------------------------------------

_RSS_CHILD = textwrap.dedent("""
    import json, resource, sys
    from wsinspect.core.events import FrameEvent, Notice
    from wsinspect.trace import CaptureTrace
    trace = CaptureTrace(sys.argv[1])
    frames = cut = 0
    for event in trace:
        frames += isinstance(event, FrameEvent)
        cut += isinstance(event, Notice) and event.check.id == "capture.memory-budget"
    print(json.dumps({"frames": frames, "cut": cut, "budget": trace.budget.limit, "peak": trace.budget.peak,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


def _decode_in_child(name: str) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(capture_path(name))], capture_output=True,
                          cwd=ROOT, timeout=300, check=True)
    result: dict[str, int] = json.loads(done.stdout)
    return result


def test_budget_bounds_memory_across_all_conversations() -> None:
    """20 streams, each an open compressed message of 60 x 1 MiB inflated: 1.2 GiB if each were bounded only by
    --max-message. Within the budget, peak RSS stays under a baseline (the same decoder on a small capture) plus the
    budget plus 32 MiB; every frame is still decoded."""
    baseline = _decode_in_child("echo")
    budget = _decode_in_child("budget")
    assert budget["frames"] == BUDGET_CONNECTIONS * BUDGET_FRAGMENTS
    assert budget["cut"] == BUDGET_CONNECTIONS  # each message cut once, when the budget ran out
    assert budget["peak"] <= budget["budget"]
    assert budget["rss"] < baseline["rss"] + budget["budget"] + 32 * 1024 * 1024, (baseline, budget)


def test_budget_cut_is_a_prefix_and_is_released() -> None:
    """With a small budget the messages are cut short: the capture ends inside each (no final fragment), each
    stream says both facts, and what was held goes back to the budget when its stream ends."""
    trace = CaptureTrace(capture_path("budget"), memory_budget=3 * len(BUDGET_PIECE))
    events = list(trace)
    assert trace.budget.peak <= trace.budget.limit and trace.budget.held == 0
    for stream in range(BUDGET_CONNECTIONS):
        mine = of_stream(events, stream)
        assert sum(isinstance(e, FrameEvent) for e in mine) == BUDGET_FRAGMENTS
        ids = [e.check.id for e in mine if isinstance(e, Notice)]
        assert ids.count("capture.unfinished-message") == 1
        assert ids.count("capture.memory-budget") <= 1
    assert sum(isinstance(e, Notice) and e.check.id == "capture.memory-budget" for e in events) >= \
        BUDGET_CONNECTIONS - 3


def test_midstream_deflate_resynchronises_when_the_capture_starts_inside_a_frame() -> None:
    """The first captured bytes may be the middle of a frame: whatever the cut, every later frame is found (with
    RSV1 set, which the boundary hunt must accept when no handshake was seen) and the skipped bytes are reported."""
    events = decode("midstream-deflate").events
    for direction in DIRECTIONS:
        frames = [e.frame for e in events if isinstance(e, FrameEvent) and e.direction == direction]
        stream = b"".join(f.header + f.wire_payload for f in frames)
        first = frames[0].size
        for cut in range(1, first):
            conn = Connection(0, mid_stream=True)
            got = conn.receive(direction, stream[cut:], time=0.0) + conn.end(time=1.0)
            found = [(e.frame.offset + cut, e.frame.header) for e in got if isinstance(e, FrameEvent)]
            assert found == [(f.offset, f.header) for f in frames[1:]], (direction, cut)
            skipped = [e for e in got if isinstance(e, Notice) and e.check.id == "capture.resync"]
            assert len(skipped) == 1 and str(first - cut) in skipped[0].message
