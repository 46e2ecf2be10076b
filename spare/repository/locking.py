"""The bucket lock as the core uses it: who holds it (encrypted), and what to tell the user.

The lock itself is a plugin's (:class:`spare.lock.Lock`, the one named ``object``); its payload,
which names the holder's command, host, pid and time, is encrypted like every other object.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from spare.errors import Locked, LockHeld, RepositoryDamaged
from spare.lock import Lock
from spare.repository import objects
from spare.repository.repo import Repository
from spare.repository.snapshots import now

#: The lock plugin the core uses.
LOCK_NAME = "object"


@dataclass
class LockInfo:
    """Who holds the lock, as its payload says."""

    command: str
    host: str
    pid: int
    time: str

    def describe(self) -> str:
        return f"'spare {self.command}' on host {self.host} (pid {self.pid}) since {self.time}"


def bucket_lock(repo: Repository) -> Lock:
    return repo.plugins.locks.get(LOCK_NAME)(repo.storage)


def lock_payload(repo: Repository, command: str) -> bytes:
    info = LockInfo(command, socket.gethostname(), os.getpid(), now())
    return repo.encode_object(objects.KIND_LOCK, json.dumps(asdict(info)).encode(), b"lock")


def describe_lock(repo: Repository, payload: bytes | None) -> LockInfo | None:
    if payload is None:
        return None
    try:
        return LockInfo(**json.loads(repo.decode_object(payload, objects.KIND_LOCK, b"lock")))
    except (RepositoryDamaged, ValueError, TypeError):
        return LockInfo("(unreadable lock)", "unknown", 0, "unknown")


@contextmanager
def locked(repo: Repository, command: str, *, under_manual_lock: bool = False) -> Iterator[None]:
    """Hold the bucket lock while the block runs; released on any exit.

    With ``under_manual_lock``, a lock set by ``spare lock`` is no obstacle (read-only commands
    run on a frozen backup), but the lock of a running command is.
    """
    lock = bucket_lock(repo)
    payload = lock_payload(repo, command)
    try:
        lock.acquire(payload)
    except LockHeld as held:
        info = describe_lock(repo, held.payload)
        if info is not None and info.command == "lock" and under_manual_lock:
            yield
            return
        raise locked_error(info) from None
    try:
        yield
    finally:
        lock.release(payload)


def lock_by_hand(repo: Repository) -> None:
    """``spare lock``: take the lock and keep it."""
    try:
        bucket_lock(repo).acquire(lock_payload(repo, "lock"))
    except LockHeld as held:
        raise locked_error(describe_lock(repo, held.payload)) from None


def unlock_by_hand(repo: Repository) -> LockInfo | None:
    """``spare unlock``: remove the lock, whoever holds it; who held it (None: nobody)."""
    lock = bucket_lock(repo)
    info = describe_lock(repo, lock.read())
    if info is not None:
        lock.clear()
    return info


def locked_error(info: LockInfo | None) -> Locked:
    if info is None:
        return Locked("the bucket was locked a moment ago; try again")
    if info.command == "lock":
        return Locked(
            f"the bucket was locked by hand with {info.describe()}; run 'spare unlock' to "
            "allow changes again"
        )
    return Locked(
        f"the bucket is locked by {info.describe()}; if no spare runs there any more, run "
        "'spare unlock'"
    )
