"""``wsinspect serve --misbehave KIND``: a server that breaks one rule on purpose, so a class can watch real clients
(a browser, a library) react the way RFC 6455 says they must.

Each kind breaks one rule at one moment, chosen so cause and effect are easy to see:

- at the opening handshake: ``bad-accept`` and ``no-upgrade-header`` spoil the 101 response;
- as the answer to each message the client sends (instead of the echo, the broadcast or nothing): the frame kinds,
  so the page opens normally and fails only when a student sends something;
- whenever the client asks for it: ``no-pong`` never answers a ping, ``no-close-reply`` never answers a close
  frame and leaves the TCP connection open, so the client's own timeout is what ends it.

What the server sends wrong goes through the server's own decoder like every other byte, so the live log flags it
as the violation it is, next to the client's reaction. A misbehaving server declines permessage-deflate: every
faulty byte is then readable in the log as sent, and RSV1 has no negotiated meaning.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import html
import os
import textwrap

from wsinspect.core.fields import Opcode
from wsinspect.core.frames import MAX_CONTROL_PAYLOAD, build_frame
from wsinspect.core.handshake import accept_key


class Misbehaviour(enum.Enum):
    """The faults ``--misbehave`` can add; the value is the command-line name."""

    BAD_ACCEPT = "bad-accept"
    NO_UPGRADE_HEADER = "no-upgrade-header"
    MASKED_FRAMES = "masked-frames"
    RSV1_WITHOUT_EXTENSION = "rsv1-without-extension"
    FRAGMENTED_PING = "fragmented-ping"
    OVERSIZED_PING = "oversized-ping"
    INVALID_UTF8 = "invalid-utf8"
    BAD_CLOSE_CODE = "bad-close-code"
    NO_PONG = "no-pong"
    NO_CLOSE_REPLY = "no-close-reply"

    @property
    def description(self) -> str:
        """What the server does wrong, the rule it breaks and what a conforming client must do: one sentence."""
        return DESCRIPTIONS[self]

    @property
    def spoils_answers(self) -> bool:
        """The server answers each message from the client with faulty frames (see ``wrong_answer``)."""
        return self in _WRONG_ANSWERS

    @property
    def answers_pings(self) -> bool:
        return self is not Misbehaviour.NO_PONG

    @property
    def answers_close(self) -> bool:
        return self is not Misbehaviour.NO_CLOSE_REPLY


DESCRIPTIONS: dict[Misbehaviour, str] = {
    Misbehaviour.BAD_ACCEPT:
        "the 101 response's Sec-WebSocket-Accept is base64(SHA-1(key)), the GUID forgotten, which breaks "
        "RFC 6455 4.2.2 (item 5.4): the client must fail the connection and never open it (RFC 6455 4.1, item 4).",
    Misbehaviour.NO_UPGRADE_HEADER:
        "the 101 response has no Upgrade header field, which breaks RFC 6455 4.2.2 (item 5.2): the client must "
        "fail the connection and never open it (RFC 6455 4.1, item 2).",
    Misbehaviour.MASKED_FRAMES:
        "each message from the client is echoed in a masked frame, which breaks RFC 6455 5.1 (a server must not "
        "mask): the client must close the connection, with 1002 if it sends a code (RFC 6455 5.1).",
    Misbehaviour.RSV1_WITHOUT_EXTENSION:
        "each message from the client is echoed with RSV1 set although no extension was agreed (this server "
        "declines permessage-deflate), which breaks RFC 6455 5.2: the client must fail the connection (1002).",
    Misbehaviour.FRAGMENTED_PING:
        "each message from the client is answered with a ping frame whose FIN bit is 0 (the first fragment of a "
        "control frame), which breaks RFC 6455 5.5 (control frames must not be fragmented): the client must fail "
        "the connection (1002).",
    Misbehaviour.OVERSIZED_PING:
        f"each message from the client is answered with a ping carrying {MAX_CONTROL_PAYLOAD + 1} bytes, which "
        f"breaks RFC 6455 5.5 (control frames carry {MAX_CONTROL_PAYLOAD} bytes or less): the client must fail the "
        "connection (1002).",
    Misbehaviour.INVALID_UTF8:
        "each message from the client is answered with a text frame holding 'café' in Latin-1 (byte 0xE9 alone is "
        "not UTF-8), which breaks RFC 6455 5.6: the client must fail the connection (RFC 6455 8.1), with 1007, the "
        "code for it (RFC 6455 7.4.1).",
    Misbehaviour.BAD_CLOSE_CODE:
        "each message from the client is answered with a close frame carrying status code 1005, which RFC 6455 "
        "7.4.1 reserves for 'no status code was present' and forbids on the wire: the client must fail the "
        "connection (1002, protocol error).",
    Misbehaviour.NO_PONG:
        "pings from the client are never answered with a pong, which breaks RFC 6455 5.5.2: the RFC leaves the "
        "reaction to the client; a keepalive gives up (websockets closes with 1011), a browser sends no pings.",
    Misbehaviour.NO_CLOSE_REPLY:
        "the client's close frame is never answered and the TCP connection is left open, which breaks RFC 6455 "
        "5.5.1 (answer a close with a close) and 7.1.1 (the server closes TCP first): the client gives up after a "
        "timeout of its own and closes the TCP connection itself, as RFC 6455 7.1.1 lets it.",
}

BAD_CLOSE_CODE = 1005  # "MUST NOT be set as a status code in a Close control frame" (RFC 6455 7.4.1)
BAD_CLOSE_REASON = "must never be sent"  # logged after the code: "1005 must never be sent"
LATIN1_CAFE = "café".encode("latin-1")  # b"caf\xe9": 0xE9 starts a 3-byte UTF-8 sequence that never comes
FIRST_PING_FRAGMENT = b"the first fragment of a ping"
HELP_WIDTH = 100
_WRONG_ANSWERS = frozenset((Misbehaviour.MASKED_FRAMES, Misbehaviour.RSV1_WITHOUT_EXTENSION,
                            Misbehaviour.FRAGMENTED_PING, Misbehaviour.OVERSIZED_PING, Misbehaviour.INVALID_UTF8,
                            Misbehaviour.BAD_CLOSE_CODE))


def help_text() -> str:
    """``--misbehave help`` and the end of ``serve --help``: every kind with its sentence."""
    lines = ["misbehaviours (--misbehave KIND; none by default): the server breaks one rule on purpose, so a class",
             "can watch real clients react. The live log flags what the server sends wrong.", ""]
    for kind in Misbehaviour:
        # A section number stays on the line of its "RFC 6455" (textwrap breaks at ASCII spaces only).
        sentence = (kind.description[0].upper() + kind.description[1:]).replace("RFC 6455 ", "RFC\xa06455\xa0")
        lines.append(f"  {kind.value}")
        lines += [line.replace("\xa0", " ") for line in
                  textwrap.wrap(sentence, HELP_WIDTH, initial_indent="      ", subsequent_indent="      ")]
    return "\n".join(lines) + "\n"


def banner(kind: Misbehaviour) -> list[str]:
    """The startup banner's warning: loud, because nobody should take this server for a correct one."""
    return [f"!! THIS SERVER IS DELIBERATELY BROKEN (--misbehave {kind.value}): do not use it as a reference. !!",
            f"!! {kind.description[0].upper()}{kind.description[1:]}"]


