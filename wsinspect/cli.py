"""The ``wsinspect`` command line: a list of commands, each a module of its own in ``wsinspect.commands`` with an
``add_parser(commands)`` that registers its parser and sets ``run``. Only the module of the command being run is
imported, so a command starts without paying for the others (``connect`` brings asyncio and ssl, ``serve`` its
server, ``sniff`` scapy)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from wsinspect import __version__
from wsinspect.views.safe import visible

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


_ARGUMENT_NAME = re.compile(r"^argument (\S+): ")  # how argparse starts the message of an ArgumentError


def _printable(message: str) -> str:
    """A last guard over a whole message: argparse writes some arguments into it as typed (``ambiguous option:
    --max=\\x1b[2J``); every character a terminal would act on comes out escaped as ``visible`` escapes it."""
    return message if message.isprintable() else "".join(ch if ch.isprintable() else visible(ch) for ch in message)


class CommandLineParser(argparse.ArgumentParser):
    """argparse with this tool's errors: one line, ``wsinspect serve: --port 70000: not a TCP port (0-65535; 0 picks
    a free one) (try 'wsinspect serve --help')``, exit status 2, no usage text; every argument in it shown through
    ``visible`` as the rest of the tool shows untrusted text (a file name from a glob can hold escape sequences), and
    leftovers reported by the command that was given them. Sub-command parsers are made of this class too (argparse
    gives them their parent's)."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, leftovers = super().parse_known_args(args, argparse.Namespace() if namespace is None else namespace)
        if leftovers:
            # argparse hands a command's leftovers up to the top parser, which would report them under its own
            # usage: the parser given them (the deepest: its parse_known_args returns first) says so itself.
            self.error("unrecognized arguments: " + " ".join(shlex.quote(visible(argument)) for argument in leftovers))
        return parsed, leftovers

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as failure:
            problem = failure.message
            if isinstance(failure.__context__, (TypeError, ValueError)):  # int, float: argparse shows repr(value)
                problem = f"not a valid {getattr(action.type, '__name__', 'value')}"
            problem = _without(problem, arg_string)
            raise argparse.ArgumentError(None, f"{_named(action, arg_string)}: {problem}") from None

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            allowed = ", ".join(visible(str(choice)) for choice in action.choices)
            raise argparse.ArgumentError(None, f"{_named(action, str(value))}: not one of {allowed}")

    def error(self, message: str) -> NoReturn:
        from rich.console import Console

        problem = _printable(_ARGUMENT_NAME.sub(r"\1: ", message))
        line = f"{self.prog}: {problem} (try '{self.prog} --help')"
        Console(stderr=True, highlight=False, emoji=False, markup=False).print(line, style="bold red", soft_wrap=True)
        self.exit(2)


def _named(action: argparse.Action, value: str) -> str:
    """The option and its value as the user could type them again (``--port 70000``); a positional's value alone."""
    shown = shlex.quote(visible(value))
    return f"{max(action.option_strings, key=len)} {shown}" if action.option_strings else shown


def _without(problem: str, value: str) -> str:
    """A type's message without the value it quotes, now that it comes first (``'x.pdf': a handout is ...``)."""
    shown = visible(value)
    for quoted in (f"'{shown}': ", f": '{shown}'", f"{shown!r}: ", f": {shown!r}"):
        if quoted in problem:
            return problem.replace(quoted, "", 1)
    return problem


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with the command ``only`` alone (what ``main`` runs)."""
    parser = CommandLineParser(
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
