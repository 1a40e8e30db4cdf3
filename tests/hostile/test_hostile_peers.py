"""Hostile and careless peers against a real ``wsinspect serve``, one test per row of issue 7's table.

Each test attacks a server of its own on loopback, then checks what the issue asks of every row: the attacker gets
the answer the policy promises (a close code, an HTTP status), a good client is served afterwards, the server's
memory (VmRSS of its process) stayed within a generous bound of its baseline, and other connections lost nothing.
Counts are scaled down from the issue's so the suite stays within its time budget; the shapes are the same, and
``scripts/soak.py --full`` runs the issue's own counts.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable

import pytest
import websocket
from hostile_support import (
    MIB,
    PeakMemory,
    close_code,
    deflate_message,
    frame,
    good_client_is_served,
    raw_client,
    read_frames,
    read_head,
    rss,
    send_all_or_blocked,
    settled_rss,
    unread_by_server,
    upgrade_request,
)
from serve_support import Server, raw_exchange, split_response
from websockets.asyncio.client import connect

# What an attack may add to the server's RSS at its peak, and what may be left once it is over. Without the bounds
# the same attacks grow the server by hundreds of megabytes (issue 7); with them, by a few.
PEAK_GROWTH = 40 * MIB
LEFT_AFTER = 20 * MIB


def report_peak(what: str, peak: int, base: int) -> None:
    """Shown with ``pytest -s``: the figures the README quotes (Limits and guarantees)."""
    print(f"\n{what}: baseline {base / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB (+{(peak - base) / MIB:.1f} MiB)")


def baseline(server: Server) -> int:
    """RSS once the server has served one client (imports and first allocations done)."""
    good_client_is_served(server, "warm-up")
    return rss(server.pid)


def after_attack(server: Server, base: int) -> None:
    good_client_is_served(server)
    left = settled_rss(server.pid, base + LEFT_AFTER)
    assert left <= base + LEFT_AFTER, f"RSS {left / MIB:.1f} MiB after the attack, baseline {base / MIB:.1f} MiB"


# -- chat: a member that never reads -----------------------------------------------------------------------------


def test_chat_member_that_never_reads_is_dropped_and_the_others_lose_nothing(serve: Callable[..., Server]) -> None:
    server = serve("--mode", "chat", "--quiet", "--max-queue", "64k")
    base = baseline(server)
    sleeper_number = 1  # the warm-up client was #0
    sleeper, _ = raw_client(server.port, receive_buffer=4096)  # joins, never reads
    messages, text = 400, "x" * 16 * 1024  # 6.4 MiB broadcast to each member
    received: list[str] = []

    def reader(ws: websocket.WebSocket) -> None:
        while len(received) < messages:
            received.append(ws.recv())

    sender = websocket.create_connection(server.url, timeout=10)
    listener = websocket.create_connection(server.url, timeout=10)
    thread = threading.Thread(target=reader, args=(listener,), daemon=True)
    with PeakMemory(server.pid) as memory:
        thread.start()
        for number in range(messages):
            sender.send(f"{number:06d}{text}")
            assert sender.recv().endswith(f"{number:06d}{text}")  # the sender gets its own broadcast
        thread.join(30)
    assert [m[m.index(": ") + 2 :][:6] for m in received] == [f"{n:06d}" for n in range(messages)]  # lost nothing
    sender.close()
    listener.close()
    # The member that never read was dropped with 1008, and the operator was told, even under --quiet.
    log = server.wait_for(re.compile(rf"#{sleeper_number} dropped: [\d,]+ bytes waiting to be sent to it, over "
                                     r"--max-queue \(65,536\); closing it with 1008"))
    assert len(re.findall(r"dropped:", log)) == 1  # only the member that never read
    report_peak("chat member that never reads", memory.peak, base)
    assert memory.peak - base < PEAK_GROWTH, f"peak {memory.peak / MIB:.1f} MiB, baseline {base / MIB:.1f} MiB"
    sleeper.close()
    after_attack(server, base)


# -- echo: compressed input the server may not compress back, never read ----------------------------------------


def test_echo_client_that_never_reads_is_paced_not_buffered(serve: Callable[..., Server]) -> None:
    """1 MiB messages of zeros deflate to about 1 KiB; the client asked the server not to compress
    (server_max_window_bits=8, which zlib cannot honour), so each echo is a full MiB. Reading stops once the
    client's queue passes --max-queue: what the client sends waits in the kernel, unread by the server, which holds
    at most about one chunk's worth of echoes; another client is served meanwhile."""
    server = serve("--quiet")
    base = baseline(server)
    sock, head = raw_client(server.port, extensions="permessage-deflate; server_max_window_bits=8",
                            receive_buffer=4096)
    assert b"permessage-deflate" in head
    compressor = zlib.compressobj(wbits=-15)
    zeros = bytes(MIB)
    messages = [frame(2, deflate_message(zeros, compressor), rsv1=True) for _ in range(200)]  # 200 MiB of echo
    with PeakMemory(server.pid) as memory:
        sent = sum(1 for message in messages if send_all_or_blocked(sock, message))
        # The server stopped reading: most of what was sent waits unread in its socket's receive queue.
        deadline = time.monotonic() + 5
        while unread_by_server(server.port, sock.getsockname()[1]) < 32 * 1024:  # two chunks: not just in flight
            assert time.monotonic() < deadline, "the server kept reading from a client that never reads"
            time.sleep(0.05)
        good_client_is_served(server, "served while another client is paced")
    assert sent >= 100
    report_peak("echo client that never reads", memory.peak, base)
    assert memory.peak - base < PEAK_GROWTH, f"peak {memory.peak / MIB:.1f} MiB after {sent} messages"
    sock.close()
    after_attack(server, base)


