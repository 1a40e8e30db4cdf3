"""What a line of ``wsinspect connect``'s stdin asks for: a text message to send, or a command (``/ping``,
``/binary``, ``/fragment``, ``/close``, ``/help``). ``parse_line`` turns a line into an action, or into a
``LineError`` that says how to write it. No I/O here: ``client.session.StdinReader`` reads the lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wsinspect.core.connection import close_code_is_valid
from wsinspect.core.endpoint import MAX_CLOSE_REASON
from wsinspect.core.frames import MAX_CONTROL_PAYLOAD
from wsinspect.views.safe import visible

CLOSE_NORMAL = 1000
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
