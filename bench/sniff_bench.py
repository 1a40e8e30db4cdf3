"""Benchmark ``wsinspect sniff -i lo`` against ``tshark -i lo``, capturing the same loopback WebSocket load.

Not a test: it prints numbers side by side, and asserts no timings. Run from the repository root, as root (both
tools open packet sockets):

    python bench/sniff_bench.py                          # rates 1k, 5k, 20k msgs/s and flat out; 3 faces
    python bench/sniff_bench.py --rate 5000 --face list --repeat 1   # a quick look
    python bench/sniff_bench.py --code b1efba3           # this tree against b1efba3's wsinspect/, interleaved
    python bench/sniff_bench.py --with='-B 64' --no-tshark   # sniff with its defaults and with -B 64

The load: ``bench/websockets_echo.py`` (the websockets library's echo server, compression off unless
--compression) on 127.0.0.1, started by this bench, and a client in this process (websockets' asyncio client) that
opens C connections, then sends M messages in all (alternately text and binary, SIZE random bytes, serve_bench's
payloads) at a chosen total rate, spread round robin over the connections, while each connection's echoes are
counted as they come; "max" sends them all flat out, without waiting for echoes (so a segment often carries
several frames). Then every connection is closed (a close frame each way). The frames on the wire are thus
known from the client's own counts: 2 per echoed message, 2 per close handshake; text frames: 2 per text message.

The tools, one at a time (never two capturing at once, so neither steals the other's CPU), each started, waited
for until it says it is capturing, given one load, then stopped with SIGINT (Ctrl-C) once the load is over; the
order alternates from one run to the next (A B, B A, ...). Faces:

  list     wsinspect sniff -i lo --port P > FILE          tshark -i lo -f 'tcp port P' -Y websocket > FILE
  json     wsinspect sniff -i lo --port P --json > FILE   tshark -i lo -f 'tcp port P' -Y websocket -T fields
                                                                 -e frame.number -e websocket.opcode
                                                                 -e websocket.payload_length > FILE
  filter   wsinspect sniff -i lo --port P -Y 'websocket.opcode == 1' > FILE
                                                          tshark -i lo -f 'tcp port P' -Y 'websocket.opcode == 1'

Per run: the frames the tool printed against the frames sent (wsinspect: rows of the list, "frame" JSON lines;
tshark: its list gets one more column, every websocket.opcode of the packet, since Info names only a packet's first
frame, and its fields lines carry them too); the kernel drops each tool reports at the end (tshark: "N packets
dropped"; wsinspect: its end-of-capture line, when its version prints one) and the packets it says it captured
(tshark counts the packets it displayed); the CPU time (user+sys from /proc/PID/stat) of the tool's process tree
(tshark and its dumpcap) from just before the load until the tool is idle again (start-up and shut-down left out:
they would swamp a short load), per 1,000 frames sent and per 1,000 packets lo carried meanwhile (/proc/net/dev:
other programs' loopback traffic counts too); its peak RSS (VmHWM, tshark's and dumpcap's added up); and how long it
took to become idle after the load (the backlog it still had to decode). Each rate's result is the median run by
CPU; frames missing are the worst run's. The last table gives, per tool and face, the highest sent rate at which no
run lost a frame.

Every tool's stdout goes to a file under --out (deleted unless --keep); processes are started in their own session
and stopped by their PID's process group (SIGINT, SIGKILL after --finish-timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchutil  # bench/benchutil.py, beside this file
import serve_bench  # the echo server, its payloads, free ports, --code snapshots
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
HOST = serve_bench.HOST
FACES = ("list", "json", "filter")
TEXT_OPCODE_FILTER = "websocket.opcode == 1"
# tshark's Info column names only the first WebSocket frame of a packet, so its list gets one more column, every
# websocket.opcode of the packet (comma-separated numbers), by which the frames it decoded are counted.
TSHARK_COLUMNS = ('gui.column.format:"No.","%m","Time","%t","Source","%s","Destination","%d","Protocol","%p",'
                  '"Length","%L","Info","%i","Opcodes","%Cus:websocket.opcode:0:U"')
# PYTHONUNBUFFERED (set in some CI and container environments) would make wsinspect's stdout write a line at a time;
# a user's shell does not set it.
TOOL_ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
WSINSPECT_ROW = re.compile(rb"^ *\d+ +\d+\.\d+ ", re.MULTILINE)  # a frame row of the packet list
WSINSPECT_TEXT_ROW = re.compile(rb"^ *\d+ +\d+\.\d+ .* Text ", re.MULTILINE)


# ---------------------------------------------------------------------------------------------------------------
# the load


@dataclass
class LoadResult:
    sent: int = 0  # messages
    text_sent: int = 0
    echoed: int = 0
    text_echoed: int = 0
    connections: int = 0
    closes: int = 0  # close handshakes completed (a close frame each way)
    seconds: float = 0.0  # from the first message to the last echo
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return 2 * self.echoed + 2 * self.closes

    @property
    def text_frames(self) -> int:
        return 2 * self.text_echoed

    @property
    def rate(self) -> float:
        return self.echoed / self.seconds if self.seconds else 0.0


async def run_load(port: int, connections: int, messages: int, size: int, rate: float | None, compression: bool,
                   seed: int, timeout: float = 30.0) -> LoadResult:
    """Send ``messages`` in all over ``connections``, at ``rate`` msgs/s (None: flat out, closed loop per
    connection), count the echoes, then close every connection."""
    result = LoadResult()
    per_connection = -(-messages // connections)
    load = serve_bench.Load(connections, per_connection, size, compression, timeout, seed)
    data = [serve_bench.payloads(load, c) for c in range(connections)]
    sockets: list[ClientConnection] = []
    for _ in range(connections):
        sockets.append(await connect(f"ws://{HOST}:{port}/sniff-bench", compression="deflate" if compression else None,
                                     ping_interval=None, open_timeout=30, close_timeout=10, max_size=4 << 20))
    result.connections = len(sockets)
    # Message i goes on connection i % connections as its (i // connections)-th message.
    plan = [(i % connections, data[i % connections][i // connections]) for i in range(messages)]
    expected = [sum(1 for c, _ in plan if c == n) for n in range(connections)]

    def note(error: BaseException) -> None:
        result.errors[type(error).__name__] = result.errors.get(type(error).__name__, 0) + 1

    async def receive(n: int) -> None:
        ws = sockets[n]
        for _ in range(expected[n]):
            try:
                reply = await asyncio.wait_for(ws.recv(), timeout)
            except Exception as error:  # a lost echo: counted, not fatal
                note(error)
                return
            result.echoed += 1
            result.text_echoed += isinstance(reply, str)

    receivers = [asyncio.create_task(receive(n)) for n in range(connections)]
    start = time.perf_counter()
    sent = 0
    while sent < messages:
        # Flat out (rate None): everything at once, the sends waiting only for the socket's buffer to drain.
        due = messages if rate is None else min(messages, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            c, message = plan[sent]
            try:
                await sockets[c].send(message)
            except Exception as error:
                note(error)
            result.sent += 1
            result.text_sent += isinstance(message, str)
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*receivers)
    result.seconds = time.perf_counter() - start
    for ws in sockets:
        try:
            await ws.close()
        except Exception as error:
            note(error)
        result.closes += ws.close_code == 1000
    return result


# ---------------------------------------------------------------------------------------------------------------
# the tools


@dataclass
class Tool:
    label: str
    kind: str  # "wsinspect" or "tshark"
    tree: Path = TREE  # wsinspect: the tree whose wsinspect/ runs (cwd of python -m)
    extra: tuple[str, ...] = ()  # wsinspect: more options (--with)

    def argv(self, face: str, port: int) -> list[str]:
        if self.kind == "wsinspect":
            argv = [sys.executable, "-m", "wsinspect", "sniff", "-i", "lo", "--port", str(port), *self.extra]
            return argv + {"list": [], "json": ["--json"], "filter": ["-Y", TEXT_OPCODE_FILTER]}[face]
        argv = ["tshark", "-i", "lo", "-f", f"tcp port {port}"]
        return argv + {"list": ["-Y", "websocket", "-o", TSHARK_COLUMNS],
                       "json": ["-Y", "websocket", "-T", "fields", "-e", "frame.number", "-e", "websocket.opcode",
                                "-e", "websocket.payload_length"],
                       "filter": ["-Y", TEXT_OPCODE_FILTER, "-o", TSHARK_COLUMNS]}[face]

    def frames_printed(self, face: str, output: bytes) -> int:
        if self.kind == "wsinspect":
            if face == "json":
                return output.count(b'"type":"frame"')
            return len((WSINSPECT_TEXT_ROW if face == "filter" else WSINSPECT_ROW).findall(output))
        # One line per packet, ending (list, filter) or going on (json: number, opcodes, lengths) with its frames'
        # opcodes, comma-separated.
        opcode_lists = [line.split(b"\t")[1] if face == "json" else line.rsplit(None, 1)[-1]
                        for line in output.splitlines() if line.strip()]
        opcodes = [opcode for opcodes in opcode_lists for opcode in opcodes.split(b",") if opcode.isdigit()]
        return sum(opcode == b"1" for opcode in opcodes) if face == "filter" else len(opcodes)


@dataclass
class Run:
    tool: str
    face: str
    rate: str
    load: LoadResult
    frames_expected: int
    frames_printed: int
    packets: int | None  # what the tool says it captured
    kernel_drops: int | None  # what the tool says the kernel dropped (None: it says nothing)
    cpu_s: float  # user + sys of the tool's process tree over the load and its catching up
    peak_rss_kib: int
    catch_up_s: float  # after the load, until the tool was idle
    wire_packets: int
    output_bytes: int
    returncode: int | None
    stderr_tail: str

    @property
    def missing(self) -> int:
        return self.frames_expected - self.frames_printed


WSINSPECT_CAPTURED = re.compile(r"(\d[\d,]*) packets? captured")
WSINSPECT_DROPPED = re.compile(r"(?:kernel dropped|dropped by the kernel:?) (\d[\d,]*)|(\d[\d,]*) (?:packets )?dropped "
                               r"by the kernel")
TSHARK_CAPTURED = re.compile(r"^(\d+) packets? captured", re.MULTILINE)
TSHARK_DROPPED = re.compile(r"(\d+) packets? dropped")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def parse_counts(kind: str, stderr: str) -> tuple[int | None, int | None]:
    """(packets captured, kernel drops) as the tool printed them; None where it printed nothing."""
    if kind == "tshark":
        captured = TSHARK_CAPTURED.search(stderr)
        dropped = TSHARK_DROPPED.search(stderr)
        return (_number(captured.group(1)) if captured else None,
                _number(dropped.group(1)) if dropped else (0 if captured else None))
    captured = WSINSPECT_CAPTURED.search(stderr)
    dropped = WSINSPECT_DROPPED.search(stderr)
    drops = None
    if dropped:
        drops = _number(dropped.group(1) or dropped.group(2))
    elif captured:
        drops = 0
    return (_number(captured.group(1)) if captured else None), drops


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (tshark's dumpcap), from /proc."""
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            pids += [int(child) for child in Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()]
        i += 1
    return pids


