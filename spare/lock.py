"""The bucket lock contract; what the lock says of its holder is the core's (encrypted)."""

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
        check followed by a write.
        """

    @abc.abstractmethod
    def read(self) -> bytes | None:
        """The holder's payload, or None when the lock is free."""

    @abc.abstractmethod
    def release(self, payload: bytes) -> None:
        """Free the lock if it still holds ``payload`` (i.e. is still ours); else leave it."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Free the lock whoever holds it (``spare unlock``)."""
