"""The ``wsinspect`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from wsinspect import __version__
from wsinspect.views.palette import THEME_NAMES
from wsinspect.views.safe import visible

READ_EXAMPLES = """\
examples:
  wsinspect read captures/echo.pcapng              every conversation: handshake, packet list, summary
  wsinspect read captures/echo.pcapng --detail     each frame as a field tree and a coloured hex dump
  wsinspect read captures/multi.pcapng --stream 1  one conversation (Wireshark's tcp.stream number)
  wsinspect read captures/deflate.pcapng --follow  the messages as a transcript, inflated
  wsinspect read captures/echo.pcapng --json       one JSON object per event (schema in the README)
  wsinspect read captures/midstream.pcapng --port 47070
                                                   decode port 47070 as WebSocket, even without a handshake
  wsinspect read big.pcapng -Y 'websocket.opcode == 8'           only close frames
  wsinspect read big.pcapng -Y 'text contains "error"' --follow  the messages that mention an error
  wsinspect read big.pcapng -Y violation -c 100000               rule breaks in the first 100,000 packets
  wsinspect read captures/echo.pcapng --theme light              for a light background (a projector)
  wsinspect read captures/wss-tls13.pcapng --keylog captures/wss-tls13.pcapng.keys
                                                   decrypt wss:// with a TLS key log (SSLKEYLOGFILE)

filters (-Y): the fields of --json, with Wireshark's names where it has one (websocket.opcode, tcp.stream,
frame.number, ...); operators == != < <= > >= contains matches && || ! and parentheses. See docs/filters.md.

exit status:
  0  the capture was read to its end and holds at least one WebSocket conversation (whatever -Y showed)
  1  the capture was read to its end but holds no WebSocket conversation (or none with the --stream asked for)
  2  a bad argument or filter, or a file that cannot be read as a capture: nothing was decoded
  3  the file is truncated or corrupt: everything before the damage was decoded and shown
"""

SERVE_EXAMPLES = """\
examples:
  wsinspect serve                                  echo server on 127.0.0.1:8765; open it in a browser
  wsinspect serve --mode chat --detail             broadcast chat, every frame as a field tree + hex dump
  wsinspect serve --mode push --interval 2         the server sends a message every 2 seconds
  wsinspect serve --subprotocol chat.v1 --no-compression --origin http://127.0.0.1:8765
  wsinspect serve --record session.pcapng --json session.jsonl
  wsinspect serve --certfile cert.pem --keyfile key.pem   wss:// and the demo page on https://
  wsinspect serve --host 0.0.0.0 --mode chat       a classroom: prints the addresses students can open

exit status:
  0  stopped with Ctrl-C (or SIGTERM), every --json and --record file complete
  1  could not listen, or a --json/--record write failed while serving (the message says which is incomplete)
  2  a bad argument, or a --json/--record file that cannot be written
"""

MAIN_EPILOG = """\
commands:
  read       decode WebSocket conversations in a pcap/pcapng capture, the way Wireshark lays them out
  serve      run a WebSocket server (plain sockets) that logs every handshake header and frame, live
  handshake  Sec-WebSocket-Accept step by step; 'handshake check' lints a pasted request or response
  frame      'frame build' encodes a frame, 'frame decode' takes hex apart: RFC 6455 5.2's figure, bit by bit

examples:
  wsinspect read captures/echo.pcapng
  wsinspect serve
  wsinspect handshake --key dGhlIHNhbXBsZSBub25jZQ==
  wsinspect frame build --text Hello --mask 37fa213d
  wsinspect frame decode 81 05 48 65 6c 6c 6f
  wsinspect read --help
