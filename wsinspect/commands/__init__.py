"""Commands that are modules of their own: each has ``add_parser(commands)``, which registers its argparse parser
and sets ``run``. What they share lives here: the output options (``--color``, ``--theme``, ``--export``), and
``present``, which shows a command's lines on the terminal and saves the same lines as a handout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from wsinspect.views.export import EXPORT_WIDTH, ExportError, check_writable, fold, save
from wsinspect.views.output import Output
from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

Line = list[Piece]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def export_path(text: str) -> str:
    """argparse type for ``--export``: the format must be known before any work is done."""
    try:
        check_writable(text)
    except ExportError as error:
        raise argparse.ArgumentTypeError(f"'{visible(text)}': {error}") from None
    return text


def add_output_options(parser: argparse.ArgumentParser) -> None:
    from wsinspect.commands import arguments

    parser.add_argument("--export", type=export_path, metavar="FILE",
                        help=f"also save what is shown as a handout, FILE.html, FILE.svg or FILE.txt, laid out "
                             f"{EXPORT_WIDTH} columns wide (the terminal gets the same layout)")
    arguments.add_colour(parser)


def error(args: argparse.Namespace, message: str) -> int:
    """One line on stderr, never a traceback; ``message`` must already be safe (through ``visible``)."""
    from wsinspect.commands.arguments import make_console

    console = make_console(args, stderr=True)
    console.print(f"wsinspect: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    return EXIT_USAGE


def layout_width(args: argparse.Namespace) -> int:
    """The width lines are laid out for: the terminal's, or the handout's fixed width when exporting (the terminal
    then shows the handout's layout, so the two are the same)."""
    from wsinspect.commands.arguments import make_console

    return EXPORT_WIDTH if getattr(args, "export", None) else int(make_console(args).width)


def present(args: argparse.Namespace, lines: Sequence[Line], argv: Sequence[str] | None = None) -> int:
    """Print ``lines`` and, with ``--export``, save exactly those lines, folded at the same width.

    Returns EXIT_USAGE when the handout could not be written (after the terminal got its output), else EXIT_OK.
    """
    from wsinspect.commands.arguments import make_console, make_palette

    console = make_console(args)
    palette = make_palette(args, console)
    exporting = getattr(args, "export", None)
    folded = fold(lines, layout_width(args))
    output = Output(console, palette)
    output.rows(folded)
    output.flush()
    if exporting:
        title = "wsinspect " + shlex.join(sys.argv[1:] if argv is None else argv)
        try:
            save(folded, exporting, theme=palette.theme, title=visible(title))
        except ExportError as failure:
            return error(args, f"--export {visible(exporting)}: {visible(str(failure))}")
    return EXIT_OK


def command_parser(commands: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command parser with the CLI's formatting (examples kept as written)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter,
                                                          **kwargs)
    return parser
