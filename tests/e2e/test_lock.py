"""The bucket lock: ``lock``/``unlock`` by hand, and one ``create`` at a time, really.

A sysadmin who finds a locked bucket needs to know who holds it (host and pid) to decide whether
``spare unlock`` is safe; two cron jobs racing on one bucket must not both write.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from support.buckets import PACKS, SNAPSHOTS, Backend, snapshot_roots
from support.harness import (
    EXIT_LOCKED,
    SpareRunner,
    assert_error,
    assert_ok,
    finish,
    hostname_prefix,
    wait_until,
)

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, source: Path) -> Path:
    assert_ok(run_spare("create", "--path", source, env=env))
    return source


def test_lock_blocks_create_and_names_the_holder(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    holder_host = f"spare-lock-holder-{os.urandom(4).hex()}"
    prefix = hostname_prefix(holder_host)
    if prefix is None:
        holder_host, prefix = socket.gethostname(), []
    locking = run_spare("lock", env=env, prefix=prefix)
    assert_ok(locking)
    before = backend.objects()

    line = assert_error(run_spare("create", "--path", backed_up, env=env), EXIT_LOCKED)
    assert holder_host in line, f"the holder's host {holder_host!r} is not named: {line}"
    assert re.search(rf"\b{locking.pid}\b", line), f"the holder's pid {locking.pid} is not named"
    assert backend.objects() == before

    assert_ok(run_spare("unlock", env=env))
    assert_ok(run_spare("create", "--path", backed_up, env=env))


def test_lock_twice_is_refused(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """A second ``lock`` must not silently take over the first one's lock."""
    assert_ok(run_spare("lock", env=env))
    assert_error(run_spare("lock", env=env), EXIT_LOCKED)
    assert_ok(run_spare("unlock", env=env))


