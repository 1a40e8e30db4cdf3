"""End-to-end tests of ``wsinspect read``: the shipped captures, the CLI, tshark as a second opinion.

The repository root goes on ``sys.path`` so ``captures.scenarios`` (the truth about every capture) imports however
pytest is started.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
