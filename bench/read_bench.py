"""Benchmark ``wsinspect read --json`` against ``tshark`` on one large, synthetic, deterministic pcapng.

Not a test: it prints numbers, side by side with the reference tool measured in the same run, and asserts no
timings. Run from the repository root:

    python bench/read_bench.py                     # 200,000 frames
    python bench/read_bench.py --scale 10          # also 10x the frames, to show memory stays flat
    python bench/read_bench.py --frames 20000      # a quick look

What the capture holds (all seeded, so the same options give the same bytes):

* Ethernet / IPv4 / TCP, valid IP and TCP checksums, a SYN / SYN-ACK / ACK handshake per connection, sequence
  and acknowledgement numbers that add up, pure ACKs now and then;
* per connection an HTTP/1.1 upgrade request and a ``101 Switching Protocols`` answer with the right
  Sec-WebSocket-Accept;
* then WebSocket frames in both directions, client frames masked: text (ASCII) and binary messages from 10 B to
  64 KiB (mostly small), a few frames of 96-256 KiB split across many segments, fragmented messages (some with a
  ping between the fragments), ping/pong exchanges, several frames per TCP segment and frames split across
  segments at random points;
* a close handshake (close frame each way) and FIN / FIN / ACK per connection.

Connections are interleaved packet by packet, at most ``--concurrent`` (default 200) open at once; one connection
carries about 1,000 frames, so 200,000 frames are 200 connections all open together, and 10x is 2,000 connections
passing through the same 200 slots.

Each tool runs as a child process with its output to /dev/null, --repeat times interleaved (best time shown); wall
time is measured here, peak RSS by GNU time (%M). Then each runs again with its output piped to a counter, to check
that both saw every frame the generator wrote. When wsinspect is the slower, it is profiled (py-spy if installed,
else cProfile) at --frames and the top hot spots are printed (--profile none to skip).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchutil  # bench/benchutil.py, beside this file

from wsinspect.core.frames import build_frame
from wsinspect.core.handshake import accept_key

HERE = Path(__file__).resolve().parent
MSS = 1460  # an Ethernet-sized segment, so large frames cross many segments
SERVER_PORT = 80  # tshark decodes port 80 as HTTP, and follows the 101 into its WebSocket dissector
SERVER_IP = bytes((198, 51, 100, 1))  # documentation addresses (RFC 5737): this file is never sent anywhere
FRAMES_PER_CONNECTION = 1000
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10
_MAC_CLIENT = bytes.fromhex("020000000001")
_MAC_SERVER = bytes.fromhex("020000000002")


# ---------------------------------------------------------------------------------------------------------------
# pcapng and packets


def _checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum (big-endian words)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))  # native (little-endian) words: swap at the end
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    return ((total & 0xFF) << 8 | total >> 8) if sys.byteorder == "little" else total


class PcapngWriter:
    """Section header, one Ethernet interface (microsecond timestamps), then one enhanced packet block each."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb", buffering=4 * 1024 * 1024)  # noqa: SIM115 - closed in close()
        self.file.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        self.file.write(struct.pack("<IIHHII", 1, 20, 1, 0, 262144, 20))  # linktype 1 = Ethernet
        self.packets = 0
        self.time_us = 1_700_000_000_000_000

    def packet(self, data: bytes, advance_us: int) -> None:
        self.time_us += advance_us
        pad = -len(data) % 4
        total = 32 + len(data) + pad
        self.file.write(struct.pack("<IIIIIII", 6, total, 0, self.time_us >> 32, self.time_us & 0xFFFFFFFF,
                                    len(data), len(data)))
        self.file.write(data)
        self.file.write(b"\0" * pad + struct.pack("<I", total))
        self.packets += 1

    def close(self) -> None:
        self.file.close()


def ethernet_ipv4_tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                      payload: bytes, from_client: bool) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, 20 + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    macs = _MAC_SERVER + _MAC_CLIENT if from_client else _MAC_CLIENT + _MAC_SERVER
    return macs + b"\x08\x00" + ip + tcp + payload


# ---------------------------------------------------------------------------------------------------------------
# the synthetic traffic


@dataclass
class Connection:
    index: int
    budget: int  # frames still to write, the two close frames included
    client_ip: bytes
    client_port: int
    seq: dict[str, int] = field(default_factory=dict)  # direction -> next sequence number of its sender
    stage: int = 0  # 0: TCP handshake, 1: HTTP request, 2: HTTP response, 3: frames, 4: closing
    key: str = ""


