"""``wsinspect read``: a capture file through the trace, into the chosen view.

Every view streams: events are shown as they are decoded, so the first line appears at once and memory holds only
what open conversations need. Exit statuses are listed in ``wsinspect read --help`` (``READ_EXAMPLES``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

from wsinspect.capture.files import CaptureError
from wsinspect.commands import command_parser
from wsinspect.core.connection import Limits
from wsinspect.core.events import Event
from wsinspect.trace import CaptureTrace
from wsinspect.views.output import Handout
from wsinspect.views.packetlist import PacketList
from wsinspect.views.safe import visible
from wsinspect.views.summary import Summary

if TYPE_CHECKING:
    from rich.progress import Progress

    from wsinspect.capture.live import LiveCapture
    from wsinspect.views.jsonlines import JsonLinesView

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

PROGRESS_MIN_BYTES = 4 * 1024 * 1024  # smaller files finish before a bar is worth drawing
EXIT_OK, EXIT_NOTHING_FOUND, EXIT_USAGE, EXIT_DAMAGED = 0, 1, 2, 3


def add_parser(commands: Any) -> None:
    from wsinspect.commands.arguments import add_trace_options

    parser = command_parser(
        commands, "read", help="decode WebSocket conversations in a pcap/pcapng capture", epilog=READ_EXAMPLES,
        description="Lay out every WebSocket conversation in a capture: who connected to whom, the opening "
                    "handshake with every header (and whether Sec-WebSocket-Accept is right), every frame in "
                    "both directions, the messages they carry, and every rule broken.")
    parser.add_argument("capture", nargs="?", help="a pcap or pcapng file")
    add_trace_options(parser)
    parser.set_defaults(run=lambda args: run(args, parser))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.capture is None and (args.filter or "").strip() != "help":
        parser.error("the following arguments are required: capture")  # read's own usage, exit status 2
    return run_read(args)



class View(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _error(console: Console, text: str, style: str = "bold red") -> None:
    console.print(text, style=style, markup=False, soft_wrap=True, highlight=False)


def run_read(args: argparse.Namespace, live: LiveCapture | None = None) -> int:
    """``read``; with ``live`` (``wsinspect sniff``), the same views and ending over a sniffer's packets."""
    from wsinspect.commands.arguments import make_console, make_output

    console = make_console(args)
    errors = make_console(args, stderr=True)
    # A file name is untrusted too: it may hold escape sequences.
    name = visible(str(args.capture) if live is None else live.interface)
    shown: Callable[[Event], bool] | None = None
    if args.filter is not None:
        from wsinspect.filters import FilterError, compile_filter, describe_fields

        if args.filter.strip() == "help":  # -Y help: the fields a filter can use, like tshark -G fields
            sys.stdout.write(describe_fields() + "\n")
            return EXIT_OK
        try:
            shown = compile_filter(args.filter)
        except FilterError as error:
            _error(errors, f"wsinspect: -Y: {visible(str(error))}")
            return EXIT_USAGE
    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    keylog = None
    if args.keylog is not None:
        from wsinspect.capture.keylog import KeyLog, KeyLogError

        try:
            keylog = KeyLog.read(args.keylog)
        except KeyLogError as error:
            _error(errors, f"wsinspect: --keylog: {visible(str(error))}")
            return EXIT_USAGE
    try:
        trace = CaptureTrace(live or args.capture, server_ports=args.port, streams=args.stream, limits=limits,
                             memory_budget=args.max_memory, max_open_flows=args.max_flows,
                             idle_timeout=args.idle_timeout, keylog=keylog)
    except CaptureError as error:
        _error(errors, f"wsinspect: {name}: {visible(str(error))}")
        return EXIT_USAGE

    if args.export:
        from wsinspect.views.export import ExportError, check_writable

        try:
            check_writable(args.export)
        except ExportError as error:
            _error(errors, f"wsinspect: --export {visible(args.export)}: {visible(str(error))}")
            return EXIT_USAGE
    output, handout = make_output(args, console)
    if live is not None:
        # The loop below writes in batches, which suits a file; live, what the packets so far showed is written
        # whenever the sniffer is about to wait for more.
        live.before_waiting = output.flush
    view: View
    packet_list: PacketList | None = None
    # Only the chosen view's module is imported: starting fast is what puts the first line on the screen at once.
    if args.json:
        from wsinspect.views.jsonlines import JsonLinesView

        json_view = JsonLinesView(sys.stdout)
        view = json_view if shown is None else _FilteredJson(json_view, shown)
    elif args.follow:
        from wsinspect.views.transcript import Transcript

        view = Transcript(output, shown=shown)
    elif args.flow:
        from wsinspect.views.flow import FlowView

        view = FlowView(output, shown=shown)
    else:
        view = packet_list = PacketList(output, detail=args.detail, max_bytes=args.max_bytes, shown=shown,
                                        compact=args.compact, explain=args.explain)
    summary = Summary()

    # The bar goes to stderr when the output does not scroll by on the same terminal (written to a file or a pipe).
    show_progress = errors.is_terminal and not console.is_terminal and trace.size >= PROGRESS_MIN_BYTES
    progress = _progress_bar(errors, trace.size) if show_progress else None
    count_limit = args.count
    handle = view.handle
    # JSON lines carry no summary: only conversations are counted there (for the exit status), at no cost per frame.
    count = summary.handle if not args.json else summary.count_conversation
    try:
        for number, event in enumerate(trace):
            if count_limit is not None and event.packet is not None and event.packet > count_limit:
                break  # -c N: as tshark, the first N packets of the file
            count(event)
            handle(event)
            if not number % 4096:
                output.tick()
                if progress is not None:
                    progress.update(progress.task_ids[0], completed=trace.position)
    finally:
        if progress is not None:
            progress.stop()
    view.close()

    stats = trace.stats
    if trace.keylog is not None and trace.keylog.problem_count:
        # Bad key log lines are not fatal (the others are used), but the reader should know which they were.
        source = visible(args.keylog) if args.keylog is not None else "the capture's key log"
        for problem in trace.keylog.problems:
            _error(errors, f"wsinspect: {source}: {visible(problem)}", "yellow")
        if trace.keylog.problem_count > len(trace.keylog.problems):
            _error(errors, f"wsinspect: {source}: {trace.keylog.problem_count - len(trace.keylog.problems)} more "
                           "problem(s)", "yellow")
    notes = []
    if stats.skipped_streams:
        notes.append(f"{stats.skipped_streams} TCP stream(s) without a WebSocket handshake skipped")
        notes += [visible(hint) for hint in stats.port_hints[:8]]
    if not args.json and not args.no_summary:
        frames_shown = packet_list.frames_shown if packet_list is not None and shown is not None else None
        output.lines(summary.lines(notes, frames_shown=frames_shown))
    output.flush()
    if handout is not None:
        status = _save_handout(args, errors, handout, output.palette.theme, name)
        if status != EXIT_OK:
            return status
    if stats.truncated:
        why = visible(stats.problem or "it ends inside a packet record")
        _error(errors, f"wsinspect: {name}: the file is truncated or damaged ({why}); everything before that point "
                       "was decoded")
        return EXIT_DAMAGED
    if summary.conversations == 0:
        if args.stream:
            asked = ", ".join(str(stream) for stream in args.stream)
            _error(errors, f"wsinspect: {name}: no WebSocket conversation with tcp.stream {asked} "
                           f"(the capture has {stats.tcp_streams} TCP stream(s), numbered from 0)", "yellow")
        elif summary.tls:
            why = "the session keys are needed (--keylog FILE)" if args.keylog is None else \
                "the notes above say why (no key for a session, or a suite that is not decrypted)"
            _error(errors, f"wsinspect: {name}: no WebSocket conversation that can be seen into: {summary.tls} TLS "
                           f"stream(s) (wss:// or another TLS protocol); {why}", "yellow")
        else:
            hint = "" if args.port else " (a conversation captured mid-connection needs --port N)"
            _error(errors, f"wsinspect: {name}: no WebSocket conversation found in {stats.packets} packets{hint}",
                   "yellow")
        return EXIT_NOTHING_FOUND
    return EXIT_OK


