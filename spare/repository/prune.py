"""The prune: after a snapshot is stored, delete everything it does not need.

Partly used packs are repacked (their live blobs copied as stored, each checked on the way),
index objects that name dropped packs are rewritten, then old snapshots, dead packs, stale index
objects and foreign objects are deleted, in that order: a crash at any point leaves the new
snapshot whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from spare.repository import objects
from spare.repository.chunks import PACK_SIZE, ChunkStore
from spare.repository.index import INDEX_BLOBS, write_index
from spare.repository.locking import bucket_lock
from spare.repository.objects import BlobRecord
from spare.repository.repo import Repository
from spare.repository.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Packs whose live blobs are fewer than this share of their bytes are repacked.
REPACK_BELOW = 0.5

#: Index objects beyond this number are merged.
MAX_INDEX_OBJECTS = 8


@dataclass(frozen=True)
class PruneStats:
    deleted_objects: int
    repacked: int


def prune(repo: Repository, keep_snapshot: Snapshot, pack_size: int = PACK_SIZE) -> PruneStats:
    """Delete everything ``keep_snapshot`` does not need; its chunks must be in the live table."""
    cache = repo.cache
    cache.begin()
    dead: set[str] = set()
    sparse: list[str] = []
    usage = list(cache.pack_usage())
    for pack, live, total in usage:
        if not live:
            dead.add(pack)
        elif live < total * REPACK_BELOW:
            sparse.append(pack)
    # A pack whose every chunk is found in another pack holds nothing of its own.
    dead |= cache.pack_names() - {pack for pack, _, _ in usage}
    repacked = _repack(repo, sparse, pack_size)
    dead |= set(repacked)

    stale_indexes = {
        name for name in cache.index_names() if set(cache.packs_indexed_in(name)) & dead
    }
    sizes = cache.index_sizes()
    if len(sizes) > MAX_INDEX_OBJECTS:
        stale_indexes |= {name for name, blobs in sizes.items() if blobs < INDEX_BLOBS // 2}
    movers = [
        pack for name in stale_indexes for pack in cache.packs_indexed_in(name) if pack not in dead
    ]
    for name in stale_indexes:
        cache.remove_index(name)
    cache.remove_packs(dead)
    write_index(repo, sorted(set(movers) | set(cache.unindexed_packs())))
    cache.commit()

    keep = {objects.CONFIG_KEY, objects.snapshot_key(keep_snapshot.name)}
    keep |= set(bucket_lock(repo).keys)
    keep |= {objects.pack_key(pack) for pack in cache.pack_names()}
    keep |= {objects.index_key(name) for name in cache.index_names()}
    doomed = [info.key for info in repo.storage.list() if info.key not in keep]
    # Snapshots first: once the old root is gone nothing can point at what follows.
    doomed.sort(key=lambda key: (not key.startswith(objects.SNAPSHOTS), key))
    repo.storage.delete(doomed)
    return PruneStats(deleted_objects=len(doomed), repacked=len(repacked))


def _repack(repo: Repository, packs: Iterable[str], pack_size: int) -> list[str]:
    """Copy the live blobs of ``packs`` into new packs; returns the packs now emptied.

    A pack with a damaged live blob is left alone: its blobs are not copied and it is not
    deleted ('spare verify' names what it holds).
    """
    done: list[str] = []
    store: ChunkStore | None = None
    for pack in packs:
        transforms = repo.cache.pack_info(pack).transforms
        if list(transforms) != repo.chain.names:
            continue  # written with other transforms: leave it, a later change may repack it
        copies: list[tuple[BlobRecord, bytes]] = []
        for blob in repo.load_blobs(pack, transforms, repo.cache.live_blobs(pack)):
            if blob.plain is None:
                log.warning(
                    "pack %s is damaged (%s); not repacking it (run 'spare verify')",
                    pack,
                    blob.problem,
                )
                break
            copies.append((blob.record, blob.stored))  # the plaintext is dropped at once
        else:
            if store is None:
                store = ChunkStore(repo, pack_size)
            for record, stored in copies:
                store.store_raw(record.chunk_id, stored, record.size)
            done.append(pack)
    if store is not None:
        store.finish()
    return done
