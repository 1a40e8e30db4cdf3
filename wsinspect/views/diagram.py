"""Teaching views: RFC 6455 5.2's frame diagram filled with one frame's real bits, masking as a table (5.3), and
the Sec-WebSocket-Accept derivation step by step (1.3, 4.2.2).

Each function returns lines of styled pieces (see ``palette``). Field positions come from ``Frame.spans()``, the
frame layout declared once in ``core.fields``; the accept value from ``core.handshake.accept_key``: nothing here
restates the protocol, it only draws it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from wsinspect.core.fields import (
    FIN,
    FIRST_BYTE_FIELDS,
    MASK,
    OPCODE,
    PAYLOAD,
    PAYLOAD_LENGTH,
    RSV1,
    RSV2,
    RSV3,
    SECOND_BYTE_FIELDS,
    HeaderField,
    Opcode,
)
from wsinspect.core.frames import Frame, apply_mask
from wsinspect.core.handshake import WEBSOCKET_GUID, accept_key
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]

RFC_EXAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
RFC_EXAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3, the value the RFC derives from that key

DIAGRAM_PAYLOAD_BYTES = 8  # payload bytes drawn bit by bit; the rest is one "continued" line, as in the RFC
MASKING_ROWS = 16  # payload bytes listed in the masking table
_ROW_BITS = 32  # the RFC's figure is 32 bits wide

# One-bit fields are labelled vertically, as in the RFC's figure.
_VERTICAL = {FIN.key: "FIN", RSV1.key: "RSV1", RSV2.key: "RSV2", RSV3.key: "RSV3", MASK.key: "MASK"}
_SHORT_OPCODE: dict[int, str] = {Opcode.CONTINUATION: "cont.", Opcode.TEXT: "text", Opcode.BINARY: "binary",
                                  Opcode.CLOSE: "close", Opcode.PING: "ping", Opcode.PONG: "pong"}


def field_role(field: HeaderField) -> str:
    """The palette role a field is drawn in, the same as in the detail view's hex dump."""
    if field in FIRST_BYTE_FIELDS:
        return "field.first-byte"
    if field in SECOND_BYTE_FIELDS:
        return "field.second-byte"
    return f"field.{field.key}"


@dataclass(frozen=True, slots=True)
class _Segment:
    """The part of one field that falls in one 32-bit row of the figure: bits [start, end) of the frame."""

    field: HeaderField
    start: int
    end: int
    first: bool  # the field starts in this row
    last: bool  # the field ends in this row


def _field_bits(frame: Frame, shown_payload: int) -> list[tuple[HeaderField, int, int]]:
    """(field, first bit, end bit) in wire order, payload cut to ``shown_payload`` bytes."""
    bits: list[tuple[HeaderField, int, int]] = []
    for span in frame.spans():
        field = span.field
        if field.bitmask is not None:
            # The fields packed in the first two bytes: their bits are where the bitmask has ones.
            mask = field.bitmask
            high = 7 - (mask.bit_length() - 1)
            low = 8 - (mask & -mask).bit_length() + 1
            base = 8 * span.start
            bits.append((field, base + high, base + low))
        elif field is PAYLOAD:
            if shown_payload:
                bits.append((field, 8 * span.start, 8 * (span.start + shown_payload)))
        else:
            bits.append((field, 8 * span.start, 8 * span.end))
    return bits


def _rows(fields: list[tuple[HeaderField, int, int]]) -> list[list[_Segment]]:
    rows: list[list[_Segment]] = []
    for field, start, end in fields:
        position = start
        while position < end:
            row = position // _ROW_BITS
            stop = min(end, (row + 1) * _ROW_BITS)
            while len(rows) <= row:
                rows.append([])
            rows[row].append(_Segment(field, position, stop, position == start, stop == end))
            position = stop
    return rows


def _centre(text: str, width: int) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…" if width > 0 else ""
    return text.center(width)


