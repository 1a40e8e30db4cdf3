#!/usr/bin/env python3
"""Long fuzz runs of wsinspect's core (issue 7 item 5): N minutes per target, failures kept for regression tests.

    python scripts/fuzz.py                              # every target, 5 minutes each, hypothesis's fuzz-long profile
    python scripts/fuzz.py --minutes 30 --target frames # one target, longer
    python scripts/fuzz.py --engine atheris             # coverage-guided (libFuzzer), where atheris installs

Targets (tests/fuzz/test_fuzz_<target>.py): handshake, frames, connection, capture. The CI run is
``python -m pytest tests/fuzz`` (a few dozen examples each); see tests/fuzz/README.md.

hypothesis engine: rounds of ``pytest tests/fuzz/test_fuzz_<target>.py --hypothesis-profile=fuzz-long`` with a
fresh seed each, sized to fill the minutes; the examples run are counted from hypothesis's statistics. A failing
round's output (the shrunk falsifying example and its ``@reproduce_failure`` blob) is saved to
tests/fuzz/crashes/<target>-<time>.txt, and the example stays in tests/fuzz/crashes/examples/, which every later
run replays first.

atheris engine: libFuzzer mutates a corpus seeded from captures/ (tests/fuzz/crashes/corpus/<target>/) and calls the
same contract checks as the hypothesis tests on raw bytes; a crashing input is written to
tests/fuzz/crashes/<target>-crash-<sha1>. Turn it into a test with
``bytes_targets.check_<target>_bytes(Path(...).read_bytes())`` (tests/fuzz/bytes_targets.py).

Either way, a failure becomes a regression test in tests/fuzz/test_fuzz_regressions.py: the input as a literal,
the contract check called on it, and ``@pytest.mark.xfail(strict=True, reason=...)`` until the core is fixed.
Exit status: 0 when no target failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ_TESTS = ROOT / "tests" / "fuzz"
CRASHES = FUZZ_TESTS / "crashes"
TARGETS = ("handshake", "frames", "connection", "capture")
FIRST_ROUND_EXAMPLES = 300  # a short first round measures the speed; later rounds are sized to fill the time


def examples_run(pytest_output: str) -> tuple[int, int]:
    """(examples hypothesis ran, summed over the round's tests; how many tests), from --hypothesis-show-statistics."""
    counts = re.findall(r"(\d+) passing examples?, (\d+) failing examples?", pytest_output)
    return sum(int(a) + int(b) for a, b in counts), len(counts)


def run_hypothesis(target: str, seconds: float) -> tuple[int, bool]:
    """Rounds of the fuzz-long profile until ``seconds`` are spent. Returns (examples run, whether one failed)."""
    deadline = time.monotonic() + seconds
    total, per_second, examples, tests = 0, 0.0, FIRST_ROUND_EXAMPLES, 1
    while (left := deadline - time.monotonic()) > 5:
        if per_second:
            # WSINSPECT_FUZZ_EXAMPLES is per test; leave room for start-up and shrinking.
            examples = max(50, int(per_second * left * 0.8 / tests))
        seed = random.getrandbits(64)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", str(FUZZ_TESTS / f"test_fuzz_{target}.py"), "-q", "-p",
             "no:cacheprovider", "-W", "ignore", "--hypothesis-profile=fuzz-long", f"--hypothesis-seed={seed}",
             "--hypothesis-show-statistics"],
            cwd=ROOT, env={**os.environ, "WSINSPECT_FUZZ_EXAMPLES": str(examples)}, capture_output=True, text=True)
        ran, tests = examples_run(result.stdout)
        tests = max(tests, 1)
        total += ran
        per_second = ran / max(time.monotonic() - started, 1e-3)
        print(f"  {target}: seed {seed}: {ran} examples in {time.monotonic() - started:.0f} s "
              f"({'FAILED' if result.returncode else 'ok'})", flush=True)
        if result.returncode:
            saved = CRASHES / f"{target}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
            saved.write_text(f"seed {seed}, {examples} examples\n{result.stdout}\n{result.stderr}")
            print(f"  saved to {saved.relative_to(ROOT)}. Replay: WSINSPECT_FUZZ_EXAMPLES={examples} python -m pytest "
                  f"tests/fuzz/test_fuzz_{target}.py --hypothesis-profile=fuzz-long --hypothesis-seed={seed}\n"
                  f"  Then copy the 'Falsifying example' into tests/fuzz/test_fuzz_regressions.py as a call of the "
                  f"target's check function, marked @pytest.mark.xfail(strict=True, reason=...) until fixed.")
            return total, True
    return total, False


