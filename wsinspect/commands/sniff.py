"""``wsinspect sniff -i IFACE``: other programs' WebSocket conversations, decoded live as they cross an interface.

The packets come from ``capture.live.LiveCapture`` (a kernel BPF filter on a Linux packet socket); everything after
that is ``read``'s: the same trace, views, display filter, limits and ending (``read.run_read``). This module only
adds what a live source needs: the interface, the capture filter, when to stop, and the recording.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wsinspect.commands import EXIT_OK, command_parser, error
from wsinspect.views.safe import visible

KERNEL_BUFFER_MIB = 8  # sniff -B's default: capture.live.KERNEL_BUFFER_MIB (not imported here: --help stays quick)
MAX_BUFFER_MIB = 1024  # the ring is pinned kernel memory: a typo must not take gigabytes of it

SNIFF_EXAMPLES = """\
examples:
  wsinspect sniff -i lo --port 8765                 conversations with a server on port 8765, until Ctrl-C
  wsinspect sniff -i lo --port 8765 --follow --duration 60   one minute of messages, as a transcript
  wsinspect sniff -i any -f 'tcp port 80 or tcp port 8080' -c 1000 --record web.pcapng
                                                   the first 1,000 packets, decoded and saved for tshark or read
  wsinspect sniff -i lo --port 8765 --json | jq -c 'select(.type == "message")'
  wsinspect sniff -D                                the interfaces one can capture on

capturing needs root or CAP_NET_RAW (sudo setcap cap_net_raw,cap_net_admin+eip "$(readlink -f "$(which python3)")").
Linux only.

exit status:
  0  stopped (Ctrl-C or SIGTERM, -c, --duration) after seeing at least one WebSocket conversation
  1  stopped without seeing a WebSocket conversation (the message says what to try)
  2  a bad argument or filter, an unknown interface, no privilege to capture, or a --record file that failed
"""


def add_parser(commands: Any) -> None:
    from wsinspect.commands import arguments
    from wsinspect.commands.arguments import add_trace_options

    parser = command_parser(
        commands, "sniff", help="decode WebSocket conversations live from a network interface",
        epilog=SNIFF_EXAMPLES,
        description="Capture an interface's packets (like tshark -i) and decode the WebSocket conversations in them "
                    "as they happen, with read's views, display filter and limits. --port N both decodes port N "
                    "as WebSocket and, without -f, captures only 'tcp port N'.")
    parser.add_argument("-i", "--interface", metavar="IFACE",
                        help="the interface to capture on ('any' for all of them; a number from -D works too)")
    parser.add_argument("-D", "--list-interfaces", action="store_true",
                        help="list the interfaces one can capture on, as tshark -D does, and exit")
    parser.add_argument("-f", "--capture-filter", metavar="BPF",
                        help="a capture filter in libpcap's language (e.g. 'tcp port 8765'), run in the kernel; "
                             "default: 'tcp port N' for each --port, else 'tcp'")
    parser.add_argument("--duration", type=arguments.seconds, metavar="SECONDS",
                        help="stop after SECONDS (tshark's -a duration:SECONDS)")
    parser.add_argument("-B", "--buffer-size", type=buffer_mib, default=KERNEL_BUFFER_MIB, metavar="MIB",
                        help="the ring the kernel fills with packets not yet decoded, in MiB (tshark's -B; default "
                             f"{KERNEL_BUFFER_MIB}, up to {MAX_BUFFER_MIB}; memory shared with the kernel): a burst "
                             "that outruns the decoder waits there, and what does not fit is dropped (the count is "
                             "printed at the end)")
    parser.add_argument("--record", metavar="FILE",
                        help="also write every captured packet to FILE: pcapng, or pcap if FILE ends in .pcap")
    add_trace_options(parser)
    parser.set_defaults(run=run_sniff, capture=None)


def buffer_mib(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_BUFFER_MIB:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB from 1 to {MAX_BUFFER_MIB}: {visible(text)!r}")
    return int(text)


def capture_filter(args: argparse.Namespace) -> str:
    """The BPF expression: -f as given; else the --port numbers; else all of TCP (nothing else can be WebSocket)."""
    if args.capture_filter:
        return str(args.capture_filter)
    if args.port:
        return " or ".join(f"tcp port {port}" for port in dict.fromkeys(args.port))
    return "tcp"


def run_sniff(args: argparse.Namespace) -> int:
    from wsinspect.capture.live import LiveCapture, LiveCaptureError, list_interfaces
    from wsinspect.commands.arguments import make_console
    from wsinspect.commands.read import run_read

    if args.list_interfaces:
        for interface in list_interfaces():
            number = f"{interface.number}." if interface.number else "  "
            note = " (Loopback)" if interface.loopback else " (every interface)" if not interface.number else ""
            sys.stdout.write(f"{number} {visible(interface.name)}{note}\n")
        return EXIT_OK
    if (args.filter or "").strip() == "help":
        return run_read(args)  # -Y help lists the fields; no capture needed
    if not args.interface:
        return error(args, "sniff: -i IFACE is required (wsinspect sniff -D lists the interfaces)")
    if args.keylog is not None:
        # The trace looks a TLS session's keys up when its ClientHello is in, and a client writes them to its key
        # log only later in the handshake: live, they are never there in time.
        return error(args, "sniff: --keylog cannot decrypt as packets arrive (a client writes a session's keys "
                           "after its ClientHello); use --record FILE, then: wsinspect read FILE --keylog KEYS")
    expression = capture_filter(args)
    try:
        live = LiveCapture(args.interface, capture_filter=expression, count=args.count, duration=args.duration,
                           record=args.record, buffer_mib=args.buffer_size)
    except LiveCaptureError as failure:
        return error(args, f"sniff: {visible(str(failure))}")
    live.catch_signals()  # before 'Capturing on': a Ctrl-C right after it must stop cleanly, not interrupt
    notes = make_console(args, stderr=True)
    stops = [f"after {args.count} packet{'s' if args.count > 1 else ''}"] if args.count else []
    stops += [f"after {args.duration:g} s"] if args.duration else []
    notes.print(f"Capturing on {visible(live.interface)} (filter: {visible(expression)}); stops at Ctrl-C"
                + "".join(f" or {stop}" for stop in stops), style="dim", markup=False, highlight=False,
                soft_wrap=True)
    try:
        status = run_read(args, live)
    finally:
        live.close()
    # As tshark ends: what was captured, and what the kernel dropped (the packets that did not fit in -B).
    plural = "s" if live.packets != 1 else ""
    captured = f"wsinspect: {visible(live.interface)}: {live.packets:,} packet{plural} captured"
    if live.dropped:
        notes.print(f"{captured}; the kernel dropped {live.dropped:,} more that came faster than they were decoded; "
                    "their conversations show gaps (narrow the capture with -f or --port, raise -B, or --record and "
                    "read the file afterwards)", style="yellow", markup=False, highlight=False, soft_wrap=True)
    else:
        notes.print(f"{captured}, none dropped by the kernel", style="dim", markup=False, highlight=False,
                    soft_wrap=True)
    if live.record_problem is not None:
        return error(args, f"--record {visible(args.record)}: {visible(live.record_problem)}; the file is incomplete")
    return status
