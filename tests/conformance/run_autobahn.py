#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzingclient cases against ``wsinspect serve`` and summarise the result.

The cases are the Autobahn case files, driven on Python 3 by ``kosoku`` (PyPI). kosoku has no opening-handshake
timeout of its own and no per-case timeout, so this script runs every case as its own ``run_fuzzingclient`` call
under ``asyncio.wait_for``: a case that hangs is reported as FAILED (runner timeout) and the run goes on.

What it does:

1. reads the Autobahn-style config (``fuzzingclient.json`` beside this file): ``servers`` (agent + url), ``cases``,
   ``exclude-cases``, ``exclude-agent-cases``, ``outdir``. The port in the url is a placeholder: the server is
   started on a free loopback port and the url is pointed at it;
2. starts ``wsinspect serve --mode echo --quiet --max-message 16M --max-frame 16M`` as a subprocess, waits until it
   accepts TCP connections, runs the selected cases, and stops it by its PID (SIGTERM, then SIGKILL);
3. writes Autobahn-format reports (``index.json`` keyed agent -> case, one ``<agent>_case_<id>.json``/``.html`` per
   case, ``index.html``) to the output directory (default ``tests/conformance/reports/``, gitignored);
4. reads ``index.json`` back and prints the counts per ``behavior`` and ``behaviorClose``, then every case that is
   not OK / NON-STRICT / INFORMATIONAL or whose close was not OK / INFORMATIONAL, with its description and the
   report's reason. Exit status 1 if there is any such case for wsinspect, 0 otherwise (2: could not run).

``--compare-websockets`` also runs the same cases against a reference echo server built on the ``websockets``
library (permessage-deflate on), as agent ``websockets``; its failures are shown for comparison but do not change
the exit status.

Examples::

    python tests/conformance/run_autobahn.py                       # the whole suite (517 cases)
    python tests/conformance/run_autobahn.py --cases '1.*,2.*,5.*'
    python tests/conformance/run_autobahn.py --cases '12.*,13.*' --compare-websockets
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_CONFIG = HERE / "fuzzingclient.json"
DEFAULT_OUTDIR = HERE / "reports"

WSINSPECT_ARGS = ["--mode", "echo", "--quiet", "--max-message", "16M", "--max-frame", "16M"]
REFERENCE_AGENT = "websockets"

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
CLOSE_BEHAVIORS = ("OK", "INFORMATIONAL", "FAILED", "FAILED BY CLIENT", "UNCLEAN", "WRONG CODE")
PASSING = frozenset(("OK", "NON-STRICT", "INFORMATIONAL"))
PASSING_CLOSE = frozenset(("OK", "INFORMATIONAL"))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the case index -------------------------------------------------------------------------------------------------


def _case_key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


_CASE_CLASSES: dict[str, Any] = {}  # case id -> Autobahn case class, filled by all_case_ids()


def all_case_ids() -> list[str]:
    """Every case id kosoku knows, in suite order (517 with kosoku 0.1.0).

    kosoku keeps its index inside the native module; this rebuilds it the way ``kosoku._caseindex`` does: one
    module per static case (``case1_1_1.py``) plus the generator modules' ``CaseN_X_X`` lists.
    """
    import kosoku
    from kosoku import _caseindex

    _caseindex.initialize_shims()
    static: list[str] = []
    generators: list[tuple[str, str]] = []
    for path in sorted((Path(kosoku.__file__).parent / "cases").glob("case*.py")):
        suffix = path.stem.removeprefix("case")
        if re.fullmatch(r"\d+(_\d+)+", suffix):
            static.append(path.stem)
            continue
        module = importlib.import_module(path.stem)
        generators += [(path.stem, name) for name in dir(module)
                       if re.fullmatch(r"Case\d+(_[0-9X]+)+", name) and isinstance(getattr(module, name), list)]
    cases, _groups = _caseindex.build_index(static, generators)
    _CASE_CLASSES.update(cases)
    return sorted(cases, key=_case_key)


