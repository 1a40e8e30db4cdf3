"""Shared by the benchmarks: which wsinspect code a run measured.

Other work lands in wsinspect/ while a benchmark runs, so each run prints the commit, whether wsinspect/ had
uncommitted changes, and a fingerprint of its sources taken at the start and checked at the end.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "wsinspect").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


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
