"""Independent helpers for the core tests.

Nothing here calls the code under test to produce expected values: frames are encoded by hand with ``struct``
(RFC 6455 section 5.2), masks are applied byte by byte (section 5.3), accept keys come from ``hashlib`` (section
4.2.2 item 5.4) and compressed payloads from ``zlib`` (RFC 7692 section 7.2.1).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterable

from wsinspect.core.connection import Connection, Limits
from wsinspect.core.events import Event, Message, Notice, Violation

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 sections 1.3 and 4.2.2
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x37\xfa\x21\x3d"  # the masking key of the RFC 6455 section 5.7 examples

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def hand_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def hand_mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 section 5.3: octet i of the data XOR octet i MOD 4 of the key."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def encode(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    key: bytes | None = None,
    length_bits: int | None = None,
) -> bytes:
    """A frame encoded by hand from the RFC 6455 section 5.2 diagram."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if length_bits is None:
        length_bits = 7 if n <= 125 else 16 if n <= 0xFFFF else 64
    if length_bits == 7:
        header = struct.pack("!BB", first, mask_bit | n)
    elif length_bits == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if key is None:
        return header + payload
    return header + key + hand_mask(payload, key)


def cframe(opcode: int, payload: bytes = b"", *, key: bytes = b"\x0a\x0b\x0c\x0d", **kw: object) -> bytes:
    """A client-to-server frame: masked (RFC 6455 section 5.1)."""
    return encode(opcode, payload, key=key, **kw)  # type: ignore[arg-type]


def sframe(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    """A server-to-client frame: unmasked (RFC 6455 section 5.1)."""
    return encode(opcode, payload, **kw)  # type: ignore[arg-type]


def request_bytes(
    *, key: str = RFC_KEY, extensions: str | None = None, protocols: str | None = None, extra: str = ""
) -> bytes:
    lines = [
        "GET /chat HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Origin: http://example.com",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def response_bytes(*, key: str = RFC_KEY, extensions: str | None = None, protocol: str | None = None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {hand_accept(key)}",
    ]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_connection(
    *,
    offer: str | None = None,
    accept: str | None = None,
    limits: Limits | None = None,
) -> tuple[Connection, list[Event]]:
    """A Connection that has seen a valid opening handshake (optionally negotiating an extension)."""
    conn = Connection(1, limits=limits or Limits())
    events = conn.receive("c2s", request_bytes(extensions=offer), time=0.0)
    events += conn.receive("s2c", response_bytes(extensions=accept), time=0.0)
    return conn, events


class Compressor:
    """permessage-deflate sender built on zlib directly (RFC 7692 section 7.2.1)."""

    def __init__(self, *, no_context_takeover: bool = False, wbits: int = 15) -> None:
        self.no_context_takeover = no_context_takeover
        self.wbits = wbits
        self._c = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(6, zlib.DEFLATED, -self.wbits)

    def compress(self, data: bytes) -> bytes:
        if self.no_context_takeover:
            self._c = self._new()
        out = self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


def ids(events: Iterable[Event]) -> list[str]:
    """Check ids of the violations and notices, in order."""
    return [e.check.id for e in events if isinstance(e, (Violation, Notice))]


def violation_ids(events: Iterable[Event]) -> list[str]:
    return [e.check.id for e in events if isinstance(e, Violation)]


def violations(events: Iterable[Event]) -> list[Violation]:
    return [e for e in events if isinstance(e, Violation)]


def messages(events: Iterable[Event]) -> list[Message]:
    return [e for e in events if isinstance(e, Message)]


def of_type(events: Iterable[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


def strip(event: Event, *, initiator: bool = True) -> Event:
    """An event without where-it-happened fields, for comparing decodes of the same bytes."""
    changes: dict[str, object] = {"time": 0.0, "packet": None}
    if isinstance(event, Message):
        changes["first_packet"] = None
    if not initiator and hasattr(event, "initiator"):
        changes["initiator"] = False
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


# -- real peers on 127.0.0.1 ---------------------------------------------------------------------------------

def capture_request(client: Callable[[str], object], *, timeout: float = 5.0) -> bytes:
    """Run ``client(url)`` against a raw TCP server that records the request header block, then hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(timeout)
    port = server.getsockname()[1]
    got: dict[str, bytes] = {}

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(timeout)
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(4096)
                if not data:
                    break
                buffer += data
            got["request"] = buffer

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with contextlib.suppress(Exception):  # the server hangs up on purpose; the client's complaint is expected
        client(f"ws://127.0.0.1:{port}/chat?room=1")
    thread.join(timeout)
    server.close()
    return got["request"]


def record_session(
    client: Callable[[str], object], handler: Callable[[object], None], **serve_kw: object
) -> list[tuple[str, bytes]]:
    """Run a real websockets server and ``client(url)`` through a recording TCP relay.

    Returns the bytes each direction carried, as (direction, chunk) in the order the relay read them.
    """
    from websockets.sync.server import serve

    ws_server = serve(handler, "127.0.0.1", 0, **serve_kw)  # type: ignore[arg-type]
    ws_port = ws_server.socket.getsockname()[1]
    server_thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
    server_thread.start()

    relay = socket.socket()
    relay.bind(("127.0.0.1", 0))
    relay.listen(1)
    relay.settimeout(5)
    relay_port = relay.getsockname()[1]
    chunks: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def pump(src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with lock:
                    chunks.append((direction, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    pumps: list[threading.Thread] = []

    def accept() -> None:
        try:
            downstream, _ = relay.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", ws_port), timeout=5)
        for args in ((downstream, upstream, "c2s"), (upstream, downstream, "s2c")):
            thread = threading.Thread(target=pump, args=args, daemon=True)
            thread.start()
            pumps.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        client(f"ws://127.0.0.1:{relay_port}/echo")
    finally:
        acceptor.join(5)
        for thread in pumps:
            thread.join(5)
        relay.close()
        ws_server.shutdown()
        server_thread.join(5)
    return chunks
