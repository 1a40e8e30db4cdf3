"""``wsinspect serve``: its command line. The server itself (the asyncio transport, the applications and the live
views) is ``wsinspect.server.run``, imported only when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from wsinspect.commands import command_parser
from wsinspect.commands.arguments import (
    add_colour,
    add_limits,
    listen_port,
    ping_interval,
    positive_size,
    seconds,
    seconds_or_off,
    size,
    whole_number,
)

SERVE_EXAMPLES = """\
examples:
  wsinspect serve                                  echo server on 127.0.0.1:8765; open it in a browser
  wsinspect serve --mode chat --detail             broadcast chat, every frame as a field tree + hex dump
  wsinspect serve --mode push --interval 2         the server sends a message every 2 seconds
  wsinspect serve --subprotocol chat.v1 --no-compression --origin http://127.0.0.1:8765
  wsinspect serve --record session.pcapng --json session.jsonl
  wsinspect serve --certfile cert.pem --keyfile key.pem   wss:// and the demo page on https://
  wsinspect serve --host 0.0.0.0 --mode chat       a classroom: prints the addresses students can open

exit status:
  0  stopped with Ctrl-C (or SIGTERM), every --json and --record file complete
  1  could not listen, or a --json/--record write failed while serving (the message says which is incomplete)
  2  a bad argument, or a --json/--record file that cannot be written
