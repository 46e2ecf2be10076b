"""What the fidelity tests (``e2e/fidelity/``) share: a round trip, differences in one message."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from spare.testing.trees import Difference, build_tree
from support.harness import SpareResult, SpareRunner, assert_ok

IS_ROOT = os.geteuid() == 0


def round_trip(
    run_spare: SpareRunner,
    env: dict[str, str],
    source: Path,
    target: Path,
    create_args: Iterable[str] = (),
    restore_args: Iterable[str] = (),
) -> tuple[SpareResult, SpareResult]:
    created = run_spare("create", "--path", source, *create_args, env=env)
    assert_ok(created)
    restored = run_spare("restore", "--path", target, *restore_args, env=env)
    assert_ok(restored)
    return created, restored


def assert_no_differences(diffs: list[Difference] | list[str], context: str = "") -> None:
    lines = [str(diff) for diff in diffs]
    assert not lines, (
        f"{len(lines)} difference(s) between the source and the restored tree{context}:\n"
        + "\n".join(lines[:80])
    )


def build_or_skip(root: Path, *parts: str, feature: str | None = None, **kw: int) -> dict:
    """Build parts of the richest tree; skip the test if ``feature`` could not be built."""
    report = build_tree(root, parts, **kw)
    if feature is not None and feature in report["skipped"]:
        pytest.skip(f"{feature}: {report['skipped'][feature]}")
    return report
