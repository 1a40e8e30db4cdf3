"""Short descriptions of events as styled pieces, shared by every console view: the Info column, endpoints,
sizes, close codes, messages.

A description is a list of ``(role, text)`` pieces (see ``palette``); every text that came off the wire has been
through ``safe.visible`` before it becomes a piece, so a piece is always safe to print.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.cells import cell_len

from wsinspect.core.events import Close, FrameEvent, Message
from wsinspect.core.fields import OPCODE_NAMES, Opcode, opcode_name
from wsinspect.core.frames import Frame, parse_close_payload
from wsinspect.views.palette import Piece
from wsinspect.views.safe import hex_preview, preview

PREVIEW_CHARS = 60
_SPACE: Piece = ("plain", " ")  # between an Info column's head and its excerpt
_OPCODE_NAMES = {int(opcode): name for opcode, name in OPCODE_NAMES.items()}  # a plain dict: no enum per row
# Plain ints and sets as well: cheaper than looking enum members up, and these run once per row.
_CONTINUATION, _TEXT, _CLOSE = int(Opcode.CONTINUATION), int(Opcode.TEXT), int(Opcode.CLOSE)
_DATA = frozenset({int(Opcode.TEXT), int(Opcode.BINARY)})
_PING_PONG = frozenset({int(Opcode.PING), int(Opcode.PONG)})

SEVERITY_ROLE = {"error": "error", "warning": "warning", "info": "info"}

CLOSE_CODE_NAMES = {
    1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status (reserved)", 1006: "abnormal closure (reserved)", 1007: "invalid payload data",
    1008: "policy violation", 1009: "message too big", 1010: "mandatory extension", 1011: "internal error",
    1012: "service restart", 1013: "try again later", 1014: "bad gateway", 1015: "TLS handshake (reserved)",
}


def endpoint(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")  # a 63-bit frame length is at most 8 EiB


def size(count: int) -> str:
    """A byte count for people: exact below 1 KiB, else one decimal in the largest binary unit that keeps it
    under 1024 (up to EiB)."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in _BINARY_UNITS:
        if value < 1024 or unit == "EiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the last unit always returns")


class _CharacterWidths(dict[str, int]):
    """Each character's cell width, measured by rich once per distinct character and then looked up: summing
    lookups over a text runs at C speed, where measuring it whole costs a Python step per character."""

    def __missing__(self, char: str) -> int:
        width = self[char] = cell_len(char)
        return width


_CHARACTER_WIDTHS = _CharacterWidths()
_width_of_char = _CHARACTER_WIDTHS.__getitem__


# Excerpts end with an ellipsis, one cell wide: a text whose other characters are printable ASCII takes one cell
# per character, and is cut by slicing.
_ELLIPSIS = "…" if cell_len("…") == 1 else "\x00"
_ELLIPSIS_ONE_CELL = _ELLIPSIS == "…"


def _one_cell_each(text: str) -> bool:
    """Is ``width_of(text) == len(text)`` with every prefix cut the same way (ASCII is measured by ``len``)?"""
    if text.isascii():
        return True
    rest = text.replace(_ELLIPSIS, "")
    return rest.isascii() and rest.isprintable()


_KEPT_WIDTHS: dict[str, int] = {}  # non-ASCII texts measured: most repeat (rules, marks, arrows, titles)
_KEPT_WIDTHS_MAX = 4096  # then it starts again
_KEPT_WIDTH_CHARS = 256  # longer texts are measured each time


def width_of(text: str) -> int:
    """Terminal cells a (safe, printable) text takes: wide characters take two, combining marks none. (Per
    character: an emoji sequence joined by U+200D counts as its parts, so a row may be cut a little early.)"""
    return len(text) if text.isascii() else _measured(text)


def _measured(text: str) -> int:
    """Cells, character by character (an ASCII control takes none)."""
    cells = _KEPT_WIDTHS.get(text)
    if cells is None:
        cells = sum(map(_width_of_char, text))
        if len(text) <= _KEPT_WIDTH_CHARS:
            if len(_KEPT_WIDTHS) >= _KEPT_WIDTHS_MAX:
                _KEPT_WIDTHS.clear()
            _KEPT_WIDTHS[text] = cells
    return cells


def width_of_pieces(texts: list[str]) -> int:
    """``width_of("".join(texts))``, measured text by text, so that only the texts that are not printable ASCII
    are measured character by character (and those that repeat, once)."""
    joined = "".join(texts)
    if joined.isascii():
        return len(joined)
    # Printable ASCII takes one cell a character; everything else (ASCII controls too: none) is looked up.
    return sum([len(text) if text.isascii() and text.isprintable() else _measured(text) for text in texts])


