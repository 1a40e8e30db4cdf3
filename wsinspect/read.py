"""``wsinspect read``: a capture file through the trace, into the chosen view."""

from __future__ import annotations

import argparse
import sys
from typing import Protocol

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from wsinspect.capture.files import CaptureError
from wsinspect.core.connection import Limits
from wsinspect.core.events import Event
from wsinspect.trace import CaptureTrace
from wsinspect.views.console import CaptureView, Summary, TranscriptView
from wsinspect.views.jsonlines import JsonLinesView

PROGRESS_MIN_BYTES = 4 * 1024 * 1024  # smaller files finish before a bar is worth drawing


class View(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def run_read(args: argparse.Namespace) -> int:
    from wsinspect.cli import make_console

    console = make_console(args)
    errors = make_console(args, stderr=True)
    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    try:
        trace = CaptureTrace(args.capture, server_ports=args.port, streams=args.stream, limits=limits)
    except CaptureError as error:
        errors.print(f"wsinspect: {args.capture}: {error}", style="bold red", markup=False, soft_wrap=True)
        return 2

    view: View
    if args.json:
        view = JsonLinesView(sys.stdout)
    elif args.follow:
        view = TranscriptView(console)
    else:
        view = CaptureView(console, detail=args.detail, max_bytes=args.max_bytes)
    summary = Summary()

    show_progress = errors.is_terminal and trace.size >= PROGRESS_MIN_BYTES
    progress = Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                        console=errors, transient=True, disable=not show_progress)
    sinks: list[View] = [view] if args.json else [view, summary]  # JSON lines carry no summary
    with progress:
        task = progress.add_task("read", total=trace.size)
        if len(sinks) == 1 and not show_progress:
            handle = view.handle  # the benchmark's path: nothing else per event
            for event in trace:
                handle(event)
        else:
            for count, event in enumerate(trace):
                for sink in sinks:
                    sink.handle(event)
                if show_progress and count % 2048 == 0:
                    progress.update(task, completed=trace.position)
    view.close()

    stats = trace.stats
    notes = []
    if stats.skipped_streams:
        notes.append(f"{stats.skipped_streams} TCP stream(s) without a WebSocket handshake skipped")
        for hint in stats.port_hints[:8]:
            notes.append(hint)
    if not args.json and not args.no_summary:
        console.print(summary.render(notes))
    if stats.truncated:
        why = stats.problem or "it ends inside a packet record"
        errors.print(f"wsinspect: {args.capture}: the file is truncated ({why}); everything before that point "
                     "was decoded", style="bold red", markup=False, soft_wrap=True)
        return 1
    if summary.conversations == 0 and not args.json:
        errors.print(f"wsinspect: no WebSocket conversation found in {stats.packets} packets"
                     + ("" if args.port else " (a conversation captured mid-connection needs --port N)"),
                     style="yellow", markup=False, soft_wrap=True)
    return 0
