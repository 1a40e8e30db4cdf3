"""``--detail``: one frame as a tree of every field, and a hex dump coloured by field.

Both read the frame's field spans (``Frame.spans()``, declared once in ``core.fields``): the tree's bit patterns,
the hex colours and the legend cannot disagree with the parser.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from wsinspect.core.events import FrameEvent
from wsinspect.core.fields import ALL_FIELDS, PAYLOAD, FieldSpan, Opcode, opcode_name
from wsinspect.views.describe import size
from wsinspect.views.safe import visible

DEFAULT_MAX_BYTES = 256  # payload bytes shown in a hex dump before "… N more"
FIRST_BYTE_STYLE = "bold magenta"  # FIN, RSV1-3 and the opcode share the first byte
SECOND_BYTE_STYLE = "bold cyan"  # MASK and the 7-bit length share the second


def _bits(byte: int, mask: int) -> str:
    """Wireshark's bit picture: ``1... ....`` shows the bits of ``mask`` in ``byte``, dots elsewhere."""
    chars = [str(byte >> (7 - i) & 1) if mask >> (7 - i) & 1 else "." for i in range(8)]
    return "".join(chars[:4]) + " " + "".join(chars[4:])


def _value_text(span: FieldSpan, event: FrameEvent) -> str:
    frame = event.frame
    field = span.field
    if field.key == "opcode":
        return f"{opcode_name(frame.opcode)} ({frame.opcode})"
    if field.key == "payload_length":
        value = int(span.value)
        note = {126: " (16-bit length follows)", 127: " (64-bit length follows)"}.get(value, "")
        return f"{value}{note}"
    if field.key == "masking_key":
        return bytes(span.value).hex(" ")
    if isinstance(span.value, bool):
        return str(span.value)
    return str(span.value)


def frame_tree(event: FrameEvent, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Tree:
    frame = event.frame
    title = Text(f"WebSocket {opcode_name(frame.opcode)} frame, ", style="bold")
    title.append(f"{frame.size} bytes on the wire ({len(frame.header)} header + {frame.payload_length} payload), "
                 f"stream offset {frame.offset}", style="dim")
    tree = Tree(title, guide_style="dim")
    for span in frame.spans():
        field = span.field
        if field is PAYLOAD:
            continue
        label = Text()
        if field.bitmask is not None:
            label.append(_bits(frame.header[span.start], field.bitmask) + " = ", style="dim")
        label.append(f"{field.label}: ", style=field.style)
        label.append(_value_text(span, event))
        label.append(f"  [{field.abbrev}]", style="dim")
        node = tree.add(label)
        node.add(Text(field.meaning, style="dim italic"))
    payload_node = tree.add(Text(f"Payload: {size(frame.payload_length)}"
                                 + (" (masked on the wire)" if frame.masked else ""), style=PAYLOAD.style))
    if frame.rsv1:
        payload_node.add(Text("compressed with permessage-deflate (RFC 7692); the message line shows it inflated",
                              style="dim italic"))
    if frame.opcode == Opcode.TEXT and not frame.rsv1:
        shown = frame.payload[:max_bytes].decode("utf-8", "surrogateescape")
        payload_node.add(Text(f"Text: {visible(shown)}" + (" …" if len(frame.payload) > max_bytes else "")))
    if frame.missing:
        payload_node.add(Text(f"{frame.missing} payload bytes not kept (not captured, or over --max-frame)",
                              style="yellow"))
    return tree


def _hex_lines(data: bytes, styles: list[str], *, base: int, max_bytes: int) -> Text:
    out = Text()
    shown = data[:max_bytes]
    for row in range(0, len(shown), 16):
        chunk = shown[row : row + 16]
        out.append(f"{base + row:04x}  ", style="dim")
        for i, byte in enumerate(chunk):
            out.append(f"{byte:02x}", style=styles[row + i])
            out.append("  " if i == 7 else " ")
        out.append("   " * (16 - len(chunk)) + (" " if len(chunk) <= 8 else ""))
        for i, byte in enumerate(chunk):
            out.append(chr(byte) if 0x20 <= byte < 0x7F else ".", style=styles[row + i])
        out.append("\n")
    if len(data) > max_bytes:
        out.append(f"      … {len(data) - max_bytes} more bytes\n", style="dim")
    return out


def hex_dump(event: FrameEvent, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RenderableType:
    """The frame's wire bytes coloured by field; beside a masked payload, the unmasked one."""
    frame = event.frame
    wire = frame.header + frame.wire_payload
    styles = [PAYLOAD.style] * len(wire)
    styles[0] = FIRST_BYTE_STYLE
    styles[1] = SECOND_BYTE_STYLE
    for span in frame.spans():
        if span.field.bitmask is None and span.field is not PAYLOAD:
            styles[span.start : span.end] = [span.field.style] * (span.end - span.start)
    parts: list[RenderableType] = [Text("wire bytes", style="bold"), _hex_lines(wire, styles, base=0,
                                                                            max_bytes=len(frame.header) + max_bytes)]
    if frame.masked and frame.payload:
        parts.append(Text("unmasked payload", style="bold"))
        parts.append(_hex_lines(frame.payload, ["bold green"] * len(frame.payload), base=len(frame.header),
                                max_bytes=max_bytes))
    return Group(*parts, legend())


def legend() -> Text:
    out = Text("legend: ", style="dim")
    entries = [("FIN/RSV/opcode", FIRST_BYTE_STYLE), ("MASK/length", SECOND_BYTE_STYLE)]
    entries += [(field.label.split(" (")[0], field.style) for field in ALL_FIELDS if field.bitmask is None]
    for name, style in dict(entries).items():
        out.append(f" {name} ", style=f"reverse {style}")
        out.append(" ")
    return out
