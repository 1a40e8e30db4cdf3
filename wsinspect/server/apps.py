"""What ``wsinspect serve`` does with its connections: the applications behind ``--mode``, apart from the transport.

The transport (``server.run``) moves bytes, keeps the clocks and bounds what each connection holds; it calls an
application at two moments: a whole message arrived on a connection, and (if the application asks for it) a
connection's timer ticked. An application answers through ``Member``, a narrow handle on one connection, and
reaches the other connections through ``Room``.

What an application sends is queued on the connection's endpoint; the transport writes it once the events that
caused it are logged, so the log reads in causal order. Sending to a connection that is not open is ignored.

The one policy an application sets for the transport is how a slow reader is treated (``paces_sender``): an echo's
answers go to the client that asked, so that client can be paced (the transport stops reading from it while its
queue is over ``--max-queue``); chat and push send to members that did not ask, so one member's slowness must not
hold the others back, and a member over the bound is closed with 1008 instead.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Protocol

from wsinspect.core.events import Message


class Member(Protocol):
    """One open connection, as an application sees it."""

    @property
    def number(self) -> int:
        """The connection's number, as the log and the demo page show it."""
        ...

    def send(self, data: str | bytes, *, time: float, opcode: int | None = None) -> None:
        """A text (str) or binary (bytes) message; ``opcode`` sends bytes as that kind (an echo's answer)."""
        ...


class Room(Protocol):
    def members(self) -> Iterable[Member]:
        """Every WebSocket connection, in the order they connected."""
        ...


class Application:
    """The hooks the transport calls; each does nothing unless an application overrides it."""

    #: True: a client over --max-queue stops being read until it drains (its own answers pace it). False: it is
    #: closed with 1008, since it cannot pace the others.
    paces_sender: bool = False
    #: Seconds between ``tick`` calls on each open connection; 0: no ticks.
    tick_interval: float = 0.0

    def message_received(self, member: Member, message: Message, now: float) -> None:
        """A whole message from ``member``, called while its bytes are decoded."""

    def tick(self, member: Member, now: float) -> None:
        """``member``'s timer: every ``tick_interval`` seconds once its handshake is done."""


class EchoApp(Application):
    """Every message goes back to its sender, as the same kind of message."""

    paces_sender = True

    def message_received(self, member: Member, message: Message, now: float) -> None:
        member.send(message.data, time=now, opcode=message.opcode)


class ChatApp(Application):
    """Every message goes to every member, the sender included, as text that names the sender."""

    def __init__(self, room: Room) -> None:
        self.room = room

    def message_received(self, member: Member, message: Message, now: float) -> None:
        text = message.text if message.text is not None else f"<{len(message.data)} bytes of binary>"
        line = f"#{member.number}: {text}"
        for other in self.room.members():
            other.send(line, time=now)


class PushApp(Application):
    """Every member gets a numbered message every ``interval`` seconds, unasked; what members send is ignored."""

    def __init__(self, interval: float) -> None:
        self.tick_interval = interval
        self._numbers = itertools.count(1)  # one count for the whole server: each message says how many came before

    def tick(self, member: Member, now: float) -> None:
        member.send(f"push {next(self._numbers)} at {time.strftime('%H:%M:%S')}", time=now)


def application(mode: str, *, interval: float, room: Room) -> Application:
    """The application for ``--mode``: the one place the choice is read."""
    if mode == "echo":
        return EchoApp()
    if mode == "chat":
        return ChatApp(room)
    if mode == "push":
        return PushApp(interval)
    raise ValueError(f"no such mode: {mode!r}")
