"""``spare lock`` and ``spare unlock``: set and clear the bucket lock by hand."""

from __future__ import annotations

from spare.commands.common import Context
from spare.lock import LockHeld


def lock(ctx: Context) -> str:
    repo = ctx.open()
    try:
        lock = ctx.plugins.locks.get("object")(repo.storage)
        try:
            lock.acquire(repo.lock_payload("lock"))
        except LockHeld as held:
            raise repo.locked_error(repo.describe_lock(held.payload)) from None
        return "the bucket is locked; 'spare unlock' releases it"
    finally:
        repo.close()


def unlock(ctx: Context) -> str:
    repo = ctx.open()
    try:
        lock = ctx.plugins.locks.get("object")(repo.storage)
        info = repo.describe_lock(lock.read())
        if info is None:
            return "the bucket was not locked"
        lock.clear()
        return f"removed the lock of {info.describe()}"
    finally:
        repo.close()
