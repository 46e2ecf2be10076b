"""The contract of :class:`spare.lock.Lock`, as tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from spare.errors import LockHeld
from spare.lock import Lock


class LockContract:
    """Subclass and provide ``make_lock``: a fixture returning a factory of locks on ONE fresh
    bucket (each call a new lock object, as separate spare processes would have)."""

    def test_acquire_then_held(self, make_lock: Callable[[], Lock]) -> None:
        first, second = make_lock(), make_lock()
        first.acquire(b"holder one")
        with pytest.raises(LockHeld) as held:
            second.acquire(b"holder two")
        assert held.value.payload == b"holder one"
        assert second.read() == b"holder one"

    def test_acquire_reports_the_holder_even_when_it_is_the_caller(
        self, make_lock: Callable[[], Lock]
    ) -> None:
        """A create whose reply was lost is retried and refused: the core must get its own
        payload back to know that it holds the lock."""
        make_lock().acquire(b"me")
        with pytest.raises(LockHeld) as held:
            make_lock().acquire(b"me")
        assert held.value.payload == b"me"

    def test_replace_rewrites_the_holders_payload(self, make_lock: Callable[[], Lock]) -> None:
        lock = make_lock()
        lock.acquire(b"me, at two")
        assert make_lock().replace(b"me, at two", b"me, at three") is True
        assert lock.read() == b"me, at three"
        with pytest.raises(LockHeld) as held:
            make_lock().acquire(b"someone else")
        assert held.value.payload == b"me, at three"

    def test_replace_leaves_another_holders_lock(self, make_lock: Callable[[], Lock]) -> None:
        make_lock().acquire(b"them")
        assert make_lock().replace(b"me", b"me again") is False
        assert make_lock().read() == b"them"

    def test_replace_never_takes_a_free_lock(self, make_lock: Callable[[], Lock]) -> None:
        lock = make_lock()
        assert lock.replace(b"me", b"me again") is False
        assert lock.read() is None

    def test_release_frees(self, make_lock: Callable[[], Lock]) -> None:
        lock = make_lock()
        assert lock.read() is None
        lock.acquire(b"me")
        lock.release(b"me")
        assert lock.read() is None
        make_lock().acquire(b"someone else")

    def test_release_leaves_another_holders_lock(self, make_lock: Callable[[], Lock]) -> None:
        mine, theirs = make_lock(), make_lock()
        mine.acquire(b"me")
        mine.clear()
        theirs.acquire(b"them")
        mine.release(b"me")  # late: the lock is no longer mine
        assert theirs.read() == b"them"

    def test_clear(self, make_lock: Callable[[], Lock]) -> None:
        lock = make_lock()
        lock.acquire(b"stale")
        make_lock().clear()
        assert lock.read() is None
        make_lock().clear()  # clearing a free lock is fine

    def test_concurrent_acquire_has_one_winner(self, make_lock: Callable[[], Lock]) -> None:
        winners: list[bytes] = []
        start = threading.Barrier(6)

        def contend(payload: bytes) -> None:
            lock = make_lock()
            start.wait()
            try:
                lock.acquire(payload)
            except LockHeld:
                return
            winners.append(payload)

        threads = [threading.Thread(target=contend, args=(b"%d" % n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert make_lock().read() == winners[0]