# -- fragmentation storms -------------------------------------------------------------------------------------


def fragment_storm(port: int, count: int, payload: bytes) -> tuple[int | None, int]:
    """One text message in ``count`` continuation frames of ``payload``; (the server's close code, frames sent)."""
    sock, _ = raw_client(port)
    continuation = frame(0, payload, fin=False)
    batch = continuation * 1000
    sent = 0
    ok = send_all_or_blocked(sock, frame(1, payload, fin=False))
    while ok and sent < count:
        ok = send_all_or_blocked(sock, batch, patience=3.0)
        sent += 1000
    code = close_code(read_frames(sock, timeout=10))
    sock.close()
    return code, sent


@pytest.mark.parametrize(("count", "payload"), [(600_000, b""), (100_000, b"x")],
                         ids=["empty-continuations", "one-byte-continuations"])
def test_a_message_in_too_many_frames_is_closed_with_1009(serve: Callable[..., Server], count: int,
                                                          payload: bytes) -> None:
    """The issue's 6,000,000 empty and 1,000,000 one-byte continuation frames, scaled down: the message is failed
    with 1009 once it passes --max-fragments, whatever the frames weigh; meanwhile another client's echoes flow."""
    server = serve("--quiet")
    base = baseline(server)
    other = websocket.create_connection(server.url, timeout=10)
    echoes: list[str] = []
    stop = threading.Event()

    def chatter() -> None:
        number = 0
        while not stop.is_set():
            other.send(f"echo {number}")
            echoes.append(other.recv())
            number += 1

    thread = threading.Thread(target=chatter, daemon=True)
    with PeakMemory(server.pid) as memory:
        thread.start()
        code, _ = fragment_storm(server.port, count, payload)
        stop.set()
        thread.join(10)
    assert code == 1009
    assert echoes and echoes == [f"echo {n}" for n in range(len(echoes))]  # nothing lost, nothing reordered
    other.close()
    report_peak(f"one message in {count:,} frames of {len(payload)} bytes", memory.peak, base)
    assert memory.peak - base < PEAK_GROWTH
    after_attack(server, base)


