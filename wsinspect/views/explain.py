"""``--explain``: the protocol in plain words, each thing once, where it first appears.

Each note names the RFC section it comes from. A header is explained under its first appearance in a handshake
table, a frame fact (masking, the 126/127 length forms, fragmentation, compression, each opcode) under the first frame
that shows it, and a rule under the first violation or notice of it (the wording of rules lives in ``core.checks``;
only headers and frame facts are worded here).
"""

from __future__ import annotations

from wsinspect.core.checks import Check
from wsinspect.core.events import FrameEvent
from wsinspect.core.fields import Opcode
from wsinspect.views.palette import Piece

Line = list[Piece]

HEADER_NOTES: dict[str, tuple[str, str]] = {
    "host": ("RFC 6455 4.1", "the server the client wants (one address can serve many sites)."),
    "upgrade": ("RFC 6455 4.1", "asks to switch this HTTP/1.1 connection to the WebSocket protocol. It is hop-by-hop "
                                "(RFC 9110 7.6.1): a reverse proxy must be told to pass it on."),
    "connection": ("RFC 6455 4.1", "must contain 'Upgrade', which marks the Upgrade header as meant for this hop; also "
                                   "hop-by-hop."),
    "sec-websocket-key": ("RFC 6455 4.1", "16 random bytes in base64. The server hashes it with a fixed GUID and "
                                          "sends the result back, proving it understood a WebSocket handshake (it is "
                                          "not a secret and not security)."),
    "sec-websocket-version": ("RFC 6455 4.1", "the protocol version; 13 is the one RFC 6455 defines. A server that "
                                              "speaks another answers 426 with the versions it has (4.4)."),
    "origin": ("RFC 6455 10.2", "sent by browsers: the site whose page opened the socket. Servers check it to refuse "
                                "other sites' pages (the browser cannot be trusted to be the only client)."),
    "sec-websocket-protocol": ("RFC 6455 4.1", "subprotocols (application protocols over WebSocket) the client "
                                               "speaks, in order; the server answers with the one it picked."),
    "sec-websocket-extensions": ("RFC 6455 9.1", "extensions offered or accepted; permessage-deflate (RFC 7692) "
                                                 "compresses each message, its parameters tune the window."),
    "sec-websocket-accept": ("RFC 6455 4.2.2", "base64(SHA-1(key + 258EAFA5-E914-47DA-95CA-C5AB0DC85B11)): the client "
                                               "checks it and fails the connection if it is wrong."),
    "status 101": ("RFC 6455 4.2.2", "101 Switching Protocols: the handshake succeeded; from the next byte on, both "
                                     "sides send WebSocket frames."),
    "status refused": ("RFC 6455 4.2.2", "any status other than 101 means the server refused: the connection stays "
                                         "HTTP and no frames follow; the body often says why."),
}

FRAME_NOTES: dict[str, tuple[str, str]] = {
    "masked": ("RFC 6455 5.3", "a client masks every frame with 4 fresh random bytes (payload byte i XOR key byte i "
                               "mod 4) so that a script in a browser cannot choose the bytes on the wire and trick a "
                               "proxy that misreads them as HTTP (10.3)."),
    "unmasked": ("RFC 6455 5.1", "a server never masks: only client-to-server frames carry a masking key."),
    "length-16": ("RFC 6455 5.2", "126 in the 7-bit length field is not the length: it means the length follows in "
                                  "the next 2 bytes (126 to 65,535 bytes)."),
    "length-64": ("RFC 6455 5.2", "127 in the 7-bit length field means the length follows in the next 8 bytes "
                                  "(65,536 bytes and more); the first bit of those must be 0."),
    "fragment": ("RFC 6455 5.4", "FIN 0: this message goes on in continuation frames (opcode 0); the last one has "
                                 "FIN 1. Control frames may come in between, other messages may not."),
    "compressed": ("RFC 7692 6", "RSV1 on a message's first frame: the message is DEFLATE-compressed "
                                 "(permessage-deflate); the 00 00 ff ff that ends each compressed block is left off "
                                 "on the wire and added back to inflate."),
    "text": ("RFC 6455 5.6", "text: the whole message must be valid UTF-8 (a receiver fails the connection with 1007 "
                             "otherwise)."),
    "binary": ("RFC 6455 5.6", "binary: bytes for the application; WebSocket does not look inside."),
    "ping": ("RFC 6455 5.5.2", "ping: the other side must answer with a pong carrying the same payload (up to 125 "
                               "bytes); used to keep a connection alive or measure round trips."),
    "pong": ("RFC 6455 5.5.3", "pong: the answer to a ping, with its payload; an unasked pong is a heartbeat "
                               "that needs no answer."),
    "close": ("RFC 6455 5.5.1", "close: a 2-byte status code (7.4) and an optional UTF-8 reason. The other side "
                                "answers with a close of its own, then the server closes the TCP connection (7.1.1)."),
}


def frame_facts(event: FrameEvent, continues_compressed: bool) -> list[str]:
    """The facts a frame shows, as keys of FRAME_NOTES, in the order worth reading them."""
    frame = event.frame
    facts = ["masked" if frame.masked else "unmasked"]
    if frame.length_bits == 16:
        facts.append("length-16")
    elif frame.length_bits == 64:
        facts.append("length-64")
    if not frame.fin and not frame.is_control:
        facts.append("fragment")
    if frame.rsv1 and not continues_compressed:
        facts.append("compressed")
    names = {Opcode.TEXT: "text", Opcode.BINARY: "binary", Opcode.PING: "ping", Opcode.PONG: "pong",
             Opcode.CLOSE: "close"}
    name = names.get(Opcode(frame.opcode)) if frame.opcode in names else None
    if name:
        facts.append(name)
    return facts


class Explainer:
    """Remembers what has been explained, so each note is printed once per run."""

    def __init__(self, indent: str = "        ") -> None:
        self.indent = indent
        self._said: set[str] = set()

    def _note(self, key: str, rfc: str, text: str, indent: str) -> Line | None:
        if key in self._said:
            return None
        self._said.add(key)
        return [("info", f"{indent}↳ "), ("info.strong", f"{rfc}: "), ("info", text)]

    def header(self, name: str, indent: str = "   ") -> Line | None:
        note = HEADER_NOTES.get(name.lower())
        return self._note("header:" + name.lower(), *note, indent) if note else None

    def status(self, upgraded: bool, indent: str = "   ") -> Line | None:
        key = "status 101" if upgraded else "status refused"
        return self._note(key, *HEADER_NOTES[key], indent)

    def frame(self, event: FrameEvent, continues_compressed: bool = False) -> list[Line]:
        lines = []
        for fact in frame_facts(event, continues_compressed):
            line = self._note("frame:" + fact, *FRAME_NOTES[fact], self.indent)
            if line:
                lines.append(line)
        return lines

    def rule(self, check: Check) -> Line | None:
        return self._note("check:" + check.id, check.rfc, check.rule, self.indent + "  ")
