"""What every part of the benchmark shares: the repository root, size units, progress notes."""

from __future__ import annotations

import sys
from pathlib import Path

# This file is benchmarks/benchkit/common.py.
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
