"""The bucket lock contract; what the lock says of its holder is the core's (encrypted).

A lock plugin stores and compares opaque payloads; it never needs to understand them. The core
decides whose a payload is (this run's, a dead process's of this host, or a live holder's), since
only it can decrypt them: see :mod:`spare.repository.locking`.
"""

from __future__ import annotations

import abc


class Lock(abc.ABC):
    """A lock on one bucket, holding an opaque payload that describes its holder."""

    #: The keys of the objects this lock keeps in the bucket; the prune never deletes them.
    keys: tuple[str, ...] = ()

    @abc.abstractmethod
    def acquire(self, payload: bytes) -> None:
        """Take the lock, storing ``payload``; raise :class:`~spare.errors.LockHeld` if it is taken.

        MUST be atomic: of several concurrent callers on any hosts, exactly one succeeds. Never a
        check followed by a write. :class:`~spare.errors.LockHeld` MUST carry the payload found
        (None if it vanished meanwhile), even when it equals ``payload``: a create whose reply
        was lost and that was retried finds its own payload, and the core then holds the lock.
        """

    @abc.abstractmethod
    def read(self) -> bytes | None:
        """The holder's payload, or None when the lock is free."""

    @abc.abstractmethod
    def replace(self, current: bytes, payload: bytes) -> bool:
        """Store ``payload`` in place of ``current`` if the lock holds ``current``; say if it did.

        MUST NOT take a free lock. The core calls it only to refresh the lock it holds, which no
        other run writes, so a read followed by a write is enough.
        """

    @abc.abstractmethod
    def release(self, payload: bytes) -> None:
        """Free the lock if it still holds ``payload`` (i.e. is still ours); else leave it."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Free the lock whoever holds it (``spare unlock``)."""
