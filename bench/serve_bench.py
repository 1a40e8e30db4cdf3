"""Load-test ``wsinspect serve --mode echo`` against the ``websockets`` library's own echo server, in one run.

Not a test: it prints numbers side by side, and asserts no timings. Run from the repository root:

    python bench/serve_bench.py                                      # 64 B and 16 KiB, 100 x 100, + logging cost
    python bench/serve_bench.py --connections 1000 --messages 10 --no-logging   # 1,000 connections held at once
    python bench/serve_bench.py --size 64 --repeat 1 --no-logging    # a quick look
    python bench/serve_bench.py --size 16384 --compression off --no-logging --profile none --code f4e1811
                                              # this tree against f4e1811's wsinspect/ and websockets, interleaved

The load client is asyncio with the plain ``websockets`` client library, in this process. It opens N connections
(all of them, before any message is sent, so N are held open together), then every connection sends M messages
one after the other, each waiting for its echo: alternately text and binary, SIZE bytes, every payload unique and
random (text is random printable ASCII). Each echo is checked byte for byte (and text stays text). It reports
messages/s over the message phase, round-trip latency p50/p99, and anything lost (no echo within --timeout),
mismatched or failed; the server's CPU time over the message phase (from /proc), per message and as a share of
one core, and its peak RSS (VmHWM from /proc), and the client's CPU share (on 2 cores the client is a load too).

Servers (subprocesses, stopped by PID with SIGINT):
  wsinspect   python -m wsinspect serve --mode echo --quiet --port P [--no-compression], with the working
              directory at the root of the tree this bench is in, so that tree's wsinspect/ is what runs (not the
              installed ``wsinspect`` command, which runs whatever checkout the editable install points to)
  wsinspect COMMIT (each --code COMMIT): the same, from wsinspect/ as committed at COMMIT (git archive into
              OUT/code-<sha>/), in the same interleaved runs: a before/after on one machine at one time
  websockets  python bench/websockets_echo.py --port P [--no-compression]  (websockets.asyncio.server.serve)
each with permessage-deflate on (both servers' default; client compression="deflate") and off (server
--no-compression, client compression=None).

Every server of a case runs at once and the loads are interleaved (A B, B A, A B...), so the machine's background
load falls on each alike; each server's median run is shown, and the runs behind it.

Logging cost (unless --no-logging): the same load against wsinspect serve (compression off unless
--logging-compression on) with the live log to a file (no --quiet, stdout > file), with --quiet --json FILE, and
with the live log to a pseudo-terminal (pty, drained by a thread), each as messages/s against the --quiet run.
The log files are deleted afterwards unless --keep.

Profiling: by default (--profile auto) every case where wsinspect serve is slower than websockets is run once more
under py-spy (if on PATH; `pip install py-spy`) or cProfile (python -m cProfile -o ... -m wsinspect serve, stopped
with SIGINT), and the top hot spots are printed; --profile py-spy|cprofile profiles every case; none: never.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.metadata
import os
import pty
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchutil  # bench/benchutil.py, beside this file
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
TREE = HERE.parent  # the tree whose wsinspect/ is measured: `python -m` with this as cwd imports it first
HOST = "127.0.0.1"
_ASCII = bytes(range(0x20, 0x7F))
_TO_TEXT = bytes(_ASCII[i % len(_ASCII)] for i in range(256))  # bytes.translate table: any byte -> printable


# ---------------------------------------------------------------------------------------------------------------
# the load client


@dataclass
class Load:
    connections: int
    messages: int
    size: int
    compression: bool
    timeout: float = 30.0
    seed: int = 6455


@dataclass
class Result:
    label: str
    sent: int = 0
    echoed: int = 0
    lost: int = 0
    mismatched: int = 0
    failed_connections: int = 0
    unclean_closes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    connect_s: float = 0.0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    server_peak_rss_kib: int = 0
    log_bytes: int = 0
    rates: list[float] = field(default_factory=list)  # every repeat's messages/s
    profile: Path | None = None

    @property
    def rate(self) -> float:
        return self.echoed / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def ok(self) -> bool:
        return not (self.lost or self.mismatched or self.failed_connections or self.errors)


def payloads(load: Load, connection: int) -> list[str | bytes]:
    rng = random.Random(load.seed * 100_003 + connection)
    out: list[str | bytes] = []
    for i in range(load.messages):
        raw = rng.randbytes(load.size)
        out.append(raw.translate(_TO_TEXT).decode("ascii") if (i + connection) % 2 == 0 else raw)
    return out


def _note(result: Result, error: BaseException) -> None:
    name = type(error).__name__
    result.errors[name] = result.errors.get(name, 0) + 1


async def run_load(port: int, load: Load, label: str, cpu_of: int | None) -> Result:
    """Open every connection, then send; ``cpu_of`` is the server's PID, for its CPU time over the message phase."""
    result = Result(label)
    data = [payloads(load, c) for c in range(load.connections)]
    uri = f"ws://{HOST}:{port}/bench"
    compression = "deflate" if load.compression else None
    opening = asyncio.Semaphore(100)  # the listen backlog is ~100 on both servers: no SYN retries in the numbers
    sockets: list[ClientConnection | None] = [None] * load.connections

    async def open_one(c: int) -> None:
        async with opening:
            try:
                sockets[c] = await connect(uri, compression=compression, ping_interval=None, open_timeout=30,
                                           close_timeout=10, max_size=4 * 1024 * 1024)
            except Exception as error:
                result.failed_connections += 1
                _note(result, error)

    start = time.perf_counter()
    await asyncio.gather(*(open_one(c) for c in range(load.connections)))
    result.connect_s = time.perf_counter() - start

    async def talk(c: int) -> None:
        ws = sockets[c]
        if ws is None:
            result.lost += load.messages
            return
        latencies = result.latencies
        mine = data[c]
        for i, message in enumerate(mine):
            try:
                sent_at = time.perf_counter()
                await ws.send(message)
                result.sent += 1
                reply = await asyncio.wait_for(ws.recv(), load.timeout)
                latencies.append(time.perf_counter() - sent_at)
            except Exception as error:
                result.lost += load.messages - i
                _note(result, error)
                return
            result.echoed += 1
            if reply != message or type(reply) is not type(message):
                result.mismatched += 1

    cpu_before = _proc_cpu(cpu_of)
    self_before = _self_cpu()
    start = time.perf_counter()
    await asyncio.gather(*(talk(c) for c in range(load.connections)))
    result.seconds = time.perf_counter() - start
    result.server_cpu_s = _proc_cpu(cpu_of) - cpu_before
    result.client_cpu_s = _self_cpu() - self_before

    async def close_one(ws: ClientConnection | None) -> None:
        if ws is None:
            return
        try:
            await ws.close()
        except Exception as error:
            _note(result, error)
        if ws.close_code != 1000:
            result.unclean_closes += 1

    await asyncio.gather(*(close_one(ws) for ws in sockets))
    return result