"""


def _size(text: str) -> int:
    """Sizes like 1048576, 64k, 16MiB, 1M."""
    units = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
             "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgib")
    unit = stripped[len(number):]
    if not number.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 65536, 64k or 16M)")
    return int(number) * units[unit]


def _positive_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative whole number: {visible(text)!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a whole number of packets, 1 or more: {visible(text)!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {visible(text)!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {visible(text)!r}")
    return int(text)


def _listen_port(text: str) -> int:
    """A port to listen on: 1-65535, or 0 for any free port (the one chosen is printed)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535; 0 picks a free one): {visible(text)!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsinspect", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=MAIN_EPILOG,
        description="See and understand the WebSocket protocol (RFC 6455, RFC 7692 permessage-deflate).")
    parser.add_argument("--version", action="version", version=f"wsinspect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    read = commands.add_parser(
        "read", help="decode WebSocket conversations in a pcap/pcapng capture",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=READ_EXAMPLES,
        description="Lay out every WebSocket conversation in a capture: who connected to whom, the opening "
                    "handshake with every header (and whether Sec-WebSocket-Accept is right), every frame in "
                    "both directions, the messages they carry, and every rule broken.")
    read.add_argument("capture", nargs="?", help="a pcap or pcapng file")
    read.set_defaults(read_parser=read)  # a missing capture is reported with read's own usage
    add_trace_options(read)

    from wsinspect.server import options as serve_options
    from wsinspect.server.misbehave import help_text as misbehave_help

    serve = commands.add_parser(
        "serve", help="run a WebSocket server that logs every handshake and frame",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=f"{SERVE_EXAMPLES}\n{misbehave_help()}",
        description="A WebSocket server on plain sockets that shows every handshake header and every frame in "
                    "both directions as it happens, answers a bad handshake with the right HTTP status and a "
                    "plain-words explanation, and serves a demo page at / for a browser.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s; 0.0.0.0 listens on every interface and "
                            "prints the addresses others can open)")
    serve.add_argument("--port", type=_listen_port, default=8765,
                       help="TCP port (default: %(default)s; 0 picks a free one)")
    serve.add_argument("--certfile", metavar="FILE",
                       help="serve wss:// and the demo page over https:// with this certificate chain (PEM)")
    serve.add_argument("--keyfile", metavar="FILE",
                       help="the private key of --certfile (PEM; default: the key is in --certfile)")
    serve.add_argument("--mode", choices=("echo", "chat", "push"), default="echo",
                       help="echo: send every message back; chat: broadcast to every client; push: send a "
                            "message every --interval seconds (default: %(default)s)")
    serve.add_argument("--interval", type=_seconds, default=None, metavar="SECONDS",
                       help="push mode only: seconds between messages, more than 0 (default: 1)")
    serve.add_argument("--subprotocol", action="append", default=[], metavar="NAME",
                       help="a subprotocol to accept, in order of preference; repeatable")
    serve.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    serve.add_argument("--origin", action="append", metavar="ORIGIN",
                       help="accept only this Origin (403 otherwise); repeatable")
    serve.add_argument("--fragment", type=_size, default=0, metavar="SIZE",
                       help="split what the server sends into frames of at most SIZE bytes (teaching)")
    serve.add_argument("--ping-interval", type=serve_options.seconds_or_off, default=0.0, metavar="SECONDS",
                       help="send a ping every SECONDS (default: 0, off)")
    serve.add_argument("--misbehave", action=serve_options.MisbehaveAction, default=None, metavar="KIND",
                       help="break one rule on purpose, for a class to watch clients react (below, or "
                            "'--misbehave help'); default: none")
    limits = serve.add_argument_group(
        "limits", "What one peer can make the server hold or spend (README: Limits and guarantees). Slow\n"
                  "consumers: echo stops reading from a client whose queue is over --max-queue until it drains;\n"
                  "chat and push close a member over it with 1008 and say so in the log.")
    # The frame bound only bounds memory; the message bound is the rule. A compressed 1 MiB message of
    # incompressible bytes is a little over 1 MiB on the wire, so frames get room above the message limit.
    _add_limits(limits, frame_default="2M", message_default="1M")  # type: ignore[arg-type]
    limits.add_argument("--max-headers", type=serve_options.whole_number,
                        default=serve_options.DEFAULT_MAX_HEADERS, metavar="N",
                        help="header lines in a request; beyond it: 431 (default: %(default)s)")
    limits.add_argument("--max-fragments", type=serve_options.whole_number,
                        default=serve_options.DEFAULT_MAX_FRAGMENTS, metavar="N",
                        help="frames in one message; beyond it: 1009 (default: %(default)s)")
    limits.add_argument("--max-queue", type=_size, default=_size(serve_options.DEFAULT_MAX_QUEUE), metavar="SIZE",
                        help="bytes waiting to be sent to one client (default: "
                             f"{serve_options.DEFAULT_MAX_QUEUE}); over it, echo stops reading from that client "
                             "until a quarter is left, chat and push close it with 1008")
    limits.add_argument("--read-chunk", type=_size, default=_size(serve_options.DEFAULT_READ_CHUNK),
                        metavar="SIZE",
                        help="bytes of one connection decoded before the others get a turn (default: "
                             f"{serve_options.DEFAULT_READ_CHUNK}; 1/16 of it on a compressed connection)")
    limits.add_argument("--turn-frames", type=serve_options.whole_number,
                        default=serve_options.DEFAULT_TURN_FRAMES, metavar="N",
                        help="about how many frames of one connection are decoded per turn: its chunks shrink "
                             "when they hold more (default: %(default)s)")
    limits.add_argument("--handshake-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                        help="drop a client that has not finished its handshake after SECONDS "
                             "(default: %(default)g)")
    limits.add_argument("--idle-timeout", type=serve_options.seconds_or_off,
                        default=serve_options.DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                        help="close a connection the client sent nothing on for SECONDS with 1001; halfway, "
                             "without --ping-interval, it is pinged once, and an answer counts (default: "
                             "%(default)g; 0: never)")
    limits.add_argument("--close-timeout", type=_seconds, default=3.0, metavar="SECONDS",
                        help="after the server's close frame, how long it waits for the client's before it drops "
                             "the connection (default: %(default)g)")
    limits.add_argument("--shutdown-grace", type=_seconds, default=2.0, metavar="SECONDS",
                        help="at Ctrl-C, how long connections get to finish their closing handshake (default: "
                             "%(default)g)")
    limits.add_argument("--max-connections", type=serve_options.whole_number, default=1024, metavar="N",
                        help="refuse connections beyond N at once with 503 (default: %(default)s)")
    serve_view = serve.add_mutually_exclusive_group()
    serve_view.add_argument("--detail", action="store_true", help="log each frame as a field tree and hex dump")
    serve_view.add_argument("--compact", action="store_true",
                            help="one line per handshake and per frame (a room of 30 browsers)")
    serve_view.add_argument("--flow", action="store_true",
                            help="each connection as a ladder: client and server columns, one arrow per frame")
    serve.add_argument("--explain", action="store_true",
                       help="annotate each header, frame fact and broken rule once, where it first appears, with "
                            "its RFC section (for a class)")
    serve.add_argument("--json", metavar="FILE", help="also write every event as JSON lines to FILE")
    serve.add_argument("--record", metavar="FILE", help="write the session to FILE (.pcapng or .pcap)")
    serve.add_argument("--quiet", action="store_true", help="log nothing per frame (for benchmarks)")
    serve.add_argument("--max-bytes", type=_size, default=256, metavar="SIZE",
                       help="payload bytes shown in a hex dump (default: %(default)s)")
    _add_colour(serve)
    _add_command_modules(commands)
    return parser


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
    parser.add_argument("-c", "--count", type=_count, metavar="N",
                        help="stop after the first N packets of the capture, as tshark -c does")
    parser.add_argument("--stream", type=_positive_int, action="append", metavar="N",
                        help="only conversation N (Wireshark's tcp.stream index); repeatable")
    parser.add_argument("--port", type=_port, action="append", metavar="N", default=[],
                        help="treat TCP port N as a WebSocket server even without a handshake in the capture "
                             "(like Wireshark's Decode As); repeatable")
    parser.add_argument("--keylog", metavar="FILE",
                        help="TLS key log (SSLKEYLOGFILE, NSS format) to decrypt wss:// streams with; the capture's "
                             "own pcapng Decryption Secrets Blocks are used too")
    _add_limits(parser, frame_default="64M", message_default="64M")
    parser.add_argument("--max-memory", type=_size, default=_size("64M"), metavar="SIZE",
                        help="what the unfinished messages of all conversations may hold together; beyond it a "
                             "message is cut short, with a note (default: 64M)")
    parser.add_argument("--max-flows", type=_count, default=10_000, metavar="N",
                        help="TCP conversations open at once; beyond it the least active is summarised and let go "
                             "(default: %(default)s)")
    parser.add_argument("--idle-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                        help="seconds of capture time without a packet before an open conversation is summarised "
                             "and let go (default: %(default)s)")
    parser.add_argument("--max-bytes", type=_size, default=256, metavar="SIZE",
                        help="payload bytes shown in a hex dump (default: %(default)s)")
    parser.add_argument("--no-summary", action="store_true", help="leave out the closing summary")
    parser.add_argument("--export", metavar="FILE",
                        help="also save what is shown as a handout, FILE.html, FILE.svg or FILE.txt, laid out at "
                             "100 columns with the theme's colours (for a big capture, narrow it with --stream, -Y "
                             "or -c first)")
    _add_colour(parser)