def select_cases(known: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Autobahn's selection: ids or ``*`` globs to include, then ids or globs to drop."""
    unknown = [p for p in include if "*" not in p and p not in known]
    if unknown:
        raise SystemExit(f"run_autobahn: no such case: {', '.join(unknown)}")
    chosen = [c for c in known if any(fnmatch.fnmatchcase(c, p) for p in include)]
    return [c for c in chosen if not any(fnmatch.fnmatchcase(c, p) for p in exclude)]


# -- servers under test ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One server under test, run as a subprocess on loopback and stopped by its PID."""

    name: str
    argv: list[str]
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[str] = field(default_factory=list)

    def start(self, timeout: float = 20.0) -> None:
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before listening; "
                                   f"see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on 127.0.0.1:{self.port} within {timeout:g} s")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # wsinspect: close every connection with 1001, then exit
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def ensure_running(self, before_case: str) -> None:
        if self.alive:
            return
        status = self.proc.returncode if self.proc is not None else None
        note = f"{self.name} had exited (status {status}) before case {before_case}; restarted it"
        log(f"!! {note}")
        self.restarts.append(note)
        self.start()


def wsinspect_server(outdir: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "wsinspect", "serve", "--host", "127.0.0.1", "--port", "{port}", *WSINSPECT_ARGS]
    return ServerProcess("wsinspect serve", argv, outdir / "wsinspect-serve.log")


def websockets_server(outdir: Path) -> ServerProcess:
    argv = [sys.executable, str(Path(__file__).resolve()), "--_serve-websockets", "{port}"]
    return ServerProcess("websockets echo server", argv, outdir / "websockets-serve.log")


def serve_websockets(port: int) -> None:
    """The reference: an echo server on the ``websockets`` library, permessage-deflate on (its default).

    Its limits are raised to what the 9.x cases send (16 MiB messages; 9.3.x/9.4.x send 4 MiB in up to 65536
    fragments, past websockets' default cap of 4096 fragments per message, read from the environment at import).
    """
    os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, compression="deflate", max_size=2**25, ping_interval=None,
                         server_header="websockets-reference") as server:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, server.close)
            await server.wait_closed()

    asyncio.run(main())


# -- running the cases ----------------------------------------------------------------------------------------------


class _Verdict:
    def __init__(self, value: str) -> None:
        self.value = value


class SyntheticResult:
    """A case kosoku could not finish (runner timeout, crash): shaped like a ``kosoku.CaseResult``."""

    def __init__(self, case_id: str, index: int, agent: str, reason: str, duration_ms: int,
                 description: str = "", expectation: str = "") -> None:
        self.case_id = case_id
        self.case_index = index
        self.agent = agent
        self.description = description
        self.expectation = expectation
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self.duration = duration_ms
        self.report_time = False
        self.report_compression_ratio = False
        self.behavior = _Verdict("FAILED")
        self.behavior_close = _Verdict("UNCLEAN")
        self.expected: dict[str, Any] = {}
        self.expected_close: dict[str, Any] = {}
        self.received: list[Any] = []
        self.result = reason
        self.result_close = reason
        self.wirelog: list[Any] = []
        self.create_wirelog = False
        self.closed_by_me = self.failed_by_me = self.dropped_by_me = True
        self.was_clean = False
        self.was_not_clean_reason = reason
        self.was_server_connection_drop_timeout = False
        self.was_open_handshake_timeout = False
        self.was_close_handshake_timeout = False
        self.local_close_code = self.local_close_reason = None
        self.remote_close_code = self.remote_close_reason = None
        self.is_server = False
        self.create_stats = False
        self.rx_octet_stats: dict[str, int] = {}
        self.rx_frame_stats: dict[str, int] = {}
        self.tx_octet_stats: dict[str, int] = {}
        self.tx_frame_stats: dict[str, int] = {}
        self.http_request = self.http_response = ""
        self.traffic_stats = None
        self.passed = False


class Renamed:
    """A kosoku result under the config's agent name and its position in this run (the report keys on both)."""

    def __init__(self, result: Any, agent: str, index: int) -> None:
        self._result = result
        self.agent = agent
        self.case_index = index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)


def _case_texts(case_id: str) -> tuple[str, str]:
    """DESCRIPTION and EXPECTATION of a case, for results kosoku never produced."""
    cls = _CASE_CLASSES.get(case_id)
    return (getattr(cls, "DESCRIPTION", ""), getattr(cls, "EXPECTATION", "")) if cls is not None else ("", "")


