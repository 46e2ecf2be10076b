"""What the commands share: opening the bucket, owner names, signals, warnings."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import FrameType

from spare.errors import Interrupted, NoSnapshot
from spare.plugins import Plugins
from spare.repository.repo import Repository, Snapshot
from spare.storage import RateLimitedStorage, RetryingStorage, Storage, StorageLocation

log = logging.getLogger("spare")

#: Packs that restore and verify read at once: enough to hide S3 latency and to decompress on
#: every core, few enough that the threads do not spend their time contending for the GIL.
READERS = 4


@dataclass
class Context:
    """Everything a command needs besides its own arguments."""

    location: StorageLocation
    password: str
    cache_root: Path
    plugins: Plugins = field(default_factory=Plugins)
    verbose: bool = False
    #: Bytes per second that uploads may average; None for no limit.
    limit_upload: int | None = None

    def storage(self) -> Storage:
        factory = self.plugins.storages.get(self.location.scheme)
        storage = factory(self.location)
        if self.limit_upload:
            storage = RateLimitedStorage(storage, self.limit_upload)  # retries count too
        return RetryingStorage(storage)

    def open(self, *, create: bool = False, compression: str | None = "lzma") -> Repository:
        return Repository.open(
            self.storage,
            self.password,
            self.plugins,
            self.cache_root,
            location=f"{self.location.scheme}:{self.location.url}/{self.location.bucket}",
            create=create,
            compression=compression,
        )


@contextmanager
def reading(ctx: Context, command: str) -> Iterator[tuple[Repository, Snapshot]]:
    """The repository and its snapshot, for a command that only reads (restore, verify).

    The lock is held so that no create prunes what is being read; a lock set by ``spare lock``
    freezes the backup and is no obstacle.
    """
    repo = ctx.open()
    try:
        with repo.locked(command, under_manual_lock=True):
            snapshot = repo.latest_snapshot()
            if snapshot is None:
                raise NoSnapshot("there is no backup in this bucket yet")
            repo.sync_index()
            yield repo, snapshot
    finally:
        repo.close()


class Warnings:
    """Collects what went wrong without stopping the run; printed as it happens."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        print(f"spare: warning: {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """Say something worth knowing that is no fault: the exit code stays 0."""
        print(f"spare: note: {message}", file=sys.stderr, flush=True)


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def user_id(name: str | None, fallback: int) -> int:
    if name is None:
        return fallback
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return fallback


@lru_cache(maxsize=4096)
def group_id(name: str | None, fallback: int) -> int:
    if name is None:
        return fallback
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return fallback


class _Signals:
    """Whether SIGTERM and SIGINT are being deferred, and which one arrived meanwhile."""

    deferring = False
    pending: int | None = None


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted`, so that ``finally`` blocks run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _Signals.deferring:
            _Signals.pending = signum
            return
        # Ignore further signals while cleaning up: the lock must be released.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Defer SIGTERM and SIGINT until the block (a commit) is done, then raise them."""
    _Signals.deferring = True
    try:
        yield
    finally:
        _Signals.deferring = False
        signum, _Signals.pending = _Signals.pending, None
        if signum is not None:
            raise Interrupted(signum, after_commit=True)


def limit_to_one_core() -> None:
    """Keep create on one core, as promised; the host it runs on is a production server."""
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[os.getpid() % len(cores)]})
