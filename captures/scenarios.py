"""What every sample capture under ``captures/`` contains: the single source of truth.

``captures/record.py`` drives real peers from this data (each peer is told to send exactly the
events listed for its direction, and checks it receives the other direction), and the tests decode
each ``.pcapng`` with wsinspect and compare the result against it (and cross-check with tshark).

Model
-----
``SCENARIOS`` maps a capture name (``"echo"`` -> ``captures/echo.pcapng``) to a :class:`Scenario`.
A scenario holds :class:`Connection` objects in the order their TCP connections are opened (which
is also tshark's ``tcp.stream`` order, except in ``multi`` where the three connections are opened
concurrently). Each connection holds ``events``: the ordered list of what each peer was told to
send, *as seen on the wire* -- both directions in one list, each event tagged ``"c2s"`` or ``"s2c"``.

* :class:`Message` -- a whole data message sent through a library's normal API.
* :class:`Frame` -- one frame built by hand (websocket-client ``send_frame`` or a raw socket).
  ``Frame.wire()`` gives the exact bytes when the masking key is fixed (always, here).
* :class:`Ping` / :class:`Pong` / :class:`Close` -- control frames.

``auto=True`` marks frames the *peer's library* produced on its own (the pong answering a ping,
the close frame answering a close); their content is the peer's observed behaviour, checked in
tshark when the captures were recorded.  ``observed=True`` on a :class:`Close` means the same for a
close frame that the peer sent in reaction to a protocol violation.

Ordering: the order *within one direction* is exact. The interleaving *between* directions is the
order the script enforces (a peer waits to receive what precedes its own send), except for
``auto`` frames, which the peer's library sends whenever it processes the frame they answer
(e.g. the pong to a ping sent between two fragments may come before or after the next fragment).

For the tests, use the helpers: ``conn.messages(direction)`` (reassembled data messages, including
those built from hand-made frames), ``conn.controls(direction)`` (pings/pongs in order),
``conn.closes(direction)`` and ``conn.violations()``.

Ports are fixed per scenario (47000-47199) so the tests can pass ``--port``; ``record.py`` refuses
to record if one is busy. Client ports are ephemeral.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["c2s", "s2c"]
Kind = Literal["text", "binary"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Fixed masking key used for every hand-built client frame (the example key of RFC 6455 5.7).
MASK = bytes.fromhex("37fa213d")
#: Fixed Sec-WebSocket-Key used by raw and websocket-client handshakes (the RFC 6455 1.3 sample).
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@dataclass(frozen=True)
class Message:
    """A whole data message sent through a library's normal API (``ws.send``)."""

    direction: Direction
    kind: Kind
    payload: bytes  # exact application payload (UTF-8 bytes for text), uncompressed
    #: How the sender split the payload into frames (sizes of the *uncompressed* pieces, in order;
    #: sums to len(payload)). None = one frame. websockets' ``send(iterable)`` always ends with an
    #: empty FIN continuation frame, so its fragment tuples end in 0.
    fragments: tuple[int, ...] | None = None
    #: permessage-deflate applied: RSV1 set on the first frame, payload on the wire is deflated.
    compressed: bool = False
    #: The message repeats what this direction sent before the capture started: with context takeover its
    #: compressed form refers back into bytes the capture does not hold (RFC 7692 7.2.3.2), so a decoder that
    #: joined mid-connection cannot inflate it.
    refers_before_capture: bool = False
    note: str = ""

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


@dataclass(frozen=True)
class Frame:
    """One hand-built frame. ``mask`` is the fixed masking key, or None for an unmasked frame."""

    direction: Direction
    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    mask: bytes | None = None
    #: Force the length encoding: None = minimal (7-bit, 16-bit or 64-bit as RFC 6455 requires),
    #: 16 or 64 = non-minimal extended length.
    length_bits: int | None = None
    #: Set when the frame breaks RFC 6455 (a decoder should flag it): short description.
    violation: str | None = None
    note: str = ""

    def wire(self) -> bytes:
        """The exact bytes of this frame on the wire."""
        b0 = (0x80 if self.fin else 0) | (0x40 if self.rsv1 else 0) | (self.opcode & 0x0F)
        mbit = 0x80 if self.mask is not None else 0
        n = len(self.payload)
        bits = self.length_bits or (7 if n < 126 else 16 if n < 65536 else 64)
        if bits == 7:
            head = bytes([b0, mbit | n])
        elif bits == 16:
            head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
        else:
            head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
        if self.mask is None:
            return head + self.payload
        masked = bytes(b ^ self.mask[i % 4] for i, b in enumerate(self.payload))
        return head + self.mask + masked


@dataclass(frozen=True)
class Ping:
    direction: Direction
    payload: bytes = b""


@dataclass(frozen=True)
class Pong:
    direction: Direction
    payload: bytes = b""
    auto: bool = True  # sent by the peer's library in answer to a ping


@dataclass(frozen=True)
class Close:
    direction: Direction
    code: int | None  # None = close frame with an empty payload (no status code)
    reason: str = ""
    auto: bool = False  # the peer's library answering the other side's close
    observed: bool = False  # the peer's own reaction to a protocol violation (recorded from tshark)
    #: Close frame absent: the peer dropped TCP without a close frame (never the case so far).
    note: str = ""


