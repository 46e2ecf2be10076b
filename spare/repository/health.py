"""Checking stored packs: verify reads them all (or a share), create a rotating sample.

What a check finds damaged is marked in the local cache (:meth:`Cache.mark_damaged`): the next
create stores those chunks anew and its prune repacks or deletes the damaged pack, so that
damage found once never stays.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from spare.errors import ObjectNotFound, RepositoryDamaged
from spare.repository import objects
from spare.repository.cache import Cache
from spare.repository.index import check_index
from spare.repository.packs import read_pack
from spare.repository.repo import Repository

log = logging.getLogger(__name__)

#: The share of the bucket's packs that each create downloads and checks, in percent: the whole
#: bucket is read once every 50 nightly runs.
CHECK_SHARE = 2.0


@dataclass
class PackCheck:
    """What reading one pack whole found."""

    pack: str
    #: The chunks whose blob in this pack decodes and matches its id.
    good: list[bytes] = field(default_factory=list)
    #: The chunks whose blob in this pack does not (or the pack is missing).
    damaged: list[bytes] = field(default_factory=list)
    #: What is wrong with the pack as a whole, if anything.
    problem: str | None = None

    @property
    def to_replace(self) -> list[bytes]:
        """The chunks whose copy in this pack the next create must replace: the damaged blobs,
        or every blob of a pack damaged as a whole (a trailer that is not its own is never
        repaired by keeping the pack)."""
        return self.damaged + self.good if self.problem else self.damaged


def check_pack(repo: Repository, cache: Cache, pack: str) -> PackCheck:
    """Download ``pack`` whole and check every blob that ``cache`` says it holds."""
    info = cache.pack_info(pack)
    found = PackCheck(pack)
    try:
        data = objects.read_whole(repo.storage, objects.pack_key(pack), "pack")
    except ObjectNotFound:
        data, found.problem = b"", "it is missing"
    except RepositoryDamaged as exc:
        data, found.problem = b"", str(exc)
    if data:
        try:
            _, records = read_pack(data, pack, repo.chain_for)
        except RepositoryDamaged as exc:
            found.problem = str(exc)
        else:
            if not set(info.blobs) <= set(records):
                found.problem = "it does not hold the blobs the index says it holds"
    for blob in repo.load_blobs(pack, info.transforms, info.blobs, whole=data):
        (found.good if blob.plain is not None else found.damaged).append(blob.record.chunk_id)
    return found


def choose_share(packs: list[str], share: float) -> list[str]:
    """A random ``share`` percent of ``packs`` (at least one, unless the share is 0)."""
    if share >= 100:
        return sorted(packs)
    count = min(len(packs), math.ceil(len(packs) * share / 100))
    return sorted(random.sample(packs, count))


def check_rotating_share(repo: Repository, share: float) -> int:
    """Check the next ``share`` percent of the bucket's packs and index objects, by name, after
    those checked by the previous run; returns how many damaged objects and blobs it found.

    Damaged blobs are marked; a damaged index object is forgotten, so that this run writes what
    it listed anew (from the cache, which read it whole before) and its prune deletes it.
    """
    cache = repo.cache
    damaged = []
    for pack in _rotating(cache, sorted(cache.pack_names()), share, "checked_up_to"):
        found = check_pack(repo, cache, pack)
        if found.problem or found.damaged:
            log.warning("pack %s is damaged (%s)", pack, found.problem or "a blob does not check")
        damaged += [(chunk, pack) for chunk in found.to_replace]
    bad_indexes = []
    for name in _rotating(cache, sorted(cache.index_names()), share, "indexes_checked_up_to"):
        problem = check_index(repo, name)
        if problem:
            log.warning("index object %s is damaged (%s)", name, problem)
            bad_indexes.append(name)
    cache.begin()
    cache.mark_damaged(damaged)
    for name in bad_indexes:
        cache.remove_index(name)
    cache.commit()
    return len(damaged) + len(bad_indexes)


def _rotating(cache: Cache, names: list[str], share: float, cursor: str) -> list[str]:
    """The next ``share`` percent of ``names`` after the last one chosen before (at least one,
    unless the share is 0), remembered under ``cursor``."""
    if share <= 0 or not names:
        return []
    count = min(len(names), math.ceil(len(names) * share / 100))
    after = cache.get_meta(cursor) or ""
    start = next((i for i, name in enumerate(names) if name > after), 0)
    chosen = (names[start:] + names[:start])[:count]
    cache.set_meta(cursor, chosen[-1])
    return chosen
