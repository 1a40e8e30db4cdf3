"""``--detail``: one frame as a tree of every field, and a hex dump coloured by field.

Both read the frame's field spans (``Frame.spans()``, declared once in ``core.fields``): the tree's bit patterns,
the hex colours and the legend cannot disagree with the parser. What each field means is printed once, in the
legend at the top (``legend_lines``), not under every frame.
"""

from __future__ import annotations

from wsinspect.core.events import FrameEvent
from wsinspect.core.fields import (
    ALL_FIELDS,
    FIRST_BYTE_FIELDS,
    PAYLOAD,
    SECOND_BYTE_FIELDS,
    FieldSpan,
    Opcode,
    opcode_name,
)
from wsinspect.core.frames import apply_mask, parse_close_payload
from wsinspect.views.describe import CLOSE_CODE_NAMES, is_compressed, size
from wsinspect.views.palette import Palette, Piece
from wsinspect.views.safe import visible

Line = list[Piece]

DEFAULT_MAX_BYTES = 256  # payload bytes shown in a hex dump before "… N more"
_INDENT = "        "

# The hex dump's role for each field; the two first bytes pack several fields each, so they get one role per byte.
_FIELD_ROLE = {"extended_length": "field.extended_length", "masking_key": "field.masking_key",
               "payload": "field.payload"}
_PRINTABLE = bytes(range(0x20, 0x7F))
_ASCII_COLUMN = bytes(b if b in _PRINTABLE else ord(".") for b in range(256))


def _bits(byte: int, mask: int) -> str:
    """Wireshark's bit picture: ``1... ....`` shows the bits of ``mask`` in ``byte``, dots elsewhere."""
    chars = [str(byte >> (7 - i) & 1) if mask >> (7 - i) & 1 else "." for i in range(8)]
    return "".join(chars[:4]) + " " + "".join(chars[4:])


def _value_text(span: FieldSpan, event: FrameEvent) -> str:
    frame = event.frame
    key = span.field.key
    if key == "opcode":
        return f"{opcode_name(frame.opcode)} ({frame.opcode})"
    if key == "payload_length":
        value = int(span.value)
        return f"{value}" + {126: " (a 16-bit length follows)", 127: " (a 64-bit length follows)"}.get(value, "")
    if key == "masking_key":
        return bytes(span.value).hex(" ") if isinstance(span.value, bytes) else str(span.value)
    return str(span.value)


def _payload_lines(event: FrameEvent, continues: tuple[int, bool] | None, max_bytes: int, deflate: bool) -> list[Line]:
    """What the payload holds, in words: a close frame's code and reason, a text frame's text."""
    frame = event.frame
    payload = frame.payload
    prefix = _INDENT + "    "
    opcode = frame.opcode
    compressed = is_compressed(frame, continues, deflate)
    if opcode == Opcode.CONTINUATION and continues is not None:
        opcode = continues[0]
    if opcode == Opcode.CLOSE:
        close = parse_close_payload(payload)
        if close.code is None:
            return [[("muted", prefix + "Close: no status code (RFC 6455 7.1.5: received as 1005)")]]
        name = CLOSE_CODE_NAMES.get(close.code, "")
        line: Line = [("muted", prefix + "Status code: "), ("strong", str(close.code))]
        if name:
            line.append(("muted", f" {name}"))
        lines = [line]
        if close.reason:
            lines.append([("muted", prefix + "Reason: "), ("text", f'"{visible(close.reason[:max_bytes])}"')])
        return lines
    if compressed:
        return [[("muted", prefix + "Compressed with permessage-deflate (RFC 7692); the message it belongs to is "
                  "shown inflated below its last frame")]]
    if not payload:
        return []
    shown = payload[:max_bytes]
    more = " …" if len(payload) > max_bytes else ""
    if opcode in (Opcode.TEXT, Opcode.PING, Opcode.PONG):
        text = shown.decode("utf-8", "surrogateescape")
        label = "Text" if opcode == Opcode.TEXT else "Application data"
        return [[("muted", prefix + f"{label}: "), ("text", f'"{visible(text)}"' + more)]]
    return [[("muted", prefix + "Binary: "), ("binary", shown[:32].hex(" ") + (" …" if len(payload) > 32 else ""))]]


def frame_title(event: FrameEvent) -> Line:
    frame = event.frame
    return [("strong", f"{_INDENT}WebSocket {opcode_name(frame.opcode)} frame"),
            ("muted", f", {frame.size} bytes on the wire ({len(frame.header)} header + {frame.payload_length} "
                      f"payload), stream offset {frame.offset}")]