async def run_cases(url: str, agent: str, cases: Sequence[str], server: ServerProcess, *, case_timeout: float,
                    deadline: float) -> list[Any]:
    import kosoku

    results: list[Any] = []
    total = len(cases)
    started = time.monotonic()
    for index, case_id in enumerate(cases, 1):
        if time.monotonic() >= deadline:
            results.append(SyntheticResult(case_id, index, agent, "not run: the run's overall --timeout expired",
                                           0, *_case_texts(case_id)))
            continue
        server.ensure_running(case_id)
        case_url = _with_port(url, server.port)
        t0 = time.monotonic()
        budget = max(1.0, min(case_timeout, deadline - t0))
        try:
            got = await asyncio.wait_for(kosoku.run_fuzzingclient(case_url, [case_id]), budget)
        except kosoku.FailureError as failure:
            got = failure.results
        except asyncio.TimeoutError:
            got = [SyntheticResult(case_id, index, agent,
                                   f"runner timeout: kosoku did not finish the case within {budget:g} s "
                                   "(hung opening handshake, missing echo, or no close)",
                                   int(budget * 1000), *_case_texts(case_id))]
        except Exception as error:  # one broken case must not end the run
            got = [SyntheticResult(case_id, index, agent, f"kosoku raised {type(error).__name__}: {error}",
                                   int((time.monotonic() - t0) * 1000), *_case_texts(case_id))]
        mine = [r for r in got if r.case_id == case_id] or list(got)
        if not mine:
            mine = [SyntheticResult(case_id, index, agent, "kosoku returned no result for this case", 0,
                                    *_case_texts(case_id))]
        result = mine[0]
        results.append(result if isinstance(result, SyntheticResult) else Renamed(result, agent, index))
        elapsed = time.monotonic() - t0
        verdict = f"{result.behavior.value}/{result.behavior_close.value}"
        if verdict not in ("OK/OK",) or elapsed > 5 or index % 50 == 0 or index == total:
            log(f"[{agent}] {index}/{total} {case_id}: {verdict} ({elapsed:.2f} s, "
                f"{time.monotonic() - started:.0f} s so far)")
    return results


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"run_autobahn: refusing non-loopback url {url!r}")
    # The servers under test listen on 127.0.0.1 only; the config's port is a placeholder for the free one.
    return urlunsplit((parts.scheme or "ws", f"127.0.0.1:{port}", parts.path, parts.query, ""))


def write_reports(results_by_agent: dict[str, list[Any]], outdir: Path) -> Path:
    from kosoku._report import write_reports as kosoku_write_reports

    outdir.mkdir(parents=True, exist_ok=True)
    for stale in list(outdir.glob("*_case_*.json")) + list(outdir.glob("*_case_*.html")):
        stale.unlink()
    everything = [r for results in results_by_agent.values() for r in results]
    kosoku_write_reports(everything, str(outdir))
    return outdir / "index.json"


# -- the summary ----------------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarise(index_path: Path, agents: Sequence[str]) -> dict[str, list[str]]:
    """Print the tables from ``index.json``; return, per agent, the ids of the cases that did not pass."""
    index = json.loads(index_path.read_text())
    outdir = index_path.parent
    failing: dict[str, list[str]] = {}
    print()
    print(f"Autobahn|Testsuite (kosoku) results from {index_path}")
    width = max(len(a) for a in agents) + 2
    for title, key, names in (("behavior", "behavior", BEHAVIORS),
                              ("behaviorClose", "behaviorClose", CLOSE_BEHAVIORS)):
        counts = {a: Counter(entry[key] for entry in index.get(a, {}).values()) for a in agents}
        extra = sorted({k for c in counts.values() for k in c} - set(names))
        columns = list(names) + extra
        print()
        print(f"{title:<{width}}" + "".join(f"{c:>18}" for c in columns) + f"{'total':>8}")
        for a in agents:
            print(f"{a:<{width}}" + "".join(f"{counts[a].get(c, 0):>18}" for c in columns)
                  + f"{sum(counts[a].values()):>8}")
    for a in agents:
        entries = index.get(a, {})
        bad = [c for c in sorted(entries, key=_case_key)
               if entries[c]["behavior"] not in PASSING or entries[c]["behaviorClose"] not in PASSING_CLOSE]
        failing[a] = bad
        print()
        if not bad:
            print(f"{a}: all {len(entries)} cases passed (OK, NON-STRICT or INFORMATIONAL, clean close)")
            continue
        print(f"{a}: {len(bad)} of {len(entries)} cases did not pass:")
        for case_id in bad:
            entry = entries[case_id]
            report = json.loads((outdir / entry["reportfile"]).read_text())
            print(f"  {case_id}  behavior={report['behavior']}  behaviorClose={report['behaviorClose']}  "
                  f"remoteCloseCode={report.get('remoteCloseCode')}")
            print(f"      description: {_short(report.get('description', ''))}")
            print(f"      expectation: {_short(report.get('expectation', ''))}")
            print(f"      result:      {_short(report.get('result', ''))}")
            print(f"      resultClose: {_short(report.get('resultClose', ''))}")
            if report.get("behavior") not in PASSING:
                print(f"      expected:    {_short(report.get('expected', {}))}")
                print(f"      received:    {_short(report.get('received', []))}")
            if report.get("wasNotCleanReason"):
                print(f"      not clean:   {_short(report['wasNotCleanReason'])}")
            print(f"      report:      {outdir / entry['reportfile']}")
    return failing