def test_many_tiny_messages_do_not_starve_other_clients(serve: Callable[..., Server]) -> None:
    """Tiny frames that each are a whole message (so --max-fragments does not apply): the flooder is decoded a
    chunk per turn of the loop, so another client's echo is answered while the flood is still being read."""
    server = serve("--quiet")
    base = baseline(server)
    flooder, _ = raw_client(server.port, receive_buffer=1 << 20)
    flood = frame(1, b"") * 200_000  # 1.2 MB of empty text messages, each echoed
    done = threading.Event()

    def drain() -> None:  # the flooder reads its echoes (it is fast, only numerous)
        flooder.settimeout(0.5)
        while not done.is_set():
            try:
                if not flooder.recv(1 << 20):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with PeakMemory(server.pid) as memory:
        sender = threading.Thread(target=flooder.sendall, args=(flood,), daemon=True)
        sender.start()
        good_client_is_served(server, "answered during the flood")
        sender.join(30)
    done.set()
    reader.join(5)
    flooder.close()
    report_peak("flood of tiny messages", memory.peak, base)
    assert memory.peak - base < PEAK_GROWTH
    after_attack(server, base)


# -- the handshake: malformed extension parameters, a thousand header lines --------------------------------------


@pytest.mark.parametrize("offer", [b"permessage-deflate; client_max_window_bits=" + b"9" * 5000,
                                   b"permessage-deflate; client_max_window_bits=\xb2",
                                   b"permessage-deflate; server_max_window_bits=\xd9\xa1\xd9\xa2"],
                         ids=["5000-digits", "superscript-two", "arabic-indic-digits"])
