"""The README's promise to a production host: ``create`` stays under 100 MiB of memory.

Speed is the benchmarks' business; memory is checked here because it is a hard limit, not a
figure of merit: a backup that pushes a server into swap or the OOM killer is an outage.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, run_measured

from spare.testing.trees import MiB, compressible_text, write_file

pytestmark = pytest.mark.timeout(240)

LIMIT_MIB = 100


def test_create_stays_under_100_mib(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Peak RSS of a create over big random files, compressible text and many small files."""
    source = tmp_path / "source"
    for index in range(2):
        write_file(source / f"random-{index}.bin", os.urandom(16 * MiB), 0o644)
    write_file(source / "text.log", compressible_text(16 * MiB), 0o644)
    for index in range(2000):
        write_file(source / f"small-{index % 40}" / f"{index}.txt", os.urandom(512), 0o644)

    _, peak_mib = run_measured(run_spare, ["create", "--path", str(source)], env)
    assert peak_mib < LIMIT_MIB, f"create peaked at {peak_mib} MiB of RSS"
