"""Load-test ``wsinspect proxy`` against mitmproxy's reverse proxy (``mitmdump``), both in front of one upstream.

Not a test: it prints numbers side by side, and asserts no timings. Run from the repository root:

    python bench/proxy_bench.py                              # 64 B and 16 KiB, 100 x 100, compression on and off
    python bench/proxy_bench.py --size 64 --repeat 1 --compression off              # a quick look
    python bench/proxy_bench.py --size 16384 --compression off --code 5418c72       # this tree against 5418c72's
    python bench/proxy_bench.py --size 16384 --compression off --profile py-spy     # and where wsinspect's time goes

One upstream, ``bench/websockets_echo.py`` (the ``websockets`` library's echo server), runs for a case, and in front
of it, at the same time:
  wsinspect   python -m wsinspect proxy --upstream ws://127.0.0.1:U/ --listen 127.0.0.1:P --quiet, with the working
              directory at the root of the tree this bench is in, so that tree's wsinspect/ is what runs. --quiet
              turns the live log off; every byte is still decoded, both ways (the decoder is what is measured).
  wsinspect COMMIT (each --code COMMIT): the same, from wsinspect/ as committed at COMMIT, in the same runs
  mitmproxy   mitmdump --mode reverse:http://127.0.0.1:U --listen-host 127.0.0.1 --listen-port P -q (quiet; no
              flow file; its own confdir under --out, so no ~/.mitmproxy is written). mitmproxy also parses every
              WebSocket message both ways (and keeps them in the flow while the connection is open).
  direct      the upstream alone, no proxy: the floor.
The client is serve_bench's (imported): N connections opened and held at once, then M messages each, alternately
text and binary, SIZE random bytes, each echo awaited and checked byte for byte (text stays text). Loads are
interleaved (A B C, C B A, ...) so the machine's background load falls on every path alike; each path's median run
by msgs/s is shown, with the runs behind it. permessage-deflate on (client compression="deflate", the upstream's
default) and off (client compression=None, upstream --no-compression); the extension the client got through each
path is printed, since a proxy could drop it.

Per path: msgs/s, p50/p99 round trip, the proxy process's CPU time over the message phase per message (utime+stime
from /proc/PID/stat; for direct, the upstream's), its peak RSS (VmHWM), and the upstream's CPU per message (the same
upstream serves every path, so a proxy that changes its work shows here). Processes are started in their own
session and stopped by PID (SIGINT, SIGKILL after 20 s); everything listens on 127.0.0.1.

--profile py-spy runs each case once more with wsinspect proxy alone under ``py-spy record`` and prints its hot
spots (bench/profile_top.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchutil  # bench/benchutil.py, beside this file
import serve_bench  # bench/serve_bench.py: the load client and process handling
from serve_bench import (
    HOST,
    TREE,
    Load,
    Result,
    _div,
    code_snapshots,
    fmt_size,
    free_port,
    problems,
    raise_fd_limit,
    run_load,
    served_package,
)
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
DEFAULT_MITMDUMP = Path("/tmp/mitmvenv/bin/mitmdump")


class Child(serve_bench.Server):
    """A process listening on ``port`` (serve_bench.Server's waiting, peak RSS and stopping, with our own argv)."""

    def __init__(self, kind: str, argv: list[str], port: int, *, tree: Path = TREE, pyspy_to: Path | None = None) \
            -> None:
        self.kind, self.log, self.port = kind, "quiet", port
        self.log_path = None
        self.profile_path = pyspy_to
        self.pty = None
        self._pyspy: subprocess.Popen[bytes] | None = None
        self.argv = argv
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tree,
                                        start_new_session=True, stdin=subprocess.DEVNULL)
        self._wait_listening()
        if pyspy_to is not None:
            self._pyspy = subprocess.Popen(["py-spy", "record", "--pid", str(self.process.pid), "-r", "200",
                                            "-f", "raw", "-o", str(pyspy_to)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let py-spy attach


def upstream_server(compression: bool) -> Child:
    port = free_port()
    argv = [sys.executable, str(HERE / "websockets_echo.py"), "--host", HOST, "--port", str(port)]
    return Child("upstream", argv + ([] if compression else ["--no-compression"]), port)


def wsinspect_proxy(upstream: int, connections: int, tree: Path, label: str, pyspy_to: Path | None = None) -> Child:
    port = free_port()
    argv = [sys.executable, "-m", "wsinspect", "proxy", "--upstream", f"ws://{HOST}:{upstream}/", "--listen",
            f"{HOST}:{port}", "--quiet", "--max-connections", str(max(1024, 2 * connections))]
    return Child(label, argv, port, tree=tree, pyspy_to=pyspy_to)


def mitmproxy(mitmdump: str, upstream: int, confdir: Path) -> Child:
    port = free_port()
    argv = [mitmdump, "--mode", f"reverse:http://{HOST}:{upstream}", "--listen-host", HOST, "--listen-port",
            str(port), "-q", "--set", f"confdir={confdir}"]
    return Child("mitmproxy", argv, port)


async def negotiated(port: int, compression: bool) -> str:
    """The Sec-WebSocket-Extensions the client got through this path ('none' if none)."""
    async with connect(f"ws://{HOST}:{port}/probe", compression="deflate" if compression else None,
                       ping_interval=None, open_timeout=10, close_timeout=5) as ws:
        assert ws.response is not None
        await ws.send("probe")
        await ws.recv()
        return ws.response.headers.get("Sec-WebSocket-Extensions") or "none"


@dataclass
class Route:
    label: str
    child: Child | None  # None: direct to the upstream
    runs: list[Result]
    upstream_cpu_s: list[float]


def measure(load: Load, args: argparse.Namespace, others: list[tuple[str, Path]]) -> tuple[list[Route], Child]:
    """Start the upstream and every proxy in front of it, warm each path, then run the loads interleaved."""
    upstream = upstream_server(load.compression)
    children: list[Child] = [upstream]
    paths: list[Route] = []
    try:
        for label, tree in (("wsinspect", TREE), *((f"wsinspect {sha}", code) for sha, code in others)):
            child = wsinspect_proxy(upstream.port, load.connections, tree, label)
            children.append(child)
            paths.append(Route(label, child, [], []))
        child = mitmproxy(args.mitmdump, upstream.port, args.out_dir / "mitmproxy-conf")
        children.append(child)
        paths.append(Route("mitmproxy", child, [], []))
        paths.append(Route("direct", None, [], []))
        for path in paths:
            port = path.child.port if path.child else upstream.port
            extensions = asyncio.run(negotiated(port, load.compression))
            print(f"{path.label}: extensions negotiated: {extensions}")
            warm = Load(min(10, load.connections), 10, load.size, load.compression, load.timeout, load.seed + 1)
            asyncio.run(run_load(port, warm, path.label, None))
        for r in range(args.repeat):
            order = paths if r % 2 == 0 else paths[::-1]
            for path in order:
                port, pid = (path.child.port, path.child.pid) if path.child else (upstream.port, upstream.pid)
                upstream_before = serve_bench._proc_cpu(upstream.pid)
                result = asyncio.run(run_load(port, Load(load.connections, load.messages, load.size,
                                                         load.compression, load.timeout, load.seed + 7 * r),
                                              path.label, pid))
                path.upstream_cpu_s.append(serve_bench._proc_cpu(upstream.pid) - upstream_before)
                path.runs.append(result)
        for path in paths:
            for result in path.runs:
                result.server_peak_rss_kib = (path.child or upstream).peak_rss_kib()
    finally:
        for child in children[::-1]:
            child.stop()
    return paths, upstream


def median(path: Route) -> tuple[Result, float]:
    """The median run by msgs/s (problems of every run added to it) and the upstream's CPU in that run."""
    order = sorted(range(len(path.runs)), key=lambda i: path.runs[i].rate)
    pick = order[len(order) // 2]
    best = path.runs[pick]
    for run in path.runs:
        if run is not best:
            best.lost += run.lost
            best.mismatched += run.mismatched
            best.failed_connections += run.failed_connections
            best.unclean_closes += run.unclean_closes
            for k, v in run.errors.items():
                best.errors[k] = best.errors.get(k, 0) + v
    best.rates = [run.rate for run in path.runs]
    return best, path.upstream_cpu_s[pick]


def per_message_us(cpu_s: float, r: Result) -> float:
    return 1e6 * cpu_s / max(1, r.echoed)


HEADER = ("| path | msgs/s (median) | runs msgs/s | p50 ms | p99 ms | proxy CPU µs/msg | proxy CPU | "
          "proxy peak RSS | upstream CPU µs/msg | echoed | problems |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def row(label: str, r: Result, upstream_cpu_s: float, proxied: bool, messages: int) -> str:
    spread = "/".join(f"{x:,.0f}" for x in r.rates)
    cpu = (f"{per_message_us(r.server_cpu_s, r):.0f} | {100 * r.server_cpu_s / r.seconds:.0f}% | "
           f"{r.server_peak_rss_kib / 1024:.0f} MiB" if proxied else "- | - | -")
    return (f"| {label} | {r.rate:,.0f} | {spread} | {r.pct(0.50):.2f} | {r.pct(0.99):.2f} | {cpu} | "
            f"{per_message_us(upstream_cpu_s, r):.0f} | {r.echoed:,}/{messages:,} | {problems(r)} |")


def find_mitmdump(given: str | None) -> str | None:
    if given:
        return given if os.access(given, os.X_OK) or shutil.which(given) else None
    if os.access(DEFAULT_MITMDUMP, os.X_OK):
        return str(DEFAULT_MITMDUMP)
    return shutil.which("mitmdump")


def mitmdump_version(mitmdump: str) -> str:
    said = subprocess.run([mitmdump, "--version"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in said.splitlines() if line.startswith("Mitmproxy")), "?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="messages per connection")
    parser.add_argument("--size", type=int, action="append", help="payload bytes; repeatable (default: 64 and 16384)")
    parser.add_argument("--compression", choices=("both", "on", "off"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="loads per path and case; the median is shown")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one echo before it is lost")
    parser.add_argument("--mitmdump", metavar="PATH",
                        help=f"mitmproxy's mitmdump (default: {DEFAULT_MITMDUMP}, else mitmdump on PATH)")
    parser.add_argument("--code", metavar="COMMIT", action="append", default=[],
                        help="also run wsinspect/ as committed at COMMIT (repeatable), in the same interleaved runs")
    parser.add_argument("--profile", choices=("py-spy", "none"), default="none",
                        help="py-spy: each case once more with wsinspect proxy under py-spy; its hot spots")
    parser.add_argument("--profile-seconds", type=float, default=10.0,
                        help="seconds of load under the profiler per case (whole loads, at least one)")
    parser.add_argument("--out", default=str(HERE / "out"), help="profiles, mitmproxy's confdir (default: bench/out)")
    args = parser.parse_args()
    mitmdump = find_mitmdump(args.mitmdump)
    if mitmdump is None:
        print(f"proxy_bench: no mitmdump found ({args.mitmdump or f'{DEFAULT_MITMDUMP}, nor on PATH'}). Install "
              "mitmproxy in a venv of its own (it conflicts with this environment's packages):\n"
              "    python -m venv /tmp/mitmvenv && /tmp/mitmvenv/bin/pip install mitmproxy\n"
              "then run again (or pass --mitmdump PATH).", file=sys.stderr)
        return 2
    if args.profile == "py-spy" and not shutil.which("py-spy"):
        parser.error("--profile py-spy: py-spy is not on PATH (pip install py-spy)")
    args.mitmdump = mitmdump
    sizes = args.size or [64, 16384]
    args.out_dir = Path(args.out)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raise_fd_limit(6 * args.connections + 256)  # the client's sockets, and each proxy's two per connection

    print(f"wsinspect proxy vs mitmproxy {mitmdump_version(mitmdump)} ({mitmdump}) reverse proxy, upstream websockets "
          f"{importlib.metadata.version('websockets')} echo server; {os.cpu_count()} cores; python "
          f"{sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.2f}")
    fingerprint = benchutil.source_fingerprint()
    print(f"wsinspect: {benchutil.code_state()}; proxy runs {served_package(TREE)}")
    others = code_snapshots(parser, args.code, args.out_dir, "proxy")
    print(f"load: {args.connections} connections held open at once x {args.messages} messages each (alternately "
          f"text and binary, each echo awaited and checked), {args.repeat} run(s) per path, median shown")
    total = args.connections * args.messages
    compressions = {"both": [True, False], "on": [True], "off": [False]}[args.compression]
    failures = 0
    summary: list[str] = []
    for size in sizes:
        for compression in compressions:
            load = Load(args.connections, args.messages, size, compression, args.timeout)
            print(f"\n### {fmt_size(size)}, compression {'on' if compression else 'off'}, "
                  f"{args.connections} x {args.messages}\n")
            paths, _ = measure(load, args, others)
            picked = {path.label: median(path) for path in paths}
            print(HEADER)
            for path in paths:
                r, up = picked[path.label]
                print(row(path.label, r, up, path.child is not None, total))
                failures += not r.ok
            ref, _ = picked["mitmproxy"]
            direct, _ = picked["direct"]
            for path in paths:
                if not path.label.startswith("wsinspect"):
                    continue
                r, _ = picked[path.label]
                print(f"\nratio {path.label}/mitmproxy: {_div(r.rate, ref.rate):.2f}x msgs/s; p50 "
                      f"{_div(r.pct(0.5), ref.pct(0.5)):.2f}x, p99 {_div(r.pct(0.99), ref.pct(0.99)):.2f}x (latency, "
                      f"lower is better); proxy CPU per message "
                      f"{_div(per_message_us(r.server_cpu_s, r), per_message_us(ref.server_cpu_s, ref)):.2f}x; "
                      f"peak RSS {_div(r.server_peak_rss_kib, ref.server_peak_rss_kib):.2f}x; "
                      f"{_div(r.rate, direct.rate):.2f}x of direct")
            ws, _ = picked["wsinspect"]
            summary.append(f"| {fmt_size(size)} | {'on' if compression else 'off'} | {args.connections}x"
                           f"{args.messages} | {ws.rate:,.0f} | {ref.rate:,.0f} | {direct.rate:,.0f} | "
                           f"{_div(ws.rate, ref.rate):.2f} | {ws.pct(0.5):.2f} / {ws.pct(0.99):.2f} | "
                           f"{ref.pct(0.5):.2f} / {ref.pct(0.99):.2f} | {per_message_us(ws.server_cpu_s, ws):.0f} / "
                           f"{per_message_us(ref.server_cpu_s, ref):.0f} | {ws.server_peak_rss_kib / 1024:.0f} / "
                           f"{ref.server_peak_rss_kib / 1024:.0f} MiB |")

    print("\n## summary\n")
    print("| size | compression | load | wsinspect msgs/s | mitmproxy msgs/s | direct msgs/s | ratio ws/mitm | "
          "wsinspect p50/p99 ms | mitmproxy p50/p99 ms | proxy CPU µs/msg ws/mitm | peak RSS ws/mitm |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(summary))

    if args.profile == "py-spy":
        import profile_top

        for size in sizes:
            for compression in compressions:
                failures += profile(Load(args.connections, args.messages, size, compression, args.timeout), args,
                                    profile_top)
    benchutil.check_unchanged(fingerprint)
    print(f"\n{'all echoes arrived intact' if not failures else f'{failures} case(s) with problems (see tables)'}")
    return 1 if failures else 0


def profile(load: Load, args: argparse.Namespace, profile_top: Any) -> int:
    on = "on" if load.compression else "off"
    print(f"\n## profile: wsinspect proxy --quiet under py-spy, {fmt_size(load.size)}, compression {on}, "
          f"{load.connections} x {load.messages}, loads repeated for {args.profile_seconds:g} s\n")
    upstream = upstream_server(load.compression)
    target = args.out_dir / f"proxy-{load.size}-{on}.pyspy.txt"
    rates: list[float] = []
    problems_seen = 0
    try:
        child = wsinspect_proxy(upstream.port, load.connections, TREE, "wsinspect (profiled)", pyspy_to=target)
        try:
            spent = 0.0
            while not rates or (spent < args.profile_seconds and len(rates) < 50):
                r = asyncio.run(run_load(child.port, Load(load.connections, load.messages, load.size,
                                                          load.compression, load.timeout, load.seed + len(rates)),
                                         "profiled", child.pid))
                rates.append(r.rate)
                spent += r.seconds
                problems_seen += not r.ok
        finally:
            child.stop()
    finally:
        upstream.stop()
    print(f"({len(rates)} loads under the profiler, median {sorted(rates)[len(rates) // 2]:,.0f} msgs/s; "
          f"profile in {target})")
    if target.exists():
        profile_top.pyspy(str(target), 25)
    return problems_seen


def _stop_on_term() -> None:
    """SIGTERM ends the bench like Ctrl-C, so the finally clauses stop every child."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


if __name__ == "__main__":
    _stop_on_term()
    sys.exit(main())