@dataclass
class Totals:
    frames: int = 0
    messages: int = 0
    fragmented: int = 0
    controls: int = 0
    large: int = 0
    payload_bytes: int = 0
    split_frames: int = 0
    connections: int = 0


class Generator:
    def __init__(self, writer: PcapngWriter, seed: int) -> None:
        self.w = writer
        self.rng = random.Random(seed)
        rng = self.rng
        # Payloads are slices of two pools: printable ASCII (valid UTF-8 however it is split) and random bytes.
        self.text_pool = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:-")
                               for _ in range(1 << 16))
        self.text_pool = self.text_pool * 5  # 320 KiB: enough for the largest frame
        self.bin_pool = rng.randbytes(320 * 1024)
        self.totals = Totals()

    # -- sizes and payloads

    def _size(self) -> int:
        r = self.rng.random()
        if r < 0.0005:
            self.totals.large += 1
            return self.rng.randint(96 * 1024, 256 * 1024)  # a few larger, split across many segments
        if r < 0.70:
            return self.rng.randint(10, 128)
        if r < 0.95:
            return self.rng.randint(129, 1024)
        if r < 0.995:
            return self.rng.randint(1025, 16 * 1024)
        return self.rng.randint(16 * 1024 + 1, 64 * 1024)

    def _payload(self, text: bool, size: int) -> bytes:
        pool = self.text_pool if text else self.bin_pool
        start = self.rng.randrange(0, len(pool) - size)
        return pool[start : start + size]

    def _frame(self, client: bool, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        """One frame, client frames masked; ``rsv1`` marks a compressed message's first frame (RFC 7692)."""
        self.totals.frames += 1
        self.totals.payload_bytes += len(payload)
        if opcode >= 8:
            self.totals.controls += 1
        key = self.rng.randbytes(4) if client else None
        return build_frame(opcode, payload, fin=fin, rsv1=rsv1, masking_key=key)

    # -- packets

    def _send(self, c: Connection, direction: str, flags: int, payload: bytes = b"") -> None:
        client = direction == "c2s"
        other = "s2c" if client else "c2s"
        ack = c.seq[other] if flags & _ACK else 0
        if client:
            data = ethernet_ipv4_tcp(c.client_ip, SERVER_IP, c.client_port, SERVER_PORT, c.seq[direction], ack,
                                     flags, payload, True)
        else:
            data = ethernet_ipv4_tcp(SERVER_IP, c.client_ip, SERVER_PORT, c.client_port, c.seq[direction], ack,
                                     flags, payload, False)
        self.w.packet(data, self.rng.randint(1, 40))
        step = len(payload) + (1 if flags & (_SYN | _FIN) else 0)
        c.seq[direction] = (c.seq[direction] + step) & 0xFFFFFFFF

    def _send_stream(self, c: Connection, direction: str, data: bytes) -> None:
        """Cut a run of frames into segments: whole runs up to the MSS, now and then a cut at a random point."""
        start = 0
        while start < len(data):
            end = min(len(data), start + MSS)
            if end - start > 2 and self.rng.random() < 0.2:
                end = self.rng.randint(start + 1, end - 1)  # a frame split across segments
            self._send(c, direction, _PSH | _ACK, data[start:end])
            start = end
        if self.rng.random() < 0.5:  # the receiver acknowledges what it got
            self._send(c, "s2c" if direction == "c2s" else "c2s", _ACK)

    # -- one step of one connection

    def step(self, c: Connection) -> bool:
        """Write the connection's next exchange; False once it is closed."""
        rng = self.rng
        if c.stage == 0:
            c.seq = {"c2s": rng.getrandbits(32), "s2c": rng.getrandbits(32)}
            self._send(c, "c2s", _SYN)
            self._send(c, "s2c", _SYN | _ACK)
            self._send(c, "c2s", _ACK)
            c.stage = 1
            return True
        if c.stage == 1:
            c.key = base64.b64encode(rng.randbytes(16)).decode()
            request = (f"GET /bench/{c.index} HTTP/1.1\r\nHost: bench.example:80\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {c.key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Origin: http://bench.example\r\nUser-Agent: wsinspect-bench\r\n\r\n").encode()
            self._send(c, "c2s", _PSH | _ACK, request)
            c.stage = 2
            return True
        if c.stage == 2:
            response = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {accept_key(c.key)}\r\n\r\n").encode()
            self._send(c, "s2c", _PSH | _ACK, response)
            c.stage = 3
            return True
        if c.stage == 3 and c.budget > 2:
            self._exchange(c)
            return True
        # the closing handshake: one side's close frame, the other's echo, then the server ends TCP first
        first = "c2s" if c.index % 2 == 0 else "s2c"
        second = "s2c" if first == "c2s" else "c2s"
        body = struct.pack("!H", 1000) + b"bench done"
        self._send_stream(c, first, self._frame(first == "c2s", 0x8, body))
        self._send_stream(c, second, self._frame(second == "c2s", 0x8, body[:2]))
        self._send(c, "s2c", _FIN | _ACK)
        self._send(c, "c2s", _FIN | _ACK)
        self._send(c, "s2c", _ACK)
        c.budget -= 2
        return False

    def _exchange(self, c: Connection) -> None:
        rng = self.rng
        available = c.budget - 2  # keep two frames for the close handshake
        if available >= 2 and rng.random() < 0.03:  # a ping and its pong
            pinger = "c2s" if rng.random() < 0.5 else "s2c"
            ponger = "s2c" if pinger == "c2s" else "c2s"
            data = rng.randbytes(rng.randint(0, 16))
            self._send_stream(c, pinger, self._frame(pinger == "c2s", 0x9, data))
            self._send_stream(c, ponger, self._frame(ponger == "c2s", 0xA, data))
            c.budget -= 2
            return
        direction = "c2s" if rng.random() < 0.5 else "s2c"
        client = direction == "c2s"
        chunks: list[bytes] = []
        written = 0
        for _ in range(rng.randint(1, 6)):  # several frames per segment
            if written >= available:
                break
            text = rng.random() < 0.5
            opcode = 0x1 if text else 0x2
            size = self._size()
            payload = self._payload(text, size)
            self.totals.messages += 1
            room = available - written
            if room >= 2 and size >= 20 and rng.random() < 0.05:  # a fragmented message
                self.totals.fragmented += 1
                pieces = min(rng.randint(2, 4), room)
                cuts = sorted(rng.sample(range(1, size), pieces - 1))
                bounds = [0, *cuts, size]
                for i in range(pieces):
                    chunks.append(self._frame(client, opcode if i == 0 else 0x0, payload[bounds[i] : bounds[i + 1]],
                                              fin=i == pieces - 1))
                    written += 1
                    if i < pieces - 1 and written + (pieces - 1 - i) < available and rng.random() < 0.2:
                        chunks.append(self._frame(client, 0x9, b"mid"))  # a ping between fragments
                        written += 1
            else:
                chunks.append(self._frame(client, opcode, payload))
                written += 1
        self._send_stream(c, direction, b"".join(chunks))
        c.budget -= written


def generate(path: Path, frames: int, concurrent: int, seed: int) -> tuple[Totals, int]:
    writer = PcapngWriter(path)
    gen = Generator(writer, seed)
    count = max(1, round(frames / FRAMES_PER_CONNECTION))
    budgets = [frames // count + (1 if i < frames % count else 0) for i in range(count)]
    waiting = [Connection(i, budgets[i], bytes((192, 0, 2, 1 + i % 250)), 20000 + i // 250) for i in range(count)]
    waiting.reverse()
    active: list[Connection] = []
    rng = random.Random(seed + 1)
    while waiting or active:
        while waiting and len(active) < concurrent:
            active.append(waiting.pop())
            gen.totals.connections += 1
        i = rng.randrange(len(active))
        if not gen.step(active[i]):
            active[i] = active[-1]
            active.pop()
    writer.close()
    assert gen.totals.frames == frames, (gen.totals.frames, frames)
    return gen.totals, writer.packets


# ---------------------------------------------------------------------------------------------------------------
# measuring


@dataclass
class Run:
    seconds: float
    peak_rss_kib: int
    returncode: int


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def timed(argv: list[str]) -> Run:
    """Run argv with stdout to /dev/null: wall time, and the child's own peak RSS.

    The RSS comes from GNU time's %M (its child's ru_maxrss, via wait4). Not from our own os.wait4: Linux carries
    the parent's RSS at fork into the child's ru_maxrss, so a child of a large parent would look large. GNU time is
    a small parent. Without /usr/bin/time, os.wait4's figure is used (an upper bound)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = [TIME, "-f", "%M", "-o", rss_file.name, *argv] if TIME else argv
        start = time.perf_counter()
        child = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        err = child.stderr.read().decode(errors="replace")  # small; read before waiting so it can't block
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stderr.close()
        peak = usage.ru_maxrss  # KiB on Linux
        if TIME:
            lines = [line for line in rss_file.read().splitlines() if line.strip()]
            peak = int(lines[-1]) if lines and lines[-1].strip().isdigit() else peak
    err = "\n".join(line for line in err.splitlines() if "dangerous" not in line and line.strip())
    if err:
        print(f"  [{Path(argv[0]).name} stderr] {err[:500]}", file=sys.stderr)
    return Run(seconds, peak, child.returncode)


def count_wsinspect_frames(argv: list[str]) -> tuple[int, int]:
    """Frames and output bytes of ``wsinspect read --json``."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    frames = size = 0
    tail = b""
    while block := child.stdout.read(1 << 20):
        size += len(block)
        block = tail + block
        cut = block.rfind(b"\n") + 1
        frames += block.count(b'{"type":"frame"', 0, cut)
        tail = block[cut:]
    child.wait()
    return frames, size


def count_tshark_frames(argv: list[str]) -> tuple[int, int]:
    """Frames and output bytes of tshark: one line per packet; a packet's frames are comma-separated in a field."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    frames = size = 0
    for line in child.stdout:
        size += len(line)
        opcodes = line.split(b"\t", 1)[0].strip()
        if opcodes:
            frames += opcodes.count(b",") + 1
    child.wait()
    return frames, size


def commands(path: Path) -> tuple[list[str], list[str]]:
    wsinspect = shutil.which("wsinspect") or "wsinspect"
    tshark = shutil.which("tshark") or "tshark"
    return ([wsinspect, "read", str(path), "--json"],
            [tshark, "-r", str(path), "-Y", "websocket", "-T", "fields", "-e", "websocket.opcode",
             "-e", "websocket.payload_length"])


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def bench_one(frames: int, args: argparse.Namespace) -> dict[str, float]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"read-bench-{frames}-s{args.seed}.pcapng"
    print(f"\n== {frames:,} frames ==")
    if path.exists() and args.keep:
        print(f"  reusing {path} ({path.stat().st_size / 2**20:,.1f} MiB)")
        totals = None
    else:
        start = time.perf_counter()
        totals, packets = generate(path, frames, args.concurrent, args.seed)
        print(f"  wrote {path} in {time.perf_counter() - start:.1f} s: {path.stat().st_size / 2**20:,.1f} MiB, "
              f"{packets:,} packets, {totals.connections:,} connections ({args.concurrent} at once at most), "
              f"{totals.frames:,} frames ({totals.messages:,} messages, {totals.fragmented:,} fragmented, "
              f"{totals.controls:,} control, {totals.large} over 64 KiB), "
              f"{totals.payload_bytes / 2**20:,.1f} MiB of payload")
    ws_argv, ts_argv = commands(path)
    result: dict[str, float] = {"frames": frames}
    try:
        repeat = args.repeat if frames == args.frames else args.scale_repeat
        tools = [("wsinspect", ws_argv), ("tshark", ts_argv)]
        runs: dict[str, list[Run]] = {"wsinspect": [], "tshark": []}
        for r in range(repeat):  # interleaved (A B, B A, ...) so background load falls on both alike
            for name, argv in tools if r % 2 == 0 else tools[::-1]:
                run = timed(argv)
                if run.returncode != 0:
                    print(f"  {name} exited {run.returncode}")
                runs[name].append(run)
        for name, _ in tools:
            best = min(run.seconds for run in runs[name])  # the least disturbed run
            peak = max(run.peak_rss_kib for run in runs[name])
            result[f"{name}_s"] = best
            result[f"{name}_rss"] = peak
            spread = ", ".join(f"{run.seconds:.2f}" for run in runs[name])
            print(f"  {name:9s} {best:8.2f} s  {frames / best:>12,.0f} frames/s  peak RSS {mib(peak)}"
                  + (f"   (runs: {spread} s)" if repeat > 1 else ""))
        ratio = (frames / result["wsinspect_s"]) / (frames / result["tshark_s"])
        result["ratio"] = ratio
        print(f"  throughput ratio wsinspect/tshark: {ratio:.2f}x  "
              f"({'faster' if ratio >= 1 else 'slower'}); "
              f"memory ratio wsinspect/tshark: {result['wsinspect_rss'] / result['tshark_rss']:.2f}")
        if not args.no_verify:
            ws_frames, ws_bytes = count_wsinspect_frames(ws_argv)
            ts_frames, ts_bytes = count_tshark_frames(ts_argv)
            same = ws_frames == ts_frames == frames
            result["ws_frames"], result["ts_frames"] = ws_frames, ts_frames
            print(f"  frames seen: generated {frames:,}, wsinspect {ws_frames:,}, tshark {ts_frames:,}: "
                  f"{'all the same' if same else 'MISMATCH'}; output: wsinspect {ws_bytes / 2**20:,.0f} MiB of JSON "
                  f"lines, tshark {ts_bytes / 2**20:,.1f} MiB of fields")
        if frames == args.frames:
            profile(path, result["ratio"], args)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    return result


def profile(path: Path, ratio: float, args: argparse.Namespace) -> None:
    """Profile ``wsinspect read FILE --json`` (stdout to /dev/null) and print the top hot spots."""
    profiler = args.profile
    if profiler == "auto":
        profiler = ("py-spy" if shutil.which("py-spy") else "cprofile") if ratio < 1 else "none"
    if profiler == "none":
        return
    import profile_top  # bench/profile_top.py, beside this file

    out = Path(args.out)
    if profiler == "py-spy":
        target = out / "read.pyspy.txt"
        argv = ["py-spy", "record", "-r", "250", "-f", "raw", "-o", str(target), "--",
                sys.executable, "-m", "wsinspect", "read", str(path), "--json"]
    else:
        target = out / "read.cprofile"
        argv = [sys.executable, "-m", "cProfile", "-o", str(target), "-m", "wsinspect", "read", str(path), "--json"]
    print(f"\n  profile ({profiler}): {' '.join(argv)} > /dev/null")
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not target.exists():
        print("  (no profile written)")
        return
    if profiler == "py-spy":
        profile_top.pyspy(str(target), 20)
    else:
        profile_top.cprofile(str(target), 20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000, help="WebSocket frames in the capture")
    parser.add_argument("--scale", type=int, default=1, help="also run at SCALE x the frames (e.g. 10)")
    parser.add_argument("--concurrent", type=int, default=200, help="connections open at once at most")
    parser.add_argument("--seed", type=int, default=6455)
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per tool at --frames, interleaved (best time and highest RSS shown)")
    parser.add_argument("--scale-repeat", type=int, default=1, help="timed runs per tool at --scale x the frames")
    parser.add_argument("--out", default=str(HERE / "out"), help="where the capture goes (default: bench/out)")
    parser.add_argument("--keep", action="store_true", help="keep the capture (and reuse a kept one)")
    parser.add_argument("--profile", choices=("auto", "py-spy", "cprofile", "none"), default="auto",
                        help="auto: profile wsinspect at --frames when it is slower than tshark (py-spy if on PATH)")
    parser.add_argument("--no-verify", action="store_true", help="skip the frame-count check (a second run each)")
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        print("tshark is not installed (apt-get install tshark)", file=sys.stderr)
        return 2
    version = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"wsinspect read --json vs {version}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    fingerprint = benchutil.source_fingerprint()
    print(f"wsinspect: {benchutil.code_state()}; load average {os.getloadavg()[0]:.2f}")
    results = [bench_one(args.frames, args)]
    if args.scale > 1:
        results.append(bench_one(args.frames * args.scale, args))
    print("\n| frames | wsinspect frames/s | tshark frames/s | ratio ws/tshark | wsinspect peak RSS | "
          "tshark peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        n = r["frames"]
        print(f"| {n:,.0f} | {n / r['wsinspect_s']:,.0f} | {n / r['tshark_s']:,.0f} | {r['ratio']:.2f} | "
              f"{mib(int(r['wsinspect_rss']))} | {mib(int(r['tshark_rss']))} |")
    if len(results) == 2:
        a, b = results
        print(f"\npeak RSS growth from {a['frames']:,.0f} to {b['frames']:,.0f} frames: "
              f"wsinspect x{b['wsinspect_rss'] / a['wsinspect_rss']:.2f}, "
              f"tshark x{b['tshark_rss'] / a['tshark_rss']:.2f}")
    benchutil.check_unchanged(fingerprint)
    mismatched = [r for r in results if "ws_frames" in r and not r["ws_frames"] == r["ts_frames"] == r["frames"]]
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
