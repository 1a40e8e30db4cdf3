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
of what the stage produced (``--check``, so two trees can be seen to agree).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import hashlib, json, resource, sys
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
    if stage == "read":
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
    result = subprocess.run([sys.executable, "-c", _CHILD, path, stage, "1" if check else "0", str(inner)], env=env,
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="+")
    parser.add_argument("--code", action="append", help="a tree holding wsinspect/ (repeatable; default: checkout)")
    parser.add_argument("--repeat", type=int, default=3, help="child processes per tree and stage")
    parser.add_argument("--inner", type=int, default=1,
                        help="passes per child, the best one kept (short passes catch the machine's quiet moments)")
    parser.add_argument("--stage", action="append", choices=STAGES, help="default: all three")
    parser.add_argument("--check", action="store_true", help="also digest every output (slower; for agreement)")
    options = parser.parse_args()
    codes = options.code or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    stages = options.stage or list(STAGES)
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