"""


def add_parser(commands: Any) -> None:
    from wsinspect.server import options as serve_options
    from wsinspect.server.misbehave import help_text as misbehave_help

    serve = command_parser(
        commands, "serve", help="run a WebSocket server that logs every handshake and frame",
        epilog=f"{SERVE_EXAMPLES}\n{misbehave_help()}",
        description="A WebSocket server on plain sockets that shows every handshake header and every frame in "
                    "both directions as it happens, answers a bad handshake with the right HTTP status and a "
                    "plain-words explanation, and serves a demo page at / for a browser.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s; 0.0.0.0 listens on every interface and "
                            "prints the addresses others can open)")
    serve.add_argument("--port", type=listen_port, default=8765,
                       help="TCP port (default: %(default)s; 0 picks a free one)")
    serve.add_argument("--certfile", metavar="FILE",
                       help="serve wss:// and the demo page over https:// with this certificate chain (PEM)")
    serve.add_argument("--keyfile", metavar="FILE",
                       help="the private key of --certfile (PEM; default: the key is in --certfile)")
    serve.add_argument("--mode", choices=("echo", "chat", "push"), default="echo",
                       help="echo: send every message back; chat: broadcast to every client; push: send a "
                            "message every --interval seconds (default: %(default)s)")
    serve.add_argument("--interval", type=seconds, default=None, metavar="SECONDS",
                       help="push mode only: seconds between messages, more than 0 (default: 1)")
    serve.add_argument("--subprotocol", action="append", default=[], metavar="NAME",
                       help="a subprotocol to accept, in order of preference; repeatable")
    serve.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    serve.add_argument("--origin", action="append", metavar="ORIGIN",
                       help="accept only this Origin (403 otherwise); repeatable")
    serve.add_argument("--fragment", type=size, default=0, metavar="SIZE",
                       help="split what the server sends into frames of at most SIZE bytes (teaching; default: 0, "
                            "not split)")
    serve.add_argument("--ping-interval", type=ping_interval, default=0.0, metavar="SECONDS",
                       help="send a ping every SECONDS, at least 0.1 (default: 0, off)")
    serve.add_argument("--misbehave", action=serve_options.MisbehaveAction, default=None, metavar="KIND",
                       help="break one rule on purpose, for a class to watch clients react (below, or "
                            "'--misbehave help'); default: none")
    limits = serve.add_argument_group(
        "limits", "What one peer can make the server hold or spend (README: Limits and guarantees). Slow\n"
                  "consumers: echo stops reading from a client whose queue is over --max-queue until it drains;\n"
                  "chat and push close a member over it with 1008 and say so in the log.")
    # The frame bound only bounds memory; the message bound is the rule. A compressed 1 MiB message of
    # incompressible bytes is a little over 1 MiB on the wire, so frames get room above the message limit.
    add_limits(limits, frame_default="2M", message_default="1M")
    limits.add_argument("--max-headers", type=whole_number,
                        default=serve_options.DEFAULT_MAX_HEADERS, metavar="N",
                        help="header lines in a request; beyond it: 431 (default: %(default)s)")
    limits.add_argument("--max-fragments", type=whole_number,
                        default=serve_options.DEFAULT_MAX_FRAGMENTS, metavar="N",
                        help="frames in one message; beyond it: 1009 (default: %(default)s)")
    limits.add_argument("--max-queue", type=positive_size, default=size(serve_options.DEFAULT_MAX_QUEUE),
                        metavar="SIZE",
                        help="bytes waiting to be sent to one client (default: "
                             f"{serve_options.DEFAULT_MAX_QUEUE}); over it, echo stops reading from that client "
                             "until a quarter is left, chat and push close it with 1008")
    limits.add_argument("--max-memory", type=positive_size, default=size(serve_options.DEFAULT_MAX_MEMORY),
                        metavar="SIZE",
                        help="what the unfinished frames and messages of all connections may hold together "
                             f"(default: {serve_options.DEFAULT_MAX_MEMORY}); the client whose frame or message "
                             "would go over it is closed with 1013 (try again later) and the log says so")
    limits.add_argument("--read-chunk", type=positive_size, default=size(serve_options.DEFAULT_READ_CHUNK),
                        metavar="SIZE",
                        help="bytes of one connection decoded before the others get a turn (default: "
                             f"{serve_options.DEFAULT_READ_CHUNK}; 1/16 of it on a compressed connection; a tail "
                             "under 256 bytes goes with its chunk, and bytes that only add to an unfinished frame are "
                             "not counted)")
    limits.add_argument("--turn-frames", type=whole_number,
                        default=serve_options.DEFAULT_TURN_FRAMES, metavar="N",
                        help="about how many frames of one connection are decoded per turn: its chunks shrink "
                             "when they hold more (default: %(default)s)")
    limits.add_argument("--handshake-timeout", type=seconds, default=10.0, metavar="SECONDS",
                        help="drop a client that has not finished its handshake after SECONDS "
                             "(default: %(default)g)")
    limits.add_argument("--idle-timeout", type=seconds_or_off,
                        default=serve_options.DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                        help="close a connection the client sent nothing on for SECONDS with 1001; halfway, "
                             "without --ping-interval, it is pinged once, and an answer counts (default: "
                             "%(default)g; 0: never)")
    limits.add_argument("--close-timeout", type=seconds, default=3.0, metavar="SECONDS",
                        help="after the server's close frame, how long it waits for the client's before it drops "
                             "the connection (default: %(default)g)")
    limits.add_argument("--shutdown-grace", type=seconds, default=2.0, metavar="SECONDS",
                        help="at Ctrl-C, how long connections get to finish their closing handshake (default: "
                             "%(default)g)")
    limits.add_argument("--max-connections", type=whole_number, default=1024, metavar="N",
                        help="refuse connections beyond N at once with 503 (default: %(default)s)")
    serve_view = serve.add_mutually_exclusive_group()
    serve_view.add_argument("--detail", action="store_true", help="log each frame as a field tree and hex dump")
    serve_view.add_argument("--compact", action="store_true",
                            help="one line per handshake and per frame (a room of 30 browsers)")
    serve_view.add_argument("--flow", action="store_true",
                            help="each connection as a ladder: client and server columns, one arrow per frame")
    serve.add_argument("--explain", action="store_true",
                       help="annotate each header, frame fact and broken rule once, where it first appears, with "
                            "its RFC section (for a class)")
    serve.add_argument("--json", metavar="FILE", help="also write every event as JSON lines to FILE")
    serve.add_argument("--record", metavar="FILE", help="write the session to FILE (.pcapng or .pcap)")
    serve.add_argument("--quiet", action="store_true", help="log nothing per frame (for benchmarks)")
    serve.add_argument("--max-bytes", type=size, default=256, metavar="SIZE",
                       help="payload bytes shown in a hex dump (default: %(default)s)")
    add_colour(serve)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from wsinspect.server.run import run_serve

    return run_serve(args)
