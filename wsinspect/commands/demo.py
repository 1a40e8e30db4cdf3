"""``wsinspect demo``: the WebSocket protocol played out step by step, for a class.

A client and a server endpoint talk inside this process, over two connections (the second one agrees to
permessage-deflate): what one endpoint sends is handed to the other, no socket. The
bytes that cross between them are what a capture of the conversation would hold, so they are shown as ``wsinspect
read`` shows a capture: they go into one passive ``Connection`` (the decoder ``read`` uses), whose events go to the
view ``read`` would use. The endpoints decode their own traffic too, but only to do their duties; the demo shows
the wire's view, the one a student would get from Wireshark. The same bytes go to ``--record`` (``wsinspect.outputs``,
as for ``serve``), and to a recorder that writes them to the null device, packet by packet: its packet count numbers
the rows, so the No. column is the frame number Wireshark shows for the recording, and the rows are numbered
alike without one (or after a write to it failed).

Every step announces itself (a title and two lines on what to look at, each with its RFC section) before its
frames. The clock is made up: step N starts N - 1 seconds after the first and each packet takes a millisecond, so
the packet list's Time column says which step a frame belongs to. ``--seed`` makes the Sec-WebSocket-Key and every
masking key come from a seeded generator, and fixes the start time, so two runs give the same handout and the same
capture.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsinspect.commands import EXIT_OK, EXIT_USAGE, Line, add_output_options, command_parser, error
from wsinspect.core.connection import Connection
from wsinspect.core.events import DIRECTIONS, ConnectionOpened, Direction, Event
from wsinspect.views.export import ExportError, save_painted
from wsinspect.views.safe import visible

if TYPE_CHECKING:
    # The command line builds every command's parser at each start: what only running the demo needs (scapy's
    # writer above all, the endpoints, the views) is imported when it runs, so no other command pays for it.
    from wsinspect.capture.writer import SessionRecorder
    from wsinspect.commands.read import View
    from wsinspect.outputs import Recording

DEMO_EXAMPLES = """\
examples:
  wsinspect demo                         every step at once: handshake, messages, ping, close, compression
  wsinspect demo --step --theme light    Enter between steps, colours for a projector
  wsinspect demo --explain               each header and frame fact explained once, with its RFC section
  wsinspect demo --flow                  the conversation as a ladder
  wsinspect demo --detail --step         each frame as a field tree and a hex dump
  wsinspect demo --seed 7 --record demo.pcapng --export demo.html
                                         the same keys every run; a capture for Wireshark and a handout
  wsinspect read demo.pcapng             the recording, read back

exit status:
  0  the demo ran to its end (and --record and --export were written)
  2  a bad argument, or a --record or --export file that cannot be written