def bit_field_lines(first: int, second: int) -> list[Line]:
    """The fields packed in a frame's first two bytes (FIN, RSV1-3, opcode; MASK, payload length), which depend on
    those two bytes alone: a view can paint them once per distinct pair and reuse them."""
    lines: list[Line] = []
    for field in (*FIRST_BYTE_FIELDS, *SECOND_BYTE_FIELDS):
        assert field.bitmask is not None
        byte = first if field in FIRST_BYTE_FIELDS else second
        raw = byte & field.bitmask
        if field.key == "opcode":
            value = f"{opcode_name(raw)} ({raw})"
        elif field.key == "payload_length":
            value = f"{raw}" + {126: " (a 16-bit length follows)", 127: " (a 64-bit length follows)"}.get(raw, "")
        else:
            value = str(bool(raw))
        role = "field.first-byte" if field in FIRST_BYTE_FIELDS else "field.second-byte"
        lines.append([("muted", _INDENT + "  " + _bits(byte, field.bitmask) + " = "), (role, f"{field.label}: "),
                      ("plain", value), ("muted", f"  [{field.abbrev}]")])
    return lines


def frame_tree_rest(event: FrameEvent, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    continues: tuple[int, bool] | None = None, spans: list[FieldSpan] | None = None,
                    deflate: bool = True) -> list[Line]:
    """The fields after the first two bytes (extended length, masking key), then the payload in words."""
    frame = event.frame
    lines: list[Line] = []
    for span in spans if spans is not None else frame.spans():
        field = span.field
        if field.bitmask is not None or field is PAYLOAD:
            continue
        lines.append([("muted", _INDENT + "  "), (_FIELD_ROLE.get(field.key, "plain"), f"{field.label}: "),
                      ("plain", _value_text(span, event)), ("muted", f"  [{field.abbrev}]")])
    lines.append([("muted", _INDENT + "  "),
                  ("field.payload", f"Payload: {size(frame.payload_length)}"
                                    + (" (masked on the wire)" if frame.masked else ""))])
    lines += _payload_lines(event, continues, max_bytes, deflate)
    if frame.missing:
        lines.append([("warning", f"{_INDENT}    {frame.missing} payload bytes not kept (not captured, or over "
                                  "--max-frame)")])
    return lines


def frame_tree(event: FrameEvent, *, max_bytes: int = DEFAULT_MAX_BYTES,
               continues: tuple[int, bool] | None = None, deflate: bool = True) -> list[Line]:
    """Wireshark's packet-details pane for one frame: every field with its bits, value and filter name."""
    header = event.frame.header
    return [frame_title(event), *bit_field_lines(header[0], header[1]),
            *frame_tree_rest(event, max_bytes=max_bytes, continues=continues, deflate=deflate)]


def _hex_column(index: int) -> int:
    """Where byte ``index`` of a 16-byte row starts in its hex text (an extra space after the eighth byte)."""
    return 3 * index + (index >= 8)


def _hex_text_cells(row_bytes: int) -> int:
    """How wide a full row's hex text is, with the gap that comes before its ASCII column."""
    return _hex_column(row_bytes - 1) + 2 + 2


def hex_row_bytes(width: int | None) -> int:
    """Bytes a hex dump row shows: 16 as Wireshark does (80 columns), 8 or 4 where the terminal is narrower, so
    that each row stays one line with its offset, hex and ASCII columns lined up."""
    if width is None:
        return 16
    for row_bytes in (16, 8):
        if len(_INDENT) + 6 + _hex_text_cells(row_bytes) + row_bytes <= width:
            return row_bytes
    return 4


def _hex_row(chunk: bytes) -> str:
    text = chunk.hex(" ")
    return text[:23] + " " + text[23:] if len(chunk) > 8 else text


