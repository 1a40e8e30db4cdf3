"""Short descriptions of events, shared by every console view: the Info column, endpoints, sizes."""

from __future__ import annotations

from rich.text import Text

from wsinspect.core.events import Close, Direction, FrameEvent, Message
from wsinspect.core.fields import Opcode, opcode_name
from wsinspect.core.frames import parse_close_payload
from wsinspect.views.safe import hex_preview, preview, visible

PREVIEW_CHARS = 60

DIRECTION_STYLE: dict[Direction, str] = {"c2s": "bright_cyan", "s2c": "bright_yellow"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
# Colours that tell connections apart in a live log (none of them red or yellow, which mean trouble).
STREAM_COLOURS = ("green", "blue", "magenta", "cyan", "bright_green", "bright_blue", "bright_magenta", "orange3")


def stream_colour(stream: int) -> str:
    return STREAM_COLOURS[stream % len(STREAM_COLOURS)]


def endpoint(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def payload_preview(data: bytes, *, text: bool, limit: int = PREVIEW_CHARS) -> Text:
    """A quoted excerpt of a text payload, or hex of a binary one; always safe to print."""
    if text:
        decoded = data.decode("utf-8", "surrogateescape")
        return Text(f'"{preview(decoded, limit)}"', style="green")
    return Text(hex_preview(data, limit // 3), style="dim green")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def close_description(code: int | None, reason: str) -> Text:
    out = Text()
    if code is None:
        out.append("(no status code)", style="dim")
    else:
        out.append(str(code), style="bold")
        name = CLOSE_CODE_NAMES.get(code)
        if name:
            out.append(f" {name}", style="dim")
    if reason:
        out.append(f' "{preview(reason, PREVIEW_CHARS)}"', style="green")
    return out


CLOSE_CODE_NAMES = {
    1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status (reserved)", 1006: "abnormal closure (reserved)", 1007: "invalid payload data",
    1008: "policy violation", 1009: "message too big", 1010: "mandatory extension", 1011: "internal error",
    1012: "service restart", 1013: "try again later", 1014: "bad gateway", 1015: "TLS handshake (reserved)",
}


def frame_info(event: FrameEvent, *, continues: tuple[int, bool] | None = None) -> Text:
    """Wireshark's Info column, plus what the payload says: ``Text [FIN] [MASKED] "hello"``.

    ``continues`` is (opcode, compressed) of the message a continuation frame belongs to.
    """
    frame = event.frame
    info = Text(opcode_name(frame.opcode), style="bold")
    flags = []
    if frame.fin:
        flags.append("FIN")
    if frame.rsv1:
        flags.append("RSV1")
    if frame.rsv2:
        flags.append("RSV2")
    if frame.rsv3:
        flags.append("RSV3")
    if frame.masked:
        flags.append("MASKED")
    for flag in flags:
        info.append(f" [{flag}]", style="dim" if flag in ("FIN", "MASKED") else "magenta")
    payload = frame.payload
    if frame.opcode == Opcode.CLOSE:
        body = parse_close_payload(payload)
        info.append(" ")
        info.append_text(close_description(body.code, body.reason))
    elif frame.rsv1 or (frame.opcode == Opcode.CONTINUATION and continues is not None and continues[1]):
        info.append(f" compressed {size(len(payload))}", style="dim")
    elif payload:
        info.append(" ")
        is_text = frame.opcode == Opcode.TEXT or (frame.opcode == Opcode.CONTINUATION and continues is not None
                                                  and continues[0] == Opcode.TEXT)
        if frame.opcode in (Opcode.PING, Opcode.PONG):
            is_text = _is_utf8(payload)  # ping bodies are arbitrary (RFC 6455 5.5.2) but often words
        info.append_text(payload_preview(payload, text=is_text))
    if frame.missing:
        info.append(f" [{size(frame.missing)} of payload not captured or over the limit]", style="yellow")
    return info


def message_info(message: Message) -> Text:
    """``Text message, 3 frames, 17 B (11 B compressed): "hello"``."""
    kind = opcode_name(message.opcode).lower()
    out = Text(f"{kind} message", style="bold")
    details = []
    if message.frames > 1:
        details.append(f"{message.frames} frames")
    details.append(size(len(message.data)))
    if message.compressed:
        details.append(f"{size(message.wire_length)} compressed")
    out.append(" (" + ", ".join(details) + ") ", style="dim")
    out.append_text(payload_preview(message.data, text=message.opcode == Opcode.TEXT))
    if not message.complete:
        out.append(" [incomplete]", style="yellow")
    return out


def close_info(close: Close) -> Text:
    out = Text("close " if close.initiator else "close reply ", style="bold")
    out.append_text(close_description(close.code, close.reason))
    return out


def direction_arrow(direction: Direction, client: str, server: str) -> Text:
    source, target = (client, server) if direction == "c2s" else (server, client)
    return Text(f"{source} → {target}", style=DIRECTION_STYLE[direction])


def quoted(value: str | None) -> str:
    return "(missing)" if value is None else visible(value)