Event = Message | Frame | Ping | Pong | Close


@dataclass(frozen=True)
class Connection:
    name: str
    server_port: int
    client: str  # "websockets" | "websocket-client" | "raw" | "chromium"
    server: str  # "websockets" | "raw"
    path: str = "/"
    host: str = "127.0.0.1"  # server address ("::1" for IPv6)
    #: HTTP status of the opening handshake response; None = no response at all.
    handshake_status: int | None = 101
    #: False when the 101 response is not a valid WebSocket accept (e.g. wrong Sec-WebSocket-Accept):
    #: the client then fails the connection and no frames follow.
    handshake_ok: bool = True
    #: Exact request bytes for raw-socket clients (None = generated by the client library).
    request: bytes | None = None
    #: Exact response bytes for raw-socket servers.
    response: bytes | None = None
    #: Sec-WebSocket-Extensions value of the 101 response (None = no extension negotiated).
    #: Observed from the real server.
    extensions: str | None = None
    #: Recording recipe for permessage-deflate: "off", "default" (websockets defaults on both
    #: sides), "no-context-takeover" (client/server_no_context_takeover + server_max_window_bits=10),
    #: "browser" (whatever Chromium offers; websockets server defaults).
    compression: str = "off"
    #: False for the mid-stream captures: the handshake happened before dumpcap started.
    handshake_captured: bool = True
    #: Exchanged after the handshake but before dumpcap started (not in the file; they fill the compressor's
    #: window with context takeover).
    before_capture: tuple[Event, ...] = ()
    events: tuple[Event, ...] = ()
    #: wss://: the WebSocket runs inside TLS (self-signed certificate made at record time); ``sni`` is the
    #: server name the client sends in its ClientHello, ``alpn`` the protocols it offers.
    tls: bool = False
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    notes: str = ""

    # ---- helpers for tests -------------------------------------------------------------------
    def messages(self, direction: Direction) -> list[Message]:
        """Data messages in ``direction`` in order, hand-built frames reassembled.

        Frames marked ``violation`` are skipped (they fail the connection)."""
        out: list[Message] = []
        pending: list[Frame] = []
        for ev in self.events:
            if ev.direction != direction:
                continue
            if isinstance(ev, Message):
                out.append(ev)
            elif (
                isinstance(ev, Frame)
                and ev.violation is None
                and ev.opcode
                in (
                    OP_CONT,
                    OP_TEXT,
                    OP_BINARY,
                )
            ):
                pending.append(ev)
                if ev.fin:
                    first = pending[0]
                    kind: Kind = "text" if first.opcode == OP_TEXT else "binary"
                    sizes = tuple(len(f.payload) for f in pending)
                    out.append(
                        Message(
                            direction,
                            kind,
                            b"".join(f.payload for f in pending),
                            fragments=sizes if len(pending) > 1 else None,
                            compressed=first.rsv1,
                        )
                    )
                    pending = []
        return out

    def controls(self, direction: Direction) -> list[Ping | Pong]:
        """Pings and pongs in ``direction``, in order (hand-built valid ones included as Ping/Pong)."""
        out: list[Ping | Pong] = []
        for ev in self.events:
            if ev.direction != direction:
                continue
            if isinstance(ev, (Ping, Pong)):
                out.append(ev)
            elif isinstance(ev, Frame) and ev.violation is None:
                if ev.opcode == OP_PING:
                    out.append(Ping(direction, ev.payload))
                elif ev.opcode == OP_PONG:
                    out.append(Pong(direction, ev.payload, auto=False))
        return out

    def closes(self, direction: Direction) -> list[Close]:
        """Close frames in ``direction`` (valid hand-built close frames included)."""
        out: list[Close] = []
        for ev in self.events:
            if ev.direction != direction:
                continue
            if isinstance(ev, Close):
                out.append(ev)
            elif isinstance(ev, Frame) and ev.violation is None and ev.opcode == OP_CLOSE:
                code = struct.unpack("!H", ev.payload[:2])[0] if ev.payload else None
                out.append(Close(direction, code, ev.payload[2:].decode("utf-8")))
        return out

    def violations(self) -> list[Frame]:
        return [ev for ev in self.events if isinstance(ev, Frame) and ev.violation is not None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    connections: tuple[Connection, ...]
    #: Number of TCP streams tshark must find in the file.
    tcp_streams: int
    #: How the capture was made, for the README ("websockets <-> websockets", ...).
    peers: str = ""
    what_to_look_at: str = ""
    #: Extra TCP ports that are part of the scenario but not captured (e.g. the browser page).
    uncaptured_ports: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.name}.pcapng"

    @property
    def ports(self) -> tuple[int, ...]:
        """Server ports that are captured (the dumpcap filter is ``tcp port P or ...``)."""
        return tuple(sorted({c.server_port for c in self.connections}))


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def text(direction: Direction, s: str, **kw: object) -> Message:
    return Message(direction, "text", s.encode("utf-8"), **kw)  # type: ignore[arg-type]


