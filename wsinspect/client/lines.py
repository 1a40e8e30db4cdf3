"""What ``wsinspect connect`` reads from stdin: each line is a text message to send, or a command (``/ping``,
``/binary``, ``/fragment``, ``/close``, ``/help``). ``parse_line`` turns a line into an action or a ``LineError``
that says how to write it; ``StdinReader`` delivers the lines to the event loop, a bounded queue at a time.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
from concurrent.futures import CancelledError as ConcurrentCancelled
from dataclasses import dataclass

from wsinspect.core.connection import close_code_is_valid
from wsinspect.core.frames import MAX_CONTROL_PAYLOAD
from wsinspect.views.safe import visible

MAX_LINE = 1 << 20  # bytes of one stdin line: a longer one is refused, not held
CLOSE_NORMAL = 1000
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2  # a close frame's payload is at most 125 bytes, 2 of them the code
MAX_FRAGMENTS = 1000  # /fragment N: enough to teach fragmentation, not a way to make frames by the million

LINE_HELP = """\
  TEXT                 send TEXT as a text message (a line starting with / is sent with //TEXT)
  /ping [DATA]         a ping with DATA as its payload (at most 125 bytes, RFC 6455 5.5)
  /binary HEX          a binary message: /binary 00 ff 10 or /binary 00ff10
  /fragment N TEXT     TEXT as one text message in N frames (RFC 6455 5.4)
  /close [CODE [WHY]]  start the closing handshake (default 1000); later lines are not sent
  /help                this list"""


@dataclass(frozen=True, slots=True)
class SendText:
    text: str


@dataclass(frozen=True, slots=True)
class SendBinary:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendPing:
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendFragmented:
    text: str
    parts: int


@dataclass(frozen=True, slots=True)
class StartClose:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


Action = SendText | SendBinary | SendPing | SendFragmented | StartClose | ShowHelp

class LineError(ValueError):
    """A stdin line that asks for something impossible or malformed; the message says how to write it."""


def parse_line(line: str) -> Action:
    """One line of stdin: text to send, or a /command."""
    if not line.startswith("/"):
        return SendText(line)
    if line.startswith("//"):
        return SendText(line[1:])
    command, _, rest = line.partition(" ")
    if command == "/ping":
        payload = rest.encode("utf-8")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LineError(f"a ping carries at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 5.5: every control frame "
                            f"does); this one has {len(payload)}")
        return SendPing(payload)
    if command == "/binary":
        digits = re.sub(r"[\s:]", "", rest)
        if not digits:
            raise LineError("/binary needs the bytes in hex, e.g. /binary 00 ff 10")
        try:
            return SendBinary(bytes.fromhex(digits))
        except ValueError:
            raise LineError(f"/binary: '{visible(rest)}' is not hex bytes (pairs of 0-9 a-f, e.g. 00 ff 10)") from None
    if command == "/fragment":
        count, _, text = rest.partition(" ")
        if not count.isdigit() or not text:
            raise LineError("/fragment needs a number of frames and the text, e.g. /fragment 3 Hello, world")
        parts, size = int(count), len(text.encode("utf-8"))
        if not 1 <= parts <= MAX_FRAGMENTS:
            raise LineError(f"/fragment: {parts} frames; the number is 1 to {MAX_FRAGMENTS}")
        if parts > size:
            raise LineError(f"/fragment: {parts} frames for {size} bytes of text; at most one frame per byte")
        return SendFragmented(text, parts)
    if command == "/close":
        return _close_action(rest)
    if command == "/help":
        return ShowHelp()
    raise LineError(f"unknown command '{visible(command)}' (/help lists them; to send text that starts with /, "
                    "start the line with //)")


def _close_action(rest: str) -> StartClose:
    code_text, _, reason = rest.strip().partition(" ")
    if not code_text:
        return StartClose(CLOSE_NORMAL, "")
    if not code_text.isdigit() or len(code_text) > 5:
        raise LineError(f"/close: '{visible(code_text)}' is not a status code (e.g. /close 1000 bye)")
    code = int(code_text)
    if not close_code_is_valid(code):
        if code in (1005, 1006, 1015):
            why = f"RFC 6455 7.4.1: {code} is a reserved value and MUST NOT be set as a status code in a Close frame"
        elif code < 1000:
            why = "RFC 6455 7.4.2: status codes in the range 0-999 are not used"
        elif code < 3000:
            why = f"RFC 6455 7.4.2: {code} is reserved for this protocol and extensions, and not defined"
        else:
            why = "RFC 6455 7.4.2 defines status codes up to 4999"
        raise LineError(f"/close: {why}; send 1000 (normal), 1001 (going away) or 3000-4999 (applications)")
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
        raise LineError(f"/close: a reason is at most {MAX_CLOSE_REASON} bytes of UTF-8 (RFC 6455 5.5: the close "
                        "frame's payload is at most 125 bytes, 2 of them the code)")
    return StartClose(code, reason)


@dataclass(frozen=True, slots=True)
class StdinLine:
    number: int
    text: str | None  # None: the line could not be taken (``problem`` says why)
    problem: str = ""


class StdinReader(threading.Thread):
    """Reads stdin's lines into an asyncio queue, waiting while the queue is full (that is the backpressure: the
    conversation takes a line only when the socket can take more). ``None`` marks the end of input.

    A thread, since a terminal, a pipe and a regular file can all be stdin and the event loop cannot wait on a file.
    It reads the descriptor with ``os.read``, not through ``sys.stdin``: a daemon thread blocked inside the buffered
    reader at exit would hold its lock while the interpreter shuts down.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[StdinLine | None]) -> None:
        super().__init__(daemon=True, name="wsinspect-stdin")
        self.loop = loop
        self.queue = queue
        self._number = 0

    def run(self) -> None:
        pending = bytearray()
        skipping = False  # inside a line longer than MAX_LINE: its bytes are dropped until its end
        while True:
            try:
                chunk = os.read(sys.stdin.fileno(), 65536)
            except OSError:
                chunk = b""
            if not chunk:
                if pending and not skipping:
                    self._line(bytes(pending))
                self._put(None)
                return
            pending += chunk
            while True:
                end = pending.find(b"\n")
                if end < 0:
                    break
                if skipping:
                    skipping = False
                else:
                    self._line(bytes(pending[:end]))
                del pending[: end + 1]
            if len(pending) > MAX_LINE and not skipping:
                self._number += 1
                self._put(StdinLine(self._number, None, f"longer than {MAX_LINE:,} bytes: not sent"))
                skipping = True
            if skipping:
                pending.clear()

    def _line(self, raw: bytes) -> None:
        self._number += 1
        if raw.endswith(b"\r"):  # a line typed on Windows, or pasted from one
            raw = raw[:-1]
        try:
            self._put(StdinLine(self._number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            self._put(StdinLine(self._number, None, "not UTF-8, so it cannot be a text message (RFC 6455 5.6); "
                                                    "send bytes with /binary HEX"))

    def _put(self, item: StdinLine | None) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop).result()
        except (RuntimeError, asyncio.CancelledError, ConcurrentCancelled):
            raise SystemExit from None  # the conversation is over: this thread has nobody to give lines to