def page_notice(kind: Misbehaviour | None) -> bytes:
    """The demo page's warning (HTML, empty when the server behaves)."""
    if kind is None:
        return b""
    return html.escape(f"This server is deliberately broken (--misbehave {kind.value}): "
                       f"{kind.description}").encode("utf-8")


def wrong_accept(key: str) -> str:
    """The accept value of a server that forgot the GUID: base64(SHA-1(key))."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1")).digest()).decode("ascii")


def spoil_response(kind: Misbehaviour, response: bytes, key: str) -> bytes:
    """The 101 response as this kind sends it (unchanged for the kinds that break a later rule)."""
    if kind is Misbehaviour.BAD_ACCEPT:
        right = f"Sec-WebSocket-Accept: {accept_key(key)}\r\n".encode("latin-1")
        return response.replace(right, f"Sec-WebSocket-Accept: {wrong_accept(key)}\r\n".encode("latin-1"))
    if kind is Misbehaviour.NO_UPGRADE_HEADER:
        return response.replace(b"\r\nUpgrade: websocket\r\n", b"\r\n")
    return response


def oversized_ping_payload() -> bytes:
    """One byte over the limit, in words the hex dump shows."""
    sentence = f"control frames carry at most {MAX_CONTROL_PAYLOAD} bytes; this ping carries more. ".encode()
    return (sentence * 3)[: MAX_CONTROL_PAYLOAD + 1]


def wrong_answer(kind: Misbehaviour, opcode: int, data: bytes) -> bytes:
    """The frames sent instead of the answer to a message (``opcode``, ``data``) from the client, for the kinds
    that spoil answers with data or ping frames."""
    if kind is Misbehaviour.MASKED_FRAMES:
        return build_frame(opcode, data, masking_key=os.urandom(4))
    if kind is Misbehaviour.RSV1_WITHOUT_EXTENSION:
        return build_frame(opcode, data, rsv1=True)
    if kind is Misbehaviour.FRAGMENTED_PING:
        # The first fragment is enough to break the rule; a continuation after it would add a second violation
        # (a continuation with no data message open) that only muddles the lesson.
        return build_frame(Opcode.PING, FIRST_PING_FRAGMENT, fin=False)
    if kind is Misbehaviour.OVERSIZED_PING:
        return build_frame(Opcode.PING, oversized_ping_payload())
    if kind is Misbehaviour.INVALID_UTF8:
        return build_frame(Opcode.TEXT, LATIN1_CAFE)
    # BAD_CLOSE_CODE is not here: a close frame changes the connection's state, so the endpoint sends it with its
    # own close() (BAD_CLOSE_CODE, BAD_CLOSE_REASON) and then waits for the client's answer as after any close.
    raise ValueError(f"{kind.value} answers with no frames of its own")
