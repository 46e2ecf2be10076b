"""SIGTERM and SIGINT during ``create``: no snapshot, lock released, and the next run resumes.

Configuration management and shutdown scripts stop long backups with SIGTERM, people with Ctrl-C,
the OOM killer with SIGKILL. Either way the bucket must stay consistent, what was uploaded must not
be uploaded again, and the next nightly run must not need a human to go ahead.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from support.buckets import PACKS, SNAPSHOTS, Backend, complete_packs, stray_keys
from support.harness import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    SpareRunner,
    assert_error,
    assert_ok,
    finish,
    wait_until,
)

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(300)

# Big enough that create is still uploading when the first pack shows up, small enough for CI.
FILES = 8
FILE_MIB = 6


def build_big_tree(root: Path) -> None:
    for index in range(FILES):
        write_file(root / f"part-{index}.bin", os.urandom(FILE_MIB * MiB), 0o644)


def interrupt_after_first_pack(
    run_spare: SpareRunner, backend: Backend, env: dict[str, str], source: Path, signum: int
) -> int:
    """Start create, send ``signum`` once a pack is stored, and return the exit code."""
    proc = run_spare.popen("create", "--path", source, env=env)
    started = wait_until(lambda: bool(backend.keys(PACKS)) or proc.poll() is not None, 120)
    assert started, "no pack was stored within 120 s"
    if proc.poll() is not None:
        result = finish(proc)
        pytest.fail(
            f"create ended ({result.returncode}) before it could be interrupted: "
            f"the tree is too small for this machine\n{result.stderr}"
        )
    proc.send_signal(signum)
    result = finish(proc)
    expected = EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
    assert_error(result, expected)
    return result.returncode


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_first_run(
    signum: int,
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    """The README's promise for 143/130: no snapshot, the lock released, uploads whole (nothing
    left under a temporary name), and the next run keeps every pack already uploaded.
    """
    source = tmp_path / "source"
    build_big_tree(source)
    expected_tree = snapshot_tree(source)

    interrupt_after_first_pack(run_spare, backend, env, source, signum)

    interrupted = backend.objects()
    assert not [key for key in interrupted if key.startswith(SNAPSHOTS)], sorted(interrupted)
    assert not stray_keys(interrupted), (
        f"left behind (lock? partial upload?): {stray_keys(interrupted)}"
    )
    kept_packs = {key: data for key, data in interrupted.items() if key.startswith(PACKS)}
    assert kept_packs, "the packs uploaded before the signal should stay for the next run"

    # The lock was released: the next run goes ahead, and reuses what was uploaded.
    assert_ok(run_spare("create", "--path", source, env=env))
    final = backend.objects()
    assert not stray_keys(final), stray_keys(final)
    reused = {key for key, data in kept_packs.items() if final.get(key) == data}
    assert reused == set(kept_packs), (
        f"packs uploaded before the signal were replaced: {sorted(set(kept_packs) - reused)}"
    )

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected_tree, snapshot_tree(target))


def test_interrupted_later_run_keeps_previous_snapshot(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A run stopped half-way leaves the previous snapshot restorable, as it was."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    write_file(source / "before.txt", b"the first night\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    first_tree = snapshot_tree(source)
    first_snapshots = file_backend.keys(SNAPSHOTS)
    first_packs = file_backend.keys(PACKS)

    build_big_tree(source / "grown")
    proc = run_spare.popen("create", "--path", source, env=env)
    new_pack = wait_until(
        lambda: bool(file_backend.keys(PACKS) - first_packs) or proc.poll() is not None, 120
    )
    assert new_pack and proc.poll() is None, "create ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    assert_error(finish(proc), EXIT_SIGTERM)

    assert file_backend.keys(SNAPSHOTS) == first_snapshots
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(first_tree, snapshot_tree(target))


def test_killed_run_s_lock_is_cleared_by_the_next_run(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The README's promise after SIGKILL: the next create on this host finds the lock of a
    spare whose pid no longer runs, clears it with one warning line naming that pid, and
    completes (exit 0: the backup is whole); it keeps the packs the killed run finished (packs
    are self-describing) and deletes what the kill left half-written.
    """
    source = tmp_path / "source"
    build_big_tree(source)
    expected = snapshot_tree(source)

    proc = run_spare.popen("create", "--path", source, env=env)
    uploading = wait_until(
        lambda: bool(complete_packs(backend.objects())) or proc.poll() is not None, 120
    )
    assert uploading and proc.poll() is None, "create ended before it could be killed"
    proc.kill()
    finish(proc)
    kept = complete_packs(backend.objects())
    assert "lock" in backend.objects(), "the killed run's lock should still be there"
    assert not backend.keys(SNAPSHOTS)

    result = run_spare("create", "--path", source, env=env)
    assert_ok(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith("spare: warning: cleared the stale lock of 'spare create'"), line
    assert re.search(rf"\(pid {proc.pid}\)", line), f"pid {proc.pid} is not named: {line}"
    final = backend.objects()
    lost = sorted(key for key, data in kept.items() if final.get(key) != data)
    assert not lost, f"packs the killed run had stored were replaced: {lost}"
    assert not stray_keys(final), stray_keys(final)
    assert_ok(run_spare("verify", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))
