"""``wsinspect read``: a capture file through the trace, into the chosen view.

Every view streams: events are shown as they are decoded, so the first line appears at once and memory holds only
what open conversations need. Exit statuses are listed in ``wsinspect read --help`` (``READ_EXAMPLES``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

from wsinspect.capture.files import CaptureError, CaptureFile
from wsinspect.capture.packets import DECODED_LINKTYPES_TEXT, describe_linktype, is_decoded_linktype
from wsinspect.commands import command_parser
from wsinspect.core.connection import Limits
from wsinspect.core.events import Event
from wsinspect.trace import CaptureTrace, PacketSource
from wsinspect.views.output import Handout, HandoutFull
from wsinspect.views.packetlist import PacketList
from wsinspect.views.palette import THEMES
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
  tcpdump -i lo -w - port 8765 | wsinspect read -  a capture on standard input (pcap or pcapng), as tshark -r -

filters (-Y): the fields of --json, with Wireshark's names where it has one (websocket.opcode, tcp.stream,
frame.number, ...); operators == != < <= > >= contains matches && || ! and parentheses. See docs/filters.md.

exit status:
  0  the capture (with -c N, its first N packets) was read and holds at least one WebSocket conversation (whatever
     -Y showed)
  1  the capture (with -c N, its first N packets) was read but holds no WebSocket conversation (or none with the
     --stream asked for)
  2  a bad argument or filter, a file that cannot be read as a capture, or one whose link type is not decoded
     (802.11, USB...): nothing was decoded; or --export over 5,000 lines: stopped there, nothing saved
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
    parser.add_argument("capture", nargs="?", help="a pcap or pcapng file; - reads it from standard input")
    add_trace_options(parser)
    parser.set_defaults(run=lambda args: run(args, parser))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.capture is None and (args.filter or "").strip() != "help":
        parser.error("the following arguments are required: capture")  # read's own usage, exit status 2
    return run_read(args)



class View(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class _Messages:
    """read's own lines on stderr, styled by the theme's roles ("error", "warning") as its output is: no yellow in
    the light theme, no colour in mono. The theme is the output's (``make_palette``), worked out at the first line."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self._styles: Mapping[str, str] | None = None

    def __call__(self, text: str, role: str = "error") -> None:
        if self._styles is None:
            from wsinspect.commands.arguments import make_palette

            self._styles = THEMES[make_palette(self.args, self.console).theme]
        self.console.print(text, style=self._styles[role], markup=False, soft_wrap=True, highlight=False)


STDIN_NAME = "-"  # as tshark -r -


def _open_capture(args: argparse.Namespace) -> CaptureFile:
    """The capture file (or standard input, for ``-``), read up to ``-c N`` packets. CaptureError if it cannot be."""
    if args.capture != STDIN_NAME:
        return CaptureFile(args.capture, packet_limit=args.count)
    if sys.stdin is None:
        raise CaptureError("closed: pipe a capture in (tcpdump -w - ... | wsinspect read -) or name a file")
    if sys.stdin.isatty():
        raise CaptureError("a terminal, not a capture: pipe one in (tcpdump -w - ... | wsinspect read -) or name a "
                           "file")
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115 - the trace closes it
    return CaptureFile("standard input", packet_limit=args.count, stream=stdin)


def _unread_linktypes(capture: CaptureFile) -> str | None:
    """The link types of the capture's interfaces that wsinspect does not decode, in words (None: none such)."""
    unread = sorted(linktype for linktype in capture.linktypes if not is_decoded_linktype(linktype))
    return ", ".join(describe_linktype(linktype) for linktype in unread[:4]) + (", ..." if len(unread) > 4 else "") \
        if unread else None