# -- atheris ---------------------------------------------------------------------------------------------------

def atheris_check(target: str):  # type: ignore[no-untyped-def]
    """The target's contract on raw bytes, for libFuzzer (imports the test modules: same checks, same seeds)."""
    sys.path.insert(0, str(FUZZ_TESTS))
    import bytes_targets

    return getattr(bytes_targets, f"check_{target}_bytes")


def atheris_seeds(target: str) -> list[bytes]:
    sys.path.insert(0, str(FUZZ_TESTS))
    import fuzz_support

    if target == "handshake":
        return [request + response for request, response in fuzz_support.handshake_seeds()]
    if target == "frames":
        return [bytes([n % 64]) + data for n, (_, _, data) in enumerate(fuzz_support.frame_stream_seeds())]
    if target == "connection":
        return [bytes([n % 64]) + seed.c2s[seed.frames_start("c2s"):] + b"\xff\xff\xff\xff" +
                seed.s2c[seed.frames_start("s2c"):] for n, seed in enumerate(fuzz_support.flow_seeds())]
    return [path.read_bytes() for path in fuzz_support.shipped_captures()
            if path.stat().st_size <= fuzz_support.SMALL_CAPTURE_BYTES]


def atheris_worker(target: str, seconds: float) -> None:
    """Runs in its own process: libFuzzer exits the process when its time is up."""
    import atheris

    # Only the project's code gets coverage instrumentation (instrument_all takes minutes on everything loaded);
    # it must be the first import of these modules, so before the seeds and checks import them.
    with atheris.instrument_imports(include=["wsinspect"]):
        import wsinspect.capture.files
        import wsinspect.capture.reassembly
        import wsinspect.core.connection
        import wsinspect.trace  # noqa: F401
    corpus = CRASHES / "corpus" / target
    if not corpus.exists():
        corpus.mkdir(parents=True)
        for number, seed in enumerate(atheris_seeds(target)):
            (corpus / f"seed-{number}").write_bytes(seed)
    check = atheris_check(target)
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={int(seconds)}", "-rss_limit_mb=4096",
                   f"-artifact_prefix={CRASHES}/{target}-"], check)
    atheris.Fuzz()


def run_atheris(target: str, seconds: float) -> tuple[int, bool]:
    result = subprocess.run([sys.executable, __file__, "--engine", "atheris", "--target", target,
                             "--minutes", str(seconds / 60), "--worker"], cwd=ROOT, capture_output=True, text=True)
    runs = re.findall(r"Done (\d+) runs", result.stderr)
    crashed = result.returncode != 0
    if crashed:
        saved = CRASHES / f"{target}-atheris-{time.strftime('%Y%m%dT%H%M%S')}.txt"
        saved.write_text(result.stderr[-20000:])
        print(f"  {target}: FAILED; libFuzzer's report in {saved.relative_to(ROOT)}, the input as "
              f"tests/fuzz/crashes/{target}-crash-*. Add a test calling bytes_targets.check_{target}_bytes(<its "
              f"bytes>) to tests/fuzz/test_fuzz_regressions.py, marked @pytest.mark.xfail(strict=True, reason=...).")
    return (int(runs[-1]) if runs else 0), crashed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="time per target (default 5)")
    parser.add_argument("--target", choices=TARGETS, action="append", help="repeatable; default: all four")
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one atheris process
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    targets = args.target or list(TARGETS)
    if args.worker:
        atheris_worker(targets[0], args.minutes * 60)
        return 0
    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401
        except ImportError:
            parser.error("atheris is not installed here (pip install atheris); use --engine hypothesis")
    CRASHES.mkdir(exist_ok=True)
    failed = []
    for target in targets:
        print(f"{target}: {args.minutes:g} min with {args.engine}", flush=True)
        run = run_atheris if args.engine == "atheris" else run_hypothesis
        examples, failure = run(target, args.minutes * 60)
        print(f"{target}: {examples} examples, {'FAILED' if failure else 'no failure'}", flush=True)
        failed += [target] if failure else []
    print(f"failed: {', '.join(failed)}" if failed else "no failure in any target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
