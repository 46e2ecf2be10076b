"""``spare lock`` and ``spare unlock``: set and clear the bucket lock by hand."""

from __future__ import annotations

from spare.commands.context import Context
from spare.repository.locking import lock_by_hand, unlock_by_hand


def lock(ctx: Context) -> str:
    repo = ctx.open()
    try:
        lock_by_hand(repo, wait=ctx.lock_wait)
    finally:
        repo.close()
    return "the bucket is locked; 'spare unlock' releases it"


def unlock(ctx: Context, *, force: bool = False) -> str:
    repo = ctx.open()
    try:
        info = unlock_by_hand(repo, force=force)
    finally:
        repo.close()
    return "the bucket was not locked" if info is None else f"removed the lock of {info.describe()}"
