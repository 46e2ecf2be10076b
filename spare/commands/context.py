"""What every command gets besides its own options, and how the reading commands open a bucket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spare.console import Console, Warnings
from spare.errors import NoSnapshot
from spare.plugins import Plugins
from spare.repository.index import IndexSync, sync_index
from spare.repository.locking import locked_for_reading
from spare.repository.opening import open_repository, read_key_file
from spare.repository.repo import Repository
from spare.repository.snapshots import Snapshot, check_not_rolled_back, latest_snapshot
from spare.storage import (
    CountingStorage,
    RateLimitedStorage,
    RetryingStorage,
    Storage,
    StorageLocation,
    Traffic,
)

#: Packs that restore and verify read at once: enough to hide S3 latency and to decompress on
#: every core, few enough that the threads do not spend their time contending for the GIL.
READERS = 4


@dataclass(frozen=True)
class Context:
    """Where the bucket is, the password, the local cache and the plugins."""

    location: StorageLocation
    password: str = field(repr=False)
    cache_root: Path
    plugins: Plugins = field(default_factory=Plugins)
    console: Console = field(default_factory=Console.current)
    #: Seconds a storage that fails or cannot be reached is retried before the command fails.
    retry_for: float = 600.0
    #: Seconds to wait for a lock held by another run.
    lock_wait: float = 0.0
    #: The key exported by ``spare key export``, for a bucket whose config is lost.
    key_file: Path | None = None
    #: What this command did to the bucket, for its summary.
    traffic: Traffic = field(default_factory=Traffic)

    def storage(self, limit_upload: int | None = None) -> Storage:
        """The bucket's storage, retrying failures that may pass for ``retry_for`` seconds;
        uploads paced to ``limit_upload`` bytes per second on average, if given."""
        storage = self.plugins.storages.get(self.location.scheme)(self.location)
        if limit_upload:
            storage = RateLimitedStorage(storage, limit_upload)  # retries count too
        return CountingStorage(RetryingStorage(storage, self.retry_for), self.traffic)

    def open(
        self,
        *,
        create: bool = False,
        compression: str | None = "lzma",
        limit_upload: int | None = None,
        force: bool = False,
    ) -> Repository:
        """The bucket as a repository; ``force`` accepts one that this host knew as another.

        The key file (``--key-file``), if given, is read first: a file that is not one is an
        error even where the bucket's own config is whole.
        """
        return open_repository(
            lambda: self.storage(limit_upload),
            self.password,
            self.plugins,
            self.cache_root,
            location=self.location_name,
            create=create,
            compression=compression,
            force=force,
            escrow=read_key_file(self.key_file) if self.key_file else None,
        )

    @property
    def location_name(self) -> str:
        """The bucket as this host names it among the configs it remembers."""
        return f"{self.location.scheme}:{self.location.url}/{self.location.bucket}"


def note_sync(synced: IndexSync, note: Callable[[str], None], who: str) -> None:
    """Say what :func:`sync_index` found wrong, and that ``who`` repairs it."""
    if synced.unreadable:
        note(
            f"{len(synced.unreadable)} packs that no index names cannot be read (damaged, or "
            f"not this repository's); {who} deletes them"
        )
    if synced.damaged_indexes:
        note(
            f"{len(synced.damaged_indexes)} index objects are damaged; what they list was read "
            f"from the packs themselves, and {who} writes them anew"
        )
    if synced.lost:
        note(
            f"{len(synced.lost)} packs are missing from the bucket or changed size; {who} "
            "stores what they held anew, where the files still exist"
        )


@contextmanager
def reading(
    ctx: Context, command: str, *, force: bool = False
) -> Iterator[tuple[Repository, Snapshot]]:
    """The repository and its snapshot, for a command that only reads (restore, verify).

    The lock is held so that no create prunes what is being read; a lock set by ``spare lock``
    freezes the backup and is no obstacle. A snapshot older than one this host has seen in the
    bucket (a rollback) is refused unless ``force``.
    """
    repo = ctx.open(force=force)
    try:
        with locked_for_reading(repo, command, wait=ctx.lock_wait):
            snapshot = latest_snapshot(repo)
            if snapshot is None:
                raise NoSnapshot("there is no backup in this bucket yet")
            check_not_rolled_back(repo, snapshot, force=force)
            note_sync(sync_index(repo), Warnings().note, "the next create")
            yield repo, snapshot
    finally:
        repo.close()
