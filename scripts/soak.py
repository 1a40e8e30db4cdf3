"""Soak ``wsinspect serve`` for a few bounded minutes with a mixed, partly hostile load, and report what it did.

Not a test: it prints figures and exits 1 if a message was lost or the servers' memory did not stay flat.
Run from the repository root:

    python scripts/soak.py                  # 120 s
    python scripts/soak.py --seconds 60     # the figures in the README (Limits and guarantees)
    python scripts/soak.py --full           # the hostile peers at the issue's own counts (6,000,000 empty and
                                            # 1,000,000 one-byte continuation frames); takes longer

Three ``wsinspect serve --quiet`` children on loopback (echo, chat, push --interval 0.1), stopped by PID with SIGINT.
Against them, in this process (asyncio, the ``websockets`` client library):

- echo: --echo-clients clients, each sending a message (random size 1 B-16 KiB, text or binary, half of the clients
  with permessage-deflate) and waiting for its echo, checked byte for byte;
- chat: --chat-members members, each sending a numbered message every 200 ms; every member must receive every
  member's every message, in order;
- push: --push-clients clients counting the server's numbered messages (they must only increase);
- slow consumers: every 10 s a chat member that never reads joins (the policy drops it with 1008), and an echo
  client that sends 1 MiB messages of zeros (1 KiB compressed) and never reads (the policy stops reading from it);
- hostile peers, one after another: a message in empty continuation frames and one in one-byte continuation
  frames (past --max-fragments: 1009), floods of tiny messages, 1,000 header lines (431), malformed
  permessage-deflate parameters, a request path full of escape sequences (404), and idle connections.

Every 5 s it samples each server's RSS (VmRSS) and open file descriptors (/proc/PID/fd). At the end: messages/s,
p50/p99 latency (echo round trip; chat from send to the last member's receipt), memory over time, descriptors,
and messages lost. Memory is "flat" when the last sample is within 25 % (and 30 MiB) of the first one taken after
the warm-up (the first 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
SAMPLE_EVERY = 5.0
WARM_UP = 10.0
MASK = b"\x11\x22\x33\x44"
CHAT_EVERY = 0.2  # seconds between one chat member's messages
LATE = 30.0  # seconds after the load a message may still arrive before it counts as lost


# -- servers ---------------------------------------------------------------------------------------------------


@dataclass
class Child:
    mode: str
    proc: subprocess.Popen[bytes]
    port: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, RSS bytes, open fds)

    def sample(self, at: float) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
                rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except (OSError, StopIteration):
            return
        self.samples.append((at, rss, fds))


def start_server(mode: str, *extra: str) -> Child:
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); from wsinspect.cli import main; "
               "sys.exit(main())", "serve", "--quiet", "--port", "0", "--color", "never", "--mode", mode, *extra]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    port = None
    while port is None and time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        if "mode on ws://" in line:
            port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    if port is None:
        proc.kill()
        raise SystemExit(f"wsinspect serve --mode {mode} did not start")
    # Keep reading its stdout (warnings such as "dropped") so a full pipe never blocks it.
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return Child(mode, proc, port)


def _drain(pipe: IO[bytes]) -> None:
    while pipe.read(65536):
        pass


def stop_server(child: Child) -> int | None:
    if child.proc.poll() is None:
        os.kill(child.proc.pid, signal.SIGINT)
        try:
            child.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(child.proc.pid, signal.SIGKILL)
            child.proc.wait(5)
    return child.proc.returncode


# -- raw peers -------------------------------------------------------------------------------------------------


def masked(payload: bytes) -> bytes:
    if not payload:
        return b""
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0xFE, size)
    else:
        header = struct.pack("!BBQ", first, 0xFF, size)
    return header + MASK + masked(payload)


def upgrade(path: str = "/", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode("latin-1")


async def raw_peer(port: int, request: bytes, *, receive_buffer: int | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    import socket

    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


async def close_code(reader: asyncio.StreamReader, timeout: float) -> int | None:
    """Read server frames until a close frame; its code."""
    async def first_close() -> int | None:
        while True:
            first, second = await reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(size)
            if first & 0x0F == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    with contextlib.suppress(asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return await asyncio.wait_for(first_close(), timeout)
    return None


# -- the load --------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    echo_latency: list[float] = field(default_factory=list)
    chat_latency: list[float] = field(default_factory=list)
    echoed: int = 0
    chat_sent: int = 0
    chat_delivered: int = 0
    pushed: int = 0
    lost: int = 0
    wrong: int = 0
    hostile: dict[str, int] = field(default_factory=dict)  # what each hostile peer got (close code / status)
    notes: list[str] = field(default_factory=list)

    def saw(self, what: str) -> None:
        self.hostile[what] = self.hostile.get(what, 0) + 1


async def echo_client(port: int, stop: float, tally: Tally, compressed: bool) -> None:
    rng = random.Random()
    async with connect(f"ws://127.0.0.1:{port}/", proxy=None, max_size=None, ping_interval=None,
                       compression="deflate" if compressed else None) as ws:
        while time.monotonic() < stop:
            size = rng.choice((1, 64, 1024, 16 * 1024))
            message: str | bytes = rng.randbytes(size) if rng.random() < 0.5 else "é" * (size // 2) + "x"
            started = time.perf_counter()
            await ws.send(message)
            try:
                echo = await asyncio.wait_for(ws.recv(), 30)
            except (asyncio.TimeoutError, ConnectionClosed):
                tally.lost += 1
                return
            tally.echo_latency.append(time.perf_counter() - started)
            if echo == message:
                tally.echoed += 1
            else:
                tally.wrong += 1


async def chat_room(port: int, members: int, stop: float, tally: Tally) -> None:
    """Every member sends "member seq sent_at" every 50 ms; each member checks it gets every line, in order."""
    sockets = [await connect(f"ws://127.0.0.1:{port}/", proxy=None, ping_interval=None, max_queue=None)
               for _ in range(members)]
    sent = [0] * members
    done_sending = asyncio.Event()
    names: dict[int, int] = {}  # the server's number for each member, learnt from its first own broadcast

    async def speak(index: int) -> None:
        while time.monotonic() < stop:
            await sockets[index].send(f"{index} {sent[index]} {time.perf_counter()}")
            sent[index] += 1
            tally.chat_sent += 1
            await asyncio.sleep(CHAT_EVERY)

    async def listen(index: int) -> None:
        expected = [0] * members
        while True:
            try:
                line = await asyncio.wait_for(sockets[index].recv(), 1)
            except asyncio.TimeoutError:
                if done_sending.is_set() and (expected == sent or time.monotonic() > stop + LATE):
                    break
                continue
            except ConnectionClosed:
                break
            assert isinstance(line, str)
            number, _, text = line.partition(": ")
            member, seq, sent_at = text.split()
            names.setdefault(int(member), int(number[1:]))
            sender, sequence = int(member), int(seq)
            if sequence != expected[sender]:
                tally.lost += sequence - expected[sender]
            expected[sender] = sequence + 1
            tally.chat_delivered += 1
            tally.chat_latency.append(time.perf_counter() - float(sent_at))  # includes this process's own queueing
            if done_sending.is_set() and expected == sent:
                break
        tally.lost += sum(max(total - got, 0) for total, got in zip(sent, expected, strict=True))

    listeners = [asyncio.create_task(listen(i)) for i in range(members)]
    await asyncio.gather(*(speak(i) for i in range(members)))
    done_sending.set()
    await asyncio.gather(*listeners)
    for ws in sockets:
        await ws.close()


async def push_client(port: int, stop: float, tally: Tally) -> None:
    async with connect(f"ws://127.0.0.1:{port}/", proxy=None, ping_interval=None) as ws:
        last = 0
        while time.monotonic() < stop:
            try:
                text = await asyncio.wait_for(ws.recv(), 5)
            except asyncio.TimeoutError:
                tally.notes.append("a push client waited 5 s for a push")
                continue
            number = int(str(text).split()[1])
            if number <= last:
                tally.wrong += 1
            last = number
            tally.pushed += 1


async def slow_consumers(echo_port: int, chat_port: int, stop: float, tally: Tally) -> None:
    compressor = zlib.compressobj(wbits=-15)
    while time.monotonic() < stop - 5:
        # A chat member that never reads: dropped with 1008 once its queue passes --max-queue.
        _, chat_writer, _ = await raw_peer(chat_port, upgrade(), receive_buffer=4096)
        # An echo client that never reads its 1 MiB echoes: the server stops reading from it.
        _, echo_writer, head = await raw_peer(echo_port, upgrade(extra="Sec-WebSocket-Extensions: "
                                                                       "permessage-deflate; server_max_window_bits=8"
                                                                       "\r\n"), receive_buffer=4096)
        if b"permessage-deflate" in head:
            payload = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
            for _ in range(50):
                echo_writer.write(frame(2, payload[:-4], rsv1=True))
                with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                    await asyncio.wait_for(echo_writer.drain(), 0.2)
        await asyncio.sleep(10)
        for writer in (chat_writer, echo_writer):
            writer.transport.abort()
        tally.saw("slow consumers (a chat member and an echo client that never read)")


async def hostile_peers(echo_port: int, stop: float, tally: Tally, full: bool) -> None:
    empty_total, one_byte_total = (6_000_000, 1_000_000) if full else (200_000, 100_000)
    rounds = 0
    while time.monotonic() < stop - 5:
        rounds += 1
        # One message in too many frames: empty, then one-byte continuations (failed at --max-fragments, 1009).
        for payload, total in ((b"", empty_total), (b"x", one_byte_total)):
            reader, writer, _ = await raw_peer(echo_port, upgrade())
            # Read the server's answer while sending: once the server closes, more writes get a reset, and a reset
            # throws away the close frame still waiting in this side's receive buffer.
            answer = asyncio.create_task(close_code(reader, 120))
            writer.write(frame(1, payload, fin=False))
            batch = frame(0, payload, fin=False) * 1000
            with contextlib.suppress(ConnectionError):
                for _ in range(total // 1000):
                    if answer.done():
                        break
                    writer.write(batch)
                    await writer.drain()
            tally.saw(f"message in {total:,} {'empty' if not payload else 'one-byte'} frames: close "
                      f"{await answer}")
            writer.transport.abort()
        # A flood of tiny whole messages (each is echoed): decoded a chunk per turn of the loop.
        reader, writer, _ = await raw_peer(echo_port, upgrade())
        writer.write(frame(1, b"") * 100_000)
        drain = asyncio.create_task(reader.read(1 << 30))
        await asyncio.sleep(1)
        drain.cancel()
        writer.transport.abort()
        tally.saw("flood of 100,000 empty messages")
        # Handshakes: 1,000 header lines; malformed deflate parameters; escapes in the path.
        for name, request in (("1,000 header lines", upgrade(extra="".join(f"X-{n}: y\r\n" for n in range(1000)))),
                              ("client_max_window_bits=<5,000 digits>", upgrade(
                                  extra=f"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits="
                                        f"{'9' * 5000}\r\n")),
                              ("escapes in the path", b"GET /\x1b[2J\x1b]0;x\x07 HTTP/1.1\r\nHost: x\r\n\r\n")):
            reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
            writer.write(request)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
                tally.saw(f"{name}: {head.decode('latin-1').split()[1]}")
            writer.transport.abort()
        # Idle connections: upgraded, then silent (closed at --idle-timeout; here they go before it).
        idle = [await raw_peer(echo_port, upgrade()) for _ in range(20)]
        await asyncio.sleep(2)
        for _, writer, _ in idle:
            writer.transport.abort()
        tally.saw("20 idle connections")
        if full and rounds >= 1:
            break
        await asyncio.sleep(3)


async def sampler(children: list[Child], started: float, stop: float) -> None:
    while time.monotonic() < stop + 2:
        for child in children:
            child.sample(time.monotonic() - started)
        await asyncio.sleep(SAMPLE_EVERY)


async def soak(args: argparse.Namespace) -> tuple[Tally, list[Child], float]:
    children = [start_server("echo", "--idle-timeout", "30"), start_server("chat"),
                start_server("push", "--interval", "0.1")]
    echo, chat, push = children
    tally = Tally()
    started = time.monotonic()
    stop = started + args.seconds
    try:
        await asyncio.gather(
            sampler(children, started, stop),
            *(echo_client(echo.port, stop, tally, compressed=i % 2 == 0) for i in range(args.echo_clients)),
            chat_room(chat.port, args.chat_members, stop, tally),
            *(push_client(push.port, stop, tally) for _ in range(args.push_clients)),
            slow_consumers(echo.port, chat.port, stop, tally),
            hostile_peers(echo.port, stop, tally, args.full),
        )
    finally:
        elapsed = time.monotonic() - started
        for child in children:
            child.sample(elapsed)
            code = stop_server(child)
            if code != 0:
                tally.notes.append(f"wsinspect serve --mode {child.mode} exited with {code}")
    return tally, children, elapsed


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the load runs (default: 120)")
    parser.add_argument("--echo-clients", type=int, default=20)
    parser.add_argument("--chat-members", type=int, default=10)
    parser.add_argument("--push-clients", type=int, default=5)
    parser.add_argument("--full", action="store_true",
                        help="hostile peers at the issue's counts (6,000,000 and 1,000,000 continuation frames)")
    args = parser.parse_args()
    if not 5 <= args.seconds <= 3600:
        parser.error("--seconds must be between 5 and 3600")
    # A hostile peer's writes after the server closed on it are expected; asyncio would warn about each.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    tally, children, elapsed = asyncio.run(soak(args))

    messages = tally.echoed * 2 + tally.chat_delivered + tally.chat_sent + tally.pushed
    print(f"soak: {elapsed:.0f} s; echo {args.echo_clients} clients, chat {args.chat_members} members, "
          f"push {args.push_clients} clients, slow consumers and hostile peers")
    print(f"messages/s: {messages / args.seconds:,.0f}, each direction counted (echo {tally.echoed:,} round trips, "
          f"chat {tally.chat_sent:,} sent / "
          f"{tally.chat_delivered:,} delivered, push {tally.pushed:,})")
    print(f"echo round trip: p50 {percentile(tally.echo_latency, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(tally.echo_latency, 0.99) * 1000:.1f} ms")
    print(f"chat delivery:   p50 {percentile(tally.chat_latency, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(tally.chat_latency, 0.99) * 1000:.1f} ms")
    flat = True
    for child in children:
        trail = ", ".join(f"{at:.0f}s {rss / MIB:.0f}" for at, rss, _ in child.samples)
        fds = [count for _, _, count in child.samples]
        print(f"{child.mode:>5} server RSS MiB over time: {trail}")
        print(f"{child.mode:>5} server open fds: min {min(fds)}, max {max(fds)}, last {fds[-1]}")
        settled = [rss for at, rss, _ in child.samples if at >= WARM_UP]
        if len(settled) >= 2 and settled[-1] > max(settled[0] * 1.25, settled[0] + 30 * MIB):
            flat = False
            print(f"  memory did not stay flat: {settled[0] / MIB:.0f} -> {settled[-1] / MIB:.0f} MiB")
    for what, count in sorted(tally.hostile.items()):
        print(f"hostile: {what} (x{count})")
    for note in tally.notes[:20]:
        print(f"note: {note}")
    print(f"messages lost: {tally.lost}; wrong: {tally.wrong}; memory {'flat' if flat else 'NOT flat'}")
    print("median RSS per server: " + ", ".join(
        f"{c.mode} {statistics.median(r for _, r, _ in c.samples) / MIB:.0f} MiB" for c in children))
    return 0 if tally.lost == 0 and tally.wrong == 0 and flat else 1


if __name__ == "__main__":
    sys.exit(main())
