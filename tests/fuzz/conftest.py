"""The long fuzz profile: ``python -m pytest tests/fuzz --hypothesis-profile=fuzz-long`` (or scripts/fuzz.py).

Without it each target runs a few dozen examples, so tests/fuzz stays a short CI run. Failing examples of long runs
are kept in a database under tests/fuzz/crashes/, so the next run (long or not) tries them first.
"""

from __future__ import annotations

from fuzz_support import _SUPPRESSED, CRASHES, FUZZ_LONG_EXAMPLES
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile("fuzz-long", max_examples=FUZZ_LONG_EXAMPLES, deadline=None,
                          database=DirectoryBasedExampleDatabase(str(CRASHES / "examples")),
                          suppress_health_check=_SUPPRESSED, print_blob=True)
