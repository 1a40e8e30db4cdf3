"""Chunking invariance: the same bytes give the same events however they are split (frames.py's promise).

Random sessions (handshake with or without permessage-deflate, fragmented messages with control frames between
fragments, random masks, payload sizes around the 125/126 and 65535/65536 length-form boundaries, compressed
messages made by MessageDeflater, and in "dirty" sessions arbitrary frames that break rules) are fed to a
Connection in one chunk per direction, in random chunks, one byte at a time (small sessions), and interleaved
between the directions. Clean sessions also check the decoded messages against what was sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsinspect.core.connection import Connection, Limits
from wsinspect.core.deflate import MessageDeflater
from wsinspect.core.events import Event, Message

from .helpers import BINARY, CLOSE, CONT, PING, PONG, TEXT, encode, request_bytes, response_bytes, strip, violations

BOUNDARY_SIZES = [0, 1, 124, 125, 126, 127, 65535, 65536, 65537]
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])


@dataclass
class Session:
    c2s: bytes
    s2c: bytes
    limits: Limits
    clean: bool
    sent: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)


@st.composite
def payloads(draw: st.DrawFn, opcode: int, clean: bool) -> bytes:
    size = draw(st.one_of(st.integers(0, 300), st.sampled_from(BOUNDARY_SIZES)))
    if size > 300:
        seed = draw(st.integers(0, 2**16))
        if opcode == TEXT:
            return ("aé☃😀" * (size // 10 + 1)).encode()[:size].decode("utf-8", "ignore").encode()
        return random.Random(seed).randbytes(size)
    if opcode == TEXT and (clean or draw(st.booleans())):
        return draw(st.text(max_size=size)).encode()
    return draw(st.binary(min_size=size, max_size=size))


@st.composite
def direction_bytes(draw: st.DrawFn, direction: str, deflater: MessageDeflater | None, clean: bool,
                    sent: list[tuple[int, bytes]]) -> bytes:
    masked = direction == "c2s"

    def frame(opcode: int, payload: bytes, **kw: object) -> bytes:
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        return encode(opcode, payload, key=key, **kw)  # type: ignore[arg-type]

    def control() -> bytes:
        return frame(draw(st.sampled_from([PING, PONG])), draw(st.binary(max_size=125)))

    out = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["message", "message", "control", "raw"] if not clean else
                                    ["message", "message", "control"]))
        if kind == "control":
            out.append(control())
            continue
        if kind == "raw":
            first = draw(st.integers(0, 255))
            payload = draw(st.binary(max_size=200))
            bits = draw(st.sampled_from([None, None, 16, 64]))
            wire = encode(first & 0x0F, payload, fin=bool(first & 0x80), rsv1=bool(first & 0x40),
                          rsv2=bool(first & 0x20), rsv3=bool(first & 0x10), length_bits=bits,
                          key=draw(st.binary(min_size=4, max_size=4)) if draw(st.booleans()) else None)
            out.append(wire)
            continue
        opcode = draw(st.sampled_from([TEXT, BINARY]))
        payload = draw(payloads(opcode, clean))
        compress = deflater is not None and deflater.enabled and draw(st.booleans())
        body = deflater.compress(payload) if compress else payload  # type: ignore[union-attr]
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        for i, piece in enumerate(pieces):
            if i and draw(st.booleans()):
                out.append(control())  # RFC 6455 5.4: control frames may be injected between fragments
            out.append(frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1, rsv1=compress and i == 0))
        sent.append((opcode, payload))
    if draw(st.booleans()):
        out.append(frame(CLOSE, draw(st.sampled_from([b"", b"\x03\xe8", b"\x03\xe9bye"]))))
    return b"".join(out)


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    clean = draw(st.booleans())
    deflate = draw(st.booleans())
    offer = accept = None
    deflaters: dict[str, MessageDeflater | None] = {"c2s": None, "s2c": None}
    if deflate:
        client_nct, server_nct = draw(st.booleans()), draw(st.booleans())
        client_bits, server_bits = draw(st.sampled_from([15, 10, 9, 8])), draw(st.sampled_from([15, 12, 9, 8]))
        offer = "permessage-deflate; client_max_window_bits"
        params = ["permessage-deflate"]
        params += ["client_no_context_takeover"] if client_nct else []
        params += ["server_no_context_takeover"] if server_nct else []
        params += [f"client_max_window_bits={client_bits}"] if client_bits != 15 else []
        params += [f"server_max_window_bits={server_bits}"] if server_bits != 15 else []
        accept = "; ".join(params)
        deflaters = {"c2s": MessageDeflater(no_context_takeover=client_nct, max_window_bits=client_bits),
                     "s2c": MessageDeflater(no_context_takeover=server_nct, max_window_bits=server_bits)}
    sent: dict[str, list[tuple[int, bytes]]] = {"c2s": [], "s2c": []}
    c2s = request_bytes(extensions=offer) + draw(direction_bytes("c2s", deflaters["c2s"], clean, sent["c2s"]))
    s2c = response_bytes(extensions=accept) + draw(direction_bytes("s2c", deflaters["s2c"], clean, sent["s2c"]))
    limits = Limits()
    if not clean and draw(st.booleans()):
        limits = Limits(max_frame=draw(st.sampled_from([50, 200, 70000])),
                        max_message=draw(st.sampled_from([100, 300, 70000])))
    return Session(c2s, s2c, limits, clean, sent)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def run(session: Session, chunks: list[tuple[str, bytes]]) -> list[Event]:
    conn = Connection(3, limits=session.limits)
    events: list[Event] = []
    for number, (direction, data) in enumerate(chunks):
        events += conn.receive(direction, data, time=float(number), packet=number)  # type: ignore[arg-type]
    events += conn.end(time=-1.0)
    return events


def normal(events: list[Event], *, initiator: bool = True) -> list[Event]:
    return [strip(e, initiator=initiator) for e in events]


@SETTINGS
@given(session=sessions(), data=st.data())
def test_chunking_does_not_change_events(session: Session, data: st.DataObject) -> None:
    whole = normal(run(session, [("c2s", session.c2s), ("s2c", session.s2c)]))

    points = st.lists(st.integers(0, 1 << 20), max_size=25)
    c2s_chunks = cut(session.c2s, data.draw(points, label="c2s cuts"))
    s2c_chunks = cut(session.s2c, data.draw(points, label="s2c cuts"))
    split = [("c2s", c) for c in c2s_chunks] + [("s2c", c) for c in s2c_chunks]
    assert normal(run(session, split)) == whole

    if len(session.c2s) + len(session.s2c) <= 4000:
        bytewise = [("c2s", session.c2s[i : i + 1]) for i in range(len(session.c2s))]
        bytewise += [("s2c", session.s2c[i : i + 1]) for i in range(len(session.s2c))]
        assert normal(run(session, bytewise)) == whole

    # Interleaved: only each direction's own story must not change (who closed first can).
    order = data.draw(st.permutations(["c2s"] * len(c2s_chunks) + ["s2c"] * len(s2c_chunks)), label="order")
    queues = {"c2s": list(c2s_chunks), "s2c": list(s2c_chunks)}
    mixed = [(d, queues[d].pop(0)) for d in order]
    mixed_events = normal(run(session, mixed), initiator=False)
    whole_no_initiator = normal(run(session, [("c2s", session.c2s), ("s2c", session.s2c)]), initiator=False)
    for direction in ("c2s", "s2c"):
        assert [e for e in mixed_events if e.direction == direction] == [
            e for e in whole_no_initiator if e.direction == direction]

    if session.clean:
        # An oracle, not only invariance: a conforming session decodes to exactly what was sent.
        assert violations(whole) == []
        for direction in ("c2s", "s2c"):
            got = [(m.opcode, m.data) for m in whole if isinstance(m, Message) and m.direction == direction]
            assert got == session.sent[direction]


@SETTINGS
@given(data=st.data())
def test_mid_stream_resync_does_not_depend_on_chunking(data: st.DataObject) -> None:
    """A capture that starts anywhere inside a frame stream: where decoding resumes depends on the bytes only, and
    so does which compressed messages can be inflated without the window of the messages before the start."""
    direction = data.draw(st.sampled_from(["c2s", "s2c"]), label="direction")
    compressed = data.draw(st.booleans(), label="compressed")
    deflater = MessageDeflater(no_context_takeover=False, max_window_bits=15) if compressed else None
    clean = data.draw(st.booleans(), label="clean")
    sent: list[tuple[int, bytes]] = []
    stream = data.draw(direction_bytes(direction, deflater, clean, sent), label="stream")
    start = data.draw(st.integers(0, len(stream)), label="start")
    tail = stream[start:]

    def decode(chunks: list[bytes]) -> list[Event]:
        conn = Connection(mid_stream=True)
        events: list[Event] = []
        for number, chunk in enumerate(chunks):
            events += conn.receive(direction, chunk, time=float(number))  # type: ignore[arg-type]
        return normal(events + conn.end(time=-1.0))

    whole = decode([tail])
    if clean and start == 0:
        # Joined at a frame boundary before the first message: the inflater's window, empty at the start, is the
        # sender's, so every message is shown whole and exact, compressed or not.
        assert [(e.opcode, e.data) for e in whole if isinstance(e, Message)] == sent
    assert decode(cut(tail, data.draw(st.lists(st.integers(0, 1 << 20), max_size=25), label="cuts"))) == whole
    if len(tail) <= 3000:
        assert decode([tail[i : i + 1] for i in range(len(tail))]) == whole


def test_header_limit_does_not_depend_on_chunking() -> None:
    raw = request_bytes(extra="X-Padding: " + "p" * 200 + "\r\n")
    outcomes = []
    for chunks in ([raw], [raw[:250], raw[250:]]):
        conn = Connection(limits=Limits(max_header_bytes=240))
        events: list[Event] = []
        for chunk in chunks:
            events += conn.receive("c2s", chunk, time=0.0)
        outcomes.append([type(e).__name__ for e in events])
    assert outcomes[0] == outcomes[1]


def test_refusal_body_does_not_depend_on_chunking() -> None:
    response = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
    bodies = []
    for chunks in ([response], [response[:-5], response[-5:]]):
        conn = Connection()
        conn.receive("c2s", request_bytes(), time=0.0)
        events: list[Event] = []
        for chunk in chunks:
            events += conn.receive("s2c", chunk, time=0.0)
        events += conn.end(time=1.0)
        bodies.append([e.response.body for e in events if hasattr(e, "response")])  # type: ignore[attr-defined]
    assert bodies[0] == bodies[1]