def fit(pieces: list[Piece], width: int) -> list[Piece]:
    """Cut pieces to ``width`` cells, ending with an ellipsis when something was cut (a packet-list row is one line)."""
    joined = "".join([text for _, text in pieces])
    all_ascii = joined.isascii()
    if len(joined) <= width and (all_ascii or width_of(joined) <= width):
        return pieces  # most rows: measured whole, once
    used = 0
    for index, (role, text) in enumerate(pieces):
        ascii_text = all_ascii or text.isascii()
        cells = len(text) if ascii_text else width_of(text)
        if used + cells <= width:
            used += cells
            continue
        room = max(width - used - 1, 0)
        kept = text[:room] if ascii_text else text[: _cells_to_chars(text, room)]
        return [*pieces[:index], (role, kept + "…")] if width > used else pieces[:index]
    return pieces


def fit_painted(pieces: list[Piece], width: int, codes: Mapping[str, tuple[str, str]]) -> str:
    """``paint(fit(pieces, width))`` in one pass, for rows: each piece is measured once (by ``len`` where it is
    ASCII), and painted with ``codes`` (``Palette.role_codes``) as it is kept. The cut is ``fit``'s."""
    out = []
    used = 0
    for role, text in pieces:
        one_cell_each = text.isascii() or _one_cell_each(text)
        cells = len(text) if one_cell_each else width_of(text)
        if used + cells > width:
            # fit measures the whole line first, where an ASCII control takes no cell, and keeps all of it if that
            # fits; piece by piece, one in an ASCII piece takes one. Printable lines (always, from the views)
            # measure the same both ways, and a line that fits piece by piece fits whole: only here can they differ.
            joined = "".join([text for _, text in pieces])
            if not joined.isprintable() and len(joined) <= width and (joined.isascii() or width_of(joined) <= width):
                return "".join([codes[role][0] + text + codes[role][1] for role, text in pieces if text])
            if width > used:
                room = max(width - used - 1, 0)
                start, end = codes[role]
                kept = text[:room] if one_cell_each else text[: _cells_to_chars(text, room)]
                out.append(start + kept + "…" + end)
            break
        used += cells
        if text:
            start, end = codes[role]
            out.append(start + text + end)
    return "".join(out)


def fit_pair_painted(first: Piece, second: Piece, width: int, codes: Mapping[str, tuple[str, str]]) -> str:
    """``fit_painted([first, second], width, codes)`` for two printable pieces that take one cell a character
    (``_one_cell_each``), as most rows end (the space and an excerpt, a message's sizes and its excerpt): measured
    by ``len`` and cut by slicing, without the loop."""
    role, text = first
    cells = len(text)
    start, end = codes[role]
    if cells > width:
        return f"{start}{text[: width - 1]}…{end}" if width > 0 else ""
    painted = f"{start}{text}{end}" if text else ""
    role, text = second
    if not text:
        return painted
    start, end = codes[role]
    if cells + len(text) <= width:
        return f"{painted}{start}{text}{end}"
    return f"{painted}{start}{text[: width - cells - 1]}…{end}" if width > cells else painted


def wrap(pieces: list[Piece], width: int, indent: str = "  ") -> list[list[Piece]]:
    """A line longer than ``width`` cells folded onto several, at spaces where it can; continuation lines start with
    ``indent``. (Packet-list rows never get here: they are cut to one line by ``fit``.) Linear in the text: no
    character is measured twice, and a long piece is never measured past the room left on a line."""
    lines: list[list[Piece]] = []
    line: list[Piece] = []
    used = 0
    for role, text in pieces:
        ascii_text = text.isascii()
        while text:
            room = width - used
            # Every character takes at least one cell, so more characters than cells cannot fit.
            if len(text) <= room and (ascii_text or width_of(text) <= room):
                line.append((role, text))
                used += len(text) if ascii_text else width_of(text)
                break
            cut = room if ascii_text else _cells_to_chars(text[: room + 1], room)
            space = text.rfind(" ", 0, cut + 1)
            first_word = text.find(" ", 0, width + 1)
            if space > 0:
                cut = space
            elif used > len(indent) and 0 <= (first_word if first_word > 0 else len(text)) <= width - len(indent):
                cut = 0  # the word would fit on a line of its own: move it there rather than break it
            elif cut <= 0 and lines and used == len(indent):
                # Nothing fits beside the indent (an indent as wide as the line, a wide character in its last
                # cell): one character goes there anyway, or the same line would be started for ever.
                cut = 1
            if cut > 0:
                line.append((role, text[:cut].rstrip(" ")))
            text = text[cut:].lstrip(" ")
            if line and line[-1][1].endswith(" "):
                line[-1] = (line[-1][0], line[-1][1].rstrip(" "))
            lines.append(line)
            line, used = [("plain", indent)], len(indent)
    if line and line[-1][1].endswith(" "):
        line[-1] = (line[-1][0], line[-1][1].rstrip(" "))
    lines.append(line)
    return lines


