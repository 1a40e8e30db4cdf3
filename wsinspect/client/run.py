"""The conversation ``wsinspect connect`` holds: connect, wait for the answer to the opening handshake, send what
was asked (each ``--send``, or the lines of stdin), wait for answers, close cleanly, and wait for the connection to
end. Ctrl-C closes cleanly too (a second one drops the connection). What is shown and what the exit status says are
the command's business (``commands.connect``); this module only reports how it went (``Outcome``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsinspect.client.lines import (
    CLOSE_NORMAL,
    LINE_HELP,
    Action,
    LineError,
    SendText,
    ShowHelp,
    StartClose,
    parse_line,
)
from wsinspect.client.session import (
    ClientSession,
    ConnectFailed,
    StdinBatch,
    StdinReader,
    open_connection,
)
from wsinspect.client.target import Target, describe_tls
from wsinspect.core.endpoint import ClientOptions
from wsinspect.core.events import Event
from wsinspect.outputs import Outputs
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

STDIN_QUEUE = 4  # batches of lines (one read of stdin each) read ahead of the socket; beyond, the reader waits


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do once connected, and how long to wait for what."""

    options: ClientOptions
    sends: tuple[str, ...] | None  # the --send messages; None: read stdin's lines
    wait: float  # after the last message: time for answers before closing
    open_timeout: float  # connect, TLS, and the answer to the opening handshake
    close_timeout: float
    max_queue: int  # bytes waiting to be sent before stdin waits
    drop_at: int  # bytes waiting to be sent (answers we owe) at which a server that reads nothing is dropped
    insecure: bool


@dataclass(slots=True)
class Outcome:
    interrupted: bool = False  # Ctrl-C
    failure: str | None = None  # could not connect: why, in one line (safe to print)
    notes: list[str] = field(default_factory=list)  # what the session noticed on the way (a TLS answer to ws://)
    output_gone: bool = False  # the reader of the output went away (`| head`), so the connection was dropped
    received: int = 0  # bytes the server sent (decrypted over TLS)
    first_data: bytes = b""  # the start of them (session.FIRST_DATA_KEPT bytes at most), to show an answer not in HTTP


@dataclass(frozen=True, slots=True)
class Sinks:
    """Where the conversation reports: events, a line for the view (the TLS session), a message for stderr."""

    emit: Callable[[list[Event]], None]
    files: Outputs
    show: Callable[[list[Piece]], None]
    say: Callable[[str, str], None]  # (text, rich style)


def escaped_bytes(data: bytes) -> str:
    """Bytes from the wire as text safe to print: printable ASCII kept, every other byte (and the backslash)
    escaped, so that a NUL, an escape sequence or a byte that is not ASCII reads as \\xNN."""
    return "'" + visible(data.decode("ascii", "surrogateescape")) + "'"


def converse(target: Target, context: ssl.SSLContext | None, plan: Plan, sinks: Sinks) -> Outcome:
    """Hold the whole conversation; return how it went."""
    outcome = Outcome()
    try:
        return asyncio.run(_converse(target, context, plan, sinks, outcome))
    except KeyboardInterrupt:  # where the loop has no signal handlers (Windows), or before they were installed
        outcome.interrupted = True
        return outcome