def _add_command_modules(commands: Any) -> None:
    """Commands that live in modules of their own add their parser here (each sets ``run`` as its default)."""
    from wsinspect.commands import connect, demo, frame, handshake, proxy, sniff

    handshake.add_parser(commands)
    frame.add_parser(commands)
    demo.add_parser(commands)
    connect.add_parser(commands)
    proxy.add_parser(commands)
    sniff.add_parser(commands)


def _add_limits(parser: argparse.ArgumentParser, *, frame_default: str, message_default: str) -> None:
    parser.add_argument("--max-frame", type=_size, default=_size(frame_default), metavar="SIZE",
                        help=f"largest frame payload kept (default: {frame_default})")
    parser.add_argument("--max-message", type=_size, default=_size(message_default), metavar="SIZE",
                        help=f"largest message, after inflating (default: {message_default}); beyond it: 1009")
    parser.add_argument("--max-header", type=_size, default=32 * 1024, metavar="SIZE",
                        help="largest handshake header block (default: 32k)")


def _add_colour(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                        help="colour output (default: auto, i.e. when writing to a terminal and NO_COLOR is not set)")
    parser.add_argument("--theme", choices=THEME_NAMES, default="auto",
                        help="dark or light background, or mono (bold and underline only, no colour); default: "
                             "auto (mono when NO_COLOR is set, light when COLORFGBG says the background is light, "
                             "else dark)")


