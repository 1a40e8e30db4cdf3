"""Shared by the benchmarks: which wsinspect code a run measured, and how a child process is measured.

Other work lands in wsinspect/ while a benchmark runs, so each run prints the commit, whether wsinspect/ had
uncommitted changes, and a fingerprint of its sources taken at the start and checked at the end.

``run_piped`` runs a tool with its output on a pipe: wall time, the time to the first line of output, and the
tool's own peak RSS.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_fingerprint(root: Path = ROOT) -> str:
    """A hash of root/wsinspect/**/*.py (root: the checkout, or a snapshot made by ``snapshot``)."""
    digest = hashlib.sha256()
    for path in sorted((root / "wsinspect").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def snapshot(commit: str, into: Path) -> tuple[str, Path]:
    """Extract wsinspect/ as it was at ``commit`` into ``into``/code-<sha>/ (read-only git), to measure that code
    with PYTHONPATH pointing there while the checkout is being edited. Returns the short sha and the directory."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    target = into / f"code-{sha}"
    if not (target / "wsinspect" / "__init__.py").exists():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha, "wsinspect"],
                                 capture_output=True, check=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            # the "data" filter where this Python has it (3.10.12+, 3.11.4+): our own archive, but no warning
            tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return sha, target


def code_state() -> str:
    """'commit abc1234 (+ uncommitted changes in wsinspect/), sources 0123456789ab' (read-only git commands)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)

    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "wsinspect").stdout.strip()
    return f"commit {head}{' + uncommitted changes in wsinspect/' if dirty else ''}, sources {source_fingerprint()}"


def check_unchanged(fingerprint_at_start: str) -> None:
    now = source_fingerprint()
    if now != fingerprint_at_start:
        print(f"\nWARNING: wsinspect/ sources changed during this run ({fingerprint_at_start} -> {now}): "
              f"the numbers mix two versions of the code; run again.")


# ---------------------------------------------------------------------------------------------------------------
# running a child and measuring what a user piping its output would see


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class ChildRun:
    """One measured run. ``seconds`` is None when the run was stopped at its timeout."""

    seconds: float | None
    first_line_seconds: float | None  # from start until the first newline came through the pipe (``| head -1``)
    peak_rss_kib: int | None  # when stopped at the timeout: the peak so far (VmHWM), a lower bound; None if unknown
    returncode: int | None
    output_bytes: int
    stderr_tail: str


def run_piped(argv: list[str], timeout: float, on_output: Callable[[bytes], None] | None = None,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> ChildRun:
    """Run argv with stdout on a pipe that is read (and handed to ``on_output``, else dropped).

    Peak RSS is the child's own ru_maxrss, taken by GNU time, a small parent in between. Our own os.wait4 would
    be wrong: Linux carries the RSS of the process that forks into the child's ru_maxrss (measured here: a 300 MiB
    Python parent makes ``python -c pass`` report 310 MiB), so a child of this benchmark would look as large as it.
    Without /usr/bin/time, os.wait4's figure is used (an upper bound). The child gets its own session, so a run
    past ``timeout`` is stopped with its whole process group (GNU time and the tool)."""
    rss_file = tempfile.NamedTemporaryFile("r", suffix=".rss")  # noqa: SIM115 - closed below
    err_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a file, so a chatty stderr can't block
    full = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if GNU_TIME else argv
    start = time.perf_counter()
    child = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env, cwd=cwd)
    assert child.stdout is not None
    fd = child.stdout.fileno()
    deadline = start + timeout
    first_line: float | None = None
    output_bytes = 0
    timed_out = False
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            continue
        block = os.read(fd, 1 << 20)
        if not block:
            break
        if first_line is None and b"\n" in block:
            first_line = time.perf_counter() - start
        output_bytes += len(block)
        if on_output is not None:
            on_output(block)
    peak_so_far = None
    if timed_out:
        peak_so_far = _peak_so_far(child.pid) if GNU_TIME else None
        os.killpg(child.pid, signal.SIGKILL)  # our own child's group: GNU time and the tool under it
    _, status, usage = os.wait4(child.pid, 0)
    seconds = None if timed_out else time.perf_counter() - start
    child.stdout.close()
    peak: int | None = peak_so_far if timed_out else usage.ru_maxrss  # KiB on Linux
    if GNU_TIME and not timed_out:
        lines = [line for line in rss_file.read().splitlines() if line.strip()]
        peak = int(lines[-1]) if lines and lines[-1].strip().isdigit() else peak
    rss_file.close()
    err_file.seek(0)
    err = err_file.read().decode(errors="replace")
    err_file.close()
    err = "\n".join(line for line in err.splitlines() if line.strip() and "dangerous" not in line)
    return ChildRun(seconds, first_line, peak, None if timed_out else os.waitstatus_to_exitcode(status),
                    output_bytes, err[-500:])


def _peak_so_far(time_pid: int) -> int | None:
    """VmHWM (KiB) of the tool under GNU time, read from /proc before it is stopped; None if it can't be read."""
    try:
        children = Path(f"/proc/{time_pid}/task/{time_pid}/children").read_text().split()
        for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None