def run_read(args: argparse.Namespace, live: LiveCapture | None = None) -> int:
    """``read``; with ``live`` (``wsinspect sniff``), the same views and ending over a sniffer's packets."""
    from wsinspect.commands.arguments import make_console, make_output

    console = make_console(args)
    say = _Messages(args, make_console(args, stderr=True))
    errors = say.console
    # A file name is untrusted too: it may hold escape sequences.
    name = visible(live.interface if live is not None else
                   "standard input" if args.capture == STDIN_NAME else str(args.capture))
    shown: Callable[[Event], bool] | None = None
    if args.filter is not None:
        from wsinspect.filters import FilterError, compile_filter, describe_fields

        if args.filter.strip() == "help":  # -Y help: the fields a filter can use, like tshark -G fields
            sys.stdout.write(describe_fields() + "\n")
            return EXIT_OK
        try:
            shown = compile_filter(args.filter)
        except FilterError as error:
            say(f"wsinspect: -Y: {visible(str(error))}")
            return EXIT_USAGE
    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    keylog = None
    if args.keylog is not None:
        from wsinspect.capture.keylog import KeyLog, KeyLogError

        try:
            keylog = KeyLog.read(args.keylog)
        except KeyLogError as error:
            say(f"wsinspect: --keylog: {visible(str(error))}")
            return EXIT_USAGE
    capture: CaptureFile | None = None
    packet_source: PacketSource
    if live is not None:
        packet_source = live
    else:
        try:
            capture = _open_capture(args)
        except CaptureError as error:
            say(f"wsinspect: {name}: {visible(str(error))}")
            return EXIT_USAGE
        if capture.format == "pcap" and _unread_linktypes(capture):  # one link type, known from the file header
            capture.close()
            say(f"wsinspect: {name}: {_unread_linktypes(capture)} is not supported: wsinspect reads "
                f"{DECODED_LINKTYPES_TEXT}")
            return EXIT_USAGE
        packet_source = capture
    trace = CaptureTrace(packet_source, server_ports=args.port, streams=args.stream, limits=limits,
                         memory_budget=args.max_memory, max_open_flows=args.max_flows,
                         idle_timeout=args.idle_timeout, keylog=keylog)

    if args.export:
        from wsinspect.views.export import ExportError, check_writable

        try:
            check_writable(args.export)
        except ExportError as error:
            if capture is not None:
                capture.close()
            say(f"wsinspect: --export {visible(args.export)}: {visible(str(error))}")
            return EXIT_USAGE
    output, handout = make_output(args, console)
    if handout is not None and live is None:
        handout.stop_when_full = True  # a file has an end: the run stops once the handout cannot be saved
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
    handle = view.handle
    # JSON lines carry no summary: only conversations are counted there (for the exit status), at no cost per frame.
    # -c N is the capture's (CaptureFile stops after record N) or the live sniffer's: the trace ends there.
    count = summary.handle if not args.json else summary.count_conversation
    try:
        for number, event in enumerate(trace):
            count(event)
            handle(event)
            if not number % 4096:
                output.tick()
                if progress is not None:
                    progress.update(progress.task_ids[0], completed=trace.position)
        view.close()
        if handout is not None:
            handout.stop_when_full = False  # read to the end: the summary is shown; an overflow is refused below
        output.flush()
    except HandoutFull:
        if capture is not None:
            capture.close()
        assert handout is not None
        say(f"wsinspect: --export {visible(args.export)}: more than {handout.limit:,} lines is not a handout; stopped "
            f"at packet {trace.stats.packets:,}, nothing was saved. Narrow it: --stream N (one conversation), "
            "-Y FILTER (some frames) or -c N (the first packets), or --compact")
        return EXIT_USAGE
    finally:
        if progress is not None:
            progress.stop()

    stats = trace.stats
    if trace.keylog is not None and trace.keylog.problem_count:
        # Bad key log lines are not fatal (the others are used), but the reader should know which they were.
        source = visible(args.keylog) if args.keylog is not None else "the capture's key log"
        for problem in trace.keylog.problems:
            say(f"wsinspect: {source}: {visible(problem)}", "warning")
        if trace.keylog.problem_count > len(trace.keylog.problems):
            say(f"wsinspect: {source}: {trace.keylog.problem_count - len(trace.keylog.problems)} more problem(s)",
                "warning")
    unread = _unread_linktypes(capture) if capture is not None else None
    if summary.conversations == 0 and unread and capture is not None and not any(
            is_decoded_linktype(linktype) for linktype in capture.linktypes):
        # A pcapng file names its interfaces as it goes: only now is it known that none was one that is read.
        say(f"wsinspect: {name}: {unread} is not supported: wsinspect reads {DECODED_LINKTYPES_TEXT}")
        return EXIT_USAGE
    notes = []
    if stats.skipped_streams:
        notes.append(f"{stats.skipped_streams} TCP stream(s) without a WebSocket handshake skipped")
        notes += [visible(hint) for hint in stats.port_hints[:8]]
    if not args.json and not args.no_summary:
        frames_shown = packet_list.frames_shown if packet_list is not None and shown is not None else None
        output.lines(summary.lines(notes, frames_shown=frames_shown))
    output.flush()
    if handout is not None:
        status = _save_handout(args, say, handout, output.palette.theme, name)
        if status != EXIT_OK:
            return status
    if stats.truncated:
        why = visible(stats.problem or "it ends inside a packet record")
        say(f"wsinspect: {name}: the file is truncated or damaged ({why}); everything before that point was decoded")
        return EXIT_DAMAGED
    if summary.conversations == 0:
        if args.stream:
            asked = ", ".join(str(stream) for stream in args.stream)
            say(f"wsinspect: {name}: no WebSocket conversation with tcp.stream {asked} "
                f"(the capture has {stats.tcp_streams} TCP stream(s), numbered from 0)", "warning")
        elif summary.tls:
            why = "the session keys are needed (--keylog FILE)" if args.keylog is None else \
                "the notes above say why (no key for a session, or a suite that is not decrypted)"
            say(f"wsinspect: {name}: no WebSocket conversation that can be seen into: {summary.tls} TLS "
                f"stream(s) (wss:// or another TLS protocol); {why}", "warning")
        else:
            limited = capture is not None and capture.limit_reached
            read = f"the first {args.count}" if limited else capture.packets if capture is not None else stats.packets
            asides = [f"-c {args.count}"] if limited else []
            asides += [] if args.port else ["a conversation captured mid-connection needs --port N"]
            asides += [f"the packets of {unread} were not read: wsinspect reads {DECODED_LINKTYPES_TEXT}"] \
                if unread else []
            aside = f" ({'; '.join(asides)})" if asides else ""
            say(f"wsinspect: {name}: no WebSocket conversation found in {read} packets{aside}", "warning")
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


def _save_handout(args: argparse.Namespace, say: _Messages, handout: Handout, theme: str, name: str) -> int:
    if handout.overflowed:
        say(f"wsinspect: --export {visible(args.export)}: more than {handout.limit:,} lines is not a handout; "
            "nothing was saved. Narrow it: --stream N (one conversation), -Y FILTER (some frames) or -c N (the first "
            "packets), or --compact")
        return EXIT_USAGE
    from wsinspect.views.export import ExportError, save_painted

    try:
        save_painted(handout.lines, args.export, theme=theme, title=f"wsinspect {args.command} {name}")
    except ExportError as error:
        say(f"wsinspect: --export {visible(args.export)}: {visible(str(error))}")
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