"""

CLIENT_HOST = "127.0.0.1"
FIRST_CLIENT_PORT = 50000  # connection N comes from port 50000 + N
# Port 80 is ws://'s default (RFC 6455 3); it also makes Wireshark and tshark dissect the recording as HTTP and
# WebSocket without being told which port to decode. Nothing listens on it: the demo uses no socket.
SERVER_ADDRESS = ("127.0.0.1", 80)
ORIGIN = "http://127.0.0.1"  # as a browser sends it for a page from the same host (RFC 6455 4.1, 10.2)
SEEDED_START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: a seeded run's recording has the same timestamps too
PACKET_SECONDS = 0.001  # the made-up clock's step per packet; each step starts a whole second later

TEXT = "Hello, class!"
BINARY = bytes(range(130))  # over 125 bytes: the 7-bit length field says 126 and a 16-bit length follows
FRAGMENTED = "1st frame 2nd frame 3rd frame"  # cut into thirds, each frame shows its own words
FRAGMENTS = 3
PING = b"are you there?"
COMPRESSIBLE = "WebSocket " * 12  # repeats, so permessage-deflate makes it much smaller on the wire
CLIENT_CLOSE = (1000, "class dismissed")  # normal closure (RFC 6455 7.4.1)
SERVER_CLOSE = (1001, "server shutting down")  # 1001 is "going away", such as a server going down (RFC 6455 7.4.1)


# -- the wire between the two ------------------------------------------------------------------------------


class Conversation:
    """One connection: a client endpoint, a server endpoint, and a passive decoder of the bytes between them."""

    def __init__(self, stream: int, *, compression: bool, time: float, random_bytes: Callable[[int], bytes]) -> None:
        from wsinspect.core.endpoint import ClientEndpoint, ClientOptions
        from wsinspect.server.endpoint import ServerConfig, ServerEndpoint

        self.stream = stream
        self.client_address = (CLIENT_HOST, FIRST_CLIENT_PORT + stream)
        self.decoder = Connection(stream)
        self.server = ServerEndpoint(ServerConfig(decode_outgoing=False), client=self.client_address,
                                     server=SERVER_ADDRESS, time=time, numbering=lambda websocket: stream)
        self.client = ClientEndpoint(ClientOptions(host=SERVER_ADDRESS[0], origin=ORIGIN, compression=compression),
                                     client=self.client_address, server=SERVER_ADDRESS, time=time, stream=stream,
                                     random_bytes=random_bytes)


class Wire:
    """Where the endpoints' bytes go: each chunk one endpoint sends is one packet of the recording, is decoded by
    its conversation's passive ``Connection`` (whose events go to ``sinks``), and is handed to the other endpoint;
    until neither has more to say. Then, if the server's endpoint wants it, the server closes TCP."""

    def __init__(self, *, random_bytes: Callable[[int], bytes], start: float, numbering: SessionRecorder,
                 recording: Recording, sinks: list[View]) -> None:
        self.random_bytes = random_bytes
        self.start = start
        self.clock = start
        self.numbering = numbering  # writes to the null device; its packet count is the recording's
        self.recording = recording
        self.sinks = sinks
        self._conversation: Conversation | None = None

    @property
    def conversation(self) -> Conversation:
        assert self._conversation is not None, "a step that talks comes after one that connects"
        return self._conversation

    def begin_step(self, index: int) -> None:
        """Step ``index`` (from 0) starts ``index`` seconds after the first: the Time column says which step."""
        self.clock = self.start + index

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            for sink in self.sinks:
                sink.handle(event)

    def connect(self, *, compression: bool) -> None:
        """A new connection: TCP's three packets in the recording, then the opening handshake."""
        stream = self._conversation.stream + 1 if self._conversation is not None else 0
        talk = self._conversation = Conversation(stream, compression=compression, time=self.clock,
                                                 random_bytes=self.random_bytes)
        self.numbering.open(stream, talk.client_address, SERVER_ADDRESS, self.clock)
        self.recording.open(stream, talk.client_address, SERVER_ADDRESS, self.clock)
        self._emit([ConnectionOpened(stream=stream, direction="c2s", time=self.clock, packet=self.numbering.packets,
                                     client=talk.client_address, server=SERVER_ADDRESS, how="SYN")])
        self.exchange()

    def exchange(self) -> None:
        """Move the current conversation's bytes both ways until it is quiet (see the class docstring)."""
        talk = self.conversation
        moved = True
        while moved:
            moved = False
            for direction in DIRECTIONS:
                sender, receiver = (talk.client, talk.server) if direction == "c2s" else (talk.server, talk.client)
                data = sender.data_to_send()
                if data:
                    moved = True
                    self._cross(talk, direction, data)
                    receiver.receive(data, time=self.clock)
        if talk.server.wants_transport_closed:
            # The server closes the TCP connection first (RFC 6455 7.1.1).
            self.clock += PACKET_SECONDS
            server_fin = self.numbering.packets + 1  # the first of the packets that close the recording's TCP
            self.numbering.close(talk.stream, self.clock)
            self.recording.close(talk.stream, self.clock)
            self._emit(talk.decoder.end(time=self.clock, packet=server_fin,
                                        reason="the server closed the TCP connection"))

    def _cross(self, talk: Conversation, direction: Direction, data: bytes) -> None:
        self.clock += PACKET_SECONDS
        self.numbering.data(talk.stream, direction, data, self.clock)
        self.recording.data(talk.stream, direction, data, self.clock)
        # The count is the number of the packet that completed these bytes, as read numbers events.
        self._emit(talk.decoder.receive(direction, data, time=self.clock, packet=self.numbering.packets))


# -- the script ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Look:
    """One thing to look at in a step, and the RFC section that says it."""

    text: str
    rfc: str


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    look: tuple[Look, Look]
    play: Callable[[Wire], None]


def _connect(wire: Wire) -> None:
    wire.connect(compression=False)


def _text(wire: Wire) -> None:
    wire.conversation.client.send_message(TEXT, time=wire.clock)
    wire.exchange()