def _proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------------------------
# servers


def served_package(tree: Path) -> str:
    """Where a server started in ``tree`` imports wsinspect from (tree/wsinspect, unless the tree has none)."""
    found = subprocess.run([sys.executable, "-c", "import wsinspect; print(wsinspect.__path__[0])"], cwd=tree,
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or f"? ({found.stderr.strip()[-200:]})"


def raise_fd_limit(wanted: int) -> None:
    """Open files for this process and the servers it starts (they inherit it): at least ``wanted``, up to the hard
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def code_snapshots(parser: argparse.ArgumentParser, commits: list[str], out_dir: Path,
                   command: str) -> list[tuple[str, Path]]:
    """Each ``--code COMMIT``'s ``wsinspect/`` copied out of the git checkout, said where its ``command`` imports
    from; a commit git does not know (or no checkout) is a usage error, not a traceback."""
    try:
        others = [benchutil.snapshot(commit, out_dir) for commit in commits]
    except subprocess.CalledProcessError as failure:
        said = failure.stderr.decode(errors="replace") if isinstance(failure.stderr, bytes) else failure.stderr or ""
        parser.error(f"--code needs a commit of the git checkout this bench is in ({TREE}): "
                     f"{said.strip()[-300:] or failure}")
    for sha, code in others:
        print(f"wsinspect {sha}: {command} runs {served_package(code)}")
    return others


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PtyDrain:
    """A pseudo-terminal for a child's stdout: the master is read (and counted) by a thread until the child ends."""

    def __init__(self, columns: int = 160, rows: int = 50) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.bytes = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:  # EIO once the last writer (the child) has gone
                return
            if not chunk:
                return
            self.bytes += len(chunk)

    def child_started(self) -> None:
        os.close(self.slave)  # only the child keeps the slave open now

    def close(self) -> None:
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.master)