def tree_cpu(pids: list[int]) -> float:
    return sum(serve_bench._proc_cpu(pid) for pid in pids)  # utime + stime of each, from /proc/PID/stat


def tree_peak_rss_kib(pids: list[int]) -> int:
    """The sum of the processes' own peaks (VmHWM): tshark needs dumpcap beside it to capture."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def loopback_packets() -> int:
    """Packets lo has carried (its receive count in /proc/net/dev; every packet on lo is received once)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[1])
    return 0


@dataclass
class Measured:
    load: LoadResult
    cpu_s: float  # of the tool's process tree, from just before the load until it was idle again
    peak_rss_kib: int
    catch_up_s: float  # from the end of the load until the tool was idle (the backlog it still had to decode)
    wire_packets: int  # packets on lo meanwhile (other programs' included)
    output: bytes
    stderr: str
    returncode: int | None


def run_tool(tool: Tool, face: str, port: int, load_args: dict[str, object], out_dir: Path,
             finish_timeout: float) -> Measured:
    """Start the tool, wait until it captures, run the load, wait until the tool is idle (its CPU time stands
    still), then SIGINT it. Start-up and shut-down are left out of the CPU time: they would swamp a short load."""
    stdout_path = out_dir / f"sniff-{tool.kind}-{face}.out"
    stderr_path = out_dir / f"sniff-{tool.kind}-{face}.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(tool.argv(face, port), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                 cwd=tool.tree, start_new_session=True, env=TOOL_ENVIRONMENT)
    try:
        deadline = time.monotonic() + 30
        while b"Capturing on" not in stderr_path.read_bytes():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tool.label} did not start capturing: "
                                   f"{stderr_path.read_text(errors='replace')[-500:]}")
            time.sleep(0.02)
        time.sleep(0.5)  # "Capturing on" comes just before the first read (tshark's dumpcap says it a bit earlier)
        pids = process_tree(child.pid)
        cpu_before = tree_cpu(pids)
        wire_before = loopback_packets()
        load = asyncio.run(run_load(port, **load_args))  # type: ignore[arg-type]
        load_over = time.perf_counter()
        cpu_then, still = tree_cpu(pids), 0
        while still < 3 and time.perf_counter() - load_over < finish_timeout:  # 3 x 0.2 s without a CPU tick
            time.sleep(0.2)
            cpu_now = tree_cpu(pids)
            still = still + 1 if cpu_now - cpu_then < 0.005 else 0
            cpu_then = cpu_now
        catch_up = max(0.0, time.perf_counter() - load_over - 0.6)
        wire_packets = loopback_packets() - wire_before
        peak = tree_peak_rss_kib(pids)
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C, to the tool's own process group (tshark and dumpcap)
        child.wait(timeout=finish_timeout)
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    err = "\n".join(line for line in stderr_path.read_text(errors="replace").splitlines()
                    if "dangerous" not in line and "[Main MESSAGE]" not in line)
    return Measured(load, cpu_then - cpu_before, peak, catch_up, wire_packets, stdout_path.read_bytes(), err,
                    child.returncode)


