"""Summarise a profile as the top hot spots, file:function with percentages.

    python bench/profile_top.py PROFILE [--top 20]

PROFILE is either py-spy's collapsed-stack output (``py-spy record -f raw -o FILE``) or a cProfile dump
(``python -m cProfile -o FILE``). For py-spy, "self" is the share of samples whose innermost frame is the function
and "total" the share of samples with the function anywhere on the stack (each counted once per sample). For
cProfile they are tottime and cumtime over the total profiled time.
"""

from __future__ import annotations

import argparse
import pstats
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*?)(?::\d+)?\)$")


def _key(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for prefix in ("/work/main/",):
        file = file.removeprefix(prefix)
    file = re.sub(r"^.*/lib/python3\.\d+/", "<stdlib>/", file)
    file = re.sub(r"^.*/site-packages/", "", file)
    return f"{file}:{m.group('func')}"


def pyspy(path: str, top: int) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            count = int(count_text)
            frames = [_key(x) for x in stack.split(";") if x]
            if not frames:
                continue
            samples += count
            own[frames[-1]] += count
            for name in set(frames):
                total[name] += count
    print(f"{samples} samples")
    print(f"\ntop {top} by self time")
    for name, n in own.most_common(top):
        print(f"  {100 * n / samples:5.1f}% self  {100 * total[name] / samples:5.1f}% total  {name}")
    print(f"\ntop {top} by total time (function on the stack)")
    for name, n in total.most_common(top + 8):
        print(f"  {100 * n / samples:5.1f}% total {100 * own[name] / samples:5.1f}% self   {name}")


def cprofile(path: str, top: int) -> None:
    stats = pstats.Stats(path)
    whole = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        file = file.removeprefix("/work/main/")
        file = re.sub(r"^.*/lib/python3\.\d+/", "<stdlib>/", file)
        rows.append((tt, ct, f"{file}:{line}:{func}", calls))
    print(f"{whole:.2f} s profiled")
    print(f"\ntop {top} by self time (tottime)")
    for tt, ct, name, calls in sorted(rows, reverse=True)[:top]:
        print(f"  {100 * tt / whole:5.1f}% self  {100 * ct / whole:5.1f}% cum  {name}  ({calls} calls)")
    print(f"\ntop {top} by cumulative time")
    for tt, ct, name, _ in sorted(rows, key=lambda r: -r[1])[: top + 8]:
        print(f"  {100 * ct / whole:5.1f}% cum  {100 * tt / whole:5.1f}% self  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    with open(args.profile, "rb") as f:
        head = f.read(16)
    if head.startswith(b"{") or b"\x00" in head or head[:1] in (b"\xfa", b"\xfb", b"{"):
        cprofile(args.profile, args.top)
    else:
        try:
            pyspy(args.profile, args.top)
        except ValueError:
            cprofile(args.profile, args.top)


if __name__ == "__main__":
    main()