def _hex_lines(data: bytes, roles: list[tuple[int, int, str]], *, base: int, palette: Palette,
               row_bytes: int = 16) -> list[str]:
    """``row_bytes`` bytes a line, hex and ASCII, each run of bytes in its field's role; painted here, since a dump
    is most of what ``--detail`` prints, and nearly every row is payload in one role (done in one comprehension
    below)."""
    lines: list[str] = []
    ascii_column = data.translate(_ASCII_COLUMN).decode("ascii")
    muted_on, muted_off = palette.codes("muted")
    last_start, last_stop, last_role = roles[-1]
    role_on, role_off = palette.codes(last_role)
    size = len(data)
    ascii_at = _hex_text_cells(row_bytes)  # where the ASCII column starts, after the offset
    # The first row that is all last-role bytes.
    fast_from = -(-last_start // row_bytes) * row_bytes if last_stop >= size else size
    for row in range(0, min(fast_from, size), row_bytes):
        chunk = data[row : row + row_bytes]
        hex_text = _hex_row(chunk)
        hex_pieces: Line = [("muted", f"{_INDENT}{base + row:04x}  ")]
        ascii_pieces: Line = [("plain", " " * (ascii_at - len(hex_text)))]
        cursor = 0
        for start, stop, role in roles:
            first, last = max(start, row) - row, min(stop, row + len(chunk)) - row
            if first >= last:
                continue
            begin, finish = _hex_column(first), _hex_column(last - 1) + 2
            if begin > cursor:
                hex_pieces.append(("plain", hex_text[cursor:begin]))
            hex_pieces.append((role, hex_text[begin:finish]))
            ascii_pieces.append((role, ascii_column[row + first : row + last]))
            cursor = finish
        lines.append(palette.paint(hex_pieces + ascii_pieces))
    if fast_from < size:
        rows = range(fast_from, size, row_bytes)
        lines += [f"{muted_on}{_INDENT}{base + row:04x}  {muted_off}{role_on}{hex_text}{role_off}"
                  f"{' ' * (ascii_at - len(hex_text))}{role_on}{ascii_column[row : row + row_bytes]}{role_off}"
                  for row, hex_text in zip(rows, [_hex_row(data[row : row + row_bytes]) for row in rows],
                                           strict=True)]
    return lines


def hex_dump(event: FrameEvent, palette: Palette, *, max_bytes: int = DEFAULT_MAX_BYTES,
             spans: list[FieldSpan] | None = None, width: int | None = None) -> list[str]:
    """The frame's wire bytes coloured by field (at most ``max_bytes`` of payload); under a masked payload, the
    same bytes unmasked. Painted lines, 16 bytes a row, or fewer where ``width`` (the terminal's) is under 80."""
    frame = event.frame
    header = frame.header
    payload = frame.payload[:max_bytes]
    # Masking restarts at key byte 0 with the payload, so masking the shown part alone gives the wire bytes.
    wire_payload = apply_mask(payload, frame.masking_key) if frame.masking_key else payload
    roles = [(0, 1, "field.first-byte"), (1, 2, "field.second-byte")]
    roles += [(span.start, span.end, _FIELD_ROLE.get(span.field.key, "plain"))
              for span in (spans if spans is not None else frame.spans()) if span.field.bitmask is None]
    row_bytes = hex_row_bytes(width)
    more: list[str] = []
    if len(frame.payload) > max_bytes:
        under = _INDENT + "      " if row_bytes == 16 else _INDENT  # under the hex column, where there is room
        more = [palette.wrap("muted", f"{under}… {len(frame.payload) - max_bytes} more payload bytes")]
    lines = [palette.wrap("strong", f"{_INDENT}wire bytes")]
    lines += _hex_lines(header + wire_payload, roles, base=0, palette=palette, row_bytes=row_bytes) + more
    if frame.masked and payload:
        lines.append(palette.wrap("strong", f"{_INDENT}unmasked payload"))
        lines += _hex_lines(payload, [(0, len(payload), "field.unmasked")], base=len(header), palette=palette,
                            row_bytes=row_bytes)
        lines += more
    return lines


def legend_lines() -> list[Line]:
    """What every field means (RFC 6455 5.2) and its colour in the hex dumps: printed once, before the first frame."""
    lines: list[Line] = [[("strong", "Frame fields (RFC 6455 5.2), as the trees below show them")]]
    seen: set[str] = set()
    for field in ALL_FIELDS:
        if field.label in seen:
            continue
        seen.add(field.label)
        role = ("field.first-byte" if field in FIRST_BYTE_FIELDS else
                "field.second-byte" if field in SECOND_BYTE_FIELDS else _FIELD_ROLE.get(field.key, "plain"))
        lines.append([("muted", "  "), (role, field.label), ("muted", f"  [{field.abbrev}]")])
        lines.append([("plain", "      " + field.meaning)])
    lines.append([("muted", "  hex dumps: "), ("field.first-byte", "FIN/RSV/opcode"), ("muted", "  "),
                  ("field.second-byte", "MASK/length"), ("muted", "  "), ("field.extended_length", "extended length"),
                  ("muted", "  "), ("field.masking_key", "masking key"), ("muted", "  "),
                  ("field.payload", "payload"), ("muted", "  "), ("field.unmasked", "unmasked payload")])
    return lines