class Server:
    def __init__(self, kind: str, compression: bool, *, connections: int, log: str = "quiet",
                 out_dir: Path, profile: str = "none", tag: str = "", tree: Path = TREE) -> None:
        self.kind, self.log, self.port = kind, log, free_port()
        self.log_path: Path | None = None
        self.profile_path: Path | None = None
        self.pty: PtyDrain | None = None
        self._pyspy: subprocess.Popen[bytes] | None = None
        stdout: Any = subprocess.DEVNULL
        env = dict(os.environ)
        if kind == "wsinspect":
            argv = [sys.executable, "-m", "wsinspect", "serve", "--mode", "echo", "--host", HOST, "--port",
                    str(self.port), "--max-connections", str(max(1024, 2 * connections))]
            if profile == "cprofile":
                self.profile_path = out_dir / f"serve{tag}.cprofile"
                argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile_path), *argv[1:]]
            if log == "quiet":
                argv.append("--quiet")
            elif log == "json":
                self.log_path = out_dir / f"serve{tag}.jsonl"
                argv += ["--quiet", "--json", str(self.log_path)]
            elif log == "file":
                self.log_path = out_dir / f"serve{tag}.log"
                stdout = open(self.log_path, "wb")  # noqa: SIM115 - closed below, after the child has it
            elif log == "pty":
                self.pty = PtyDrain()
                stdout = self.pty.slave
                env["TERM"] = "xterm-256color"
                env.pop("NO_COLOR", None)
        else:
            argv = [sys.executable, str(HERE / "websockets_echo.py"), "--host", HOST, "--port", str(self.port)]
        if not compression:
            argv.append("--no-compression")
        self.argv = argv
        self.process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE if log != "pty" else stdout,
                                        env=env, cwd=tree, start_new_session=True)
        if self.pty is not None:
            self.pty.child_started()
        elif stdout is not subprocess.DEVNULL:
            stdout.close()
        self._wait_listening()
        if profile == "py-spy":
            self.profile_path = out_dir / f"serve{tag}.pyspy.txt"
            self._pyspy = subprocess.Popen(["py-spy", "record", "--pid", str(self.process.pid), "-r", "200",
                                            "-f", "raw", "-o", str(self.profile_path)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let py-spy attach

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{self.kind} server exited {self.process.returncode}: {err[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not listen on {self.port} within 20 s")

    def peak_rss_kib(self) -> int:
        """The server's own peak RSS (VmHWM of its address space). Not os.wait4's ru_maxrss: Linux carries the
        parent's RSS at fork into the child's maxrss, and this process holds every payload of the load."""
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        """SIGINT by PID, wait (SIGKILL after 20 s)."""
        if self._pyspy is not None:
            self._pyspy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            try:
                self._pyspy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._pyspy.kill()
                self._pyspy.wait()
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            while True:
                pid, status, _ = os.wait4(self.process.pid, os.WNOHANG)
                if pid:
                    self.process.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    os.kill(self.process.pid, signal.SIGKILL)
                    _, status, _ = os.wait4(self.process.pid, 0)
                    self.process.returncode = os.waitstatus_to_exitcode(status)
                    print(f"  ({self.kind} did not stop on SIGINT within 20 s: killed)")
                    break
                time.sleep(0.05)
        if self.process.stderr is not None and self.log != "pty":
            err = self.process.stderr.read().decode(errors="replace").strip()
            self.process.stderr.close()
            if err:
                print(f"  [{self.kind} stderr] {err[-800:]}")
        if self.pty is not None:
            self.pty.close()

    @property
    def log_bytes(self) -> int:
        if self.pty is not None:
            return self.pty.bytes
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.stat().st_size
        return 0


# ---------------------------------------------------------------------------------------------------------------
# cases


@dataclass
class Spec:
    kind: str  # "wsinspect" or "websockets"
    log: str = "quiet"  # wsinspect only: quiet, file, json, pty
    profile: str = "none"
    label: str = ""
    tree: Path = TREE  # wsinspect only: where its wsinspect/ is (this tree, or a --code snapshot)


def measure(specs: list[Spec], load: Load, args: argparse.Namespace, *, repeat: int | None = None,
            min_seconds: float = 0.0, tag: str = "") -> list[Result]:
    """Start every server at once, warm each up, then run the loads interleaved: repeat r goes through the servers
    in turn (reversed on odd r), so a change in the machine's background load falls on all of them alike. Each
    server's result is its median run by messages/s; lost/mismatched/errors are summed over all its runs.
    With ``min_seconds`` (profiling), loads go on until the first server has been under load that long."""
    repeat = repeat or args.repeat
    servers = [Server(spec.kind, load.compression, connections=load.connections, log=spec.log,
                      out_dir=args.out_dir, profile=spec.profile, tag=f"{tag}-{spec.log}-{load.size}",
                      tree=spec.tree)
               for spec in specs]
    runs: list[list[Result]] = [[] for _ in specs]
    peaks = [0] * len(specs)
    try:
        for server, spec in zip(servers, specs, strict=True):
            warm = Load(min(10, load.connections), 10, load.size, load.compression, load.timeout, load.seed + 1)
            asyncio.run(run_load(server.port, warm, spec.label, None))
        r = 0
        while r < repeat or (min_seconds and r < 50 and sum(x.seconds for x in runs[0]) < min_seconds):
            order = list(range(len(specs)))
            if r % 2:
                order.reverse()
            for i in order:
                before = servers[i].log_bytes
                result = asyncio.run(run_load(servers[i].port, Load(load.connections, load.messages, load.size,
                                                                     load.compression, load.timeout,
                                                                     load.seed + 7 * r), specs[i].label,
                                              servers[i].pid))
                result.log_bytes = servers[i].log_bytes - before
                runs[i].append(result)
            r += 1
        peaks = [server.peak_rss_kib() for server in servers]
    finally:
        for server in servers:
            server.stop()
            if not args.keep:
                for path in (server.log_path,):
                    if path is not None:
                        path.unlink(missing_ok=True)
    out = []
    for i, spec_runs in enumerate(runs):
        best = sorted(spec_runs, key=lambda x: x.rate)[len(spec_runs) // 2]
        for run in spec_runs:
            if run is not best:
                best.lost += run.lost
                best.mismatched += run.mismatched
                best.failed_connections += run.failed_connections
                best.unclean_closes += run.unclean_closes
                for k, v in run.errors.items():
                    best.errors[k] = best.errors.get(k, 0) + v
        best.server_peak_rss_kib = peaks[i]
        best.rates = [run.rate for run in spec_runs]
        best.profile = servers[i].profile_path
        out.append(best)
    return out


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt_size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def problems(r: Result) -> str:
    bits = []
    if r.lost:
        bits.append(f"lost {r.lost}")
    if r.mismatched:
        bits.append(f"mismatched {r.mismatched}")
    if r.failed_connections:
        bits.append(f"failed connections {r.failed_connections}")
    if r.unclean_closes:
        bits.append(f"unclean closes {r.unclean_closes}")
    if r.errors:
        bits.append("errors " + ", ".join(f"{k}x{v}" for k, v in r.errors.items()))
    return "; ".join(bits) or "none"


def row(r: Result, messages: int) -> str:
    spread = "/".join(f"{x:,.0f}" for x in r.rates)
    return (f"| {r.label} | {r.rate:,.0f} | {spread} | {r.pct(0.50):.2f} | {r.pct(0.99):.2f} | "
            f"{1e6 * r.server_cpu_s / max(1, r.echoed):.0f} | {100 * r.server_cpu_s / r.seconds:.0f}% | "
            f"{100 * r.client_cpu_s / r.seconds:.0f}% | {r.server_peak_rss_kib / 1024:.0f} MiB | "
            f"{r.echoed:,}/{messages:,} | {problems(r)} |")


HEADER = ("| server | msgs/s (median) | runs msgs/s | p50 ms | p99 ms | server CPU µs/msg | server CPU | "
          "client CPU | server peak RSS | echoed | lost / mismatched / errors |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="messages per connection")
    parser.add_argument("--size", type=int, action="append", help="payload bytes; repeatable (default: 64 and 16384)")
    parser.add_argument("--compression", choices=("both", "on", "off"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="loads per server and case; the median is shown")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one echo before it is lost")
    parser.add_argument("--no-logging", action="store_true", help="skip the logging-cost runs")
    parser.add_argument("--logging-compression", choices=("on", "off"), default="off",
                        help="compression in the logging-cost runs (default off: the server's own work, not "
                             "deflate, is then what logging adds to)")
    parser.add_argument("--profile", choices=("auto", "py-spy", "cprofile", "none"), default="auto",
                        help="auto: profile each case where wsinspect is slower (py-spy if on PATH, else cProfile)")
    parser.add_argument("--profile-seconds", type=float, default=10.0,
                        help="seconds of load under the profiler per case (whole loads, at least one)")
    parser.add_argument("--profile-logging", action="append", choices=("file", "json", "pty"), default=[],
                        help="also profile wsinspect serve with this logging (repeatable)")
    parser.add_argument("--out", default=str(HERE / "out"), help="logs and profiles (default: bench/out)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' log and JSON files")
    parser.add_argument("--code", metavar="COMMIT", action="append", default=[],
                        help="also run wsinspect/ as committed at COMMIT (repeatable), in the same interleaved runs")
    args = parser.parse_args()
    sizes = args.size or [64, 16384]
    args.out_dir = Path(args.out)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    raise_fd_limit(4 * args.connections + 256)  # the client's sockets, plus slack; the servers inherit the limit
    print(f"wsinspect serve vs websockets {importlib.metadata.version('websockets')} echo server; "
          f"{os.cpu_count()} cores; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}; fd limit "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    fingerprint = benchutil.source_fingerprint()
    print(f"wsinspect: {benchutil.code_state()}; serve runs {served_package(TREE)}")
    others = code_snapshots(parser, args.code, args.out_dir, "serve")
    print(f"load: {args.connections} connections held open at once x {args.messages} messages each "
          f"(alternately text and binary, each echo awaited and checked), {args.repeat} run(s) per case, median shown")
    total = args.connections * args.messages
    compressions = {"both": [True, False], "on": [True], "off": [False]}[args.compression]
    failures = 0
    slower: list[tuple[int, bool]] = []
    summary: list[str] = []
    for size in sizes:
        for compression in compressions:
            load = Load(args.connections, args.messages, size, compression, args.timeout)
            print(f"\n### {fmt_size(size)}, compression {'on' if compression else 'off'}, "
                  f"{args.connections} x {args.messages}\n")
            specs = [Spec("wsinspect", label="wsinspect"),
                     *(Spec("wsinspect", label=f"wsinspect {sha}", tree=code) for sha, code in others),
                     Spec("websockets", label="websockets")]
            *mine, ref = measure(specs, load, args)
            ws = mine[0]
            print(HEADER)
            for result in (*mine, ref):
                print(row(result, total))
            for result in mine:
                print(f"\nratio {result.label}/websockets: {_div(result.rate, ref.rate):.2f}x msgs/s; p50 "
                      f"{_div(result.pct(0.5), ref.pct(0.5)):.2f}x, p99 {_div(result.pct(0.99), ref.pct(0.99)):.2f}x "
                      f"(latency, lower is better); server CPU per message "
                      f"{_div(result.server_cpu_s / max(1, result.echoed), ref.server_cpu_s / max(1, ref.echoed)):.2f}x"
                      f"; connect {result.connect_s:.2f} s vs {ref.connect_s:.2f} s")
            ratio = _div(ws.rate, ref.rate)
            summary.append(f"| {fmt_size(size)} | {'on' if compression else 'off'} | {args.connections}x"
                           f"{args.messages} | {ws.rate:,.0f} | {ref.rate:,.0f} | {ratio:.2f} | "
                           f"{ws.pct(0.5):.2f} / {ws.pct(0.99):.2f} | {ref.pct(0.5):.2f} / {ref.pct(0.99):.2f} | "
                           f"{ws.server_peak_rss_kib / 1024:.0f} / {ref.server_peak_rss_kib / 1024:.0f} MiB | "
                           f"{problems(ws)} / {problems(ref)} |")
            failures += sum(not result.ok for result in (*mine, ref))
            if ratio < 1:
                slower.append((size, compression))

    print("\n## summary\n")
    print("| size | compression | load | wsinspect msgs/s | websockets msgs/s | ratio | wsinspect p50/p99 ms | "
          "websockets p50/p99 ms | peak RSS ws/ref | problems ws / ref |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(summary))

    if not args.no_logging:
        logging_compression = args.logging_compression == "on"
        print(f"\n## logging cost (wsinspect serve, compression {args.logging_compression}, "
              f"{args.connections} x {args.messages}; the four servers run side by side, loads interleaved)\n")
        print("| size | logging | msgs/s (median) | runs | vs --quiet | p50 ms | p99 ms | server CPU µs/msg | "
              "log bytes/msg | problems |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for size in sizes:
            load = Load(args.connections, args.messages, size, logging_compression, args.timeout)
            specs = [Spec("wsinspect", "quiet", label="--quiet"),
                     Spec("wsinspect", "file", label="live log, stdout > file"),
                     Spec("wsinspect", "json", label="--quiet --json FILE"),
                     Spec("wsinspect", "pty", label="live log, stdout = pty")]
            results = measure(specs, load, args)
            quiet = results[0]
            for r in results:
                spread = "/".join(f"{x:,.0f}" for x in r.rates)
                print(f"| {fmt_size(size)} | {r.label} | {r.rate:,.0f} | {spread} | {_div(r.rate, quiet.rate):.2f}x | "
                      f"{r.pct(0.5):.2f} | {r.pct(0.99):.2f} | {1e6 * r.server_cpu_s / max(1, r.echoed):.0f} | "
                      f"{r.log_bytes / max(1, r.echoed):,.0f} | {problems(r)} |")
                failures += not r.ok

    profiler = args.profile
    cases: list[tuple[int, bool, str]] = [(size, c, "quiet") for size, c in slower]
    if profiler == "auto":
        profiler = ("py-spy" if shutil.which("py-spy") else "cprofile") if slower or args.profile_logging else "none"
    elif profiler != "none":
        cases = [(size, c, "quiet") for size in sizes for c in compressions]
    if args.profile_logging:
        cases += [(size, args.logging_compression == "on", log) for log in args.profile_logging for size in sizes]
    if profiler != "none":
        import profile_top

        for size, compression, log in cases:
            load = Load(args.connections, args.messages, size, compression, args.timeout)
            what = {"quiet": "--quiet", "file": "live log, stdout > file", "json": "--quiet --json FILE",
                    "pty": "live log, stdout = pty"}[log]
            print(f"\n## profile: wsinspect serve ({what}) under {profiler}, {fmt_size(size)}, compression "
                  f"{'on' if compression else 'off'}, {args.connections} x {args.messages}, loads repeated for "
                  f"{args.profile_seconds:g} s\n")
            (r,) = measure([Spec("wsinspect", log=log, profile=profiler, label="wsinspect (profiled)")], load, args,
                           repeat=1, min_seconds=args.profile_seconds, tag=f"-{'on' if compression else 'off'}")
            print(f"({len(r.rates)} loads under the profiler, median {r.rate:,.0f} msgs/s; profile in {r.profile})")
            if r.profile is not None and r.profile.exists():
                if profiler == "py-spy":
                    profile_top.pyspy(str(r.profile), 25)
                else:
                    profile_top.cprofile(str(r.profile), 25)
    benchutil.check_unchanged(fingerprint)
    print(f"\n{'all echoes arrived intact' if not failures else f'{failures} case(s) with problems (see tables)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
