"""The default lock: one object created with a conditional write (``If-None-Match: *`` on S3)."""

from __future__ import annotations

from spare.errors import LockHeld, ObjectExists, ObjectNotFound, UsageError
from spare.hookspecs import hookimpl
from spare.lock import Lock
from spare.registry import LockRegistry
from spare.storage import Storage

LOCK_KEY = "lock"
MAX_PAYLOAD = 64 << 10


class ObjectLock(Lock):
    keys = (LOCK_KEY,)

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def acquire(self, payload: bytes) -> None:
        if not self.storage.atomic_create:
            raise UsageError(
                "this storage cannot create an object atomically, so spare cannot lock it safely; "
                "use an S3 endpoint or a local directory"
            )
        try:
            self.storage.create(LOCK_KEY, payload)
        except ObjectExists:
            raise LockHeld(self.read()) from None

    def read(self) -> bytes | None:
        try:
            # A lock payload is a few hundred bytes; a huge object there is read no further
            # than this, and then does not decode (an unreadable lock).
            return self.storage.get(LOCK_KEY, 0, MAX_PAYLOAD + 1)
        except ObjectNotFound:
            return None

    def replace(self, current: bytes, payload: bytes) -> bool:
        if self.read() != current:
            return False
        self.storage.put(LOCK_KEY, payload)
        return True

    def release(self, payload: bytes) -> None:
        if self.read() == payload:
            self.storage.delete([LOCK_KEY])

    def clear(self) -> None:
        self.storage.delete([LOCK_KEY])


@hookimpl
def spare_register_locks(registry: LockRegistry) -> None:
    registry.add_lock("object", ObjectLock)