def _segment_labels(segment: _Segment, frame: Frame, wire: bytes) -> list[str]:
    field = segment.field
    if field.key in _VERTICAL:
        return list(_VERTICAL[field.key])
    first_byte, end_byte = segment.start // 8, (segment.end + 7) // 8
    seg_bytes = wire[first_byte:end_byte]
    if field is OPCODE:
        return ["opcode", f"= {frame.opcode}", _SHORT_OPCODE.get(frame.opcode, "reserved")]
    if field is PAYLOAD_LENGTH:
        value = frame.header[1] & 0x7F
        return ["Payload len", f"= {value}", *({126: ["2 more bytes"], 127: ["8 more bytes"]}.get(value, []))]
    if field is PAYLOAD:
        name = ("Payload Data" + (", masked" if frame.masked else "")) if segment.first else "Payload continued"
        labels = [name, seg_bytes.hex(" ")]
        if frame.masking_key is not None:
            offset = first_byte - len(frame.header)
            labels.append("unmasked " + frame.payload[offset : offset + len(seg_bytes)].hex(" "))
        return labels
    name = field.label.replace(" (16 bits)", "").replace(" (64 bits)", "") if segment.first else "(continued)"
    labels = [name, seg_bytes.hex(" ")]
    if segment.last and field.key == "extended_length":
        labels.append(f"= {frame.payload_length}")
    return labels


def _border(above: list[_Segment], below: list[_Segment], row_start: int) -> str:
    """The line between two rows: '+' where a field starts or ends, dashes ('- - -') where one field goes on from
    the row above to the same bits of the row below, as in the RFC's figure."""
    above_start = row_start - _ROW_BITS
    width = max(_row_width(above, above_start), _row_width(below, row_start))
    edges = {s.start - above_start for s in above} | {s.end - above_start for s in above}
    edges |= {s.start - row_start for s in below} | {s.end - row_start for s in below}
    chars = []
    for k in range(width):
        over, under = _segment_at(above, above_start + k), _segment_at(below, row_start + k)
        goes_on = over is not None and under is not None and over.field is under.field and not over.last
        chars.append("+" if k in edges and not (goes_on and k not in _own_edges(under, row_start)) else
                     (" " if goes_on else "-"))
        chars.append("-")
    chars.append("+")
    return "".join(chars)


def _segment_at(segments: list[_Segment], bit: int) -> _Segment | None:
    return next((s for s in segments if s.start <= bit < s.end), None)


def _own_edges(segment: _Segment | None, row_start: int) -> set[int]:
    return set() if segment is None else {segment.start - row_start, segment.end - row_start}


def _row_width(segments: list[_Segment], row_start: int) -> int:
    return max((s.end - row_start for s in segments), default=0)


