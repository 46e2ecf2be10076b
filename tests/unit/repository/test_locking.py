"""The lock as the core uses it: whose a lock is, when it is stale, refreshing and releasing.

On the memory storage, wrapped where a test needs a storage that misbehaves as some servers do.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from spare.errors import Locked, SourceUnavailable, StorageTransient, StorageUnreachable
from spare.plugins import Plugins
from spare.processes import HostIdentity, start_time, this_host
from spare.repository import locking
from spare.repository.locking import (
    LockInfo,
    bucket_lock,
    describe_lock,
    encode_lock,
    locked,
    locked_error,
    runs_here,
    stale_reason,
    take,
    unlock_by_hand,
)
from spare.repository.opening import open_repository
from spare.repository.repo import Repository
from spare.storage import RetryingStorage, Storage, StorageLocation, StorageWrapper

Wrap = Callable[[Storage], Storage]


class LostReply(StorageWrapper):
    """Creates the lock, then fails as if the reply had been lost."""

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)
        if key == "lock":
            raise StorageTransient("the reply was lost")


class NoCondition(StorageWrapper):
    """A server that ignores If-None-Match: a create overwrites."""

    def create(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)


class RefusedRefresh(StorageWrapper):
    """Every put of the lock fails (after the first create); everything else works."""

    def put(self, key: str, data: bytes) -> None:
        if key == "lock":
            raise StorageTransient("the endpoint is busy")
        self.inner.put(key, data)


@pytest.fixture
def open_repo(tmp_path: Path) -> Iterator[Callable[..., Repository]]:
    """Opens the one memory bucket of the test as a repository, through ``wrap`` if given: each
    call is another spare run on the same bucket. (They share one memory storage object, which
    is what makes the memory backend's create atomic.)"""
    plugins = Plugins()
    memory = plugins.storages.get("memory")(StorageLocation("memory", secrets.token_hex(6), "b"))
    opened: list[Repository] = []

    def open_repo(wrap: Wrap = lambda storage: storage) -> Repository:
        storage = RetryingStorage(wrap(StorageWrapper(memory)), 0.2, first_wait=0.01)
        repo = open_repository(
            lambda: storage, "password", plugins, tmp_path, location="memory-test", create=True
        )
        opened.append(repo)
        return repo

    yield open_repo
    for repo in opened:
        repo.close()


@pytest.fixture
def repo(open_repo: Callable[..., Repository]) -> Repository:
    return open_repo()


def holder(repo: Repository) -> LockInfo | None:
    return describe_lock(repo, bucket_lock(repo).read())


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def lock_of(command: str = "create", **fields: object) -> LockInfo:
    """The lock a process of this host would hold, with ``fields`` changed."""
    return dataclasses.replace(LockInfo.for_this_process(command, this_host()), **fields)


def plant(repo: Repository, info: LockInfo) -> bytes:
    """Store ``info`` as the lock, as the run it describes would have."""
    payload = encode_lock(repo, info)
    repo.storage.put("lock", payload)
    return payload


def test_a_held_lock_names_its_holder_and_is_released(repo: Repository) -> None:
    with locked(repo, "create") as held:
        found = holder(repo)
        assert found is not None and found.token == held.info.token
        assert (found.command, found.pid) == ("create", os.getpid())
        with pytest.raises(Locked, match=rf"'spare create' on host \S+ \(pid {os.getpid()}\)"):
            take(repo, "create")
    assert bucket_lock(repo).read() is None


# -- release -----------------------------------------------------------------------------------


def test_release_deletes_our_lock_whatever_its_bytes(repo: Repository) -> None:
    """After a refresh the lock's bytes are new (encrypted anew): it is still ours by token."""
    with locked(repo, "create") as held:
        plant(repo, dataclasses.replace(held.info, refreshed="2026-11-26T02:05:00Z"))
    assert bucket_lock(repo).read() is None


def test_release_leaves_another_holders_lock(repo: Repository) -> None:
    with locked(repo, "create"):
        bucket_lock(repo).clear()  # 'spare unlock' during the run...
        theirs = plant(repo, lock_of(host="elsewhere"))  # ...and another run took the lock
    assert bucket_lock(repo).read() == theirs


# -- lost replies and servers that ignore If-None-Match ----------------------------------------


def test_a_lost_reply_finds_its_own_lock(open_repo: Callable[..., Repository]) -> None:
    repo = open_repo(LostReply)
    with locked(repo, "create") as held:
        found = holder(repo)
        assert found is not None and found.token == held.info.token
    assert bucket_lock(repo).read() is None


def test_a_lock_that_is_there_is_not_overwritten(open_repo: Callable[..., Repository]) -> None:
    first, second = open_repo(NoCondition), open_repo(NoCondition)
    with locked(first, "create") as held:
        with pytest.raises(Locked, match=rf"\(pid {os.getpid()}\)"):
            take(second, "create")
        found = holder(first)
        assert found is not None and found.token == held.info.token


def test_an_overwritten_lock_stops_the_run_before_it_changes_the_bucket(
    open_repo: Callable[..., Repository],
) -> None:
    """Two runs that write within one round trip on such a server both read their own lock
    back; the one overwritten learns it before its commit, and leaves the other's lock."""
    first = open_repo(NoCondition)
    with locked(first, "create") as held:
        theirs = plant(first, lock_of(host="racer"))
        with pytest.raises(Locked, match=r"taken by 'spare create' on host racer .*; no snapshot"):
            held.ensure_held("no snapshot was written")
    assert bucket_lock(first).read() == theirs


def test_a_removed_lock_stops_the_run(repo: Repository) -> None:
    with locked(repo, "create") as held:
        bucket_lock(repo).clear()
        with pytest.raises(Locked, match=r"removed \(by 'spare unlock'\?\)"):
            held.ensure_held("no snapshot was written")


# -- stale locks -------------------------------------------------------------------------------


def test_a_dead_spare_of_this_host_leaves_a_stale_lock(
    repo: Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = dead_pid()
    plant(repo, lock_of(pid=pid, started=None))
    with locked(repo, "create") as held:
        found = holder(repo)
        assert found is not None and found.token == held.info.token
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("spare: warning: cleared the stale lock of 'spare create'"), line
    assert f"(pid {pid})" in line and "no longer running" in line


def test_a_reused_pid_does_not_keep_a_lock_alive(repo: Repository) -> None:
    """The pid runs, but a process that started at another time: not the holder."""
    started = start_time(os.getpid())
    assert started is not None
    plant(repo, lock_of(started=started - 1))
    with locked(repo, "verify"):
        pass
    assert bucket_lock(repo).read() is None


@pytest.mark.parametrize(
    "fields",
    [
        {"command": "lock"},
        {"host_id": "another-machine"},
        {"boot_id": "another-boot"},
        {"pid_namespace": "pid:[1]"},
        {"token": ""},  # a lock of a spare that recorded none of this
    ],
    ids=["spare-lock", "other-host", "other-boot", "other-pid-namespace", "old-format"],
)
def test_locks_that_are_never_cleared(repo: Repository, fields: dict[str, object]) -> None:
    payload = plant(repo, lock_of(pid=dead_pid(), started=None, **fields))
    with pytest.raises(Locked):
        take(repo, "create")
    assert bucket_lock(repo).read() == payload


def test_a_live_holder_of_this_host_is_not_stale() -> None:
    here = this_host()
    assert here.known, "this test needs /proc and a machine id or host name"
    assert stale_reason(lock_of(), here) is None  # this very process
    assert stale_reason(lock_of(pid=dead_pid(), started=None), here) is not None
    unknown = HostIdentity(here.host_id, "", "")
    assert stale_reason(lock_of(pid=dead_pid(), started=None), unknown) is None


def test_a_live_holder_of_this_host_runs_here() -> None:
    """What 'spare unlock' refuses without --force: only a spare command of this host, boot and
    pid namespace whose process runs."""
    here = this_host()
    assert runs_here(lock_of(), here)
    assert not runs_here(lock_of(pid=dead_pid(), started=None), here)
    assert not runs_here(lock_of("lock"), here)
    assert not runs_here(lock_of(host_id="another-machine"), here)
    assert not runs_here(lock_of(boot_id="another-boot"), here)
    assert not runs_here(lock_of(), HostIdentity(here.host_id, "", ""))


def test_unlock_by_hand_refuses_a_live_holder_unless_forced(repo: Repository) -> None:
    payload = plant(repo, lock_of())
    with pytest.raises(Locked, match=rf"\(pid {os.getpid()}\).*still running.*--force"):
        unlock_by_hand(repo)
    assert bucket_lock(repo).read() == payload
    assert unlock_by_hand(repo, force=True) is not None
    assert holder(repo) is None

    plant(repo, lock_of(pid=dead_pid(), started=None))
    assert unlock_by_hand(repo) is not None
    assert holder(repo) is None
    assert unlock_by_hand(repo) is None


def test_runs_clearing_the_same_stale_lock_leave_one_holder(
    open_repo: Callable[..., Repository],
) -> None:
    """Several runs of this host find the same stale lock at once: exactly one ends up holding
    the lock, and none deletes the lock another took after clearing the stale one."""
    repos = [open_repo() for _ in range(4)]
    plant(repos[0], lock_of(pid=dead_pid(), started=None))
    start = threading.Barrier(len(repos))
    winners: list[str] = []

    def contend(repo: Repository) -> None:
        start.wait()
        try:
            held = take(repo, "create")
        except Locked:
            return
        assert held is not None
        winners.append(held.info.token)

    threads = [threading.Thread(target=contend, args=(repo,)) for repo in repos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    found = holder(repos[0])
    assert found is not None and found.token == winners[0]


# -- refreshing --------------------------------------------------------------------------------


@pytest.fixture
def fast_refresh(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(locking, "REFRESH_INTERVAL", 0.05)
    return 0.05


def test_a_held_lock_is_refreshed(repo: Repository, fast_refresh: float) -> None:
    with locked(repo, "create") as held:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = holder(repo)
            assert found is not None and found.token == held.info.token
            if found.refreshed > found.time:
                break
            time.sleep(fast_refresh)
        else:
            pytest.fail("the lock was not refreshed within 10 s")
        assert found.time == held.info.time
    time.sleep(5 * fast_refresh)
    assert bucket_lock(repo).read() is None, "a refresh stored the lock again after its release"
    assert not [t for t in threading.enumerate() if t.name == "spare-lock-refresh"]


def test_a_refresh_never_writes_another_holders_lock(repo: Repository, fast_refresh: float) -> None:
    with locked(repo, "create"):
        theirs = plant(repo, lock_of(host="elsewhere"))
        time.sleep(10 * fast_refresh)
        assert bucket_lock(repo).read() == theirs
    assert bucket_lock(repo).read() == theirs


def test_refresh_errors_are_logged_not_fatal(
    open_repo: Callable[..., Repository],
    fast_refresh: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = open_repo(RefusedRefresh)
    with caplog.at_level(logging.WARNING), locked(repo, "create"):
        time.sleep(1)
    assert "could not refresh the bucket lock" in caplog.text
    assert bucket_lock(repo).read() is None


# -- what a refused run says -------------------------------------------------------------------


def iso(**delta: float) -> str:
    then = datetime.datetime.now(datetime.UTC) + datetime.timedelta(**delta)
    return then.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_a_refused_run_says_how_old_the_lock_is() -> None:
    info = lock_of(
        host="web1",
        pid=4242,
        time=iso(hours=-3),
        refreshed=iso(minutes=-2),
    )
    message = str(locked_error(info))
    assert (
        f"'spare create' on host web1 (pid 4242) since {info.time}, 3 h ago, refreshed 2 min ago"
        in message
    )
    assert "\n" not in message


class RefusedRelease(StorageWrapper):
    """The endpoint is gone by the time the lock is to be deleted."""

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if "lock" in keys:
            raise StorageUnreachable("cannot reach the endpoint")
        self.inner.delete(keys)


def test_a_failed_release_never_hides_why_the_run_failed(
    open_repo: Callable[..., Repository], capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's own error is the one reported; the lock left behind is a warning (the next
    run on this host clears it as stale)."""
    repo = open_repo(RefusedRelease)
    with pytest.raises(SourceUnavailable, match="the path is gone"), locked(repo, "create"):
        raise SourceUnavailable("the path is gone")
    assert "warning: could not release the bucket lock (cannot reach the endpoint" in (
        capsys.readouterr().err
    )
    assert holder(repo) is not None
