"""``wsinspect connect URL``: the client face. Opens a WebSocket to a real server and shows both directions of the
conversation the way ``read`` and ``serve`` do, with every rule the server breaks flagged where it happens.

Three parts, each ignorant of the others' insides:

- ``ClientEndpoint`` (``core.endpoint``, sans-I/O) is the protocol: it builds the opening request, judges the answer,
  masks, pongs, echoes a close and fails the connection on a violation, and decodes both directions through the
  same ``Connection`` decoder that reads captures. Its events are what every view, ``--json`` and the verdict read.
- ``client.session`` is the network edge: it moves bytes between the socket and the endpoint (and a copy to
  ``--record``) and keeps the clocks (the closing handshake's timeouts, the wait for the server to close TCP);
  ``client.run`` holds the conversation: each ``--send`` or stdin line (``client.lines``), then a clean close.
- This module is the command: its options, the views ``read`` and ``serve`` use, fed the endpoint's events, and
  the verdict: what the server did, turned into closing lines and the exit status.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

from wsinspect.client.lines import LINE_HELP
from wsinspect.client.target import Target, UsageError, parse_url, tls_context
from wsinspect.commands import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, add_output_options, command_parser, error
from wsinspect.core.checks import Severity
from wsinspect.core.connection import Limits
from wsinspect.core.events import Close, ConnectionClosed, Event, FrameEvent, HandshakeResponse, Message, Violation
from wsinspect.core.handshake import Finding
from wsinspect.outputs import Outputs
from wsinspect.views.describe import size
from wsinspect.views.export import ExportError, save_painted
from wsinspect.views.output import Handout, Output
from wsinspect.views.palette import Piece
from wsinspect.views.safe import hex_preview, visible
from wsinspect.views.summary import Summary

if TYPE_CHECKING:  # the network edge and scapy's writers are imported when used, not when the CLI builds its parsers
    import ssl

    from wsinspect.client.run import Outcome, Plan
    from wsinspect.client.session import EventSink
    from wsinspect.views.packetlist import EventFilter

Line = list[Piece]

EXIT_NO_CONNECTION = 3
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by SIGINT
HARD_QUEUE_FACTOR = 4  # a server that makes us answer but reads nothing is dropped at this many times --max-queue

CONNECT_EXAMPLES = f"""\
examples:
  wsinspect connect ws://127.0.0.1:8765/            type lines to send them as text; Ctrl-D closes cleanly
  wsinspect connect wss://echo.example/ --send hello --send world --wait 2
                                                   send two messages, wait 2 s for answers, close, exit
  wsinspect connect ws://[::1]:8765/chat -H 'Authorization: Bearer T' --origin http://localhost --subprotocol chat
  wsinspect connect wss://localhost:8443/ --cafile ca.pem        trust a test CA (or --insecure: no check)
  wsinspect connect ws://10.0.0.7/ -H 'Host: chat.example'       a virtual host reached by its address
  wsinspect connect ws://127.0.0.1:8765/ --no-compression --detail   every frame as a field tree and hex dump
  wsinspect connect ws://127.0.0.1:8765/ --send hi --json session.jsonl --record session.pcapng
  printf 'hello\\n/ping are you there\\n/fragment 3 in three parts\\n/close 1000 bye\\n' | wsinspect connect URL

lines typed (or piped) while connected:
{LINE_HELP}

exit status:
  0  the conversation ended with a clean closing handshake and the server broke no rule
  1  the server refused the handshake, broke a rule (flagged with its RFC section), or did not close cleanly
  2  a bad argument, filter, header or URL, or a --json/--record/--export file that could not be written
  3  could not connect: name not found, connection refused, TLS or certificate failure, no answer in time