def frame_diagram(frame: Frame, *, payload_bytes: int = DIAGRAM_PAYLOAD_BYTES, indent: str = "  ") -> list[Line]:
    """RFC 6455 5.2's figure with this frame's bits in it: the 0-31 bit ruler, every field's bits in their real
    positions and its value under them, each row's byte offsets in the margin; payload bits for the first
    ``payload_bytes`` bytes, then one "continued" line as in the RFC."""
    shown = min(len(frame.payload), payload_bytes)
    wire = frame.header + frame.wire_payload[:shown]
    rows = _rows(_field_bits(frame, shown))
    offsets = []
    for index, row in enumerate(rows):
        first = index * 4
        last = (index * _ROW_BITS + _row_width(row, index * _ROW_BITS) - 1) // 8
        offsets.append(f"byte {first}" if first == last else f"bytes {first}-{last}")
    margin = max(len(text) for text in offsets) + 2
    pad = indent + " " * margin
    lines: list[Line] = [
        [("muted", pad + " " + " ".join(str(bit // 10) if bit % 10 == 0 else " " for bit in range(32)).rstrip())],
        [("muted", pad + " " + " ".join(str(bit % 10) for bit in range(32)))],
    ]
    previous: list[_Segment] = []
    for index, row in enumerate(rows):
        row_start = index * _ROW_BITS
        lines.append([("muted", pad + _border(previous, row, row_start))])
        bit_line: Line = [("muted", f"{indent}{offsets[index]:<{margin}}")]
        for segment in row:
            bits = " ".join(str(wire[k // 8] >> (7 - k % 8) & 1) for k in range(segment.start, segment.end))
            bit_line += [("muted", "|"), (field_role(segment.field), bits)]
        bit_line.append(("muted", "|"))
        lines.append(bit_line)
        labels = [_segment_labels(segment, frame, wire) for segment in row]
        for depth in range(max(len(label) for label in labels)):
            label_line: Line = [("plain", pad)]
            for segment, label in zip(row, labels, strict=True):
                text = _centre(label[depth] if depth < len(label) else "", 2 * (segment.end - segment.start) - 1)
                role = field_role(segment.field) if depth == 0 else "plain"
                label_line += [("muted", "|"), (role, text)]
            label_line.append(("muted", "|"))
            lines.append(label_line)
        previous = row
    more = len(frame.payload) - shown
    last_start = (len(rows) - 1) * _ROW_BITS
    if more:
        width = _row_width(previous, last_start)
        lines.append([("muted", pad + "+-" + " -" * (width - 1) + "+")])
        lines.append([("muted", pad + ":"), ("field.payload", _centre(f"Payload Data continued: {more} more bytes",
                                                                       2 * _ROW_BITS - 1)), ("muted", ":")])
        lines.append([("muted", pad + "+" + "-" * (2 * _ROW_BITS - 1) + "+")])
    else:
        lines.append([("muted", pad + _border(previous, [], last_start + _ROW_BITS))])
    return lines


def _char(value: int) -> str:
    return chr(value) if 0x20 <= value < 0x7F else "·"


def masking_table(frame: Frame, *, masking: bool, rows: int = MASKING_ROWS, indent: str = "  ") -> list[Line]:
    """RFC 6455 5.3 byte by byte: each payload byte, the key byte that masks it (i mod 4), and the XOR result.

    ``masking``: the sender's view (payload XOR key = the wire); otherwise the receiver's (wire XOR key = payload).
    The same XOR both ways, which is the point of the table.
    """
    key = frame.masking_key
    if key is None:
        return []
    payload = frame.payload[:rows]
    wire = apply_mask(payload, key)
    source, result = (payload, wire) if masking else (wire, payload)
    source_name, result_name = ("payload", "on the wire") if masking else ("on the wire", "payload")
    lines: list[Line] = [
        [("strong", f"{indent}Masking (RFC 6455 5.3): "), ("plain", "byte i XOR key byte i MOD 4, key "),
         ("field.masking_key", key.hex(" "))],
        [("muted", f"{indent}{'i':>5}  {'i mod 4':>7}  {source_name:<20}{'key[i mod 4]':<16}{result_name}")],
    ]
    result_role = "field.payload" if masking else "field.unmasked"  # as in the detail view's hex dump
    for i in range(len(payload)):
        j = i % 4
        # The text column goes with the payload side: on the wire, masked bytes are noise.
        lines.append([
            ("muted", f"{indent}{i:>5}  {j:>7}  "),
            ("field.payload", f"{source[i]:02x} {source[i]:08b}"),
            ("plain", f" {_char(source[i]) if masking else ' '}"),
            ("muted", "  XOR  "), ("field.masking_key", f"{key[j]:02x} {key[j]:08b}"),
            ("muted", "  =  "), (result_role, f"{result[i]:02x} {result[i]:08b}"),
            ("plain", "" if masking else f" {_char(result[i])}"),
        ])
    if len(frame.payload) > rows:
        lines.append([("muted", f"{indent}    … {len(frame.payload) - rows} more bytes, the key repeating every 4")])
    return lines


# -- Sec-WebSocket-Accept ------------------------------------------------------------------------------------

_STEP_KEY = ("RFC 6455 4.2.2 item 4", "/key/ ... This (encoded) value is used in the creation of the server's "
             "handshake to indicate an acceptance of the connection.  It is not necessary for the server to "
             "base64-decode the |Sec-WebSocket-Key| value.")
_STEP_GUID = ("RFC 6455 1.3", "the server has to take the value (as present in the header field, e.g., the "
              "base64-encoded [RFC4648] version minus any leading and trailing whitespace) and concatenate this "
              "with the Globally Unique Identifier (GUID, [RFC4122]) \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\" in "
              "string form")
_STEP_SHA1 = ("RFC 6455 4.2.2 item 5.4", "taking the SHA-1 hash of this concatenated value to obtain a 20-byte "
              "value")
_STEP_BASE64 = ("RFC 6455 4.2.2 item 5.4", "and base64-encoding (see Section 4 of [RFC4648]) this 20-byte hash.")


def _quote(source: tuple[str, str], indent: str) -> Line:
    section, sentence = source
    return [("muted", f"{indent}{section}: "), ("info", f"\u201c{sentence}\u201d")]


def wire_text(key: str) -> str:
    """A key typed on the command line as the header value a client would send: its UTF-8 bytes, read back one
    character per byte (Latin-1), as header values are read off the wire; bytes that were not UTF-8 survive."""
    return key.encode("utf-8", "surrogateescape").decode("latin-1")


def accept_steps(key: str, *, indent: str = "  ") -> list[Line]:
    """Sec-WebSocket-Accept derived from ``key`` in four numbered steps, each with the RFC's own words."""
    value = wire_text(key)
    trimmed = value.strip()
    joined = trimmed + WEBSOCKET_GUID
    digest = hashlib.sha1(joined.encode("latin-1")).digest()
    accept = accept_key(value)  # the core's value, the one the server and the validator use
    deeper = indent + "     "
    lines: list[Line] = [[("heading", f"{indent}Sec-WebSocket-Accept, step by step")]]
    lines.append([("strong", f"{indent}1. "), ("plain", "Take the client's Sec-WebSocket-Key, as text, minus "
                                                        "surrounding whitespace:")])
    # Shown as typed; hashed as the bytes a client would send (UTF-8), which is what ``value`` holds.
    shown = visible(key.strip())
    lines.append([("accent", deeper + shown)])
    if trimmed != value:
        lines.append([("muted", deeper + f"(the header value was '{visible(key)}': the whitespace is dropped)")])
    if not key.isascii():
        lines.append([("muted", deeper + "(not ASCII: hashed as the UTF-8 bytes a client would send)")])
    try:
        nonce = base64.b64decode(trimmed, validate=True)
    except (binascii.Error, ValueError):
        nonce = None
    if nonce is not None:
        lines.append([("muted", deeper + f"it is base64 for {len(nonce)} bytes: "), ("plain", nonce.hex(" "))])
    lines.append(_quote(_STEP_KEY, deeper))
    lines.append([("strong", f"{indent}2. "), ("plain", "Append the GUID "), ("accent.alt", WEBSOCKET_GUID),
                  ("plain", ", as a string:")])
    lines.append([("accent", deeper + shown), ("accent.alt", WEBSOCKET_GUID)])
    lines.append(_quote(_STEP_GUID, deeper))
    lines.append([("strong", f"{indent}3. "), ("plain", "Take the SHA-1 hash of that string's bytes: 20 bytes")])
    lines.append([("plain", deeper + " ".join(f"0x{byte:02x}" for byte in digest))])
    lines.append(_quote(_STEP_SHA1, deeper))
    lines.append([("strong", f"{indent}4. "), ("plain", "Encode those 20 bytes in base64:")])
    lines.append([("ok", deeper + accept)])
    lines.append(_quote(_STEP_BASE64, deeper))
    lines.append([("plain", f"{indent}The server answers with "), ("strong", f"Sec-WebSocket-Accept: {accept}")])
    if trimmed == RFC_EXAMPLE_KEY:
        same = accept == RFC_EXAMPLE_ACCEPT
        lines.append([("ok" if same else "error", f"{indent}{'✓' if same else '✗'} "),
                      ("plain", f"RFC 6455 1.3 gives {RFC_EXAMPLE_ACCEPT} for this key, and SHA-1 0xb3 0x7a 0x4f "
                                "... 0xc4 0xea")])
    return lines
