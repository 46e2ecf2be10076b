"""Locks that a lost reply, a dead holder or a careless server cannot wedge.

A lock set by hand, or by another host, must stop a create and say how old it is, so that the
sysadmin can tell a live holder from a dead one. A reply lost on the way back must not make a run
refuse its own lock, and a server that ignores ``If-None-Match`` must not give the bucket two
holders. (A create killed with SIGKILL is in ``test_signals.py``.)
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import PACKS, SNAPSHOTS, Backend, FileBackend, new_bucket_name
from support.crafted import crafted_lock, read_lock
from support.harness import (
    EXIT_LOCKED,
    SpareRunner,
    assert_error,
    assert_ok,
    finish,
    wait_until,
)
from support.plugin import through

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(240)

LOCK = "lock"


def iso_ago(**delta: float) -> str:
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)
    return then.isoformat(timespec="seconds").replace("+00:00", "Z")


def dead_pid() -> int:
    """A pid that no process has any more (its process ran and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def big_tree(root: Path) -> None:
    """Several packs' worth of data: a create that is still uploading when stopped."""
    for index in range(4):
        write_file(root / f"part-{index}.bin", os.urandom(6 * MiB), 0o644)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[FileBackend]:
    """A file:// bucket that the quirky storages below reach as well."""
    store = FileBackend(tmp_path / "store", new_bucket_name())
    yield store
    store.cleanup()


def test_a_lock_set_by_hand_is_never_cleared(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """``spare lock`` exits at once, so its pid is dead: the lock stays all the same."""
    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("lock", env=env))
    locked = backend.objects()

    line = assert_error(run_spare("create", "--path", source, env=env), EXIT_LOCKED)
    assert "locked by hand" in line and re.search(r"since \S+Z, \d+ s ago", line), line
    assert backend.objects() == locked


def test_another_hosts_lock_is_refused_with_its_age(
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """A lock of a create on another host is never broken, even if its pid is dead here; the
    refusal says how old it is and when its holder last refreshed it."""
    assert_ok(run_spare("create", "--path", source, env=env))
    taken = iso_ago(hours=3)
    payload = crafted_lock(
        env,
        tmp_path / "crafting-cache",
        host="far-away",
        host_id="another-machine-id",
        pid=dead_pid(),
        time=taken,
        refreshed=iso_ago(seconds=100),  # "2 min ago" for the next 50 s
    )
    backend.put(LOCK, payload)

    line = assert_error(run_spare("create", "--path", source, env=env), EXIT_LOCKED)
    assert "far-away" in line, line
    assert f"since {taken}, 3 h ago, refreshed 2 min ago" in line, line
    assert backend.objects()[LOCK] == payload


def test_a_lost_reply_to_the_lock_create(
    local: FileBackend, password: str, quirks: Path, run_spare: SpareRunner, source: Path
) -> None:
    """The conditional create of the lock succeeds but its reply is lost: the retry is refused
    with the run's own lock, which the run recognises as its own, holds and releases."""
    env = through("lostreply", local, password, quirks)
    assert_ok(run_spare("create", "--path", source, env=env))
    assert LOCK not in local.objects()
    assert local.keys(SNAPSHOTS)
    assert_ok(run_spare("verify", "--path", source, env=env))
    assert LOCK not in local.objects()

    assert_ok(run_spare("lock", env=env))
    assert_error(run_spare("lock", env=env), EXIT_LOCKED)
    assert_ok(run_spare("unlock", env=env))
    assert LOCK not in local.objects()


def test_a_server_that_ignores_the_condition_gives_no_second_holder(
    local: FileBackend,
    password: str,
    quirks: Path,
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    """On a server whose conditional create overwrites: a second create is refused while the
    first runs, and a run whose lock was overwritten anyway (two runs writing within one round
    trip) finds out before its commit and writes no snapshot."""
    env = through("nocond", local, password, quirks)
    source = tmp_path / "source"
    big_tree(source)

    running = run_spare.popen("create", "--path", source, env=env)
    try:
        uploading = wait_until(lambda: bool(local.keys(PACKS)) or running.poll() is not None, 120)
        assert uploading and running.poll() is None, "create ended before a pack was seen"
        running.send_signal(signal.SIGSTOP)
        line = assert_error(run_spare("create", "--path", source, env=env), EXIT_LOCKED)
        assert re.search(rf"\bpid {running.pid}\b", line), line

        # The write of a racing run lands after the first one read its lock back.
        plain = {**local.env, "SPARE_PASSWORD": password}
        other = crafted_lock(plain, tmp_path / "crafting-cache", host="racer", host_id="racer-id")
        local.put(LOCK, other)
    finally:
        running.send_signal(signal.SIGCONT)
        first = finish(running)
    line = assert_error(first, EXIT_LOCKED)
    assert "taken by 'spare create' on host racer" in line, line
    assert "no new snapshot was written" in line, line
    assert not local.keys(SNAPSHOTS)
    assert local.objects()[LOCK] == other, "the run deleted a lock that was not its own"


def test_a_long_create_refreshes_its_lock(
    local: FileBackend, password: str, quirks: Path, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The lock's refresh time advances while create runs (the interval shortened to 0.2 s by
    the test plugin; a slow upload keeps the run going for a few seconds)."""
    env = {**through("file", local, password, quirks), "SPARE_TEST_LOCK_REFRESH": "0.2"}
    env["SPARE_ENDPOINT"] = local.env["SPARE_ENDPOINT"]
    source = tmp_path / "source"
    big_tree(source)

    running = run_spare.popen("create", "--path", source, "--limit-upload", "4096", env=env)
    try:
        assert wait_until(lambda: bool(local.keys(PACKS)) or running.poll() is not None, 120)
        crafting = tmp_path / "crafting-cache"
        first = read_lock(env, crafting)
        assert first is not None and running.poll() is None, "create ended too soon"

        def refreshed() -> bool:
            holder = read_lock(env, crafting)
            return holder is not None and holder.refreshed > first.time

        assert wait_until(refreshed, 60, interval=0.3), "the lock was never refreshed"
        holder = read_lock(env, crafting)
        assert holder is not None
        assert (holder.token, holder.pid, holder.time) == (first.token, running.pid, first.time)
    finally:
        result = finish(running)
    assert_ok(result)
    assert LOCK not in local.objects()
    expected = snapshot_tree(source)
    assert_ok(run_spare("restore", "--path", tmp_path / "restored", env=env))
    assert_trees_equal(expected, snapshot_tree(tmp_path / "restored"))


def test_unlock_refuses_the_lock_of_a_run_still_running_here(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """A plain ``spare unlock`` leaves the lock of a create that still runs on this host (7,
    naming it and ``--force``); ``unlock --force`` removes it, and that create then stops before
    its commit (7), so the previous backup stays whole and verifies."""
    assert_ok(run_spare("create", "--path", source, env=env))
    before = snapshot_tree(source)
    snapshots, packs = backend.keys(SNAPSHOTS), backend.keys(PACKS)
    big_tree(source / "grown")

    running = run_spare.popen("create", "--path", source, env=env)
    try:
        uploading = wait_until(
            lambda: bool(backend.keys(PACKS) - packs) or running.poll() is not None, 120
        )
        assert uploading and running.poll() is None, "create ended before a pack was seen"
        running.send_signal(signal.SIGSTOP)
        held = backend.objects()[LOCK]

        line = assert_error(run_spare("unlock", env=env), EXIT_LOCKED)
        assert re.search(rf"\(pid {running.pid}\)", line), line
        assert "still running on this host" in line and "--force" in line, line
        assert backend.objects()[LOCK] == held

        assert_ok(run_spare("unlock", "--force", env=env))
        assert LOCK not in backend.objects()
    finally:
        running.send_signal(signal.SIGCONT)
        first = finish(running)
    line = assert_error(first, EXIT_LOCKED)
    assert "removed (by 'spare unlock'?)" in line and "no new snapshot was written" in line, line
    assert backend.keys(SNAPSHOTS) == snapshots
    assert LOCK not in backend.objects()
    assert_ok(run_spare("verify", env=env))
    restored = source.parent / "restored"
    assert_ok(run_spare("restore", "--path", restored, env=env))
    assert_trees_equal(before, snapshot_tree(restored))


def test_unlock_removes_another_hosts_lock(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """Whether another host's holder still runs cannot be known here: a plain ``spare unlock``
    removes its lock, even when the pid it names runs here (it is another process)."""
    assert_ok(run_spare("create", "--path", source, env=env))
    payload = crafted_lock(
        env, tmp_path / "crafting-cache", host="far-away", host_id="another-machine-id"
    )
    backend.put(LOCK, payload)

    result = run_spare("unlock", "--verbose", env=env)
    assert_ok(result)
    assert f"removed the lock of 'spare create' on host far-away (pid {os.getpid()})" in (
        result.stderr
    ), result.stderr
    assert LOCK not in backend.objects()


def test_runs_that_overlap_after_a_forced_unlock_keep_apart(
    local: FileBackend, password: str, quirks: Path, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """After ``spare unlock --force`` a second create overlaps with the first on this host. It
    removes the scratch directory a killed run left, but not the running one's; the cache that
    the first is writing makes it stop with 7 and one line; the first then stops before its
    commit; the next create completes and the backup is whole."""
    env = {**through("file", local, password, quirks), "SPARE_TEST_CACHE_BUSY": "0.5"}
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    (cache_dir,) = (path for path in run_spare.cache_dir.iterdir() if path.name != "buckets")
    big_tree(source / "grown")
    packs = local.keys(PACKS)

    killed = run_spare.popen("create", "--path", source, env=env)
    assert wait_until(lambda: any(cache_dir.glob("tmp-*")) or killed.poll() is not None, 120)
    killed.kill()
    finish(killed)
    left = set(cache_dir.glob("tmp-*"))
    assert left, "the killed create left no scratch directory"

    running = run_spare.popen("create", "--path", source, env=env)
    try:
        uploading = wait_until(
            lambda: bool(local.keys(PACKS) - packs) or running.poll() is not None, 120
        )
        assert uploading and running.poll() is None, "create ended before a pack was seen"
        running.send_signal(signal.SIGSTOP)
        own = set(cache_dir.glob("tmp-*")) - left
        assert own, "the running create has no scratch directory"
        assert not any(path.exists() for path in left), "the killed run's scratch is still there"

        assert_ok(run_spare("unlock", "--force", env=env))
        line = assert_error(run_spare("create", "--path", source, env=env), EXIT_LOCKED)
        assert "another spare run is using the local cache" in line, line
        assert all(path.is_dir() for path in own), "the overlapping run removed the other's scratch"
    finally:
        running.send_signal(signal.SIGCONT)
        first = finish(running)
    # Its first line is the warning that it cleared the killed run's lock.
    assert first.returncode == EXIT_LOCKED and "Traceback" not in first.stderr, first.stderr
    assert first.stderr.splitlines()[-1].endswith("no new snapshot was written"), first.stderr

    expected = snapshot_tree(source)
    assert_ok(run_spare("create", "--path", source, env=env))
    assert not list(cache_dir.glob("tmp-*"))
    assert_ok(run_spare("verify", env=env))
    restored = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", restored, env=env))
    assert_trees_equal(expected, snapshot_tree(restored))