# ---------------------------------------------------------------------------------------------------------------
# the report


def rate_name(rate: float | None) -> str:
    if rate is None:
        return "max"
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


def parse_rate(text: str) -> float | None:
    if text == "max":
        return None
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", action="append", metavar="MSGS_PER_S",
                        help="total message rate (e.g. 1000, 5k, max); repeatable (default: 1k, 5k, 20k, max)")
    parser.add_argument("--face", action="append", choices=FACES, help="repeatable (default: all)")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="each paced load sends rate x SECONDS messages (default 4)")
    parser.add_argument("--max-messages", type=int, default=20_000, help="messages of a flat-out load")
    parser.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate on (default off)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool, face and rate; the median is shown")
    parser.add_argument("--finish-timeout", type=float, default=120.0,
                        help="seconds a tool may take to exit after SIGINT before it is killed")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--keep", action="store_true", help="keep the tools' output files")
    parser.add_argument("--code", metavar="COMMIT", action="append", default=[],
                        help="also run wsinspect/ as committed at COMMIT (repeatable), in the same interleaved runs")
    parser.add_argument("--tree", metavar="DIR", action="append", default=[],
                        help="also run the wsinspect/ in DIR (an experiment not committed), in the same runs")
    parser.add_argument("--with", dest="variants", metavar="OPTIONS", action="append", default=[],
                        help="also run this tree's wsinspect sniff with these options (e.g. --with='-B 64'), "
                             "repeatable, in the same interleaved runs")
    parser.add_argument("--no-tshark", action="store_true", help="wsinspect only (with --code: a before/after)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("capturing needs root (both tools open packet sockets)")
    if not args.no_tshark and shutil.which("tshark") is None:
        parser.error("tshark is not on the PATH (Debian: apt install tshark), or pass --no-tshark")
    rates = [parse_rate(text) for text in (args.rate or ["1k", "5k", "20k", "max"])]
    faces = args.face or list(FACES)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = benchutil.source_fingerprint()
    tshark_version = "" if args.no_tshark else subprocess.run(
        ["tshark", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    print(f"wsinspect sniff vs {tshark_version or 'nothing'}; {os.cpu_count()} cores; python "
          f"{sys.version.split()[0]}; websockets {importlib.metadata.version('websockets')}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"wsinspect: {benchutil.code_state()}")
    tools = [Tool("wsinspect", "wsinspect")]
    tools += [Tool(f"wsinspect {sha}", "wsinspect", code)
              for sha, code in serve_bench.code_snapshots(parser, args.code, out_dir, "sniff")]
    tools += [Tool(f"wsinspect {tree}", "wsinspect", Path(tree).resolve()) for tree in args.tree]
    tools += [Tool(f"wsinspect {options}", "wsinspect", extra=tuple(options.split())) for options in args.variants]
    tools += [] if args.no_tshark else [Tool("tshark", "tshark")]
    print(f"load: {args.connections} connections, {args.size} B messages (alternately text and binary), "
          f"compression {'on' if args.compression else 'off'}; paced loads send rate x {args.seconds:g} s messages, "
          f"flat out {args.max_messages:,}; {args.repeat} run(s) per tool, face and rate, one tool capturing at a time")
    server = serve_bench.Server("websockets", args.compression, connections=args.connections, out_dir=out_dir)
    runs: list[Run] = []
    try:
        print("\ncommands:")
        for tool in tools:
            for face in faces:
                print(f"  {tool.label:>18} {face:>6}: {shlex.join(tool.argv(face, server.port))} > FILE"
                      + (f"   (cwd {tool.tree})" if tool.tree != TREE else ""))
        r = 0
        for face in faces:
            for rate in rates:
                messages = args.max_messages if rate is None else max(args.connections, int(rate * args.seconds))
                for repeat in range(args.repeat):
                    order = tools if r % 2 == 0 else tools[::-1]
                    r += 1
                    for tool in order:
                        load_args: dict[str, object] = {
                            "connections": args.connections, "messages": messages, "size": args.size,
                            "rate": rate, "compression": args.compression, "seed": 6455 + repeat}
                        measured = run_tool(tool, face, server.port, load_args, out_dir, args.finish_timeout)
                        load = measured.load
                        packets, drops = parse_counts(tool.kind, measured.stderr)
                        expected = load.text_frames if face == "filter" else load.frames
                        run = Run(tool.label, face, rate_name(rate), load, expected,
                                  tool.frames_printed(face, measured.output), packets, drops, measured.cpu_s,
                                  measured.peak_rss_kib, measured.catch_up_s, measured.wire_packets,
                                  len(measured.output),
                                  measured.returncode, measured.stderr[-300:])
                        runs.append(run)
                        print(f"  {face:>6} {run.rate:>4} #{repeat + 1} {tool.label:>18}: sent {load.rate:,.0f} "
                              f"msgs/s; frames {run.frames_printed:,}/{expected:,}; packets {packets} (on lo "
                              f"{run.wire_packets}); drops "
                              f"{drops}; CPU {run.cpu_s:.2f} s; catch-up {run.catch_up_s:.1f} s; "
                              f"load average {os.getloadavg()[0]:.2f}", flush=True)
                        if load.errors:
                            print(f"      load errors: {load.errors}")
                        if run.returncode not in (0, 1):
                            print(f"      exit {run.returncode}: {run.stderr_tail}")
    finally:
        server.stop()
        if not args.keep:
            for path in out_dir.glob("sniff-*"):
                path.unlink(missing_ok=True)

    print(f"\n## sniff vs tshark on lo (load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())})\n")
    print("| face | rate | tool | sent msgs/s | frames printed / sent | missing (worst run) | kernel drops reported | "
          "packets the tool counted | CPU ms / 1k frames | CPU ms / 1k packets on lo | peak RSS | "
          "catch-up after the load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians: dict[tuple[str, str, str], Run] = {}
    for face in faces:
        for rate in rates:
            for tool in tools:
                mine = [run for run in runs
                        if run.tool == tool.label and run.face == face and run.rate == rate_name(rate)]
                median = sorted(mine, key=lambda run: run.cpu_s)[len(mine) // 2]
                medians[face, median.rate, tool.label] = median
                worst = max(run.missing for run in mine)
                drops = "not reported" if median.kernel_drops is None else \
                    "/".join(str(run.kernel_drops) for run in mine)
                print(f"| {face} | {median.rate} | {tool.label} | {median.load.rate:,.0f} | "
                      f"{median.frames_printed:,} / {median.frames_expected:,} | {worst:,} | {drops} | "
                      f"{median.packets if median.packets is not None else '?'} | "
                      f"{1e6 * median.cpu_s / max(1, median.frames_expected):.0f} | "
                      f"{1e6 * median.cpu_s / max(1, median.wire_packets):.0f} | "
                      f"{median.peak_rss_kib / 1024:.0f} MiB | {median.catch_up_s:.1f} s |")
    if not args.no_tshark:
        print("\nratios wsinspect/tshark (median runs; CPU per 1,000 frames sent, peak RSS):\n")
        print("| face | rate | CPU | peak RSS | missing frames wsinspect / tshark |")
        print("|---|---|---:|---:|---|")
        for face in faces:
            for rate in rates:
                ws, ts = medians[face, rate_name(rate), "wsinspect"], medians[face, rate_name(rate), "tshark"]
                print(f"| {face} | {rate_name(rate)} | {_div(ws.cpu_s, ts.cpu_s):.2f}x | "
                      f"{_div(ws.peak_rss_kib, ts.peak_rss_kib):.2f}x | {ws.missing:,} / {ts.missing:,} |")
    print("\nhighest rate with no frame missing in any run (sent msgs/s of its slowest run, and packets/s on lo):\n")
    print("| face | " + " | ".join(tool.label for tool in tools) + " |")
    print("|---|" + "---:|" * len(tools))
    for face in faces:
        cells = []
        for tool in tools:
            clean = [run for run in runs if run.tool == tool.label and run.face == face]
            by_rate: dict[str, list[Run]] = {}
            for run in clean:
                by_rate.setdefault(run.rate, []).append(run)
            # The slowest run of each rate at which no run lost a frame: its msgs/s, and packets/s on lo (a
            # flat-out load packs several frames in a packet, a paced one mostly one).
            lossless = [min((run.load.rate, _div(run.wire_packets, run.load.seconds)) for run in group)
                        for group in by_rate.values() if all(run.missing <= 0 for run in group)]
            best = max(lossless, default=None)
            cells.append(f"{best[0]:,.0f} ({best[1]:,.0f} packets/s)" if best else "none")
        print(f"| {face} | " + " | ".join(cells) + " |")
    benchutil.check_unchanged(fingerprint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
