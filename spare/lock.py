"""The bucket lock contract; what the lock says of its holder is the core's (encrypted)."""

from __future__ import annotations

import abc

from spare.errors import Locked


class LockHeld(Locked):
    """The lock is taken; ``payload`` is what its holder stored (None if it vanished meanwhile)."""

    def __init__(self, payload: bytes | None) -> None:
        super().__init__("the bucket is locked")
        self.payload = payload


class Lock(abc.ABC):
    """A lock on one bucket, holding an opaque payload that describes its holder."""

    @abc.abstractmethod
    def acquire(self, payload: bytes) -> None:
        """Take the lock, storing ``payload``; raise :class:`LockHeld` if it is taken.

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
