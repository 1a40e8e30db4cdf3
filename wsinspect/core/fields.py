"""The WebSocket frame header, declared once (RFC 6455 section 5.2).

Each field has its Wireshark abbreviation (so JSON output lines up with ``tshark -T json``), where it sits, and what
it means. The parser's byte spans, the detail tree's labels, the hex dump's colours and its legend all read this
table; nothing else spells the frame layout out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Opcode(IntEnum):
    """RFC 6455 section 5.2, "Opcode: 4 bits" (registry in section 11.8)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


OPCODE_NAMES = {
    Opcode.CONTINUATION: "Continuation",
    Opcode.TEXT: "Text",
    Opcode.BINARY: "Binary",
    Opcode.CLOSE: "Close",
    Opcode.PING: "Ping",
    Opcode.PONG: "Pong",
}


def opcode_name(opcode: int) -> str:
    if opcode in OPCODE_NAMES:
        return OPCODE_NAMES[Opcode(opcode)]
    kind = "control" if opcode >= 0x8 else "non-control"
    return f"Reserved {kind} 0x{opcode:X}"


def is_known_opcode(opcode: int) -> bool:
    return opcode in OPCODE_NAMES


@dataclass(frozen=True, slots=True)
class HeaderField:
    key: str  # short name used in code and in the hex legend
    label: str  # as Wireshark's tree labels it
    abbrev: str  # Wireshark's display-filter field name
    bitmask: int | None  # for the bit fields packed in the first two bytes
    style: str  # the hex dump's colour for this field
    meaning: str  # RFC 6455 section 5.2, in plain words


FIN = HeaderField("fin", "Fin", "websocket.fin", 0x80, "bold magenta",
                  "1 if this is the final fragment of a message (the first may also be the final).")
RSV1 = HeaderField("rsv1", "Reserved (RSV1)", "websocket.rsv", 0x40, "magenta",
                   "Must be 0 unless an extension defines it; permessage-deflate sets it on compressed messages.")
RSV2 = HeaderField("rsv2", "Reserved (RSV2)", "websocket.rsv", 0x20, "magenta",
                   "Must be 0 unless a negotiated extension defines it.")
RSV3 = HeaderField("rsv3", "Reserved (RSV3)", "websocket.rsv", 0x10, "magenta",
                   "Must be 0 unless a negotiated extension defines it.")
OPCODE = HeaderField("opcode", "Opcode", "websocket.opcode", 0x0F, "bold magenta",
                     "What the payload is: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong.")
MASK = HeaderField("mask", "Mask", "websocket.mask", 0x80, "bold cyan",
                   "1 if the payload is masked; every client-to-server frame must be, no server frame may be.")
PAYLOAD_LENGTH = HeaderField("payload_length", "Payload length", "websocket.payload_length", 0x7F, "cyan",
                             "0-125 is the length; 126 means a 16-bit length follows; 127 a 64-bit one.")
EXTENDED_LENGTH_16 = HeaderField("extended_length", "Extended Payload length (16 bits)",
                                 "websocket.payload_length_ext_16", None, "blue",
                                 "The payload length (126-65535), in network byte order.")
EXTENDED_LENGTH_64 = HeaderField("extended_length", "Extended Payload length (64 bits)",
                                 "websocket.payload_length_ext_64", None, "blue",
                                 "The payload length (65536 and up), in network byte order; top bit 0.")
MASKING_KEY = HeaderField("masking_key", "Masking-Key", "websocket.masking_key", None, "yellow",
                          "4 random bytes chosen per frame; payload byte i is XORed with key byte i mod 4.")
PAYLOAD = HeaderField("payload", "Payload", "websocket.payload", None, "green",
                      "The application data (masked on the wire if MASK is 1).")

FIRST_BYTE_FIELDS = (FIN, RSV1, RSV2, RSV3, OPCODE)
SECOND_BYTE_FIELDS = (MASK, PAYLOAD_LENGTH)
ALL_FIELDS = (*FIRST_BYTE_FIELDS, *SECOND_BYTE_FIELDS, EXTENDED_LENGTH_16, EXTENDED_LENGTH_64, MASKING_KEY, PAYLOAD)


@dataclass(frozen=True, slots=True)
class FieldSpan:
    """Where one field of one frame sits: bytes [start, end) of the frame, and its value."""

    field: HeaderField
    start: int
    end: int
    value: int | bytes | bool
