"""CPU time of the capture layer, stage by stage: reading records, decoding TCP, reassembling streams.

Not a test. Run from the repository root:

    python bench/capture_speed.py bench/out/views-long-x1-s7692.pcapng             # the checkout
    python bench/capture_speed.py F --code /tmp/before --code /tmp/after --repeat 5  # A/B, alternating runs

Each stage runs in a fresh child process (``python -c`` with ``PYTHONPATH`` at the tree given by ``--code``, or the
checkout) and reports its own user+sys CPU from ``resource.getrusage(RUSAGE_SELF)`` around the loop only, so import
time and the load of other processes on a shared machine do not count. The stages are cumulative:

* ``read``: ``for packet in CaptureFile(F)``;
* ``decode``: and ``decode_tcp(packet)``;
* ``reassemble``: and ``TcpReassembler.feed_into`` (the loop ``wsinspect.trace`` runs, without the decoder).

Each child makes ``--inner`` passes and keeps its best; the best of ``--repeat`` children is shown, with a digest
of what the stage produced (``--check``, so two trees can be seen to agree). ``--instructions`` counts instructions
under valgrind instead, which the machine's load does not change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

_CHILD = r"""
import hashlib, json, os, resource, sys
import wsinspect
assert os.path.dirname(os.path.dirname(os.path.abspath(wsinspect.__file__))) == os.getcwd(), wsinspect.__file__
from wsinspect.capture.files import CaptureFile
from wsinspect.capture.packets import decode_tcp
from wsinspect.capture.reassembly import FlowData, TcpReassembler

path, stage, check, inner = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

best = None
for _ in range(inner):
    digest = hashlib.sha256()
    count = 0
    begin = cpu()
    capture = CaptureFile(path)
    if stage == "none":
        pass  # imports only: the baseline subtracted from instruction counts
    elif stage == "read":
        for packet in capture:
            count += 1
            if check:
                digest.update(repr((packet.number, packet.time, packet.linktype, packet.wire_length)).encode())
                digest.update(packet.data)
    elif stage == "decode":
        for packet in capture:
            segment = decode_tcp(packet)
            if segment is not None:
                count += 1
                if check:
                    digest.update(repr((segment.number, segment.time, segment.src, segment.dst, segment.sport,
                                        segment.dport, segment.seq, segment.ack, segment.flags, segment.missing,
                                        segment.icmp_error)).encode())
                    digest.update(segment.payload)
    else:
        reassembler = TcpReassembler()
        feed_into = reassembler.feed_into
        items = []
        for packet in capture:
            segment = decode_tcp(packet)
            if segment is None:
                continue
            feed_into(segment, items)
            if items:
                count += len(items)
                if check:
                    for item in items:
                        if type(item) is FlowData:
                            digest.update(repr((item.flow, item.time, item.packet, item.direction)).encode())
                            digest.update(item.data)
                        else:
                            digest.update(repr(item).encode())
                items.clear()
        for item in reassembler.finish():
            count += 1
            if check:
                digest.update(repr(item).encode())
    spent = cpu() - begin
    best = spent if best is None else min(best, spent)
print(json.dumps({"cpu": best, "count": count, "digest": digest.hexdigest()[:16] if check else ""}))
"""

STAGES = ("read", "decode", "reassemble")


def run_stage(code: str, path: str, stage: str, check: bool, inner: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=code)
    # The child runs in `code`: ``python -c`` puts its working directory first on sys.path, before PYTHONPATH.
    result = subprocess.run([sys.executable, "-c", _CHILD, os.path.abspath(path), stage, "1" if check else "0",
                             str(inner)], env=env, cwd=code, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def count_instructions(code: str, path: str, stage: str) -> int:
    """Instructions one pass of `stage` executes (valgrind's cachegrind): unlike CPU time, the load of other
    processes does not change it, so a small difference between two trees shows in one run."""
    env = dict(os.environ, PYTHONPATH=code)
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, "-c", _CHILD, os.path.abspath(path), stage, "0", "1"]
    result = subprocess.run(command, env=env, cwd=code, check=True, capture_output=True, text=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{result.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="+")
    parser.add_argument("--code", action="append", help="a tree holding wsinspect/ (repeatable; default: checkout)")
    parser.add_argument("--repeat", type=int, default=3, help="child processes per tree and stage")
    parser.add_argument("--inner", type=int, default=1,
                        help="passes per child, the best one kept (short passes catch the machine's quiet moments)")
    parser.add_argument("--stage", action="append", choices=STAGES, help="default: all three")
    parser.add_argument("--check", action="store_true", help="also digest every output (slower; for agreement)")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind instead (one pass, imports subtracted; ~50x slower: "
                             "use a cut capture, e.g. editcap -r F OUT 1-50000)")
    options = parser.parse_args()
    codes = [os.path.abspath(code) for code in options.code or [os.path.dirname(os.path.dirname(__file__))]]
    stages = options.stage or list(STAGES)
    if options.instructions:
        for path in options.capture:
            print(f"{path}: millions of instructions (valgrind cachegrind), imports subtracted")
            baselines = {code: count_instructions(code, path, "none") for code in codes}
            for stage in stages:
                counts = {code: count_instructions(code, path, stage) - baselines[code] for code in codes}
                first = counts[codes[0]]
                cells = [f"{code}: {count / 1e6:8.1f} ({count / first - 1:+.0%})" for code, count in counts.items()]
                print(f"  {stage:10s} " + " | ".join(cells))
        return
    for path in options.capture:
        print(f"{path} ({os.path.getsize(path) / 2**20:.1f} MiB), CPU s (user+sys), best of "
          f"{options.repeat} x {options.inner}")
        for stage in stages:
            runs: dict[str, list[float]] = {code: [] for code in codes}
            seen: dict[str, tuple[object, object]] = {}
            for round_number in range(options.repeat):
                order = codes if round_number % 2 == 0 else codes[::-1]  # alternate, so load falls on all alike
                for code in order:
                    result = run_stage(code, path, stage, options.check, options.inner)
                    runs[code].append(float(result["cpu"]))  # type: ignore[arg-type]
                    seen[code] = (result["count"], result["digest"])
            cells = [f"{code}: {min(times):6.2f} (median {sorted(times)[len(times) // 2]:.2f}) "
                     f"n={seen[code][0]} {seen[code][1]}" for code, times in runs.items()]
            print(f"  {stage:10s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