def binary(direction: Direction, b: bytes, **kw: object) -> Message:
    return Message(direction, "binary", b, **kw)  # type: ignore[arg-type]


def echo(m: Message, **kw: object) -> tuple[Message, Message]:
    """A client message and the server's echo of it (the echo is one unfragmented frame)."""
    back = Message("s2c", m.kind, m.payload, compressed=m.compressed, **kw)  # type: ignore[arg-type]
    return (m, back)


def close_pair(initiator: Direction, code: int | None, reason: str = "") -> tuple[Close, Close]:
    """A close and its answer. Both websockets and websocket-client answer with the received
    code and reason (peer's observed behaviour; an empty close is answered with an empty close)."""
    other: Direction = "s2c" if initiator == "c2s" else "c2s"
    return (Close(initiator, code, reason), Close(other, code, reason, auto=True))


def pattern(n: int, seed: int, alphabet: bytes | None = None) -> bytes:
    """Deterministic payload of n bytes (random bytes, or random picks from ``alphabet``)."""
    rng = random.Random(seed)
    if alphabet is None:
        return rng.randbytes(n)
    return bytes(rng.choice(alphabet) for _ in range(n))


ASCII = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-_"


def raw_request(
    port: int, path: str, lines: list[str], method: str = "GET", host: str = "127.0.0.1"
) -> bytes:
    """An HTTP/1.1 request with the given header lines (exact bytes, CRLF line endings)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii")


def good_headers(key: str = SAMPLE_KEY) -> list[str]:
    return [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]


def cframe(opcode: int, payload: bytes, **kw: object) -> Frame:
    """A hand-built client frame masked with the fixed key."""
    kw.setdefault("mask", MASK)
    return Frame("c2s", opcode, payload, **kw)  # type: ignore[arg-type]


# websockets' default negotiation (both sides default): observed 101 response header value.
DEFLATE_DEFAULT = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"

# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

UTF8_SAMPLE = "héllo wörld ✓ 😀"

# -- echo ---------------------------------------------------------------------------------------
ECHO_PORT = 47010
_echo = Connection(
    name="echo",
    server_port=ECHO_PORT,
    client="websockets",
    server="websockets",
    path="/echo/0",
    events=(
        *echo(text("c2s", "hello")),
        *echo(text("c2s", UTF8_SAMPLE)),
        *echo(binary("c2s", bytes(range(16)) + b"\x00\xff\xfe")),
        Ping("c2s", b"ping-1234"),
        Pong("s2c", b"ping-1234"),
        *echo(text("c2s", "")),
        Ping("s2c", b"server-ping"),
        Pong("c2s", b"server-ping"),
        text("s2c", "got your pong"),
        *close_pair("c2s", 1000, "bye"),
    ),
)

# -- multi --------------------------------------------------------------------------------------
MULTI_PORT = 47020


def _multi(i: int) -> Connection:
    evs: list[Event] = []
    for j in range(4):
        if j == 2:
            evs += echo(binary("c2s", bytes([i, j]) * (4 + i)))
        else:
            evs += echo(text("c2s", f"conn {i} message {j}"))
    evs += [Ping("c2s", f"p{i}".encode()), Pong("s2c", f"p{i}".encode())]
    evs += close_pair("c2s", 1000, f"bye {i}")
    return Connection(
        name=f"multi-{i}",
        server_port=MULTI_PORT,
        client="websockets",
        server="websockets",
        path=f"/multi/{i}",
        events=tuple(evs),
        notes="three connections open concurrently; their frames interleave in time",
    )


# -- fragmentation ------------------------------------------------------------------------------
FRAG_PORT = 47030
_u = "✓😀".encode()  # e2 9c 93 f0 9f 98 80
_frag_events: list[Event] = [
    # text in 3 fragments
    cframe(OP_TEXT, b"Hel", fin=False),
    cframe(OP_CONT, b"lo, ", fin=False),
    cframe(OP_CONT, b"world", fin=True),
    text("s2c", "Hello, world"),
    # ping between fragments
    cframe(OP_TEXT, b"frag", fin=False),
    cframe(OP_PING, b"mid-message"),
    Pong("s2c", b"mid-message"),
    cframe(OP_CONT, b"mented", fin=True),
    text("s2c", "fragmented"),
    # last fragment empty
    cframe(OP_TEXT, b"empty-", fin=False),
    cframe(OP_CONT, b"end", fin=False),
    cframe(OP_CONT, b"", fin=True),
    text("s2c", "empty-end"),
    # UTF-8 characters split across fragment boundaries (3-byte ✓ split 2|1, 4-byte 😀 split 2|2)
    cframe(OP_TEXT, b"a" + _u[:2], fin=False),
    cframe(OP_CONT, _u[2:5], fin=False),
    cframe(OP_CONT, _u[5:] + b"b", fin=True),
    text("s2c", "a✓😀b"),
    # binary in 10 fragments of 4 bytes
    *[
        cframe(OP_BINARY if k == 0 else OP_CONT, bytes(range(4 * k, 4 * k + 4)), fin=(k == 9))
        for k in range(10)
    ],
    binary("s2c", bytes(range(40))),
    # the server sends a fragmented message: websockets send(iterable) + final empty continuation
    text("s2c", "server sent in pieces", fragments=(7, 5, 3, 6, 0)),
    binary("s2c", b"\x01\x02\x03\x04\x05", fragments=(2, 3, 0)),
    # an unfragmented message through send_frame too, then close
    cframe(OP_TEXT, b"single frame"),
    text("s2c", "single frame"),
    *close_pair("c2s", 1000, "done"),
]
_fragmentation = Connection(
    name="fragmentation",
    server_port=FRAG_PORT,
    client="websocket-client",
    server="websockets",
    path="/fragmentation/0",
    events=tuple(_frag_events),
    notes="client frames built with ABNF and sent with ws.send_frame (mask key fixed via set_mask_key); "
    "the close comes from ws.close() (mask key also fixed)",
)

# -- deflate ------------------------------------------------------------------------------------
DEFLATE_PORT = 47040
DEFLATE_NCT_PORT = 47041
_REPEATED = "compress me, please: the quick brown fox jumps over the lazy dog 0123456789"
_LARGE_COMPRESSIBLE = ("wsinspect decodes permessage-deflate; " * 600)[:20000]


def _z(m: Message) -> Message:
    return Message(m.direction, m.kind, m.payload, fragments=m.fragments, compressed=True, note=m.note)


def _zecho(m: Message) -> tuple[Message, Message]:
    return echo(_z(m))


_deflate = Connection(
    name="deflate-context-takeover",
    server_port=DEFLATE_PORT,
    client="websockets",
    server="websockets",
    path="/deflate/0",
    compression="default",
    extensions=DEFLATE_DEFAULT,
    events=(
        *_zecho(text("c2s", _REPEATED, note="first copy")),
        *_zecho(text("c2s", _REPEATED, note="second copy: compresses much better (context takeover)")),
        *_zecho(text("c2s", _LARGE_COMPRESSIBLE)),
        _z(text("c2s", "alpha beta gamma", fragments=(6, 5, 5, 0), note="send(iterable): RSV1 only on 1st")),
        text("s2c", "alpha beta gamma", compressed=True),
        _z(text("s2c", "server side pieces", fragments=(7, 5, 6, 0))),
        *_zecho(text("c2s", "", note="empty message, compressed")),
        *_zecho(binary("c2s", b"\x00\x01\x02\x03" * 64)),
        Ping("c2s", b"not compressed"),
        Pong("s2c", b"not compressed"),
        *close_pair("c2s", 1000, "deflate done"),
    ),
)
_deflate_nct = Connection(
    name="deflate-no-context-takeover",
    server_port=DEFLATE_NCT_PORT,
    client="websockets",
    server="websockets",
    path="/deflate/1",
    compression="no-context-takeover",
    extensions="permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=10",
    events=(
        *_zecho(text("c2s", _REPEATED, note="first copy")),
        *_zecho(text("c2s", _REPEATED, note="second copy: same size (no context takeover)")),
        *_zecho(binary("c2s", b"\xaa\xbb" * 100)),
        *close_pair("c2s", 1000, "nct done"),
    ),
)

# -- close-codes --------------------------------------------------------------------------------
CLOSE_PORT = 47050
_close_cases: list[tuple[Direction, int | None, str]] = [
    ("c2s", 1000, ""),
    ("c2s", 1001, "going away"),
    ("s2c", 1008, "policy"),
    ("s2c", 1011, "internal error"),
    ("c2s", 3000, "registered code"),
    ("s2c", 4000, "app-specific"),
    ("c2s", None, ""),
    ("s2c", 1000, "server says bye"),
]
_close_conns = tuple(
    Connection(
        name=f"close-{i}-{code}-{who}",
        server_port=CLOSE_PORT,
        client="websockets",
        server="websockets",
        path=f"/close-codes/{i}",
        events=(*echo(text("c2s", f"connection {i}")), *close_pair(who, code, reason)),
    )
    for i, (who, code, reason) in enumerate(_close_cases)
)

# -- bad-handshake ------------------------------------------------------------------------------
BAD_PORT = 47060
BAD_RAW_SERVER_PORT = 47061
_bad_cases: list[tuple[str, bytes, int | None, str]] = [
    (
        "version-8",
        raw_request(BAD_PORT, "/bad/0", [*good_headers()[:3], "Sec-WebSocket-Version: 8"]),
        400,
        "observed: websockets 17.4 answers 400 Bad Request 'invalid Sec-WebSocket-Version header: 8' "
        "(not 426, and no Sec-WebSocket-Version: 13 header)",
    ),
    (
        "missing-key",
        raw_request(BAD_PORT, "/bad/1", [good_headers()[i] for i in (0, 1, 3)]),
        400,
        "observed: 400 'missing Sec-WebSocket-Key header'",
    ),
    (
        "key-not-16-bytes",
        raw_request(BAD_PORT, "/bad/2", good_headers(key="c2hvcnRrZXk=")),  # base64("shortkey"), 8 bytes
        400,
        "observed: 400 'invalid Sec-WebSocket-Key header: c2hvcnRrZXk='",
    ),
    (
        "post",
        raw_request(BAD_PORT, "/bad/3", good_headers(), method="POST"),
        405,
        "observed: 405 Method Not Allowed with 'Allow: GET'",
    ),
    (
        "missing-upgrade",
        raw_request(BAD_PORT, "/bad/4", good_headers()[1:]),
        426,
        "observed: 426 Upgrade Required with 'Upgrade: websocket'",
    ),
]
_bad_conns: list[Connection] = [
    Connection(
        name=f"bad-{name}",
        server_port=BAD_PORT,
        client="raw",
        server="websockets",
        path=f"/bad/{i}",
        handshake_status=status,
        handshake_ok=False,
        request=req,
        notes=note,
    )
    for i, (name, req, status, note) in enumerate(_bad_cases)
]
WRONG_ACCEPT = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
_bad_conns.append(
    Connection(
        name="bad-wrong-accept",
        server_port=BAD_RAW_SERVER_PORT,
        client="websocket-client",
        server="raw",
        path="/bad/5",
        handshake_status=101,
        handshake_ok=False,
        response=(
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {WRONG_ACCEPT}\r\n"
            "\r\n"
        ).encode("ascii"),
        notes=f"request key {SAMPLE_KEY} (expected accept {SAMPLE_ACCEPT}); websocket-client raises "
        "WebSocketException('Invalid WebSocket Header') and closes the socket without sending a frame",
    )
)

# -- midstream ----------------------------------------------------------------------------------
MIDSTREAM_PORT = 47070
_midstream = Connection(
    name="midstream",
    server_port=MIDSTREAM_PORT,
    client="websockets",
    server="websockets",
    path="/midstream/0",
    handshake_captured=False,
    events=(
        *echo(text("c2s", "first message after the capture started")),
        text("s2c", "server speaks unprompted: ✓"),
        Ping("c2s", b"mid"),
        Pong("s2c", b"mid"),
        *echo(binary("c2s", bytes(range(200, 256)))),
        *close_pair("c2s", 1000, "bye"),
    ),
)

# -- large --------------------------------------------------------------------------------------
LARGE_PORT = 47080
LARGE_SIZES = (125, 126, 65535, 65536, 300_000)
_large_events: list[Event] = []
for _i, _n in enumerate(LARGE_SIZES):
    if _i % 2 == 0:
        _large_events += echo(Message("c2s", "text", pattern(_n, seed=_n, alphabet=ASCII)))
    else:
        _large_events += echo(Message("c2s", "binary", pattern(_n, seed=_n)))
_large_events += close_pair("c2s", 1000, "large done")
_large = Connection(
    name="large",
    server_port=LARGE_PORT,
    client="websockets",
    server="websockets",
    path="/large/0",
    events=tuple(_large_events),
    notes="sizes exercise 7-bit (125), 16-bit (126, 65535) and 64-bit (65536, 300000) lengths",
)

# -- hostile ------------------------------------------------------------------------------------
HOSTILE_PORT = 47090
ESCAPES = "\x1b[2J\x1b]0;pwned\x07[bold red]not markup[/]"
_hostile_cases: list[tuple[str, tuple[Event, ...]]] = [
    (
        "invalid-utf8",
        (
            cframe(OP_TEXT, b"bad \xc3\x28 utf8", violation="invalid UTF-8 in text message"),
            Close("s2c", 1007, "invalid continuation byte at position 4", observed=True),
        ),
    ),
    (
        "unmasked",
        (
            cframe(OP_TEXT, b"unmasked", mask=None, violation="client frame not masked"),
            Close("s2c", 1002, "incorrect masking", observed=True),
        ),
    ),
    (
        "reserved-opcode-3",
        (
            cframe(0x3, b"op3", violation="reserved opcode 0x3"),
            Close("s2c", 1002, "invalid opcode", observed=True),
        ),
    ),
    (
        "rsv1-without-extension",
        (
            cframe(OP_TEXT, b"rsv1", rsv1=True, violation="RSV1 set, no extension negotiated"),
            Close("s2c", 1002, "reserved bits must be 0", observed=True),
        ),
    ),
    (
        "ping-126",
        (
            cframe(OP_PING, b"P" * 126, violation="control frame payload > 125 bytes"),
            Close("s2c", 1002, "control frame too long", observed=True),
        ),
    ),
    (
        "fragmented-ping",
        (
            cframe(OP_PING, b"frag-ping", fin=False, violation="fragmented control frame"),
            Close("s2c", 1002, "fragmented control frame", observed=True),
        ),
    ),
    (
        "close-1005-on-wire",
        (
            cframe(OP_CLOSE, struct.pack("!H", 1005), violation="close code 1005 must not be sent"),
            Close("s2c", 1002, "invalid status code", observed=True),
        ),
    ),
    (
        "non-minimal-length",
        (
            cframe(OP_TEXT, b"hello", length_bits=16, violation=None, note="16-bit length for 5 bytes"),
            text("s2c", "hello", note="websockets accepts a non-minimal length (observed)"),
            cframe(OP_CLOSE, struct.pack("!H", 1000)),
            Close("s2c", 1000, "", auto=True),
        ),
    ),
    (
        "terminal-escapes",
        (
            cframe(OP_TEXT, ESCAPES.encode()),
            text("s2c", ESCAPES),
            cframe(OP_CLOSE, struct.pack("!H", 1000) + b"bye"),
            Close("s2c", 1000, "bye", auto=True),
        ),
    ),
]
_hostile_conns = tuple(
    Connection(
        name=f"hostile-{name}",
        server_port=HOSTILE_PORT,
        client="raw",
        server="websockets",
        path=f"/hostile/{i}",
        request=raw_request(HOSTILE_PORT, f"/hostile/{i}", good_headers()),
        events=evs,
    )
    for i, (name, evs) in enumerate(_hostile_cases)
)

# -- ipv6 ---------------------------------------------------------------------------------------
IPV6_PORT = 47100
_ipv6 = Connection(
    name="ipv6",
    server_port=IPV6_PORT,
    client="websockets",
    server="websockets",
    host="::1",
    path="/ipv6/0",
    events=(
        *echo(text("c2s", "hello over IPv6")),
        *echo(binary("c2s", b"\x00\x00\x00\x00\x00\x00\x00\x01")),
        *close_pair("c2s", 1000, "v6 bye"),
    ),
)

# -- browser ------------------------------------------------------------------------------------
BROWSER_PORT = 47110
BROWSER_PAGE_PORT = 47111
BROWSER_BINARY = bytes(range(32))
_browser = Connection(
    name="browser",
    server_port=BROWSER_PORT,
    client="chromium",
    server="websockets",
    path="/browser/0",
    compression="browser",
    extensions=DEFLATE_DEFAULT,  # observed: websockets server answering Chromium's offer
    events=(
        *_zecho(text("c2s", "hello from chromium")),
        *_zecho(binary("c2s", BROWSER_BINARY)),
        *_zecho(text("c2s", UTF8_SAMPLE)),
        *close_pair("c2s", 1000, "done"),
    ),
)

# -- midstream-deflate -------------------------------------------------------------------------
MIDSTREAM_DEFLATE_PORT = 47120
#: Uppercase only, no digits: no 3-byte run in common with _REPEATED, so it can only refer back to itself.
_UPPERCASE = "MIDSTREAM DEFLATE: SAID TWICE, SAID TWICE!"


def _zecho_repeat(m: Message) -> tuple[Message, Message]:
    """A compressed echo of a message both directions already sent before the capture started."""
    sent = Message(m.direction, m.kind, m.payload, compressed=True, refers_before_capture=True, note=m.note)
    return (sent, Message("s2c", m.kind, m.payload, compressed=True, refers_before_capture=True))


_midstream_deflate = Connection(
    name="midstream-deflate",
    server_port=MIDSTREAM_DEFLATE_PORT,
    client="websockets",
    server="websockets",
    path="/midstream-deflate/0",
    compression="default",
    extensions=DEFLATE_DEFAULT,
    handshake_captured=False,
    before_capture=_zecho(text("c2s", _REPEATED, note="before the capture: fills both compressors' windows")),
    events=(
        *_zecho_repeat(text("c2s", _REPEATED, note="compresses to a back-reference into the uncaptured copy")),
        *_zecho(binary("c2s", pattern(64, seed=47120), note="random bytes: nothing to refer back to")),
        *_zecho(text("c2s", _UPPERCASE, note="refers back only into itself")),
        *_zecho(text("c2s", _UPPERCASE, note="refers back to the previous, captured, copy")),
        *close_pair("c2s", 1000, "midstream deflate done"),
    ),
    notes="the capture starts after the handshake and one compressed echo (the browser tab was already open)",
)

# -- wss ----------------------------------------------------------------------------------------
WSS_PORT = 47130
_wss = Connection(
    name="wss",
    server_port=WSS_PORT,
    client="websockets",
    server="websockets",
    path="/wss/0",
    compression="default",
    extensions=DEFLATE_DEFAULT,
    tls=True,
    sni="wsinspect.test",
    alpn=("http/1.1",),
    events=(
        *_zecho(text("c2s", "hello over TLS")),
        *close_pair("c2s", 1000, "tls bye"),
    ),
    notes="self-signed certificate for wsinspect.test made at record time; the client trusts only it",
)

# -- plain-http ---------------------------------------------------------------------------------
PLAIN_WEBSOCKETS_PORT = 47140
PLAIN_400_PORT = 47141
PLAIN_200_PORT = 47142
#: What a reverse proxy forwards of a WebSocket request when it drops the hop-by-hop Upgrade and Connection.
_STRIPPED = [f"Sec-WebSocket-Key: {SAMPLE_KEY}", "Sec-WebSocket-Version: 13"]


def _http_response(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


PLAIN_400_RESPONSE = _http_response("400 Bad Request", "text/plain;charset=UTF-8",
                                    b'Can "Upgrade" only to "WebSocket".')
PLAIN_200_RESPONSE = _http_response("200 OK", "text/html; charset=utf-8",
                                    b"<!doctype html><title>app</title><p>the single-page app's index</p>\n")
_plain_cases: list[tuple[str, int, str, list[str], int, bytes | None, str]] = [
    ("websockets-stripped", PLAIN_WEBSOCKETS_PORT, "websockets", _STRIPPED, 426, None,
     "observed: websockets 17.4 answers 426 Upgrade Required with 'Upgrade: websocket'"),
    ("websockets-plain-get", PLAIN_WEBSOCKETS_PORT, "websockets", ["Accept: */*"], 426, None,
     "no WebSocket header at all: only the server's 426 says this was meant to be a WebSocket"),
    ("server-400", PLAIN_400_PORT, "raw-http", _STRIPPED, 400, PLAIN_400_RESPONSE,
     "a raw server answering as Spring does to a request without Upgrade"),
    ("server-200", PLAIN_200_PORT, "raw-http", _STRIPPED, 200, PLAIN_200_RESPONSE,
     "a raw server answering with the page, as a catch-all route of a web application does"),
]
_plain_conns = tuple(
    Connection(
        name=f"plain-{name}",
        server_port=port,
        client="raw",
        server=server,
        path=f"/plain/{i}",
        handshake_status=status,
        handshake_ok=False,
        request=raw_request(port, f"/plain/{i}", lines),
        response=response,
        notes=note,
    )
    for i, (name, port, server, lines, status, response, note) in enumerate(_plain_cases)
)

# -- budget -------------------------------------------------------------------------------------
BUDGET_PORT = 47150
BUDGET_CONNECTIONS = 20
BUDGET_FRAGMENTS = 60
#: Inflated size of each fragment: 60 fragments make a 60 MiB message that is never finished.
BUDGET_PIECE = (b"budget " * 150_000)[: 1 << 20]


def _budget_fragments() -> tuple[bytes, bytes]:
    """The compressed first fragment and the (identical) compressed form of every later one.

    One raw DEFLATE stream with context takeover, a sync flush after each piece (RFC 7692 7.2.1): after the first
    piece, each identical piece compresses to the same bytes (checked), so two compress calls make all 60.
    """
    import zlib

    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    pieces = [deflater.compress(BUDGET_PIECE) + deflater.flush(zlib.Z_SYNC_FLUSH) for _ in range(3)]
    assert pieces[1] == pieces[2], "the repeated piece must compress to the same bytes each time"
    return pieces[0], pieces[1]


_BUDGET_FIRST, _BUDGET_NEXT = _budget_fragments()
BUDGET_RESPONSE = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
).encode("ascii")
_budget_conns = tuple(
    Connection(
        name=f"budget-{i}",
        server_port=BUDGET_PORT,
        client="raw",
        server="raw-http",
        path=f"/budget/{i}",
        request=raw_request(BUDGET_PORT, f"/budget/{i}",
                            [*good_headers(), "Sec-WebSocket-Extensions: permessage-deflate"]),
        response=BUDGET_RESPONSE,
        extensions="permessage-deflate",
        compression="default",
        events=(
            cframe(OP_TEXT, _BUDGET_FIRST, fin=False, rsv1=True),
            *(cframe(OP_CONT, _BUDGET_NEXT, fin=False) for _ in range(BUDGET_FRAGMENTS - 1)),
        ),
        notes="the message is never finished: the client closes TCP after its 60th fragment, no close frame",
    )
    for i in range(BUDGET_CONNECTIONS)
)

# ---------------------------------------------------------------------------------------------

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "echo",
            "Plain echo session, compression off: text (ASCII, UTF-8 multibyte, empty), binary, "
            "ping/pong both ways with payloads, normal close 1000 'bye'.",
            (_echo,),
            tcp_streams=1,
            peers="websockets client <-> websockets server",
            what_to_look_at="masked client frames, unmasked server frames, pong echoes ping payload, "
            "close frame 1000 'bye' answered with the same code/reason",
        ),
        Scenario(
            "multi",
            "Three concurrent echo connections to one server port, frames interleaved in time.",
            tuple(_multi(i) for i in range(3)),
            tcp_streams=3,
            peers="3 x websockets client <-> websockets server",
            what_to_look_at="per-connection reassembly: frames of stream 0/1/2 alternate in the file",
        ),
        Scenario(
            "fragmentation",
            "Hand-fragmented client messages (3 fragments, ping between fragments, empty last fragment, "
            "UTF-8 chars split across fragments, binary in 10 fragments) and fragmented server messages.",
            (_fragmentation,),
            tcp_streams=1,
            peers="websocket-client (ABNF + send_frame) <-> websockets server",
            what_to_look_at="continuation frames, FIN bits, the ping in the middle of a message, "
            "websockets' trailing empty FIN continuation on send(iterable)",
        ),
        Scenario(
            "deflate",
            "permessage-deflate: connection 0 with context takeover (default params), connection 1 with "
            "client/server_no_context_takeover and server_max_window_bits=10.",
            (_deflate, _deflate_nct),
            tcp_streams=2,
            peers="websockets client <-> websockets server (two servers, one per configuration)",
            what_to_look_at="RSV1 on first frames only; 2nd copy of a repeated message is smaller only "
            "with context takeover; empty compressed message; fragmented compressed message",
        ),
        Scenario(
            "close-codes",
            "One connection per close case: 1000, 1001, 1008, 1011, 3000, 4000, empty close payload; "
            "client- and server-initiated.",
            _close_conns,
            tcp_streams=len(_close_conns),
            peers="websockets client <-> websockets server",
            what_to_look_at="close code/reason per direction, who closes first, TCP FIN order",
        ),
        Scenario(
            "bad-handshake",
            "Failed opening handshakes: version 8, missing key, short key, POST, missing Upgrade (raw "
            "requests to websockets server) and a 101 with a wrong Sec-WebSocket-Accept (raw server, "
            "websocket-client).",
            tuple(_bad_conns),
            tcp_streams=len(_bad_conns),
            peers="raw-socket client -> websockets server; websocket-client -> raw-socket server",
            what_to_look_at="HTTP error statuses; no frames after a failed handshake",
        ),
        Scenario(
            "midstream",
            "Capture started after the handshake: frames only, no HTTP upgrade in the file.",
            (_midstream,),
            tcp_streams=1,
            peers="websockets client <-> websockets server",
            what_to_look_at="decode needs --port 47070 (no handshake to detect the WebSocket)",
        ),
        Scenario(
            "large",
            "Messages of 125, 126, 65535, 65536 and 300000 bytes, echoed; compression off.",
            (_large,),
            tcp_streams=1,
            peers="websockets client <-> websockets server",
            what_to_look_at="7/16/64-bit payload lengths; frames spanning many TCP segments; loopback "
            "records bigger than 65535 bytes",
        ),
        Scenario(
            "hostile",
            "Hand-built, masked client frames that break the protocol, one connection per case, and the "
            "real server's reaction; plus terminal escapes / rich markup in a valid text message.",
            _hostile_conns,
            tcp_streams=len(_hostile_conns),
            peers="raw-socket client -> websockets server",
            what_to_look_at="server close codes 1007/1002 with reasons; escapes must be shown inert",
        ),
        Scenario(
            "ipv6",
            "Short echo session over ::1.",
            (_ipv6,),
            tcp_streams=1,
            peers="websockets client <-> websockets server over IPv6",
            what_to_look_at="IPv6 addresses in the connection key",
        ),
        Scenario(
            "browser",
            "Headless Chromium page opens a WebSocket (permessage-deflate offered by the browser), sends "
            "text, binary (ArrayBuffer) and UTF-8 text, and closes 1000 'done'.",
            (_browser,),
            tcp_streams=1,
            peers="Chromium (headless) <-> websockets server; page served by http.server on another port",
            what_to_look_at="real browser handshake headers, browser-side compression",
            uncaptured_ports=(BROWSER_PAGE_PORT,),
        ),
        Scenario(
            "midstream-deflate",
            "Capture started after the handshake and one compressed echo, on a permessage-deflate session with "
            "context takeover: the repeated message cannot be inflated, the others can.",
            (_midstream_deflate,),
            tcp_streams=1,
            peers="websockets client <-> websockets server",
            what_to_look_at="decode with --port 47120: every frame shown with RSV1 (compressed); the message "
            "that refers back before the capture is reported as not inflatable (RFC 7692 7.2.3.2)",
        ),
        Scenario(
            "wss",
            "WebSocket over TLS (wss://), self-signed certificate, SNI wsinspect.test, ALPN http/1.1.",
            (_wss,),
            tcp_streams=1,
            peers="websockets client <-> websockets server, both over TLS",
            what_to_look_at="reported as TLS (version offered, SNI, ALPN from the ClientHello); nothing "
            "decoded inside, also with --port 47130",
        ),
        Scenario(
            "plain-http",
            "Plain HTTP GETs to WebSocket endpoints, as a reverse proxy that drops the hop-by-hop Upgrade and "
            "Connection headers sends them: websockets answers 426, other servers 400 or 200.",
            _plain_conns,
            tcp_streams=len(_plain_conns),
            peers="raw-socket client -> websockets server, raw-socket HTTP servers",
            what_to_look_at="each one a failed opening handshake with the hop-by-hop diagnosis",
        ),
        Scenario(
            "budget",
            f"{BUDGET_CONNECTIONS} connections open at once, each sending {BUDGET_FRAGMENTS} compressed "
            "fragments of one highly compressible text message (1 MiB each inflated) and never finishing it.",
            _budget_conns,
            tcp_streams=len(_budget_conns),
            peers="raw-socket client (hand-built frames) -> raw-socket server answering 101 with permessage-deflate",
            what_to_look_at="memory stays within the budget; every frame is still shown",
        ),
    ]
}

__all__ = [
    "SCENARIOS",
    "Close",
    "Connection",
    "Event",
    "Frame",
    "Message",
    "Ping",
    "Pong",
    "Scenario",
]
