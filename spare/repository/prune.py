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

from spare.console import Console
from spare.errors import RepositoryDamaged
from spare.repository import objects
from spare.repository.chunks import PACK_SIZE, ChunkStore
from spare.repository.index import INDEX_BLOBS, write_index
from spare.repository.locking import bucket_lock
from spare.repository.packs import blobs_of
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
    """Delete everything ``keep_snapshot`` does not need; its chunks must be in the live table.

    Raises :class:`RepositoryDamaged` when an object that the snapshot needs is not in the
    bucket's listing: a run never ends as if all were well when it is not.
    """
    cache = repo.cache
    cache.begin()
    cache.hold_live()
    dead, usage = _dead_packs(repo)
    damaged = cache.damaged_packs()
    sparse = [
        pack
        for pack, live, total in usage
        if pack not in dead and (pack in damaged or live < total * REPACK_BELOW)
    ]
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

    keep = set(objects.CONFIG_KEYS) | set(objects.snapshot_keys(keep_snapshot.name))
    lock_keys = set(bucket_lock(repo).keys)
    keep |= lock_keys
    packs = {objects.pack_key(pack): size for pack, size in cache.pack_sizes().items()}
    keep |= set(packs)
    keep |= {objects.index_key(name) for name in cache.index_names()}
    listed = {info.key: info.size for info in repo.storage.list()}
    _check_stored(repo, keep_snapshot, packs, listed)
    doomed = [key for key in listed if key not in keep]
    # The bucket is spare's alone, but what someone else put there is named as it goes; quoted
    # with !a: a foreign key is anyone's text, and must not reach a terminal as escapes.
    for key in sorted(
        key for key in doomed if not objects.is_spares(key, leftovers=True, also=lock_keys)
    ):
        Console.current().warning(
            f"deleted {key!a}, which is not spare's: the bucket is for spare's backup only"
        )
    # One call per kind, each finished before the next: a storage deletes the keys of one call
    # in any order (S3 in concurrent batches). The old roots go first, then the index objects
    # that name dead packs, then the packs: a run killed in between leaves no object naming
    # one that is gone.
    for kind in _DELETION_ORDER:
        repo.storage.delete(sorted(key for key in doomed if _kind(key) == kind))
    return PruneStats(deleted_objects=len(doomed), repacked=len(repacked))


_DELETION_ORDER = (objects.SNAPSHOTS, objects.INDEX, objects.PACKS, "")


def _kind(key: str) -> str:
    return next((kind for kind in _DELETION_ORDER if key.startswith(kind)), "")


def _dead_packs(repo: Repository) -> tuple[set[str], list[tuple[str, int, int]]]:
    """The packs that hold no copy the snapshot keeps, and every pack's usage (see
    :meth:`Cache.pack_usage`) once they are chosen.

    A pack may hold live chunks whose kept copies are elsewhere: those copies are read, and
    checked, before the pack is given up; a kept copy that does not check is marked damaged
    and the next copy is kept instead, until every chunk has copies that check (a replayed or
    damaged pack never costs the good one).
    """
    cache = repo.cache
    checked: set[tuple[bytes, str]] = set()
    while True:
        usage = cache.pack_usage()
        dead = {pack for pack, live, _ in usage if not live}
        bad = []
        for pack, records in cache.copies_elsewhere(dead).items():
            records = [r for r in records if (r.chunk_id, pack) not in checked]
            transforms = cache.pack_info(pack).transforms
            for blob in repo.load_blobs(pack, transforms, records):
                checked.add((blob.record.chunk_id, pack))
                if blob.plain is None:
                    log.warning("pack %s is damaged (%s)", pack, blob.problem)
                    bad.append((blob.record.chunk_id, pack))
        if not bad:
            return dead, usage
        cache.mark_damaged(bad)
        cache.hold_live()


def _check_stored(
    repo: Repository, snapshot: Snapshot, packs: dict[str, int], listed: dict[str, int]
) -> None:
    """Raise unless the bucket lists every object the snapshot needs, at its size; what is
    missing is forgotten, so that the next create stores it anew."""
    missing = [key for key, size in packs.items() if listed.get(key) != size]
    missing += [key for key in objects.snapshot_keys(snapshot.name) if key not in listed]
    missing += [key for key in objects.CONFIG_KEYS if key not in listed]
    if not missing:
        return
    lost = [name for key in missing if (name := objects.pack_name(key))]
    if lost:
        repo.cache.begin()
        repo.cache.forget_packs(lost)
        repo.cache.commit()
    raise RepositoryDamaged(
        f"{len(missing)} objects this run stored or needs are missing from the bucket (e.g. "
        f"{missing[0]}): something else deleted them while spare ran; nothing was pruned, and "
        "the next create stores them anew"
    )


def _repack(repo: Repository, packs: Iterable[str], pack_size: int) -> list[str]:
    """Copy the kept blobs of ``packs`` into new packs; returns the packs now emptied.

    A pack with a damaged kept blob is left alone, and the blob marked damaged: the next create
    stores that chunk anew, and its prune repacks the rest.
    """
    done: list[str] = []
    store: ChunkStore | None = None
    for pack in packs:
        info = repo.cache.pack_info(pack)
        transforms = info.transforms
        if list(transforms) != repo.chain.names:
            continue  # written with other transforms: leave it, a later change may repack it
        # A blob is copied whole, with every chunk it holds (those the snapshot no longer needs
        # too: they cost a little space until the whole blob is unused).
        members = {offset: records for offset, _, records in blobs_of(info.blobs)}
        copies: dict[int, bytes] = {}
        for blob in repo.load_blobs(pack, transforms, repo.cache.live_blobs(pack)):
            if blob.plain is None:
                log.warning("pack %s is damaged (%s); not repacking it", pack, blob.problem)
                repo.cache.mark_damaged([(blob.record.chunk_id, pack)])
                break
            copies[blob.record.offset] = blob.stored  # the plaintext is dropped at once
        else:
            if store is None:
                store = ChunkStore(repo, pack_size)
            for offset, stored in copies.items():
                if any(record.chunk_id in store.packs for record in members[offset]):
                    store.flush()  # the second copy of a chunk goes into another pack
                store.store_raw([(r.chunk_id, r.size) for r in members[offset]], stored)
            done.append(pack)
    if store is not None:
        store.finish()
    return done
