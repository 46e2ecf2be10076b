"""What every command gets besides its own options, and how the reading commands open a bucket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spare.errors import NoSnapshot
from spare.plugins import Plugins
from spare.repository.index import sync_index
from spare.repository.locking import locked_for_reading
from spare.repository.opening import open_repository
from spare.repository.repo import Repository
from spare.repository.snapshots import Snapshot, latest_snapshot
from spare.storage import RateLimitedStorage, RetryingStorage, Storage, StorageLocation

#: Packs that restore and verify read at once: enough to hide S3 latency and to decompress on
#: every core, few enough that the threads do not spend their time contending for the GIL.
READERS = 4


@dataclass(frozen=True)
class Context:
    """Where the bucket is, the password, the local cache and the plugins."""

    location: StorageLocation
    password: str
    cache_root: Path
    plugins: Plugins = field(default_factory=Plugins)
    verbose: bool = False

    def storage(self, limit_upload: int | None = None) -> Storage:
        """The bucket's storage, retrying transient failures; uploads paced to
        ``limit_upload`` bytes per second on average, if given."""
        storage = self.plugins.storages.get(self.location.scheme)(self.location)
        if limit_upload:
            storage = RateLimitedStorage(storage, limit_upload)  # retries count too
        return RetryingStorage(storage)

    def open(
        self,
        *,
        create: bool = False,
        compression: str | None = "lzma",
        limit_upload: int | None = None,
    ) -> Repository:
        return open_repository(
            lambda: self.storage(limit_upload),
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
        with locked_for_reading(repo, command):
            snapshot = latest_snapshot(repo)
            if snapshot is None:
                raise NoSnapshot("there is no backup in this bucket yet")
            sync_index(repo)
            yield repo, snapshot
    finally:
        repo.close()