def _progress_bar(errors: Console, total: int) -> Progress:
    """A transient bar on stderr. rich.progress is imported here: most runs never draw one, and starting fast is
    what puts the first line on the screen at once."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=errors,
                        transient=True)
    progress.add_task("read", total=total)
    progress.start()
    return progress


def _save_handout(args: argparse.Namespace, errors: Console, handout: Handout, theme: str, name: str) -> int:
    if handout.overflowed:
        _error(errors, f"wsinspect: --export {visible(args.export)}: more than {handout.limit:,} lines is not a "
                       "handout; nothing was saved. Narrow it: --stream N (one conversation), -Y FILTER (some "
                       "frames) or -c N (the first packets), or --compact")
        return EXIT_USAGE
    from wsinspect.views.export import ExportError, save_painted

    try:
        save_painted(handout.lines, args.export, theme=theme, title=f"wsinspect {args.command} {name}")
    except ExportError as error:
        _error(errors, f"wsinspect: --export {visible(args.export)}: {visible(str(error))}")
        return EXIT_USAGE
    return EXIT_OK


class _FilteredJson:
    """``--json`` with ``-Y``: only matching events become lines."""

    def __init__(self, view: JsonLinesView, shown: Callable[[Event], bool]) -> None:
        self.view = view
        self.shown = shown

    def handle(self, event: Event) -> None:
        if self.shown(event):
            self.view.handle(event)

    def close(self) -> None:
        self.view.close()
