"""The ``wsinspect`` command line: a list of commands, each a module of its own in ``wsinspect.commands`` with an
``add_parser(commands)`` that registers its parser and sets ``run``. Only the module of the command being run is
imported, so a command starts without paying for the others (``connect`` brings asyncio and ssl, ``serve`` its
server, ``sniff`` scapy)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from wsinspect import __version__

#: Each command and the module that holds it, in the order ``wsinspect --help`` lists them.
COMMANDS = {
    "read": "wsinspect.commands.read",
    "serve": "wsinspect.commands.serve",
    "connect": "wsinspect.commands.connect",
    "proxy": "wsinspect.commands.proxy",
    "sniff": "wsinspect.commands.sniff",
    "demo": "wsinspect.commands.demo",
    "handshake": "wsinspect.commands.handshake",
    "frame": "wsinspect.commands.frame",
}

MAIN_EPILOG = """\
examples:
  wsinspect read captures/echo.pcapng              a capture laid out as Wireshark does, handshake to close
  wsinspect serve                                  a logging WebSocket server and a demo page for a browser
  wsinspect connect ws://127.0.0.1:8765/ --send hi a client for probing a server, every frame shown
  wsinspect proxy --upstream ws://127.0.0.1:8765/  a relay between a client and a server, both sides shown
  wsinspect demo --step                            a conversation step by step, for a class
  wsinspect handshake --key dGhlIHNhbXBsZSBub25jZQ==
  wsinspect frame build --text Hello --mask 37fa213d
  wsinspect frame decode 81 05 48 65 6c 6c 6f
  wsinspect read --help                            each command's options and examples
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with the command ``only`` alone (what ``main`` runs)."""
    parser = argparse.ArgumentParser(
        prog="wsinspect", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=MAIN_EPILOG,
        description="See and understand the WebSocket protocol (RFC 6455, RFC 7692 permessage-deflate).")
    parser.add_argument("--version", action="version", version=f"wsinspect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = next((argument for argument in arguments if not argument.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly, as Unix tools do. Python would flush
        # stdout once more at exit and complain about the broken pipe; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
