"""``wsinspect frame build`` and ``wsinspect frame decode``: one frame, or a few, taken apart bit by bit.

``build`` encodes a frame with the core's ``build_frame``; ``decode`` reads bytes pasted from anywhere (the RFC's
``0x81 0x05``, Wireshark's hex stream or hex dump, ``81:05``...). Both show the same things: the bytes, RFC 6455
5.2's figure filled with the frame's real bits, Wireshark's field tree, the masking table, and every rule the frame
breaks, judged by the core's ``Connection`` (which is told a handshake took place, so it reads frames at once).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace

from wsinspect.commands import (
    EXIT_FINDINGS,
    EXIT_OK,
    Line,
    add_output_options,
    command_parser,
    error,
    layout_width,
    present,
)
from wsinspect.core.connection import Connection
from wsinspect.core.deflate import EXTENSION_NAME, MessageDeflater
from wsinspect.core.events import Close, Direction, Event, FrameEvent, Message, Notice, Violation
from wsinspect.core.fields import OPCODE_NAMES, Opcode, opcode_name
from wsinspect.core.frames import Frame, build_frame
from wsinspect.core.handshake import accept_key
from wsinspect.views.describe import SEVERITY_ROLE, close_info, message_info
from wsinspect.views.detail import frame_tree
from wsinspect.views.diagram import RFC_EXAMPLE_KEY, field_role, frame_diagram, masking_table
from wsinspect.views.safe import visible

ONE_LINE_MAX = 1024  # frames up to this size are also printed as a copy-pasteable hex string
DECODE_HINT_MAX = 32  # frames up to this size get the decode command that reads them back (it fits a line)
BYTES_PER_ROW = 16
MASK_RULES = ("frame.client-unmasked", "frame.server-masked")  # RFC 6455 5.1: which one applies depends on the sender

BUILD_EXAMPLES = """\
examples (RFC 6455 5.7):
  wsinspect frame build --text Hello                         81 05 48 65 6c 6c 6f
  wsinspect frame build --text Hello --mask 37fa213d         81 85 37 fa 21 3d 7f 9f 4d 51 58
  wsinspect frame build --text Hel --no-fin                  01 03 48 65 6c
  wsinspect frame build --text lo --opcode continuation      80 02 6c 6f
  wsinspect frame build --opcode ping --text Hello           89 05 48 65 6c 6c 6f
  wsinspect frame build --close 1000 --text bye --random-mask
  wsinspect frame build --text Hello --compress              c1 07 f2 48 cd c9 c9 07 00 (RFC 7692 7.2.3.1)
  wsinspect frame build --text Hello --export frame.html     the same, saved as a handout

exit status: 0 the frame was built, also one that breaks a rule on purpose (the rule is shown: a handout of a
bad frame is a lesson, not a failure; `frame decode` exits 1 on it), 2 a bad argument.
"""

DECODE_EXAMPLES = """\
examples:
  wsinspect frame decode 81 05 48 65 6c 6c 6f                      the RFC's spacing
  wsinspect frame decode 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 --from-client
  wsinspect frame decode 010348656c 80026c6f                       two frames: one fragmented message
  wsinspect frame decode 81:05:48:65:6c:6c:6f --from-client        unmasked from a client: RFC 6455 5.1
  pbpaste | wsinspect frame decode -                               Wireshark's "Copy as Hex Dump", from stdin

