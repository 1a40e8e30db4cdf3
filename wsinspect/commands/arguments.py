"""What several commands' parsers share: argument types with plain-words errors, the colour options, the decoder's
limits, read's trace options (also sniff's), and the console and palette every view writes through."""

from __future__ import annotations

import argparse
import io

from rich.console import Console

from wsinspect.views.export import EXPORT_WIDTH
from wsinspect.views.output import Handout, Output
from wsinspect.views.palette import THEME_NAMES, Palette, resolve_theme

HANDOUT_MAX_LINES = 5000  # about 80 printed pages: past it, a handout is not what anyone wants


# Each type's error says what is wrong and what is allowed, not the value: the parser (wsinspect.cli) puts the option
# and the value, escaped, in front of it: "--port 70000: not a TCP port (0-65535; 0 picks a free one)".

_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
_MAX_DIGITS = 15  # beyond any size or count that means something here, and short of int()'s digit limit

#: The shortest --ping-interval: each ping is a frame to every client and a line in the log, so a smaller interval
#: floods both (0 stays: no pings).
MIN_PING_INTERVAL = 0.1


def _whole(text: str) -> int | None:
    """``text`` as a whole number written in ASCII digits, or None (``"²".isdigit()`` is true, ``int("²")`` fails)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS else None


def size(text: str) -> int:
    """Sizes like 1048576, 64k, 16MiB, 1M; 0 too (for the options where it means none: ``--max-bytes 0``)."""
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgib")
    value = _whole(number)
    if value is None or stripped[len(number):] not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError("not a size, like 65536, 64k or 16M")
    return value * _SIZE_UNITS[stripped[len(number):]]


def positive_size(text: str) -> int:
    """A size that bounds something, where 0 would refuse everything (a 0-byte header block, frame or queue)."""
    value = size(text)
    if value == 0:
        raise argparse.ArgumentTypeError("not a size of 1 byte or more, like 65536, 64k or 16M")
    return value


def stream_number(text: str) -> int:
    """A tcp.stream index: 0 or more."""
    value = _whole(text)
    if value is None:
        raise argparse.ArgumentTypeError("not a stream number, 0 or more")
    return value


def whole_number(text: str) -> int:
    """1 or more."""
    value = _whole(text)
    if not value:
        raise argparse.ArgumentTypeError("not a whole number, 1 or more")
    return value


def count(text: str) -> int:
    value = _whole(text)
    if not value:
        raise argparse.ArgumentTypeError("not a whole number of packets, 1 or more")
    return value


def _number(text: str) -> float:
    """``text`` as a finite number, or -1.0 (NaN, infinity and words are no number of seconds)."""
    try:
        value = float(text)
    except ValueError:
        return -1.0
    return value if value - value == 0 else -1.0


def seconds(text: str) -> float:
    if not _number(text) > 0:
        raise argparse.ArgumentTypeError("not a positive number of seconds")
    return _number(text)


def seconds_or_off(text: str) -> float:
    """Seconds, 0 meaning off (or: do not wait)."""
    if not _number(text) >= 0:
        raise argparse.ArgumentTypeError("not a number of seconds, 0 or more")
    return _number(text)


def ping_interval(text: str) -> float:
    """Seconds between pings: 0 (off), or at least MIN_PING_INTERVAL."""
    value = _number(text)
    if not (value == 0 or value >= MIN_PING_INTERVAL):
        raise argparse.ArgumentTypeError(f"not an interval: 0 (no pings) or {MIN_PING_INTERVAL:g} seconds or more")
    return value


def port(text: str) -> int:
    value = _whole(text)
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("not a TCP port (1-65535)")
    return value


def listen_port(text: str) -> int:
    """A port to listen on: 1-65535, or 0 for any free port (the one chosen is printed)."""
    value = _whole(text)
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("not a TCP port (0-65535; 0 picks a free one)")
    return value


def add_limits(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, frame_default: str,
               message_default: str) -> None:
    parser.add_argument("--max-frame", type=positive_size, default=size(frame_default), metavar="SIZE",
                        help=f"largest frame payload kept (default: {frame_default})")
    parser.add_argument("--max-message", type=positive_size, default=size(message_default), metavar="SIZE",
                        help=f"largest message, after inflating (default: {message_default}); over it, an endpoint "
                             "closes with 1009")
    parser.add_argument("--max-header", type=positive_size, default=32 * 1024, metavar="SIZE",
                        help="largest handshake header block (default: 32k)")


def add_colour(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                        help="colour output (default: auto, i.e. when writing to a terminal and NO_COLOR is not "
                             "set; always wins over NO_COLOR)")
    parser.add_argument("--theme", choices=THEME_NAMES, default="auto",
                        help="dark or light background, or mono (bold and underline only, no colour); default: "
                             "auto (mono when NO_COLOR is set, unless --color always; light when COLORFGBG says "
                             "the background is light, else dark)")


def add_trace_options(parser: argparse.ArgumentParser) -> None:
    """The views, filter and limits of ``read``, shared by every command that shows a trace (``sniff``)."""
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--detail", action="store_true", help="each frame as a tree of fields and a coloured hex dump")
    view.add_argument("--follow", action="store_true", help="each conversation as a transcript of whole messages")
    view.add_argument("--json", action="store_true", help="one JSON object per event on stdout (see README)")
    view.add_argument("--flow", action="store_true",
                      help="each conversation as a ladder: client and server columns, one arrow per frame "
                           "(like Wireshark's Flow Graph)")
    view.add_argument("--compact", action="store_true",
                      help="one line per handshake and per frame: no header tables, no message lines")
    parser.add_argument("--explain", action="store_true",
                        help="annotate each header, frame fact (masking, length forms, fragments, compression, "
                             "opcodes) and broken rule once, where it first appears, with its RFC section")
    parser.add_argument("-Y", "--filter", metavar="EXPR",
                        help="show only the events that match EXPR, a display filter over the fields of --json "
                             "(e.g. 'websocket.opcode == 8', 'text contains \"error\"', violation); everything "
                             "is still decoded; '-Y help' lists the fields")
    parser.add_argument("-c", "--count", type=count, metavar="N",
                        help="stop after the first N packets of the capture, as tshark -c does")
    parser.add_argument("--stream", type=stream_number, action="append", metavar="N",
                        help="only conversation N (Wireshark's tcp.stream index); repeatable")
    parser.add_argument("--port", type=port, action="append", metavar="N", default=[],
                        help="treat TCP port N as a WebSocket server even without a handshake in the capture "
                             "(like Wireshark's Decode As); repeatable")
    parser.add_argument("--keylog", metavar="FILE",
                        help="TLS key log (SSLKEYLOGFILE, NSS format) to decrypt wss:// streams with; the capture's "
                             "own pcapng Decryption Secrets Blocks are used too")
    add_limits(parser, frame_default="64M", message_default="64M")
    parser.add_argument("--max-memory", type=positive_size, default=size("64M"), metavar="SIZE",
                        help="what the unfinished messages of all conversations may hold together; beyond it a "
                             "message is cut short, with a note (default: 64M)")
    parser.add_argument("--max-flows", type=count, default=10_000, metavar="N",
                        help="TCP conversations open at once; beyond it the least active is summarised and let go "
                             "(default: %(default)s)")
    parser.add_argument("--idle-timeout", type=seconds, default=300.0, metavar="SECONDS",
                        help="seconds of capture time without a packet before an open conversation is summarised "
                             "and let go (default: %(default)s)")
    parser.add_argument("--max-bytes", type=size, default=256, metavar="SIZE",
                        help="payload bytes shown in a hex dump (default: %(default)s)")
    parser.add_argument("--no-summary", action="store_true", help="leave out the closing summary")
    parser.add_argument("--export", metavar="FILE",
                        help="also save what is shown as a handout, FILE.html, FILE.svg or FILE.txt, laid out at "
                             "100 columns with the theme's colours (for a big capture, narrow it with --stream, -Y "
                             "or -c first)")
    add_colour(parser)


def make_console(args: argparse.Namespace, *, stderr: bool = False) -> Console:
    force = {"always": True, "never": False}.get(args.color)
    # no_color=None lets rich honour NO_COLOR (https://no-color.org); --color always overrides it, never forbids it.
    no_color = {"always": False, "never": True}.get(args.color)
    return Console(stderr=stderr, force_terminal=force, no_color=no_color, highlight=False, emoji=False,
                   markup=False)


def make_palette(args: argparse.Namespace, console: Console) -> Palette:
    return Palette(console, resolve_theme(args.theme, colour=args.color))


def make_output(args: argparse.Namespace, console: Console, *, live: bool = False) -> tuple[Output, Handout | None]:
    """Where the views write. With ``--export``: lines painted at the handout's fixed width in the theme's colours,
    and the terminal gets the same lines (without the colours if it has none), so the file is what was shown."""
    if not getattr(args, "export", None):
        return Output(console, make_palette(args, console), live=live), None
    handout = Handout(HANDOUT_MAX_LINES)
    painter = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=EXPORT_WIDTH)
    output = Output(console, make_palette(args, painter), live=live, width=EXPORT_WIDTH, handout=handout,
                    strip=console.color_system is None)
    return output, handout
