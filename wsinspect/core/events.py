"""What the decoder says: small frozen events, the only thing views and edges see of the protocol.

Every event carries the connection (``stream``), the ``direction`` the bytes travelled (``c2s`` client to server,
``s2c`` server to client), and where it happened: the ``time`` and ``packet`` the caller gave with the bytes that
completed it (a capture's frame number; None on a live socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wsinspect.core.checks import Check, Severity
from wsinspect.core.deflate import DeflateParams
from wsinspect.core.frames import Frame
from wsinspect.core.handshake import Extension, Finding, HttpRequest, HttpResponse

Direction = Literal["c2s", "s2c"]
DIRECTIONS: tuple[Direction, Direction] = ("c2s", "s2c")


def other(direction: Direction) -> Direction:
    return "s2c" if direction == "c2s" else "c2s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    stream: int
    direction: Direction
    time: float
    packet: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOpened(Event):
    """A new connection between two endpoints; ``how`` says how the client side was told apart."""

    client: tuple[str, int]
    server: tuple[str, int]
    how: str = ""
    mid_stream: bool = False  # decoding starts after the handshake (a capture that began mid-connection)


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeRequest(Event):
    request: HttpRequest
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeResponse(Event):
    response: HttpResponse
    findings: tuple[Finding, ...]
    upgraded: bool  # the server answered 101: frames follow (findings say whether a client must fail it)
    subprotocol: str | None = None
    extensions: tuple[Extension, ...] = ()
    deflate: DeflateParams | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameEvent(Event):
    frame: Frame


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(Event):
    """A whole text or binary message, reassembled from its frames and inflated if it was compressed."""

    opcode: int  # 1 text, 2 binary
    data: bytes  # as the application sees it (inflated); short if ``complete`` is False
    text: str | None  # the decoded text of a valid text message
    frames: int
    wire_length: int  # payload bytes on the wire, summed over the frames (compressed size if compressed)
    compressed: bool
    complete: bool = True  # False when a limit or a broken inflate cut it short
    first_packet: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(Event):
    """A close frame's meaning (RFC 6455 5.5.1): the status code and reason, if it had any."""

    code: int | None
    reason: str
    initiator: bool  # True for the first close of the connection, False for the answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation(Event):
    """A rule the sender broke. ``check.close_code`` is what a conforming receiver fails the connection with."""

    check: Check
    message: str
    offset: int | None = None  # stream offset of the frame it concerns

    @property
    def severity(self) -> Severity:
        return self.check.severity


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """Something about what was seen rather than what was sent: gaps, resynchronisation, cut-off frames."""

    check: Check
    message: str
    offset: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap(Event):
    """``missing`` bytes of this direction were never seen, starting at stream ``offset``."""

    missing: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The transport ended. ``clean`` when both sides sent a close frame first."""

    reason: str
    clean: bool