def test_malformed_extension_parameters_get_an_http_answer(serve: Callable[..., Server], offer: bytes) -> None:
    """RFC 7692 5: an offer with an invalid parameter value is declined; the connection is still upgraded (without
    compression), never reset with a traceback."""
    server = serve("--quiet")
    base = baseline(server)
    request = upgrade_request(extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"permessage-deflate" not in head  # declined
        sock.sendall(frame(1, b"still works"))
        assert read_frames(sock, timeout=5, count=1) == [(1, b"still works")]
    after_attack(server, base)
    assert server.stop() == 0
    assert "Traceback" not in server.stderr and "internal error" not in server.stdout


def test_a_thousand_header_lines_get_431(serve: Callable[..., Server]) -> None:
    server = serve("--quiet")
    base = baseline(server)
    lines = b"".join(b"X-%d: y\r\n" % n for n in range(1000))  # about 10 KB: under --max-header's 32k
    assert len(lines) < 32 * 1024
    status, _, body = split_response(raw_exchange(server.port, upgrade_request(extra=lines), timeout=5))
    assert status == 431
    assert re.search(rb"The request has 10\d\d header lines; this server reads at most 100 \(--max-headers\)",
                     body), body
    after_attack(server, base)


# -- compression: a message that ends in a final DEFLATE block ---------------------------------------------------


def test_a_message_ending_with_bfinal_does_not_break_later_messages(serve: Callable[..., Server]) -> None:
    """RFC 7692 7.2.3.4's own example, byte for byte: "f3 48 cd c9 c9 07 00 00" is "Hello" in one final block and
    the header byte of an empty stored block; and the same without that last byte."""
    server = serve("--quiet")
    sock, head = raw_client(server.port, extensions="permessage-deflate")
    assert b"permessage-deflate" in head
    compressor = zlib.compressobj(wbits=-15)
    sock.sendall(frame(1, bytes.fromhex("f348cdc9c9070000"), rsv1=True))
    sock.sendall(frame(1, bytes.fromhex("f348cdc9c90700"), rsv1=True))
    sock.sendall(frame(1, deflate_message(b"Hello again", compressor), rsv1=True))
    sock.sendall(frame(8, struct.pack("!H", 1000)))
    frames = read_frames(sock, timeout=5)
    sock.close()
    # Each echo is compressed on its own context; decompress them in order with one inflater.
    inflater = zlib.decompressobj(wbits=-15)
    texts = [inflater.decompress(payload + b"\x00\x00\xff\xff") for opcode, payload in frames if opcode == 1]
    assert texts == [b"Hello", b"Hello", b"Hello again"]


# -- idle connections holding every slot ---------------------------------------------------------------------


def test_idle_connections_cannot_hold_every_slot(serve: Callable[..., Server]) -> None:
    """--max-connections 4 taken by upgraded connections that then say nothing (and answer no ping): each is
    closed with 1001 at --idle-timeout and let go, and a good client gets in. A quiet client that answers pings
    (the websockets library does, like every browser) is not dropped."""
    server = serve("--quiet", "--max-connections", "5", "--idle-timeout", "2")

    connected = threading.Event()

    async def quiet_but_alive() -> str:
        async with connect(server.url, proxy=None, ping_interval=None, open_timeout=5) as ws:
            connected.set()
            await asyncio.sleep(5)  # over two idle timeouts; its automatic pongs are its only traffic
            await ws.send("still here")
            return str(await asyncio.wait_for(ws.recv(), 5))

    result: list[str] = []
    alive = threading.Thread(target=lambda: result.append(asyncio.run(quiet_but_alive())), daemon=True)
    alive.start()
    assert connected.wait(10)
    idlers = [raw_client(server.port)[0] for _ in range(4)]  # now every slot is taken
    answer = raw_exchange(server.port, upgrade_request(), timeout=3)
    assert split_response(answer)[0] == 503
    codes = [close_code(read_frames(sock, timeout=10)) for sock in idlers]  # reads the probe ping, then the close
    assert codes == [1001] * 4
    # All four lines: the clients can read their close frames before the log's last line is written.
    log = server.wait_for(re.compile(r"(?:idle for 2 s \(--idle-timeout\): closing it with 1001[\s\S]*?){4}"))
    assert len(re.findall(r"idle for 2 s", log)) == 4  # not the quiet client that answered the ping
    deadline = time.monotonic() + 10  # the server waits CLOSE_TIMEOUT for their close frames, then lets them go
    while True:
        try:
            good_client_is_served(server, timeout=1)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the idle connections still hold the slots"
    for sock in idlers:
        sock.close()
    alive.join(15)
    assert result == ["still here"]


# -- the server's own files ----------------------------------------------------------------------------------


def test_json_to_a_full_disk_is_reported_once_and_serving_goes_on(serve: Callable[..., Server]) -> None:
    server = serve("--json", "/dev/full")
    for number in range(3):
        good_client_is_served(server, f"client {number}")
    assert server.stop() == 1
    failures = [line for line in server.stderr.splitlines() if "writing --json /dev/full failed" in line]
    assert len(failures) == 1, server.stderr
    assert "incomplete" in server.stderr and "Traceback" not in server.stderr


def test_record_to_a_full_disk_is_reported_once_and_serving_goes_on(serve: Callable[..., Server]) -> None:
    server = serve("--record", "/dev/full", "--quiet")
    for number in range(20):  # enough packets to fill the writer's buffer
        good_client_is_served(server, f"client {number} " + "y" * 4000)
    assert server.stop() == 1
    failures = [line for line in server.stderr.splitlines() if "writing --record /dev/full failed" in line]
    assert len(failures) == 1, server.stderr
    assert "the record is incomplete" in server.stderr and "Traceback" not in server.stderr


@pytest.mark.parametrize("option", ["--record", "--json"])
def test_output_in_a_missing_directory_is_refused_before_listening(serve: Callable[..., Server],
                                                                   option: str) -> None:
    with pytest.raises(RuntimeError, match="did not start") as error:
        serve(option, "/no/such/dir/\x1b[2Jx.pcapng", ready_timeout=10)
    message = str(error.value)
    assert f"cannot write {option} /no/such/dir/\\x1b[2Jx.pcapng: No such file or directory" in message
    assert "Traceback" not in message


# -- escapes in a request path -------------------------------------------------------------------------------


def test_escapes_in_a_request_path_are_escaped_everywhere(serve: Callable[..., Server]) -> None:
    server = serve()
    not_found = raw_exchange(server.port, b"GET /\x1b[2J\x1b]0;owned\x07\xe2\x80\xae HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = split_response(not_found)
    assert status == 404
    assert b"\x1b" not in not_found and b"\x07" not in not_found and "\u202e".encode() not in not_found
    assert b"/\\x1b[2J\\x1b]0;owned\\x07" in body
    refused = raw_exchange(server.port, upgrade_request(path="/\x1b[2J").replace(b"Version: 13", b"Version: 7"))
    assert split_response(refused)[0] == 426 and b"\x1b" not in refused
    log = server.wait_for("→ 404")
    assert "\x1b" not in log and "\x07" not in log
    good_client_is_served(server)