def _cells_to_chars(text: str, cells: int) -> int:
    """How many characters of ``text`` fit in ``cells`` terminal cells (a few measurements, not one per character)."""
    count = min(len(text), cells)
    while count > 0:
        used = width_of(text[:count])
        if used <= cells:
            return count
        count -= max(1, (used - cells + 1) // 2)
    return 0


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def payload_preview(data: bytes, *, text: bool, limit: int = PREVIEW_CHARS) -> Piece:
    """A quoted excerpt of a text payload, or hex of a binary one; always safe to print."""
    return _excerpt(data, text, limit)[0]


def _excerpt(data: bytes, text: bool, limit: int = PREVIEW_CHARS) -> tuple[Piece, bool]:
    """``payload_preview``, and whether it surely takes one cell a character (``_one_cell_each``): hex does, and so
    does the excerpt of ASCII text (escapes are ASCII; the ellipsis of a cut is one cell). False means "measure it"."""
    if text:
        decoded = data[: limit * 4 + 4].decode("utf-8", "surrogateescape")
        return ("text", f'"{preview(decoded, limit)}"'), _ELLIPSIS_ONE_CELL and decoded.isascii()
    return ("binary", hex_preview(data, limit // 3)), _ELLIPSIS_ONE_CELL


def close_description(code: int | None, reason: str, *, with_name: bool = True) -> list[Piece]:
    pieces: list[Piece] = []
    if code is None:
        pieces.append(("muted", "(no status code)"))
    else:
        pieces.append(("strong", str(code)))
        name = CLOSE_CODE_NAMES.get(code)
        if name and with_name:
            pieces.append(("muted", f" {name}"))
    if reason:
        pieces.append(("text", f' "{preview(reason, PREVIEW_CHARS)}"'))
    return pieces


def frame_flags(frame: Frame) -> list[Piece]:
    pieces: list[Piece] = []
    if frame.fin:
        pieces.append(("flag", " [FIN]"))
    if frame.rsv1:
        pieces.append(("flag.rsv", " [RSV1]"))
    if frame.rsv2:
        pieces.append(("flag.rsv", " [RSV2]"))
    if frame.rsv3:
        pieces.append(("flag.rsv", " [RSV3]"))
    if frame.masked:
        pieces.append(("flag", " [MASKED]"))
    return pieces


def frame_head(frame: Frame) -> list[Piece]:
    """The Info column's start: the opcode's name and the flags (``Text [FIN] [MASKED]``), ASCII. It depends on
    the opcode, FIN, RSV1-3 and MASK alone, so a view may paint it once for each of their combinations."""
    return [("opcode", _OPCODE_NAMES.get(frame.opcode) or opcode_name(frame.opcode)), *frame_flags(frame)]


def is_compressed(frame: Frame, continues: tuple[int, bool] | None, deflate: bool) -> bool:
    """Does a data frame's payload hold compressed bytes? RSV1 means "compressed" only on a connection that agreed
    on permessage-deflate (RFC 7692 6; elsewhere it breaks RFC 6455 5.2, and the payload is shown as it is); a
    continuation is compressed when its message's first frame was (RFC 7692 6.1)."""
    opcode = frame.opcode
    if opcode == _CONTINUATION:
        return continues is not None and continues[1]
    return frame.rsv1 and deflate and opcode in _DATA


def frame_body(frame: Frame, continues: tuple[int, bool] | None, deflate: bool) -> list[Piece]:
    """The Info column after the head, for any frame but a close (see ``close_body``): the payload's size if it
    is compressed, else an excerpt; a note if some of it is missing."""
    payload = frame.payload
    body: list[Piece]
    if is_compressed(frame, continues, deflate):
        body = [("muted", f" compressed {size(len(payload))}")]
    elif payload:
        body = [_SPACE, payload_preview(payload, text=_shown_as_text(frame, continues))]
    else:
        body = []
    if frame.missing:
        body.append(missing_note(frame))
    return body


def _shown_as_text(frame: Frame, continues: tuple[int, bool] | None) -> bool:
    """Is an uncompressed payload shown as text (else as hex)?"""
    opcode = frame.opcode
    if opcode == _TEXT:
        return True
    if opcode in _PING_PONG:
        return _is_utf8(frame.payload)  # ping bodies are arbitrary (RFC 6455 5.5.2) but often words
    return opcode == _CONTINUATION and continues is not None and continues[0] == _TEXT


def frame_body_painted(frame: Frame, continues: tuple[int, bool] | None, deflate: bool, width: int,
                       codes: Mapping[str, tuple[str, str]]) -> str:
    """``fit_painted(frame_body(frame, continues, deflate), width, codes)``. The usual body, a whole payload's
    excerpt (one cell a character) or compressed size, is cut here without a list of pieces; the rest by
    ``fit_painted``."""
    payload = frame.payload
    if frame.missing or not payload:
        return fit_painted(frame_body(frame, continues, deflate), width, codes)
    if is_compressed(frame, continues, deflate):
        text = f" compressed {size(len(payload))}"  # ASCII
        start, end = codes["muted"]
        if len(text) <= width:
            return f"{start}{text}{end}"
        return f"{start}{text[: width - 1]}…{end}" if width > 0 else ""
    excerpt, one_cell_each = _excerpt(payload, _shown_as_text(frame, continues))
    if one_cell_each or _one_cell_each(excerpt[1]):
        return fit_pair_painted(_SPACE, excerpt, width, codes)
    return fit_painted([_SPACE, excerpt], width, codes)


def close_body(frame: Frame, head_cells: int, width: int) -> tuple[list[Piece], bool]:
    """A close frame's Info after the opcode: its code, the code's name and its reason; and whether the flags stay.
    With a ``width`` (cells for all of it, ``head_cells`` of them taken by the opcode and flags), what matters most
    survives a narrow column: the code's name goes first, then the flags."""
    close = parse_close_payload(frame.payload)
    body = [("plain", " "), *close_description(close.code, close.reason)]
    flags_kept = True
    if width and head_cells + _cells(body) > width:
        body = [("plain", " "), *close_description(close.code, close.reason, with_name=False)]
        flags_kept = head_cells + _cells(body) <= width
    if frame.missing:
        body.append(missing_note(frame))
    return body, flags_kept


def missing_note(frame: Frame) -> Piece:
    """What an incomplete frame's header claims against what of it was kept (a length field can claim 8 EiB)."""
    return ("warning", f" [claims {size(frame.payload_length)}, {size(len(frame.payload))} kept: the rest not "
                       "captured or over the limit]")


def frame_info(event: FrameEvent, *, continues: tuple[int, bool] | None = None, width: int = 0,
               deflate: bool = True) -> list[Piece]:
    """Wireshark's Info column, plus what the payload says: ``Text [FIN] [MASKED] "hello"``.

    ``continues`` is (opcode, compressed) of the message a continuation frame belongs to; ``deflate``, whether the
    connection agreed on permessage-deflate (or may have: a capture that began after the handshake). With a
    ``width``, what matters most survives a narrow column: a close frame keeps its code and reason and loses the
    code's name and then the flags first; other frames are cut at the end.
    """
    frame = event.frame
    if frame.opcode != _CLOSE:
        pieces = frame_head(frame) + frame_body(frame, continues, deflate)
        return fit(pieces, width) if width else pieces
    head = frame_head(frame)
    body, flags_kept = close_body(frame, _cells(head), width)
    pieces = (head if flags_kept else head[:1]) + body
    return fit(pieces, width) if width else pieces


def _cells(pieces: list[Piece]) -> int:
    return width_of("".join([text for _, text in pieces]))


def message_info(message: Message) -> list[Piece]:
    """``text message (3 frames, 17 B, 11 B compressed) "hello"``."""
    return [message_kind(message.opcode), *message_details(message)]


def message_kind(opcode: int) -> Piece:
    """``text message``: ``message_info``'s first piece, which depends on the opcode alone."""
    return ("strong", f"{opcode_name(opcode).lower()} message")


def message_details(message: Message) -> list[Piece]:
    """``message_info`` after its kind: `` (3 frames, 17 B, 11 B compressed) "hello"``."""
    pieces: list[Piece] = [("muted", _message_sizes(message)),
                           payload_preview(message.data, text=message.opcode == Opcode.TEXT)]
    if not message.complete:
        pieces.append(("warning.strong", " [incomplete]"))
    return pieces


def _message_sizes(message: Message) -> str:
    """`` (3 frames, 17 B, 11 B compressed) ``: printable ASCII."""
    details = []
    if message.frames > 1:
        details.append(f"{message.frames} frames")
    details.append(size(len(message.data)))
    if message.compressed:
        details.append(f"{size(message.wire_length)} compressed")
    return " (" + ", ".join(details) + ") "


def message_details_painted(message: Message, width: int, codes: Mapping[str, tuple[str, str]]) -> str:
    """``fit_painted(message_details(message), width, codes)``: a whole message whose excerpt takes one cell a
    character is cut without a list of pieces."""
    if not message.complete:
        return fit_painted(message_details(message), width, codes)
    excerpt, one_cell_each = _excerpt(message.data, message.opcode == _TEXT)
    if one_cell_each or _one_cell_each(excerpt[1]):
        return fit_pair_painted(("muted", _message_sizes(message)), excerpt, width, codes)
    return fit_painted([("muted", _message_sizes(message)), excerpt], width, codes)


def close_info(close: Close) -> list[Piece]:
    return [("strong", "close " if close.initiator else "close reply "), *close_description(close.code, close.reason)]