"""

# -- the request's options ------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Header fields the opening handshake itself sets, and the flag (or the URL) that sets each.
# Host is not among them: -H 'Host: name' replaces the URL's authority in the Host field (as curl's -H does), for a
# server behind name-based virtual hosting reached by its address; TLS still checks the URL's host.
_SET_BY_CONNECT = {"upgrade": "wsinspect connect", "connection": "wsinspect connect",
                   "sec-websocket-key": "wsinspect connect (a fresh random key)",
                   "sec-websocket-version": "wsinspect connect (13)", "origin": "--origin",
                   "sec-websocket-protocol": "--subprotocol", "sec-websocket-extensions": "--no-compression"}


def _header_value_problem(value: str) -> str | None:
    if any(char in value for char in "\r\n\0"):
        return "holds CR, LF or NUL (that would start a header line of its own)"
    if not value.isascii() or any(not char.isprintable() and char != "\t" for char in value):
        return "holds characters other than printable ASCII (encode them: percent-encoding or base64)"
    return None


def header_argument(text: str) -> tuple[str, str]:
    """argparse type for ``-H 'Name: value'``."""
    name, colon, value = text.partition(":")
    if not colon or not _TOKEN.match(name):
        raise argparse.ArgumentTypeError(f"'{visible(text)}' is not a header: write it as 'Name: value' (no space "
                                         "before the colon)")
    setter = _SET_BY_CONNECT.get(name.lower())
    if setter is not None:
        raise argparse.ArgumentTypeError(f"{visible(name)} is set by {setter}, not by -H")
    value = value.strip(" \t")
    problem = _header_value_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"the value of {visible(name)} {problem}")
    return name, value


def subprotocol_argument(text: str) -> str:
    if not _TOKEN.match(text):
        raise argparse.ArgumentTypeError(f"'{visible(text)}' is not a subprotocol name: RFC 6455 4.1 (item 10) "
                                         "asks for a token (letters, digits and !#$%&'*+-.^_`|~)")
    return text


def origin_argument(text: str) -> str:
    problem = _header_value_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"the origin {problem}")
    return text


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from wsinspect.commands import arguments

    parser = command_parser(
        commands, "connect", help="connect to a WebSocket server and show every handshake header and frame",
        epilog=CONNECT_EXAMPLES,
        description="A WebSocket client for probing a real server: shows both directions of the opening handshake "
                    "(with the Sec-WebSocket-Accept check), every frame decoded, and every rule the server breaks "
                    "with its RFC section. Lines from stdin are sent as text messages.")
    parser.add_argument("url", nargs="?", metavar="URL", help="ws://host[:port]/path or wss://... (TLS)")
    parser.set_defaults(run=run, connect_parser=parser)
    request = parser.add_argument_group("the opening handshake")
    request.add_argument("-H", "--header", type=header_argument, action="append", default=[], metavar="'NAME: VALUE'",
                         help="an extra request header field (repeatable), e.g. -H 'Cookie: session=1'; "
                              "-H 'Host: NAME' sends NAME as Host instead of the URL's host and port")
    request.add_argument("--origin", type=origin_argument, help="send this Origin header field, as a browser does")
    request.add_argument("--subprotocol", type=subprotocol_argument, action="append", default=[], metavar="NAME",
                         help="offer this subprotocol (repeatable, in order of preference)")
    request.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    tls = parser.add_argument_group("TLS (wss://)")
    tls.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE (PEM) instead of the "
                                                      "system's")
    tls.add_argument("--insecure", action="store_true",
                     help="do not check the server's certificate or name (a test server with a self-signed one)")
    script = parser.add_argument_group("what to send")
    script.add_argument("--send", action="append", metavar="TEXT",
                        help="send TEXT as a text message (repeatable); stdin is not read, and after --wait "
                             "seconds the connection is closed")
    script.add_argument("--wait", type=arguments.seconds_or_off, default=1.0, metavar="SECONDS",
                        help="after the last --send (or the end of stdin), wait this long for answers before "
                             "closing (default: %(default)g)")
    timing = parser.add_argument_group("timeouts and limits")
    timing.add_argument("--open-timeout", type=arguments.seconds, default=10.0, metavar="SECONDS",
                        help="time to connect, finish TLS and get the answer to the opening handshake (default: "
                             "%(default)g)")
    timing.add_argument("--close-timeout", type=arguments.seconds, default=3.0, metavar="SECONDS",
                        help="time for the server's close frame after ours, and then for the server to close TCP "
                             "(RFC 6455 7.1.1), before we close it (default: %(default)g)")
    timing.add_argument("--max-queue", type=arguments.positive_size, default=arguments.size("1M"), metavar="SIZE",
                        help="bytes waiting to be sent before reading stdin pauses (default: 1M); a server that "
                             f"makes us answer (pings) but reads nothing is dropped at {HARD_QUEUE_FACTOR} times it")
    arguments.add_limits(timing, frame_default="64M", message_default="64M")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--detail", action="store_true", help="each frame as a tree of fields and a coloured hex dump")
    view.add_argument("--follow", action="store_true", help="the conversation as a transcript of whole messages")
    view.add_argument("--flow", action="store_true",
                      help="the conversation as a ladder: client and server columns, one arrow per frame")
    view.add_argument("--compact", action="store_true", help="one line for the handshake and one per frame")
    parser.add_argument("--explain", action="store_true",
                        help="annotate each header, frame fact and broken rule once, with its RFC section")
    parser.add_argument("-Y", "--filter", metavar="EXPR",
                        help="show only the events that match a display filter (as in 'wsinspect read'; '-Y help' "
                             "lists the fields); everything is still decoded and checked")
    parser.add_argument("--json", metavar="FILE",
                        help="write every event as JSON lines to FILE (the schema of read --json); '-' writes them "
                             "to stdout instead of the view (then -Y chooses which)")
    parser.add_argument("--record", metavar="FILE",
                        help="write the conversation as a capture (.pcapng or .pcap) that 'wsinspect read' and "
                             "Wireshark decode (a wss:// conversation is recorded decrypted)")
    parser.add_argument("--max-bytes", type=arguments.size, default=256, metavar="SIZE",
                        help="payload bytes shown in a hex dump (default: %(default)s)")
    parser.add_argument("--no-summary", action="store_true", help="leave out the closing summary")
    add_output_options(parser)


# -- the verdict -----------------------------------------------------------------------------------------------------

class Verdict:
    """Reads the events for the exit status and the closing lines: the server's answer, the rules it broke, and
    whether the closing handshake completed."""

    def __init__(self, max_header: int) -> None:
        self.max_header = max_header
        self.response: HandshakeResponse | None = None
        self.broken: list[Violation] = []  # errors in what the server sent
        self.closes: list[Close] = []
        self.ended: ConnectionClosed | None = None
        self.header_too_large = False  # the server's header block went past --max-header: we gave up on it
        self.received = 0  # bytes the server sent, told by the session at the end (not an event)
        self.first_data = b""  # the start of them

    def heard(self, received: int, first_data: bytes) -> None:
        """What the server sent, in bytes: for an answer that is not HTTP, the one thing to show of it."""
        self.received = received
        self.first_data = first_data

    @property
    def answered_in_http(self) -> bool:
        return self.first_data.startswith(b"HTTP/")

    def handle(self, event: Event) -> None:
        kind = type(event)
        if kind is FrameEvent or kind is Message:  # nearly every event, and nothing the verdict reads
            return
        if isinstance(event, HandshakeResponse):
            self.response = event
        elif isinstance(event, Violation) and event.direction == "s2c" and event.severity is Severity.ERROR:
            if event.check.id == "http.header-too-large" and self.response is None:
                self.header_too_large = True  # said on its own in problems(), not as a rule broken while connected
            else:
                self.broken.append(event)
        elif isinstance(event, Close):
            self.closes.append(event)
        elif isinstance(event, ConnectionClosed):
            self.ended = event

    def close(self) -> None:
        """Nothing to flush: ``problems`` is asked for at the end."""

    @property
    def handshake_errors(self) -> list[Finding]:
        if self.response is None:
            return []
        return [finding for finding in self.response.findings if finding.severity is Severity.ERROR]

    def problems(self) -> list[str]:
        """Why the exit status is 1, one line each; none when the conversation was clean."""
        response = self.response
        if response is None:
            if self.header_too_large:
                return [f"the server's answer had more than --max-header bytes of header ({_limit(self.max_header)}):"
                        " we gave up; raise --max-header to see it"]
            if self.received and self.answered_in_http:
                return [f"the server closed the connection in the middle of its answer to the opening handshake "
                        f"({self.received:,} bytes of an HTTP response without the blank line that ends its header)"]
            if self.received:
                return [f"the server answered the opening handshake with {self.received:,} bytes that are not an "
                        "HTTP response"]
            return ["the server closed the connection without answering the opening handshake"]
        found: list[str] = []
        if not response.upgraded:
            status = response.response
            found.append(f"the server refused the WebSocket handshake: {status.status} {visible(status.reason)}")
        elif self.handshake_errors:
            found.append(f"the server's answer to the opening handshake broke {_plural(self.handshake_errors, 'rule')}"
                         " (shown with ✗ above); RFC 6455 4.1: the client fails such a connection")
        if self.broken:
            rules = sorted({f"{violation.check.rfc} ({violation.check.id})" for violation in self.broken})
            found.append(f"the server broke {_plural(rules, 'rule')} while connected: {', '.join(rules)}")
        if response.upgraded and not self.handshake_errors and self.ended is not None and not self.ended.clean:
            from_server = [close for close in self.closes if close.direction == "s2c"]
            if not from_server:
                found.append("the server sent no close frame (RFC 6455 5.5.1: it MUST answer ours; without one the "
                             "close code is 1006, RFC 6455 7.1.5)")
            else:
                found.append("the closing handshake did not complete")
        return found


def _limit(count: int) -> str:
    return f"{count // 1024} KiB" if count >= 1024 and count % 1024 == 0 else size(count)


def _plural(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}" + ("" if len(items) == 1 else "s")


def _refusal_lines(verdict: Verdict) -> list[Line]:
    """What to try, for each error in the server's answer: the fixes ``wsinspect handshake check`` gives."""
    from wsinspect.commands.handshake import FIXES

    lines: list[Line] = []
    response = verdict.response
    if response is not None and not response.upgraded:
        status = response.response.status
        location = response.response.headers.get("Location")
        hint = _STATUS_HINTS.get(status) or _STATUS_HINTS.get(status // 100 * 100)
        if hint:
            lines.append([("muted", "  why: "), ("plain", hint)])
        if location is not None and 300 <= status < 400:
            lines.append([("muted", "  the server points to: "), ("accent", visible(location)),
                          ("muted", " (wsinspect connect does not follow redirects: connect there)")])
    for finding in verdict.handshake_errors:
        for fix in FIXES.get(finding.check.id, [])[:1]:
            lines.append([("muted", f"  fix ({finding.check.rfc}): "), ("plain", fix)])
    return lines


_STATUS_HINTS = {
    400: "400 Bad Request: the server found the request malformed; its body (above) usually names the header",
    401: "401 Unauthorized: the endpoint wants credentials (RFC 6455 4.1: the client might authenticate); send "
         "them with -H 'Authorization: ...' or a cookie",
    403: "403 Forbidden: the server refused this client; many check the Origin (try --origin "
         "http://HOST, the page's origin) or a token",
    404: "404 Not Found: no WebSocket endpoint at this path; check the path part of the URL",
    426: "426 Upgrade Required: the server wants another protocol version (its Sec-WebSocket-Version lists them; "
         "RFC 6455 4.4)",
    300: "a redirect: RFC 6455 4.1 does not require a client to follow it",
    500: "a server error: the endpoint failed while handling the request (its logs say why)",
    200: "a plain HTTP answer: the path is served by something that is not a WebSocket endpoint, or a proxy on the "
         "way dropped the Upgrade and Connection headers (RFC 9110 7.6.1)",
}


# -- the command -----------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from wsinspect.commands.arguments import make_console, make_output

    errors = make_console(args, stderr=True)
    if (args.filter or "").strip() == "help":
        from wsinspect.filters import describe_fields

        sys.stdout.write(describe_fields() + "\n")
        return EXIT_OK
    if args.url is None:
        args.connect_parser.error("the following arguments are required: URL")
    try:
        target, context, shown = _check_arguments(args)
        # Before connecting: a file that cannot be written is a usage error now, not a lost conversation later.
        files = Outputs(json=args.json, record=args.record, command="connect",
                        say=lambda line: _say(errors, line, "bold red"))
    except UsageError as failure:
        return error(args, str(failure))
    if not target.secure and (args.cafile or args.insecure):
        _say(errors, "wsinspect: warning: --cafile and --insecure apply to wss:// only; ignored", "yellow")

    output, handout = make_output(args, make_console(args), live=True)
    to_terminal = args.json != "-"
    view = _view(args, output, shown) if to_terminal else None
    summary = Summary()
    verdict = Verdict(args.max_header)
    sinks: list[EventSink] = [verdict, *([summary, view] if view is not None else [])]
    # --json FILE keeps every event, as a record; --json - takes the view's place, so -Y chooses its lines (as in
    # `read --json -Y`).
    json_shown = shown if not to_terminal else None

    handlers = [sink.handle for sink in sinks]
    record = files.event

    def emit(events: list[Event]) -> None:
        for event in events:
            for handle in handlers:
                handle(event)
            if json_shown is None or json_shown(event):
                record(event)
        output.tick()

    from wsinspect.client.run import Sinks, converse

    if to_terminal:
        output.line([("strong", f"wsinspect connect {visible(target.url)}"),
                     ("muted", f"  (TCP {visible(target.host)} port {target.port}"
                               + (", TLS" if target.secure else "") + ")")])
        output.flush()
    try:
        outcome = converse(target, context, _plan(args, target), Sinks(
            emit=emit, files=files, show=output.line, say=lambda text, style: _say(errors, text, style)))
    finally:
        files.finish(time.time())
        for sink in sinks:
            sink.close()
    if outcome.output_gone:
        raise BrokenPipeError  # the reader of our output went away: cli.main ends quietly, as `read | head` does

    if outcome.failure is not None:
        _say(errors, f"wsinspect: {outcome.failure}", "bold red")
        return EXIT_NO_CONNECTION
    verdict.heard(outcome.received, outcome.first_data)
    if verdict.response is None:
        # The summary counts the bytes of frames; an answer that never became one would otherwise count as 0 B.
        summary.bytes["s2c"] += outcome.received
    if to_terminal:
        _closing_lines(args, target, output, verdict, summary, outcome)
    status = EXIT_INTERRUPTED if outcome.interrupted else EXIT_FINDINGS if verdict.problems() else EXIT_OK
    if handout is not None:
        saved = _save_handout(args, errors, handout, output.palette.theme, target.url)
        status = saved if saved != EXIT_OK else status
    return files.exit_status(status, when_incomplete=EXIT_USAGE)


def _check_arguments(args: argparse.Namespace) -> tuple[Target, ssl.SSLContext | None, EventFilter | None]:
    """What argparse cannot check alone; UsageError says what is wrong."""
    target = parse_url(args.url)
    context = tls_context(cafile=args.cafile, insecure=args.insecure) if target.secure else None
    for text in args.send or ():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes the locale could not decode reach argv as lone surrogates
            raise UsageError(f"--send '{visible(text)}' is not valid UTF-8, so it cannot be a text message (RFC "
                             "6455 5.6); pipe '/binary HEX' lines into stdin to send bytes") from None
    repeated = sorted({name for name in args.subprotocol if args.subprotocol.count(name) > 1})
    if repeated:
        raise UsageError(f"--subprotocol {visible(repeated[0])} is given twice: RFC 6455 4.1 (item 10) asks for "
                         "unique names")
    if sum(name.lower() == "host" for name, _ in args.header) > 1:
        raise UsageError("-H 'Host: ...' is given twice: a server answers a request with two Host header fields "
                         "with 400 (RFC 9112 3.2)")
    shown = None
    if args.filter is not None:
        from wsinspect.filters import FilterError, compile_filter

        try:
            shown = compile_filter(args.filter)
        except FilterError as failure:
            raise UsageError(f"-Y: {visible(str(failure))}") from None
    return target, context, shown


def _plan(args: argparse.Namespace, target: Target) -> Plan:
    from wsinspect.client.run import Plan
    from wsinspect.core.endpoint import ClientOptions

    limits = Limits(max_header_bytes=args.max_header, max_frame=args.max_frame, max_message=args.max_message)
    hosts = [value for name, value in args.header if name.lower() == "host"]
    extra_headers = tuple((name, value) for name, value in args.header if name.lower() != "host")
    options = ClientOptions(host=hosts[0] if hosts else target.authority, path=target.resource, origin=args.origin,
                            subprotocols=tuple(args.subprotocol), compression=not args.no_compression,
                            extra_headers=extra_headers, limits=limits)
    return Plan(options, sends=tuple(args.send) if args.send is not None else None, wait=args.wait,
                open_timeout=args.open_timeout, close_timeout=args.close_timeout, max_queue=args.max_queue,
                drop_at=HARD_QUEUE_FACTOR * args.max_queue, insecure=args.insecure)


def _say(console: Console, text: str, style: str) -> None:
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _view(args: argparse.Namespace, output: Output, shown: EventFilter | None) -> EventSink:
    """The same view classes as ``read`` and ``serve``. The packet list is built as for a capture (not ``live``):
    one connection, times from its start, and the body of a refusal shown, since the server wrote it."""
    if args.flow:
        from wsinspect.views.flow import FlowView

        return FlowView(output, shown=shown)
    if args.follow:
        from wsinspect.views.transcript import Transcript

        return Transcript(output, shown=shown)
    from wsinspect.views.packetlist import PacketList

    return PacketList(output, detail=args.detail, max_bytes=args.max_bytes, shown=shown, compact=args.compact,
                      explain=args.explain)


def _closing_lines(args: argparse.Namespace, target: Target, output: Output, verdict: Verdict, summary: Summary,
                   outcome: Outcome) -> None:
    from wsinspect.client.run import escaped_bytes

    lines: list[Line] = []
    problems = verdict.problems()
    if outcome.interrupted and verdict.response is None:
        problems = ["interrupted (Ctrl-C) before the server answered"]
    for problem in problems:
        lines.append([("error", "✗ "), ("error.text", problem)])
    lines += [[("warning", f"  note: {note}")] for note in outcome.notes]
    unanswered = verdict.response is None and not outcome.interrupted
    if unanswered and verdict.received and not verdict.header_too_large:
        shown = verdict.first_data
        more = f" (of {verdict.received:,})" if verdict.received > len(shown) else ""
        lines.append([("muted", f"  the first {len(shown)} bytes{more}: "), ("plain", hex_preview(shown, len(shown)))])
        lines.append([("muted", "  as text: "), ("plain", escaped_bytes(shown))])
    # A server that closes without a word may be a TLS one; one that sent bytes is TLS only if they are TLS records
    # (the session's note says so then).
    if unanswered and not verdict.received and not target.secure and not outcome.notes:
        lines.append([("muted", "  if the server expects TLS on this port, connect with wss://")])
    lines += _refusal_lines(verdict)
    if not problems and verdict.response is not None:
        lines.append([("ok", "✓ the server followed every rule checked, and the connection closed cleanly")])
    if not args.no_summary:
        lines += summary.lines()
    output.lines(lines)
    output.flush()


def _save_handout(args: argparse.Namespace, errors: Console, handout: Handout, theme: str, url: str) -> int:
    if handout.overflowed:
        _say(errors, f"wsinspect: --export {visible(args.export)}: more than {handout.limit:,} lines is not a "
                     "handout; nothing was saved (try --compact or -Y FILTER)", "bold red")
        return EXIT_USAGE
    try:
        save_painted(handout.lines, args.export, theme=theme, title=f"wsinspect connect {visible(url)}")
    except ExportError as failure:
        _say(errors, f"wsinspect: --export {visible(args.export)}: {visible(str(failure))}", "bold red")
        return EXIT_USAGE
    return EXIT_OK