def _binary(wire: Wire) -> None:
    wire.conversation.client.send_message(BINARY, time=wire.clock)
    wire.exchange()


def _fragmented(wire: Wire) -> None:
    wire.conversation.client.send_fragmented(FRAGMENTED, FRAGMENTS, time=wire.clock)
    wire.exchange()


def _ping(wire: Wire) -> None:
    wire.conversation.client.send_ping(PING, time=wire.clock)
    wire.exchange()


def _client_closes(wire: Wire) -> None:
    wire.conversation.client.close(*CLIENT_CLOSE, time=wire.clock)
    wire.exchange()


def _compressed(wire: Wire) -> None:
    # Once permessage-deflate is agreed, an endpoint compresses every message, so compression gets a connection of
    # its own and the earlier steps show messages as they are.
    wire.connect(compression=True)
    wire.conversation.client.send_message(COMPRESSIBLE, time=wire.clock)
    wire.exchange()


def _server_closes(wire: Wire) -> None:
    wire.conversation.server.close(*SERVER_CLOSE, time=wire.clock)
    wire.exchange()


STEPS: tuple[Step, ...] = (
    Step("the opening handshake",
         (Look("GET with Upgrade: websocket and a random Sec-WebSocket-Key", "RFC 6455 4.1"),
          Look("101: Sec-WebSocket-Accept is SHA-1 of the key and a GUID", "RFC 6455 4.2.2")),
         _connect),
    Step("a text message",
         (Look("opcode 1: text, UTF-8; FIN 1: the whole message, one frame", "RFC 6455 5.6"),
          Look("MASK 1 and a 4-byte masking key: clients mask every frame", "RFC 6455 5.3")),
         _text),
    Step("a binary message",
         (Look("opcode 2: binary, bytes for the application, no UTF-8 rule", "RFC 6455 5.6"),
          Look(f"{len(BINARY)} bytes: the length field says 126, the next 2 bytes {len(BINARY)}", "RFC 6455 5.2")),
         _binary),
    Step("a fragmented message",
         (Look(f"{FRAGMENTS} frames, one message: FIN 0, then opcode 0 (continuation)", "RFC 6455 5.4"),
          Look("the last frame has FIN 1; the receiver joins the payloads", "RFC 6455 5.4")),
         _fragmented),
    Step("ping and pong",
         (Look("the client pings; control frames hold at most 125 bytes", "RFC 6455 5.5"),
          Look("the server answers with a pong carrying the same bytes", "RFC 6455 5.5.3")),
         _ping),
    Step("the closing handshake",
         (Look(f"the client sends close {CLIENT_CLOSE[0]}; the server echoes the code", "RFC 6455 5.5.1"),
          Look("then the server closes the TCP connection first", "RFC 6455 7.1.1")),
         _client_closes),
    Step("a compressed message",
         (Look("a new connection offers permessage-deflate; the 101 agrees", "RFC 7692 5"),
          Look("RSV1 1: compressed, fewer bytes on the wire than inflated", "RFC 7692 6")),
         _compressed),
    Step("the server closes",
         (Look(f"this time the server starts: close {SERVER_CLOSE[0]}, going away", "RFC 6455 7.4.1"),
          Look("the client echoes the code; the server closes TCP", "RFC 6455 5.5.1")),
         _server_closes),
)


def step_lines(number: int, step: Step) -> list[Line]:
    """A step's announcement: its title, then what to look at (the words, then the RFC section)."""
    lines: list[Line] = [[], [("heading", f"Step {number} of {len(STEPS)}: {step.title}")]]
    for look in step.look:
        lines.append([("muted", "  ▸ "), ("plain", look.text), ("muted", "  "), ("accent", look.rfc)])
    lines.append([])
    return lines


# -- the command ---------------------------------------------------------------------------------------------