def make_console(args: argparse.Namespace, *, stderr: bool = False) -> Any:
    from rich.console import Console

    force = {"always": True, "never": False}.get(args.color)
    # no_color=None lets rich honour NO_COLOR (https://no-color.org); --color always overrides it, never forbids it.
    no_color = {"always": False, "never": True}.get(args.color)
    return Console(stderr=stderr, force_terminal=force, no_color=no_color, highlight=False, emoji=False,
                   markup=False)


def make_palette(args: argparse.Namespace, console: Any) -> Any:
    from wsinspect.views.palette import Palette, resolve_theme

    theme = resolve_theme(args.theme)
    if args.color == "always" and args.theme == "auto" and theme == "mono":
        theme = "dark"  # --color always asks for colour even where NO_COLOR is set
    return Palette(console, theme)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        run = getattr(args, "run", None)
        if run is not None:  # a command module registered itself with parser.set_defaults(run=...)
            return int(run(args))
        if args.command == "read":
            from wsinspect.read import run_read

            if args.capture is None and (args.filter or "").strip() != "help":
                args.read_parser.error("the following arguments are required: capture")

            return run_read(args)
        from wsinspect.server.run import run_serve

        return run_serve(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly, as Unix tools do. Python would flush
        # stdout once more at exit and complain about the broken pipe; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