async def _converse(target: Target, context: ssl.SSLContext | None, plan: Plan, sinks: Sinks,
                    outcome: Outcome) -> Outcome:
    loop = asyncio.get_running_loop()
    session: ClientSession | None = None
    main = asyncio.current_task()

    def interrupted() -> None:
        # Ctrl-C: the first closes cleanly (1000) and a second drops the connection; before it is open, it stops.
        first = not outcome.interrupted
        outcome.interrupted = True
        if session is None or session.transport is None:
            if main is not None:
                main.cancel()
        elif first and session.is_open:
            session.close(CLOSE_NORMAL, "")
        else:
            session.abort("interrupted (Ctrl-C)")

    def new_session() -> ClientSession:
        nonlocal session
        session = ClientSession(plan.options, emit=sinks.emit, files=sinks.files, close_timeout=plan.close_timeout,
                                max_queue=plan.max_queue, drop_at=plan.drop_at)
        return session

    with contextlib.suppress(NotImplementedError):  # Windows' loop has no signal handlers: Ctrl-C raises there
        loop.add_signal_handler(signal.SIGINT, interrupted)
    started = loop.time()
    try:
        transport = await open_connection(target, context, new_session, plan.open_timeout)
        assert session is not None
        if context is not None:
            sinks.show(describe_tls(transport, plan.insecure))
        left = plan.open_timeout - (loop.time() - started)
        try:
            await asyncio.wait_for(asyncio.shield(session.answered), max(left, 0.001))
        except asyncio.TimeoutError:
            session.abort(f"no complete answer to the opening handshake within {plan.open_timeout:g} s "
                          "(--open-timeout)")
            await session.finished
            if session.endpoint is None or session.endpoint.response is None:
                outcome.failure = (f"{visible(target.url)}: connected, but the server did not answer the opening "
                                   f"handshake within {plan.open_timeout:g} s (--open-timeout)")
                if session.received:
                    outcome.failure += (f"; it sent {session.received:,} bytes that do not make a complete HTTP "
                                        f"answer, starting {escaped_bytes(session.first_data)}")
            return outcome
        if session.is_open:
            if plan.sends is not None:
                await _send_each(session, plan.sends)
            else:
                await _send_stdin(session, sinks.say)
            if session.is_open:
                with contextlib.suppress(asyncio.TimeoutError):  # answers come, or the server leaves
                    await asyncio.wait_for(asyncio.shield(session.finished), plan.wait)
                session.close(CLOSE_NORMAL, "")
        await session.finished
    except ConnectFailed as failure:
        outcome.failure = str(failure)
    except asyncio.CancelledError:
        pass  # Ctrl-C before the connection was made: outcome.interrupted says so
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        if session is not None:
            outcome.notes = session.notes
            outcome.output_gone = session.output_gone
            outcome.received = session.received
            outcome.first_data = session.first_data
            # A session whose TLS handshake failed never had a transport: there is nothing to wait for.
            if session.transport is not None and not session.finished.done():
                session.abort("interrupted")
                await session.finished
    return outcome


async def _send_each(session: ClientSession, messages: tuple[str, ...]) -> None:
    for text in messages:
        await session.writable.wait()
        if not session.is_open:
            return
        session.perform(SendText(text))


async def _send_stdin(session: ClientSession, say: Callable[[str, str], None]) -> None:
    """Send stdin's lines until it ends, a /close, or the connection does; bad lines are reported, not sent."""
    loop = asyncio.get_running_loop()
    batches: asyncio.Queue[StdinBatch | None] = asyncio.Queue(maxsize=STDIN_QUEUE)
    StdinReader(loop, batches).start()
    if sys.stdin.isatty():
        say("type a line to send it as a text message; /help lists the commands; Ctrl-D closes cleanly", "dim")
    while session.is_open:
        getting = asyncio.ensure_future(batches.get())
        either: set[asyncio.Future[Any]] = {getting, session.finished}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            return
        batch = getting.result()
        if batch is None:
            return
        _send_batch(session, batch, say)
        await session.writable.wait()  # backpressure: the next batch waits until the socket takes more


def _send_batch(session: ClientSession, batch: StdinBatch, say: Callable[[str, str], None]) -> None:
    """One batch of lines in one write; what is said about a line (an error, /help) comes after the lines before
    it were sent, as it would have line by line."""
    actions: list[Action] = []
    for line in batch:
        said: tuple[str, str] | None = None
        if line.text is None:
            said = (f"wsinspect: line {line.number}: {line.problem}", "bold red")
        else:
            try:
                action = parse_line(line.text)
            except LineError as failure:
                said = (f"wsinspect: line {line.number}: {failure}", "bold red")
            else:
                if isinstance(action, ShowHelp):
                    said = (LINE_HELP, "dim")
                else:
                    actions.append(action)
                    if isinstance(action, StartClose):
                        break  # the lines after a /close are neither sent nor judged
        if said is not None:
            session.perform(*actions)
            actions.clear()
            say(*said)
    session.perform(*actions)
