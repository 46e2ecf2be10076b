"""Storage wrappers (spare.storage): transient failures are retried, uploads paced to a limit."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from spare.errors import (
    AccessDenied,
    BadEndpoint,
    ObjectNotFound,
    StorageError,
    StorageTransient,
    StorageUnreachable,
)
from spare.plugins import Plugins
from spare.storage import RateLimitedStorage, RetryingStorage, Storage, StorageLocation


def memory_storage() -> Storage:
    location = StorageLocation("memory", secrets.token_hex(6), "bucket")
    storage = Plugins().storages.get("memory")(location)
    storage.ensure_bucket()
    return storage


class FakeClock:
    """Time that passes only when someone sleeps, so pacing is checked exactly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_uploads_are_paced_to_the_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    limited = RateLimitedStorage(memory_storage(), 100_000, clock=clock, sleep=clock.sleep)
    limited.put("a", b"x" * 100_000)  # the first goes at once
    limited.create("b", b"y" * 50_000)  # waits for the 1 s the first one is worth
    pack = tmp_path / "pack"
    pack.write_bytes(b"z" * 200_000)
    limited.put_file("c", str(pack))  # waits 0.5 s
    clock.now += 5  # idle time is not saved up for a burst beyond the limit
    limited.put("d", b"w" * 10)
    assert clock.sleeps == pytest.approx([1.0, 0.5])
    assert limited.get("c") == b"z" * 200_000
    assert sorted(info.key for info in limited.list()) == ["a", "b", "c", "d"]


def test_writers_in_two_threads_share_the_limit() -> None:
    """The uploader and the lock's refresh pace together: each write gets a slot of its own."""
    sleeps: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            sleeps.append(seconds)
        time.sleep(seconds)

    limited = RateLimitedStorage(memory_storage(), 1_000_000, sleep=sleep)
    start = threading.Barrier(4)

    def write(index: int) -> None:
        start.wait()
        limited.put(f"k{index}", b"x" * 200_000)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sleeps) == pytest.approx([0.2, 0.4, 0.6], abs=0.05)


def test_a_small_write_never_waits_behind_the_packs() -> None:
    """The lock's refresh goes out at once, however many packs wait; it still counts."""
    clock = FakeClock()
    limited = RateLimitedStorage(memory_storage(), 100_000, clock=clock, sleep=clock.sleep)
    limited.put("pack-1", b"x" * 200_000)
    limited.put("lock", b"l" * 300)  # no wait, though the limit's budget is spent for 2 s
    limited.put("pack-2", b"x" * 100_000)  # waits for the first pack and the lock
    assert clock.sleeps == pytest.approx([2.003])


def test_reads_are_not_limited() -> None:
    clock = FakeClock()
    inner = memory_storage()
    inner.put("big", b"x" * 1_000_000)
    limited = RateLimitedStorage(inner, 1_000, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert len(limited.get("big")) == 1_000_000
    assert clock.sleeps == []


class Flaky(Storage):
    """Fails the first ``failures`` puts with a transient error."""

    def __init__(self, inner: Storage, failures: int) -> None:
        self.inner, self.failures, self.attempts = inner, failures, 0

    def ensure_bucket(self) -> None: ...

    def put(self, key: str, data: bytes) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageTransient("503 Slow Down")
        self.inner.put(key, data)

    def create(self, key: str, data: bytes) -> None: ...

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def list(self, prefix: str = ""):  # type: ignore[no-untyped-def]
        return self.inner.list(prefix)

    def delete(self, keys) -> None:  # type: ignore[no-untyped-def]
        self.inner.delete(keys)


class Clock:
    """A clock that only moves when spare sleeps: retries take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def retrying(inner: Storage, retry_for: float, clock: Clock) -> RetryingStorage:
    return RetryingStorage(inner, retry_for, clock=clock, sleep=clock.sleep)


def test_transient_failures_are_retried_then_reported() -> None:
    clock = Clock()
    flaky = Flaky(memory_storage(), failures=2)
    retrying(flaky, 600, clock).put("k", b"v")
    assert flaky.attempts == 3 and flaky.get("k") == b"v"
    hopeless = Flaky(memory_storage(), failures=10**6)
    with pytest.raises(StorageTransient, match=r"503 Slow Down; retried for 600 s$"):
        retrying(hopeless, 600, clock).put("k", b"v")


def test_retries_back_off_with_jitter_up_to_a_minute_until_the_deadline() -> None:
    clock = Clock()
    hopeless = Flaky(memory_storage(), failures=10**6)
    with pytest.raises(StorageTransient):
        retrying(hopeless, 3600, clock).put("k", b"v")
    assert clock.now == pytest.approx(3600)
    assert all(0 <= wait <= 60 for wait in clock.waits)
    assert clock.waits[0] <= 1 and max(clock.waits) > 30  # grows, capped at a minute
    assert len(set(clock.waits)) == len(clock.waits)  # jittered


def test_no_retry_with_retry_for_zero() -> None:
    hopeless = Flaky(memory_storage(), failures=10**6)
    with pytest.raises(StorageTransient, match=r"^503 Slow Down$"):
        retrying(hopeless, 0, Clock()).put("k", b"v")
    assert hopeless.attempts == 1


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (StorageUnreachable("connection refused"), True),
        (BadEndpoint("not an S3 server"), False),
        (AccessDenied("denied"), False),
        (ObjectNotFound("no such key"), False),
    ],
)
def test_what_is_retried(error: StorageError, retried: bool) -> None:
    class Failing(Flaky):
        def put(self, key: str, data: bytes) -> None:
            self.attempts += 1
            raise error

    failing = Failing(memory_storage(), failures=0)
    with pytest.raises(type(error)):
        retrying(failing, 10, Clock()).put("k", b"v")
    assert (failing.attempts > 1) is retried


def test_after_giving_up_each_call_is_tried_once() -> None:
    """The run is failing: the lock's release on the way out does not wait another retry_for."""
    clock = Clock()
    hopeless = Flaky(memory_storage(), failures=10**6)
    storage = retrying(hopeless, 60, clock)
    with pytest.raises(StorageTransient):
        storage.put("k", b"v")
    tried = hopeless.attempts
    with pytest.raises(StorageTransient, match=r"^503 Slow Down$"):
        storage.put("k", b"v")
    assert hopeless.attempts == tried + 1