def test_unlock_of_an_unlocked_bucket(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """``unlock`` is idempotent: cleaning up after a crash twice does no harm."""
    assert_ok(run_spare("unlock", env=env))
    assert_ok(run_spare("create", "--path", backed_up, env=env))


def test_lock_needs_the_password(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """Without the password, nobody can lock (and so block) or unlock someone's backups."""
    wrong = {**env, "SPARE_PASSWORD": "not-the-password"}
    before = backend.objects()
    assert_error(run_spare("lock", env=wrong), 4)
    assert backend.objects() == before

    assert_ok(run_spare("lock", env=env))
    locked = backend.objects()
    assert_error(run_spare("unlock", env=wrong), 4)
    assert backend.objects() == locked
    assert_ok(run_spare("unlock", env=env))


def big_tree(root: Path) -> None:
    """Several packs' worth of data: a create that is still uploading when stopped."""
    for index in range(4):
        write_file(root / f"part-{index}.bin", os.urandom(6 * MiB), 0o644)


@pytest.mark.parametrize("same_host", [True, False], ids=["same-cache", "other-cache"])
def test_create_while_another_runs(
    same_host: bool,
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    """A create that starts while another is uploading fails at once with 7, naming the holder.

    The running create is frozen (SIGSTOP) once it has stored a pack, so the overlap does not
    depend on how fast this machine is; it then finishes normally. ``same-cache`` is two cron
    jobs overlapping on one host (they share the local cache), ``other-cache`` another host or
    user.
    """
    source = tmp_path / "source"
    big_tree(source)
    expected = snapshot_tree(source)
    second = run_spare if same_host else SpareRunner(tmp_path / "other-cache")

    running = run_spare.popen("create", "--path", source, env=env)
    try:
        uploading = wait_until(lambda: bool(backend.keys(PACKS)) or running.poll() is not None, 120)
        assert uploading and running.poll() is None, "create ended before a pack was seen"
        running.send_signal(signal.SIGSTOP)
        line = assert_error(second("create", "--path", source, env=env), EXIT_LOCKED)
        assert re.search(rf"\b{running.pid}\b", line), f"pid {running.pid} not named: {line}"
        assert line.endswith("or give --lock-wait SECONDS to wait until it ends"), line
    finally:
        # Whatever happened, let the first run finish before the bucket is cleaned up.
        running.send_signal(signal.SIGCONT)
        first = finish(running)
    assert_ok(first)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_concurrent_locks_exactly_one_wins(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """The lock is atomic: of several ``spare lock`` started together, exactly one takes it.

    A lock is held until unlocked, so unlike two creates, these cannot pass by running one after
    the other: any second success means a check-then-write race.
    """
    contenders = [run_spare.popen("lock", env=env) for _ in range(4)]
    results = [finish(proc) for proc in contenders]
    codes = sorted(result.returncode for result in results)
    details = "\n".join(f"{r.returncode}: {r.stderr.strip()}" for r in results)
    assert codes == [0] + [EXIT_LOCKED] * (len(results) - 1), details
    for result in results[1:]:
        if result.returncode == EXIT_LOCKED:
            assert_error(result, EXIT_LOCKED)
    assert_ok(run_spare("unlock", env=env))


def test_concurrent_creates_on_a_new_bucket(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Two cron jobs start together on a new bucket: at most one runs at a time (the other
    fails with 7, unless the first was already done), and the bucket ends up consistent:
    one snapshot, restorable, verified.
    """
    source = tmp_path / "source"
    big_tree(source)
    expected = snapshot_tree(source)

    contenders = [run_spare.popen("create", "--path", source, env=env) for _ in range(2)]
    results = [finish(proc) for proc in contenders]
    details = "\n".join(f"{r.returncode}: {r.stderr.strip()}" for r in results)
    assert {result.returncode for result in results} <= {0, EXIT_LOCKED}, details
    assert 0 in {result.returncode for result in results}, details

    assert len(snapshot_roots(backend.keys(SNAPSHOTS))) == 1, sorted(backend.keys())
    assert_ok(run_spare("verify", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_restore_and_verify_ignore_the_lock(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path, tmp_path: Path
) -> None:
    """A lock keeps the backup from changing; reading it stays possible. A lock left by a killed
    run must never stand between a sysadmin and an urgent restore.
    """
    assert_ok(run_spare("lock", env=env))
    locked = backend.objects()
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(snapshot_tree(backed_up), snapshot_tree(target))
    assert_ok(run_spare("verify", "--path", backed_up, env=env))
    assert backend.objects() == locked, "restore or verify changed a locked bucket"
    assert_ok(run_spare("unlock", env=env))


@pytest.fixture
def file_env(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> dict[str, str]:
    """A file bucket holding a backup: the waits below do not depend on the storage kind."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    return env


def test_lock_wait_waits_until_the_lock_is_released(
    file_env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """A create with --lock-wait finds the bucket locked by hand (a sysadmin copying it, say),
    says once with -v that it waits and for whom, and runs once the lock is gone."""
    locking = run_spare("lock", env=file_env)
    assert_ok(locking)
    started = time.monotonic()
    waiting = run_spare.popen("create", "-v", "--lock-wait", "30", "--path", source, env=file_env)
    try:
        time.sleep(2)
        assert waiting.poll() is None, "create did not wait for the lock"
    finally:
        assert_ok(run_spare("unlock", env=file_env))
    result = finish(waiting, 60)
    assert_ok(result)
    assert time.monotonic() - started >= 2
    said = re.findall(r"the bucket is locked by (.*); waiting up to 30 s", result.stderr)
    assert len(said) == 1 and said[0].startswith("'spare lock' on host "), result.stderr
    assert re.search(rf"\(pid {locking.pid}\)", said[0]), said


def test_lock_wait_gives_up_with_the_usual_error(
    file_env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """The lock is still held when --lock-wait has passed: exit 7, one line, as without it."""
    assert_ok(run_spare("lock", env=file_env))
    started = time.monotonic()
    result = run_spare("create", "--lock-wait", "2", "--path", source, env=file_env)
    took = time.monotonic() - started
    line = assert_error(result, EXIT_LOCKED)
    assert "locked by hand" in line and re.search(r"; waited [23] s for it \(--lock-wait\)$", line)
    assert 2 <= took < 20
    assert_ok(run_spare("unlock", env=file_env))
