"""``wsinspect proxy --upstream URL``: stand between WebSocket clients and a real server, relay every byte both ways
unchanged, and show both directions the way ``serve`` shows its own connections.

The relay is ``wsinspect.proxy.relay`` (the network edge: one upstream connection per client, bounded queues,
timeouts, and a copy of every byte through the same ``Connection`` decoder that reads captures). This module is the
command: its options, and the outputs ``serve`` uses, fed the decoder's events: the live log (``PacketList`` live, or
``FlowView``), ``--json`` and ``--record`` (``wsinspect.outputs``; the recording holds the client↔proxy
conversation) and the closing summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from wsinspect.client.target import Target, UsageError, parse_url
from wsinspect.commands import EXIT_OK, EXIT_USAGE, add_output_options, command_parser, error
from wsinspect.core.events import Event
from wsinspect.outputs import Outputs
from wsinspect.views.export import ExportError, save_painted
from wsinspect.views.output import Handout, Output
from wsinspect.views.palette import THEMES, Piece
from wsinspect.views.safe import visible
from wsinspect.views.summary import Summary

if TYPE_CHECKING:  # the relay (asyncio, the decoder) is imported when proxying, not when the CLI builds parsers
    from wsinspect.client.session import EventSink
    from wsinspect.proxy.relay import ProxyOptions, ProxyServer

EXIT_FAILED = 1
DEFAULT_LISTEN = "127.0.0.1:8080"
DESCRIPTORS_PER_CONNECTION = 2  # the client's socket and the upstream's
DESCRIPTOR_MARGIN = 64  # the listening socket, stdio, --json, --record, the event loop's own

PROXY_EXAMPLES = """\
examples:
  wsinspect proxy --upstream ws://127.0.0.1:8765/          clients connect to ws://127.0.0.1:8080/ instead
  wsinspect proxy --listen 127.0.0.1:9000 --upstream wss://echo.example/ws --detail
  wsinspect proxy --upstream wss://localhost:8443/ --cafile ca.pem        trust a test CA (--insecure: no check)
  wsinspect proxy --upstream ws://127.0.0.1:8765/ --certfile cert.pem --keyfile key.pem   clients use wss://
  wsinspect proxy --upstream ws://127.0.0.1:8765/ --json s.jsonl --record s.pcapng         wsinspect read s.pcapng
  wsinspect proxy --upstream ws://127.0.0.1:8765/ --compact -Y 'violation || websocket.opcode == 8'