# -- the command ----------------------------------------------------------------------------------------------------


def _globs(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="Autobahn fuzzingclient config (default: %(default)s)")
    parser.add_argument("--cases", help="comma-separated case ids or * globs, e.g. '1.*,2.*,9.1.1' "
                                        "(default: the config's \"cases\")")
    parser.add_argument("--exclude", help="comma-separated case ids or globs to drop, added to the config's "
                                          "\"exclude-cases\"")
    parser.add_argument("--outdir", type=Path, help="report directory (default: the config's outdir, "
                                                    f"else {DEFAULT_OUTDIR})")
    parser.add_argument("--case-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="longest one case may take before it is counted FAILED (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=2400.0, metavar="SECONDS",
                        help="budget for the whole run, per agent; cases left then are FAILED as not run "
                             "(default: %(default)s)")
    parser.add_argument("--compare-websockets", action="store_true",
                        help="also run the cases against an echo server on the websockets library "
                             "(compression on), as agent 'websockets', for reference")
    parser.add_argument("--_serve-websockets", type=int, metavar="PORT", dest="serve_websockets",
                        help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_websockets is not None:
        serve_websockets(args.serve_websockets)
        return 0
    try:
        import kosoku  # noqa: F401
    except ImportError:
        log("run_autobahn: kosoku is not installed (pip install kosoku)")
        return 2

    config = json.loads(args.config.read_text())
    servers = config.get("servers") or [{"agent": "wsinspect", "url": "ws://127.0.0.1:9001"}]
    if len(servers) != 1:
        log("run_autobahn: the config must name exactly one server (the wsinspect serve under test)")
        return 2
    agent, url = servers[0]["agent"], servers[0]["url"]
    include = _globs(args.cases) or list(config.get("cases", ["*"]))
    exclude = list(config.get("exclude-cases", [])) + _globs(args.exclude)
    exclude += list(config.get("exclude-agent-cases", {}).get(agent, []))
    if args.outdir is not None:
        outdir = args.outdir
    elif config.get("outdir"):
        outdir = (args.config.resolve().parent / config["outdir"]).resolve()
    else:
        outdir = DEFAULT_OUTDIR
    outdir.mkdir(parents=True, exist_ok=True)

    cases = select_cases(all_case_ids(), include, exclude)
    if not cases:
        log(f"run_autobahn: no case matches {include} (minus {exclude})")
        return 2

    targets = [(agent, url, wsinspect_server(outdir))]
    if args.compare_websockets:
        targets.append((REFERENCE_AGENT, url, websockets_server(outdir)))

    results: dict[str, list[Any]] = {}
    timings: dict[str, float] = {}
    for name, target_url, server in targets:
        log(f"== {name}: {len(cases)} cases; server log {server.log_path}")
        t0 = time.monotonic()
        try:
            server.start()
            log(f"== {name} listening on 127.0.0.1:{server.port} (pid {server.proc.pid if server.proc else '?'})")
            results[name] = asyncio.run(run_cases(target_url, name, cases, server, case_timeout=args.case_timeout,
                                                  deadline=time.monotonic() + args.timeout))
        finally:
            server.stop()
        timings[name] = time.monotonic() - t0
        for note in server.restarts:
            log(f"!! {note}")

    index_path = write_reports(results, outdir)
    failing = summarise(index_path, list(results))
    print()
    for name, seconds in timings.items():
        print(f"{name}: {len(results[name])} cases in {seconds:.1f} s")
    print(f"reports: {outdir} (index.json, index.html)")
    return 1 if failing.get(agent) else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