def add_parser(commands: object) -> None:
    demo = command_parser(commands, "demo", help="a WebSocket conversation step by step, for a class",
                          epilog=DEMO_EXAMPLES,
                          description="Play a WebSocket conversation between a client and a server in this process\n"
                                      "(no network): the opening handshake, a text message, a binary message, a\n"
                                      "fragmented message, ping and pong and the closing handshake; then, on a\n"
                                      "second connection that agrees to permessage-deflate, a compressed message\n"
                                      "and a close the server starts. Each step says what to look at, with its RFC\n"
                                      "section, then shows its frames as 'wsinspect read' shows a capture.")
    view = demo.add_mutually_exclusive_group()
    view.add_argument("--detail", action="store_true", help="each frame as a tree of fields and a coloured hex dump")
    view.add_argument("--flow", action="store_true",
                      help="the conversation as a ladder: client and server columns, one arrow per frame")
    view.add_argument("--compact", action="store_true", help="one line per handshake and per frame")
    demo.add_argument("--explain", action="store_true",
                      help="annotate each header and frame fact once, where it first appears, with its RFC section")
    demo.add_argument("--step", action="store_true",
                      help="wait for Enter before each step after the first (the prompt goes to stderr); when "
                           "stdin ends, the remaining steps follow without waiting")
    demo.add_argument("--seed", type=int, metavar="N",
                      help="take the Sec-WebSocket-Key and the masking keys from a generator seeded with N, so "
                           "every run gives the same bytes (a reproducible handout; never do this outside a "
                           "demo: RFC 6455 10.3 wants masks nobody can predict)")
    demo.add_argument("--record", metavar="FILE",
                      help="also write the conversation as a capture, FILE.pcapng or FILE.pcap, for wsinspect read "
                           "and Wireshark")
    add_output_options(demo)
    demo.set_defaults(run=run_demo)


class _Pacer:
    """``--step``: waits for a line on stdin before each step after the first; at the end of stdin, stops
    waiting for good (saying so), so a demo piped from a file or run without a terminal still finishes."""

    def __init__(self, waiting: bool) -> None:
        self.waiting = waiting

    def wait(self, number: int, step: Step) -> None:
        if not self.waiting:
            return
        sys.stderr.write(f"  ⏎ Enter: step {number} of {len(STEPS)}, {step.title} (Ctrl-C stops) ")
        sys.stderr.flush()
        if not sys.stdin.readline():
            self.waiting = False
            sys.stderr.write("\n  (end of input: the remaining steps follow without waiting)\n")
            sys.stderr.flush()


def run_demo(args: argparse.Namespace) -> int:
    from wsinspect.capture.writer import SessionRecorder
    from wsinspect.client.target import UsageError
    from wsinspect.commands.arguments import make_console, make_output
    from wsinspect.outputs import Outputs
    from wsinspect.views.flow import FlowView
    from wsinspect.views.packetlist import PacketList
    from wsinspect.views.summary import Summary

    console = make_console(args)
    if args.seed is not None:
        generator = random.Random(args.seed)
        random_bytes: Callable[[int], bytes] = generator.randbytes
        start = SEEDED_START
    else:
        random_bytes, start = os.urandom, time.time()
    errors = make_console(args, stderr=True)
    try:
        outputs = Outputs(json=None, record=args.record, command="demo",
                          say=lambda line: errors.print(line, style="bold red", markup=False, highlight=False,
                                                        soft_wrap=True))
    except UsageError as failure:
        return error(args, str(failure))

    output, handout = make_output(args, console)
    view: View = FlowView(output) if args.flow else PacketList(
        output, detail=args.detail, compact=args.compact, explain=args.explain)
    summary = Summary()
    wire = Wire(random_bytes=random_bytes, start=start, numbering=SessionRecorder(os.devnull),
                recording=outputs.recording, sinks=[summary, view])
    pacer = _Pacer(args.step)
    try:
        for index, step in enumerate(STEPS):
            if index:
                output.flush()
                pacer.wait(index + 1, step)
            wire.begin_step(index)
            output.lines(step_lines(index + 1, step))
            step.play(wire)
    finally:
        # Also after Ctrl-C: the recording then holds the steps shown so far.
        wire.numbering.finish(wire.clock)
        outputs.finish(wire.clock)
    view.close()
    output.line([])
    output.lines(summary.lines())
    if args.record:
        output.line([("muted", "recorded; read it again with: "),
                     ("plain", f"wsinspect read {shlex.quote(visible(args.record))}")])
    output.flush()
    if handout is not None:
        try:
            save_painted(handout.lines, args.export, theme=output.palette.theme, title="wsinspect demo")
        except ExportError as failure:
            return error(args, f"--export {visible(args.export)}: {visible(str(failure))}")
    return outputs.exit_status(EXIT_OK, when_incomplete=EXIT_USAGE)