what passes unchanged: every byte, both ways, except the opening request's Host field, which names the upstream
(RFC 6455 4.1 item 4; --keep-host sends the client's). Extensions (permessage-deflate) are negotiated by the client
and the upstream, end to end. An upstream that refuses the handshake: the client gets its answer as it was sent.
An upstream that cannot be reached (refused, no such host, TLS or certificate failure, --open-timeout): the client
gets 502 Bad Gateway, and the terminal says why.

exit status:
  0  stopped with Ctrl-C (or SIGTERM), every --json and --record file complete
  1  could not listen, or a --json/--record write failed while proxying (the message says which is incomplete)
  2  a bad argument, or a --json/--record/--export file that cannot be written
"""


def listen_address(text: str) -> tuple[str, int]:
    """argparse type for ``--listen``: ``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` (on 127.0.0.1); port 0 picks a
    free one."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"'{visible(text)}': write an IPv6 address in brackets, e.g. [::1]:8080")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"'{visible(text)}' is not HOST:PORT (a port is 0-65535; 0 picks a free "
                                         "one), e.g. 127.0.0.1:8080")
    return host, int(port)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from wsinspect.commands import arguments
    from wsinspect.server.options import DEFAULT_READ_CHUNK, DEFAULT_TURN_FRAMES

    parser = command_parser(
        commands, "proxy", help="relay WebSocket clients to a server, showing every handshake header and frame",
        epilog=PROXY_EXAMPLES,
        description="A WebSocket proxy for watching a real client talk to a real server: clients connect to the "
                    "proxy, which relays every byte to the upstream and back unchanged while it decodes both "
                    "directions (handshake, frames, messages, every rule broken, with its RFC section), live.")
    parser.set_defaults(run=run, proxy_parser=parser)
    where = parser.add_argument_group("where")
    where.add_argument("--upstream", metavar="URL", help="the server to relay to: ws://HOST[:PORT]/PATH or wss://... "
                                                         "(required)")
    where.add_argument("--listen", type=listen_address, default=listen_address(DEFAULT_LISTEN), metavar="HOST:PORT",
                       help=f"where clients connect (default: {DEFAULT_LISTEN}; 0.0.0.0:PORT listens on every "
                            "interface; port 0 picks a free one)")
    where.add_argument("--keep-host", action="store_true",
                       help="send the upstream the client's Host header field as it was (default: the upstream's "
                            "host and port, as RFC 6455 4.1 asks of a client connecting to it)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--cafile", metavar="FILE", help="wss:// upstream: trust the CA certificates in FILE (PEM) "
                                                      "instead of the system's")
    tls.add_argument("--insecure", action="store_true",
                     help="wss:// upstream: do not check its certificate or name (a test server)")
    tls.add_argument("--certfile", metavar="FILE",
                     help="listen with TLS (clients connect with wss://): the certificate chain (PEM)")
    tls.add_argument("--keyfile", metavar="FILE",
                     help="the private key of --certfile (PEM; default: the key is in --certfile)")
    limits = parser.add_argument_group(
        "limits", "What one peer can make the proxy hold or wait for. Over --max-queue bytes waiting for one side,\n"
                  "the proxy stops reading from the other until a quarter is left: a peer that does not read\n"
                  "slows its sender, nothing is dropped.")
    limits.add_argument("--max-queue", type=arguments.positive_size, default=arguments.size("1M"), metavar="SIZE",
                        help="bytes waiting to be written to one side of one connection (default: 1M)")
    limits.add_argument("--max-connections", type=arguments.whole_number, default=1024, metavar="N",
                        help="client connections at once; beyond it: 503 (default: %(default)s)")
    limits.add_argument("--handshake-timeout", type=arguments.seconds, default=10.0, metavar="SECONDS",
                        help="time for a client to send its whole opening request, and before that (with "
                             "--certfile) to finish its TLS handshake (default: %(default)g)")
    limits.add_argument("--open-timeout", type=arguments.seconds, default=10.0, metavar="SECONDS",
                        help="time to reach the upstream: name lookup, TCP and TLS; then 502 (default: "
                             "%(default)g)")
    limits.add_argument("--idle-timeout", type=arguments.seconds_or_off, default=300.0, metavar="SECONDS",
                        help="close a connection nothing crossed in either direction for SECONDS (default: "
                             "%(default)g; 0: never)")
    limits.add_argument("--close-timeout", type=arguments.seconds, default=3.0, metavar="SECONDS",
                        help="once one side closed, time for the other to take what is still queued for it "
                             "(default: %(default)g)")
    limits.add_argument("--read-chunk", type=arguments.positive_size, default=arguments.size(DEFAULT_READ_CHUNK),
                        metavar="SIZE",
                        help="bytes of one connection decoded before the others get a turn; reading from a side "
                             f"waits until what it sent is decoded (default: {DEFAULT_READ_CHUNK}; 1/16 of it on a "
                             "compressed connection; a tail under 256 bytes goes with its chunk, and bytes that only "
                             "add to an unfinished frame are not counted)")
    limits.add_argument("--turn-frames", type=arguments.whole_number, default=DEFAULT_TURN_FRAMES, metavar="N",
                        help="about how many frames of one connection are decoded per turn: its chunks shrink when "
                             "they hold more (default: %(default)s)")
    arguments.add_limits(limits, frame_default="64M", message_default="64M")
    limits.add_argument("--max-memory", type=arguments.positive_size, default=arguments.size("64M"), metavar="SIZE",
                        help="what the decoder's unfinished messages of all connections may hold together; beyond "
                             "it a message is shown cut short, and relayed whole (default: 64M)")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--detail", action="store_true", help="log each frame as a field tree and hex dump")
    view.add_argument("--compact", action="store_true", help="one line per handshake and per frame")
    view.add_argument("--flow", action="store_true",
                      help="each connection as a ladder: client and server columns, one arrow per frame")
    parser.add_argument("--explain", action="store_true",
                        help="annotate each header, frame fact and broken rule once, with its RFC section")
    parser.add_argument("-Y", "--filter", metavar="EXPR",
                        help="show only the events that match a display filter (as in 'wsinspect read'; '-Y help' "
                             "lists the fields); everything is still relayed and decoded")
    parser.add_argument("--json", metavar="FILE",
                        help="also write every event as JSON lines to FILE (the schema of read --json); '-' writes "
                             "them to stdout instead of the log")
    parser.add_argument("--record", metavar="FILE",
                        help="write the client-proxy conversations as a capture (.pcapng or .pcap) that 'wsinspect "
                             "read' and Wireshark decode (TLS on either side is recorded decrypted)")
    parser.add_argument("--quiet", action="store_true", help="log nothing per frame")
    parser.add_argument("--max-bytes", type=arguments.size, default=256, metavar="SIZE",
                        help="payload bytes shown in a hex dump (default: %(default)s)")
    add_output_options(parser)


def _options(args: argparse.Namespace) -> ProxyOptions:
    """The relay's options from the arguments; UsageError (one line, escaped) for what argparse cannot check."""
    from wsinspect.client.target import tls_context
    from wsinspect.core.connection import Limits
    from wsinspect.proxy.relay import ProxyOptions
    from wsinspect.server.tls import listening_context

    if args.upstream is None:
        args.proxy_parser.error("the following arguments are required: --upstream")
    upstream: Target = parse_url(args.upstream)
    if not upstream.secure and (args.cafile or args.insecure):
        raise UsageError("--cafile and --insecure are about a wss:// upstream; this one is ws://")
    host, port = args.listen
    return ProxyOptions(
        upstream=upstream, upstream_tls=tls_context(cafile=args.cafile, insecure=args.insecure)
        if upstream.secure else None, insecure=args.insecure, host=host, port=port,
        listen_tls=listening_context(args.certfile, args.keyfile), keep_host=args.keep_host,
        limits=Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message),
        max_memory=args.max_memory, max_queue=args.max_queue, max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout, open_timeout=args.open_timeout, idle_timeout=args.idle_timeout,
        close_timeout=args.close_timeout, read_chunk=args.read_chunk, turn_frames=args.turn_frames)


def run(args: argparse.Namespace) -> int:
    from wsinspect.commands.arguments import make_console, make_output

    if (args.filter or "").strip() == "help":
        from wsinspect.filters import describe_fields

        sys.stdout.write(describe_fields() + "\n")
        return EXIT_OK
    try:
        options = _options(args)
    except UsageError as failure:
        return error(args, str(failure))
    shown = None
    if args.filter is not None:
        from wsinspect.filters import FilterError, compile_filter

        try:
            shown = compile_filter(args.filter)
        except FilterError as failure:
            return error(args, f"-Y: {visible(str(failure))}")

    errors = make_console(args, stderr=True)
    console = make_console(args)
    output, handout = make_output(args, console, live=True)
    # The proxy's own lines (banner, warnings, errors) in the theme's roles, as the log's: no yellow in the light
    # theme, nothing that matters only dim.
    styles = THEMES[output.palette.theme]
    try:
        # Before listening: a file that cannot be written is a usage error now, not a lost session later.
        files = Outputs(json=args.json, record=args.record, command="proxy",
                        say=lambda line: _say(errors, line, styles["error"]))
    except UsageError as failure:
        return error(args, str(failure))

    logging = args.json != "-" and not args.quiet
    summary = Summary()
    sinks: list[EventSink] = [summary, _view(args, output, shown)] if logging else []

    def emit(events: list[Event]) -> None:
        for event in events:
            for sink in sinks:
                sink.handle(event)
            files.event(event)
        output.tick()

    def show(line: list[Piece]) -> None:
        if logging:
            output.line(line)

    def warn(line: str) -> None:
        output.flush()  # after the log lines before it
        _say(errors if args.json == "-" else console, line, styles["warning.strong"])

    from wsinspect.proxy.relay import ProxyServer, Reports

    proxy = ProxyServer(options, Reports(emit=emit, files=files, show=show, warn=warn))
    status = EXIT_OK
    try:
        status = asyncio.run(_serve(proxy, options, console if args.json != "-" else errors, errors, styles))
    finally:
        for sink in sinks:
            sink.close()
        files.finish(time.time())
    if logging and status == EXIT_OK:  # not after a failure to listen: nothing was relayed
        output.lines(summary.lines())
    output.flush()
    if handout is not None:
        saved = _save_handout(args, errors, handout, output.palette.theme, styles)
        status = saved if saved != EXIT_OK else status
    return files.exit_status(status, when_incomplete=EXIT_FAILED)


async def _serve(proxy: ProxyServer, options: ProxyOptions, console: Console, errors: Console,
                 styles: Mapping[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before listening: a Ctrl-C at any moment stops cleanly
        loop.add_signal_handler(sig, stop.set)
    try:
        host, port = await proxy.start()
    except OSError as failure:
        # asyncio's strerror repeats the address; the errno's own words do not.
        reason = os.strerror(failure.errno) if failure.errno else str(failure)
        _say(errors, f"wsinspect proxy: cannot listen on {visible(options.host)}:{options.port}: {visible(reason)}",
             styles["error"])
        return EXIT_FAILED
    _banner(console, options, host, port, styles)
    shortfall = _make_room_for(options.max_connections)
    if shortfall is not None:
        _say(errors, shortfall, styles["warning.strong"])
    await stop.wait()
    console.print(Text("stopping: every connection is cut (the proxy sends no close frames of its own)",
                       style=styles["muted"]))
    await proxy.shutdown()
    return EXIT_OK


def _make_room_for(connections: int) -> str | None:
    """Raise the soft limit on open files toward what ``--max-connections`` needs (two descriptors a connection),
    within the hard limit: a common soft limit of 1024 would otherwise make the 500th client's upstream connection
    fail. Returns a warning when even the hard limit is too low."""
    try:
        import resource
    except ImportError:  # not a Unix: no such limit to raise
        return None
    needed = DESCRIPTORS_PER_CONNECTION * connections + DESCRIPTOR_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft >= needed:
        return None
    room = max((soft - DESCRIPTOR_MARGIN) // DESCRIPTORS_PER_CONNECTION, 0)
    return (f"wsinspect proxy: warning: --max-connections {connections} needs about {needed} open files and this "
            f"process may open {soft} (ulimit -n): beyond about {room} connections, new ones will fail")


def _banner(console: Console, options: ProxyOptions, host: str, port: int, styles: Mapping[str, str]) -> None:
    shown = f"[{host}]" if ":" in host else host
    scheme = "wss" if options.listen_tls is not None else "ws"
    upstream = options.upstream
    line = Text(f"wsinspect proxy: {scheme}://{shown}:{port}{visible(upstream.resource)} → "
                f"{visible(upstream.url)}", style=styles["strong"])
    console.print(line)
    host_note = ("the client's Host field is sent as it is (--keep-host)" if options.keep_host else
                 f"Host is rewritten to {visible(upstream.authority)}")
    console.print(Text(f"every other byte is relayed unchanged both ways; {host_note}", style=styles["muted"]))
    if host in ("0.0.0.0", "::"):
        console.print(Text("warning: listening on every interface; anyone who can reach this machine can use the "
                           "proxy. Use --listen 127.0.0.1:PORT to stay local.", style=styles["warning.strong"]))
    console.print(Text("Ctrl-C cuts every connection and stops.", style=styles["muted"]))


def _view(args: argparse.Namespace, output: Output, shown: Callable[[Event], bool] | None) -> EventSink:
    """serve's live log: connections interleave, so rows carry the connection's number and the wall-clock time.
    A refusal's body is shown: it is the upstream's own words."""
    if args.flow:
        from wsinspect.views.flow import FlowView

        return FlowView(output, shown=shown)
    from wsinspect.views.packetlist import PacketList

    return PacketList(output, detail=args.detail, max_bytes=args.max_bytes, live=True, shown=shown,
                      compact=args.compact, explain=args.explain, refusal_bodies=True)


def _say(console: Console, text: str, style: str) -> None:
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _save_handout(args: argparse.Namespace, errors: Console, handout: Handout, theme: str,
                  styles: Mapping[str, str]) -> int:
    if handout.overflowed:
        _say(errors, f"wsinspect: --export {visible(args.export)}: more than {handout.limit:,} lines is not a "
                     "handout; nothing was saved (try --compact or -Y FILTER)", styles["error"])
        return EXIT_USAGE
    try:
        save_painted(handout.lines, args.export, theme=theme, title=f"wsinspect proxy {visible(args.upstream)}")
    except ExportError as failure:
        _say(errors, f"wsinspect: --export {visible(args.export)}: {visible(str(failure))}", styles["error"])
        return EXIT_USAGE
    return EXIT_OK