exit status: 0 every frame follows the rules, 1 a rule is broken or the input ends inside a frame,
2 the input is not hex.
"""


class HexError(ValueError):
    """Text that is not a byte string written in hex; the message says where and how to write it."""


_HINT = "write bytes as 81 05 48, 8105 48, 81:05:48, 0x81 0x05 or \\x81\\x05"
_DUMP_OFFSET = re.compile(r"^([0-9a-fA-F]{4,8}):?$")
_HEX_TOKEN = re.compile(r"^[0-9a-fA-F]+$")
_DUMP_CELL = re.compile(r"(\s+)(\S+)")  # what follows a dump line's offset: (the gap before it, a cell)


def _dump_bytes(lines: list[str]) -> bytes | None:
    """Bytes from a hex dump (Wireshark's "Copy as Hex Dump", ``hexdump -C``): an offset, up to 16 two-digit
    bytes, then text. None when the lines are not such a dump: its first offset is 0 and the offsets grow."""
    data = bytearray()
    previous = -1
    for line in lines:
        tokens = line.split()
        match = _DUMP_OFFSET.match(tokens[0]) if tokens else None
        if match is None:
            return None
        offset = int(match.group(1), 16)
        if (previous < 0 and offset != 0) or offset <= previous or offset != len(data):
            return None
        previous = offset
        row: list[int] = []
        # The bytes are one or two spaces apart (hexdump -C adds one after the eighth); the text column comes after
        # a wider gap, which also keeps a short last row's text ("AA") from being read as bytes.
        for gap, token in _DUMP_CELL.findall(line[len(line) - len(line.lstrip()) + len(tokens[0]):])[:16]:
            if (row and len(gap) > 2) or len(token) != 2 or not _HEX_TOKEN.match(token):
                break
            row.append(int(token, 16))
        data += bytes(row)
    return bytes(data)


def parse_hex(text: str) -> bytes:
    """The bytes written in ``text``; HexError naming the first thing that is not hex."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 0 and all(len(line.split()) > 1 for line in lines):
        dumped = _dump_bytes(lines)
        if dumped is not None:
            return dumped
    cleaned = text.replace("\\x", " ").replace("\\X", " ")
    data = bytearray()
    for token in re.split(r"[\s,:;]+", cleaned):
        if not token:
            continue
        digits = token[2:] if token[:2] in ("0x", "0X") else token
        if not digits or not _HEX_TOKEN.match(digits):
            raise HexError(f"not hex: '{visible(token)}'; {_HINT}")
        if len(digits) % 2:
            raise HexError(f"'{visible(token)}' has an odd number of hex digits: a byte is two; {_HINT}")
        data += bytes.fromhex(digits)
    return bytes(data)


def _opcode(text: str) -> int:
    names = {name.lower(): int(opcode) for opcode, name in OPCODE_NAMES.items()}
    names["cont"] = int(Opcode.CONTINUATION)
    lowered = text.strip().lower()
    if lowered in names:
        return names[lowered]
    try:
        value = int(lowered, 16) if lowered.startswith("0x") else int(lowered, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 15 or not lowered.isascii():
        raise argparse.ArgumentTypeError(f"not an opcode: '{visible(text)}' (continuation, text, binary, close, "
                                         "ping, pong, or a number 0-15)")
    return value


def _mask_key(text: str) -> bytes:
    try:
        key = parse_hex(text)
    except HexError as failure:
        raise argparse.ArgumentTypeError(str(failure)) from None
    if len(key) != 4:
        raise argparse.ArgumentTypeError(f"a masking key is 4 bytes (8 hex digits, e.g. 37fa213d); "
                                         f"'{visible(text)}' is {len(key)}")
    return key


def _hex_payload(text: str) -> bytes:
    try:
        return parse_hex(text)
    except HexError as failure:
        raise argparse.ArgumentTypeError(str(failure)) from None


def _close_code(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"not a close code (0-65535): '{visible(text)}'")
    return int(text)


def _max_bytes(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a number of bytes, 1 or more: '{visible(text)}'")
    return int(text)


def add_parser(commands: object) -> None:
    frame = command_parser(commands, "frame", help="build or decode a WebSocket frame, bit by bit",
                           description="Build a frame, or decode bytes copied from a capture, and see it laid "
                                       "out bit by bit in RFC 6455 5.2's figure, as Wireshark's field tree, and "
                                       "masking byte by byte.")
    actions = frame.add_subparsers(dest="frame_action", metavar="ACTION", required=True)

    build = command_parser(actions, "build", help="encode one frame and show its layout", epilog=BUILD_EXAMPLES,
                           description="Encode one frame (RFC 6455 5.2) and show its bytes, its layout in the "
                                       "RFC's figure, its fields and, if masked, how each payload byte was masked.")
    payload = build.add_mutually_exclusive_group()
    payload.add_argument("--text", metavar="T", help="the payload: this text, in UTF-8 (default opcode: text)")
    payload.add_argument("--binary", type=_hex_payload, metavar="HEX",
                         help="the payload: these bytes, in hex (default opcode: binary)")
    payload.add_argument("--file", metavar="FILE",
                         help="the payload: the bytes of FILE, or of stdin for '-' (default opcode: binary)")
    build.add_argument("--opcode", type=_opcode, metavar="NAME",
                       help="continuation, text, binary, close, ping, pong, or a number 0-15 (reserved ones too)")
    build.add_argument("--close", type=_close_code, metavar="CODE",
                       help="a close frame whose payload starts with this status code (--text is the reason)")
    build.add_argument("--no-fin", action="store_true", help="FIN=0: a fragment that more frames continue")
    build.add_argument("--rsv1", action="store_true", help="set RSV1 (what permessage-deflate uses; without a "
                                                           "negotiated extension, a rule broken)")
    build.add_argument("--compress", action="store_true",
                       help="compress the payload with permessage-deflate (RFC 7692) and set RSV1")
    masking = build.add_mutually_exclusive_group()
    masking.add_argument("--mask", type=_mask_key, metavar="KEY",
                         help="mask with this 4-byte key, in hex (e.g. 37fa213d): a client's frame")
    masking.add_argument("--random-mask", action="store_true",
                         help="mask with a fresh random key (os.urandom), as a client must (RFC 6455 5.3)")
    build.add_argument("--max-bytes", type=_max_bytes, default=256, metavar="N",
                       help="payload bytes shown (default: %(default)s)")
    add_output_options(build)
    build.set_defaults(run=run_build)

    decode = command_parser(actions, "decode", help="decode frames from hex (e.g. copied out of Wireshark)",
                            epilog=DECODE_EXAMPLES,
                            description="Decode one or more frames from their bytes in hex: spaces, colons, "
                                        "0x and \\x prefixes and Wireshark's hex dumps are all fine.")
    decode.add_argument("hex", nargs="+", metavar="HEX",
                        help="the bytes, in hex; several arguments are one byte string; '-' reads stdin")
    side = decode.add_mutually_exclusive_group()
    side.add_argument("--from-client", dest="sender", action="store_const", const="c2s",
                      help="the frames were sent by a client: they must be masked (RFC 6455 5.1)")
    side.add_argument("--from-server", dest="sender", action="store_const", const="s2c",
                      help="the frames were sent by a server: they must not be masked (RFC 6455 5.1)")
    decode.add_argument("--deflate", action="store_true",
                        help="permessage-deflate was negotiated: RSV1 means compressed, messages are inflated")
    decode.add_argument("--max-bytes", type=_max_bytes, default=256, metavar="N",
                        help="payload bytes shown per frame (default: %(default)s)")
    add_output_options(decode)
    decode.set_defaults(run=run_decode)


# -- decoding, shared by build and decode ---------------------------------------------------------------------


def decode_events(data: bytes, sender: Direction, *, deflate: bool = False) -> list[Event]:
    """The events the core's Connection makes of ``data`` sent by ``sender`` after a handshake (with
    permessage-deflate if ``deflate``). Frame offsets stay those of the connection's byte stream; subtract
    ``handshake_length(sender, deflate)`` for offsets in ``data``."""
    connection = Connection()
    request, response = _handshake(deflate)
    connection.receive("c2s", request, time=0.0)
    connection.receive("s2c", response, time=0.0)
    events = connection.receive(sender, data, time=0.0)
    events += connection.end(time=0.0)
    return events


def _handshake(deflate: bool) -> tuple[bytes, bytes]:
    """A minimal valid opening handshake (RFC 6455 1.3's key): it tells the Connection the frames that follow are
    in an open connection, and whether permessage-deflate was agreed."""
    extension = f"Sec-WebSocket-Extensions: {EXTENSION_NAME}\r\n".encode() if deflate else b""
    request = (b"GET / HTTP/1.1\r\nHost: wsinspect\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: " + RFC_EXAMPLE_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n" + extension +
               b"\r\n")
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(RFC_EXAMPLE_KEY).encode() + b"\r\n" + extension + b"\r\n")
    return request, response


def handshake_length(sender: Direction, deflate: bool) -> int:
    request, response = _handshake(deflate)
    return len(request if sender == "c2s" else response)


def _byte_roles(frame: Frame) -> list[str]:
    roles = []
    for span in frame.spans():
        if span.field.bitmask is not None:
            continue  # the first two bytes, below
        roles += [field_role(span.field)] * (span.end - span.start)
    return ["field.first-byte", "field.second-byte", *roles]


def bytes_lines(wire: bytes, frame: Frame, *, max_payload: int, indent: str = "  ") -> list[Line]:
    """The frame's bytes in hex, 16 a row, each coloured as its field; a long payload cut after ``max_payload``."""
    shown = wire[: len(frame.header) + max_payload]
    roles = _byte_roles(frame)
    lines: list[Line] = []
    for row in range(0, len(shown), BYTES_PER_ROW):
        line: Line = [("muted", f"{indent}{row:04x}  ")]
        for index in range(row, min(row + BYTES_PER_ROW, len(shown))):
            role = roles[index] if index < len(roles) else "field.payload"
            line += [(role, f"{shown[index]:02x}"), ("plain", " ")]
        lines.append(line[:-1])
    if len(wire) > len(shown):
        lines.append([("muted", f"{indent}      … {len(wire) - len(shown)} more bytes")])
    return lines


def _frame_heading(number: int | None, frame: Frame) -> Line:
    flags = [name for name, on in (("FIN", frame.fin), ("RSV1", frame.rsv1), ("RSV2", frame.rsv2),
                                   ("RSV3", frame.rsv3), ("MASKED", frame.masked)) if on]
    title = f"Frame {number}: " if number is not None else ""
    start = frame.offset
    end = start + len(frame.header) + len(frame.payload) - 1
    return [("heading", f"{title}{opcode_name(frame.opcode)}"), ("flag", f" [{'] ['.join(flags)}]" if flags else ""),
            ("muted", f"  bytes {start}-{end}, {len(frame.header)} header + {frame.payload_length} "
                      "payload")]


def hex_string_lines(wire: bytes, width: int, indent: str = "    ") -> list[Line]:
    """The bytes as one hex string to copy: on one line when it fits ``width``, else cut into lines of whole
    bytes (``frame decode``, like ``bytes.fromhex``, ignores the line breaks). Never folded by the layout."""
    per_line = max((width - len(indent)) // 2, 1)
    if len(wire) <= per_line:
        return [[("muted", "  as one line:")], [("plain", indent + wire.hex())]]
    return [[("muted", f"  as hex, {per_line} bytes a line (frame decode reads it as it is):")],
            *[[("plain", indent + wire[start : start + per_line].hex())] for start in range(0, len(wire), per_line)]]


def frame_lines(event: FrameEvent, *, masking: bool, max_bytes: int, number: int | None = None,
                continues: tuple[int, bool] | None = None, width: int = 100) -> list[Line]:
    """Everything shown for one frame: heading, bytes, the RFC figure, the field tree, the masking table.
    ``continues``: (opcode, compressed) of the message a continuation frame belongs to; ``width``: the layout's."""
    frame = event.frame
    wire = frame.header + frame.wire_payload
    lines: list[Line] = [_frame_heading(number, frame)]
    lines += bytes_lines(wire, frame, max_payload=max_bytes)
    if len(wire) <= ONE_LINE_MAX:
        lines += hex_string_lines(wire, width)
    lines.append([])
    lines += frame_diagram(frame)
    lines.append([])
    # Bytes missing from the input are said once, under the frame, not in the tree's words for captures.
    whole = replace(event, frame=replace(frame, missing=0)) if frame.missing else event
    lines += frame_tree(whole, max_bytes=max_bytes, continues=continues)
    if frame.masking_key is not None:
        lines.append([])
        lines += masking_table(frame, masking=masking)
    return lines


def note_line(event: Violation | Notice) -> Line:
    check = event.check
    role = SEVERITY_ROLE[check.severity.value]
    line: Line = [(role, "  ⚠ " if isinstance(event, Violation) else "  · ")]
    if isinstance(event, Violation) and check.close_code:
        line.append((role, f"[{check.close_code}] "))
    line += [(role, f"{check.rfc}: "), ("plain", visible(event.message)), ("muted", f"  ({visible(check.rule)})")]
    return line


# -- build ---------------------------------------------------------------------------------------------------


def _payload(args: argparse.Namespace) -> bytes:
    if args.binary is not None:
        data: bytes = args.binary
    elif args.file is not None:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as handle:
                data = handle.read()
    elif args.text is not None:
        data = args.text.encode("utf-8", "surrogateescape")  # bytes that were not UTF-8 in argv stay themselves
    else:
        data = b""
    if args.close is not None:
        data = args.close.to_bytes(2, "big") + data
    return data


def run_build(args: argparse.Namespace) -> int:
    try:
        payload = _payload(args)
    except OSError as failure:
        return error(args, f"--file {visible(args.file)}: {visible(failure.strerror or str(failure))}")
    if args.opcode is not None:
        opcode = args.opcode
    elif args.close is not None:
        opcode = Opcode.CLOSE
    else:
        opcode = Opcode.TEXT if args.text is not None else Opcode.BINARY
    original = payload
    if args.compress:
        # A fresh compressor: the first message of a connection (RFC 7692 7.2.1, ending 00 00 ff ff removed).
        payload = MessageDeflater(no_context_takeover=True, max_window_bits=15).compress(payload)
    key = os.urandom(4) if args.random_mask else args.mask
    wire = build_frame(opcode, payload, fin=not args.no_fin, rsv1=args.rsv1 or args.compress, masking_key=key)
    # A masked frame is a client's (RFC 6455 5.1); read it back as its receiver would, to report broken rules.
    sender: Direction = "c2s" if key is not None else "s2c"
    events = decode_events(wire, sender, deflate=args.compress)
    base = handshake_length(sender, args.compress)
    who = "a client (masked, as RFC 6455 5.1 requires of clients)" if key is not None else \
        "a server (unmasked, as RFC 6455 5.1 requires of servers)"
    lines: list[Line] = [[("heading", f"{opcode_name(opcode)} frame"),
                          ("muted", f", {len(wire)} bytes, as sent by {who}")]]
    if args.compress:
        lines.append([("muted", "  payload compressed with permessage-deflate (RFC 7692 7.2.1): "),
                      ("plain", f"{len(original)} bytes became {len(payload)}")])
    if len(wire) <= DECODE_HINT_MAX:
        command = f"wsinspect frame decode {wire.hex()} --from-{'client' if key is not None else 'server'}"
        lines.append([("muted", "  decode it: "), ("plain", command + (" --deflate" if args.compress else ""))])
    lines += _event_lines(events, base, masking=True, max_bytes=args.max_bytes, numbered=False,
                          width=layout_width(args))
    return present(args, lines)


# -- decode --------------------------------------------------------------------------------------------------


def _header_needed(rest: bytes) -> int:
    """Bytes still missing from a frame header that begins with ``rest`` (RFC 6455 5.2's layout)."""
    if len(rest) < 2:
        return 2 - len(rest)
    length = rest[1] & 0x7F
    size = 2 + (4 if rest[1] & 0x80 else 0) + {126: 2, 127: 8}.get(length, 0)
    return size - len(rest)


def _event_lines(events: list[Event], base: int, *, masking: bool, max_bytes: int, numbered: bool, width: int,
                 data: bytes = b"", skip: tuple[str, ...] = ()) -> list[Line]:
    lines: list[Line] = []
    number = 0
    message: tuple[int, bool] | None = None  # (opcode, compressed) of the fragmented message going on
    for event in events:
        if isinstance(event, FrameEvent):
            number += 1
            frame = event.frame
            # Offsets in the input, not in the connection's stream (which starts with the assumed handshake).
            event = replace(event, frame=replace(frame, offset=frame.offset - base))
            lines.append([])
            lines += frame_lines(event, masking=masking, max_bytes=max_bytes, number=number if numbered else None,
                                 continues=message if frame.opcode == Opcode.CONTINUATION else None, width=width)
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                message = None if frame.fin else (frame.opcode, frame.rsv1)
            elif frame.opcode == Opcode.CONTINUATION and frame.fin:
                message = None
            if event.frame.missing:
                lines.append([("error", "  ✗ "), ("plain", f"the input ends inside this frame: {event.frame.missing} "
                                                          f"of its {event.frame.payload_length} payload bytes are "
                                                          "missing")])
        elif isinstance(event, Violation | Notice):
            if event.check.id in skip:
                continue
            if isinstance(event, Notice) and event.check.id == "capture.truncated-frame" and event.offset is not None:
                rest = data[event.offset - base :]
                lines.append([("error", "  ✗ "), ("plain", f"the input ends inside a frame header: {len(rest)} "
                                                          f"byte{'s' if len(rest) != 1 else ''} at offset "
                                                          f"{event.offset - base}, {_header_needed(rest)} more "
                                                          "needed for the header, then the payload")])
                continue
            lines.append(note_line(event))
        elif isinstance(event, Message):
            lines.append([("muted", "  ↳ "), *message_info(event)])
        elif isinstance(event, Close):
            lines.append([("muted", "  ↳ "), *close_info(event)])
    return lines


def _read_hex(arguments: list[str]) -> str:
    return " ".join(sys.stdin.read() if argument == "-" else argument for argument in arguments)


def run_decode(args: argparse.Namespace) -> int:
    try:
        data = parse_hex(_read_hex(args.hex))
    except HexError as failure:
        return error(args, f"frame decode: {failure}")
    except UnicodeDecodeError:
        return error(args, "frame decode: stdin is not text; pipe the bytes written in hex")
    if not data:
        return error(args, "frame decode: no bytes given")
    sender: Direction = args.sender or ("c2s" if len(data) > 1 and data[1] & 0x80 else "s2c")
    events = decode_events(data, sender, deflate=args.deflate)
    base = handshake_length(sender, args.deflate)
    skip = MASK_RULES if args.sender is None else ()
    frames = sum(isinstance(event, FrameEvent) for event in events)
    lines: list[Line] = [[("heading", f"{len(data)} bytes, {frames} frame{'s' if frames != 1 else ''}"),
                          ("muted", {"c2s": ", sent by a client", "s2c": ", sent by a server"}.get(args.sender or "",
                                                                                                   ""))]]
    if args.sender is None:
        lines.append([("muted", "  who sent them is not known, so the masking rule (RFC 6455 5.1) is not checked: "
                                "add --from-client or --from-server")])
    lines += _event_lines(events, base, masking=False, max_bytes=args.max_bytes, numbered=True, data=data, skip=skip,
                          width=layout_width(args))
    broken = [event for event in events if isinstance(event, Violation) and event.check.id not in skip]
    incomplete = any(isinstance(event, FrameEvent) and event.frame.missing for event in events) or any(
        isinstance(event, Notice) and event.check.id == "capture.truncated-frame" for event in events)
    lines.append([])
    if broken:
        lines.append([("error", f"✗ {len(broken)} rule{'s' if len(broken) != 1 else ''} broken"),
                      ("muted", ": a conforming receiver fails the connection with the code in brackets")])
    elif not incomplete:
        lines.append([("ok", "✓ "), ("plain", "every frame follows RFC 6455 section 5")])
    status = present(args, lines)
    if status != EXIT_OK:
        return status
    return EXIT_FINDINGS if broken or incomplete else EXIT_OK

