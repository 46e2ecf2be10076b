"""Writing chunks into packs, and pruning what the newest snapshot does not need."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyfastcdc

from spare.repository import objects
from spare.repository.packs import FinishedPack, PackWriter, Uploader, blob_context
from spare.repository.repo import INDEX_BLOBS, Repository, Snapshot

log = logging.getLogger(__name__)

#: Default pack size: big enough that small files do not cost a PUT each, small enough for memory.
PACK_SIZE = 8 << 20

#: Packs whose live blobs are fewer than this share of their bytes are repacked by the prune.
REPACK_BELOW = 0.5

#: Index objects beyond this number are merged by the prune.
MAX_INDEX_OBJECTS = 8


@dataclass
class WriteStats:
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = 0
    stored_bytes: int = 0


class ChunkStore:
    """Stores each chunk once: dedup against the cache and the open pack, then pack and upload."""

    def __init__(self, repo: Repository, pack_size: int = PACK_SIZE) -> None:
        self.repo = repo
        self.stats = WriteStats()
        self._scratch = repo.scratch_dir("packs")
        self.tmpdir = self._scratch.name
        self.uploader = Uploader(repo.storage)
        self.packs = PackWriter(repo.chain, pack_size, self.tmpdir, self._pack_full)
        self._zero_ids: dict[int, bytes] = {}
        chunker = repo.config["chunker"]
        self.cdc = pyfastcdc.FastCDC(
            chunker["avg"],
            min_size=chunker["min"],
            max_size=chunker["max"],
            seed=repo.keys.chunker_seed,
        )

    def _pack_full(self, pack: FinishedPack) -> None:
        self.repo.cache.add_pack(pack.info, indexed_in=None)
        self.uploader.submit(pack)

    def store(self, data: bytes | memoryview) -> bytes:
        """The id of ``data``, stored if it was not yet."""
        chunk_id = self.repo.keys.chunk_id(data)
        self.stats.chunks += 1
        if chunk_id in self.packs or self.repo.cache.has_chunk(chunk_id):
            return chunk_id
        blob = self.repo.chain.encode(data, blob_context(chunk_id))
        self.packs.add(chunk_id, blob, len(data))
        self.stats.new_chunks += 1
        self.stats.new_bytes += len(data)
        self.stats.stored_bytes += len(blob)
        return chunk_id

    def store_stream(self, stream: Any, size: int | None = None) -> tuple[list[bytes], int]:
        """Cut a readable binary stream into content-defined chunks and store each.

        Returns the chunk ids and the number of bytes read. A stream known to hold at most one
        maximal chunk is read whole: pyfastcdc's stream reader allocates twice the maximal chunk
        size, which small files should not pay for.
        """
        if size is not None and size <= self.cdc.max_size:
            data = stream.read(size + 1)  # one byte more tells whether it grew meanwhile
            if len(data) <= size:
                return [self.store(chunk.data) for chunk in self.cdc.cut_buf(data)], len(data)
            stream.seek(0)
        ids, length = [], 0
        for chunk in self.cdc.cut_stream(stream):
            ids.append(self.store(chunk.data))
            length += chunk.length
        return ids, length

    def store_sparse(self, fd: int, size: int) -> tuple[list[bytes], int]:
        """Store a file with holes without reading them: data runs are cut as usual, holes
        become all-zero chunks (of the maximal chunk size, and one shorter), which restore
        leaves as holes again. A 300 GB ``/var/log/lastlog`` costs what its data costs."""
        chunks: list[bytes] = []
        length = 0
        for start, end, is_data in _extents(fd, size):
            if is_data:
                for chunk in self.cdc.cut_stream(_Extent(fd, start, end)):
                    chunks.append(self.store(chunk.data))
                    length += chunk.length
                continue
            whole, rest = divmod(end - start, self.cdc.max_size)
            chunks += [self._zeros(self.cdc.max_size)] * whole
            if rest:
                chunks.append(self._zeros(rest))
            length += end - start
        return chunks, length

    def _zeros(self, length: int) -> bytes:
        """The id of ``length`` zero bytes, stored once and hashed once per run."""
        if length not in self._zero_ids:
            self._zero_ids[length] = self.store(bytes(length))
        return self._zero_ids[length]

    def store_raw(self, chunk_id: bytes, blob: bytes, size: int) -> None:
        """Store an already encoded blob (the prune's repacking copies blobs unchanged)."""
        self.packs.add(chunk_id, blob, size)

    def finish(self) -> None:
        """Flush the last pack and wait until every upload has finished."""
        self.packs.flush()
        self.uploader.close()
        self._scratch.cleanup()

    def abandon(self) -> None:
        """On interruption: the upload in flight finishes whole (bounded), nothing new starts."""
        self.packs.discard()
        try:
            self.uploader.close(timeout=30)
        except Exception as exc:  # the run is failing already; the next one re-uploads
            log.debug("upload after interruption failed: %s", exc)
        self._scratch.cleanup()


class _Extent:
    """A byte range of an open file, readable as a stream (for the chunker)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.position = start
        self.end = end

    def readinto(self, buffer: memoryview) -> int:
        wanted = min(len(buffer), self.end - self.position)
        if wanted <= 0:
            return 0
        got = os.preadv(self.fd, [buffer[:wanted]], self.position)
        self.position += got
        return got


def _extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is data) runs of a file, from SEEK_DATA and SEEK_HOLE."""
    position = 0
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data after position
                raise
            data = size
        data = min(data, size)
        if data > position:
            yield position, data, False
        if data >= size:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        yield data, hole, True
        position = hole


def prune(repo: Repository, keep_snapshot: Snapshot, pack_size: int = PACK_SIZE) -> dict[str, int]:
    """Delete everything ``keep_snapshot`` does not need; its chunks must be in the live table.

    Runs after the snapshot is stored. Partly used packs are repacked (encoded blobs copied as
    they are), index objects that name dropped packs are rewritten, then old snapshots, dead
    packs, stale index objects and foreign objects are deleted, in that order: a crash at any
    point leaves ``keep_snapshot`` whole.
    """
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
    repo.write_index(sorted(set(movers) | set(cache.unindexed_packs())))
    cache.commit()

    keep = {objects.CONFIG_KEY, "lock", objects.snapshot_key(keep_snapshot.name)}
    keep |= {objects.pack_key(pack) for pack in cache.pack_names()}
    keep |= {objects.index_key(name) for name in cache.index_names()}
    doomed = [info.key for info in repo.storage.list() if info.key not in keep]
    # Snapshots first: once the old root is gone nothing can point at what follows.
    doomed.sort(key=lambda key: (not key.startswith(objects.SNAPSHOTS), key))
    repo.storage.delete(doomed)
    return {"deleted_objects": len(doomed), "repacked": len(repacked)}


def _repack(repo: Repository, packs: Iterable[str], pack_size: int) -> list[str]:
    """Copy the live blobs of ``packs`` into new packs; returns the packs now emptied."""
    done: list[str] = []
    store: ChunkStore | None = None
    for pack in packs:
        info = repo.cache.pack_info(pack)
        if list(info.transforms) != repo.chain.names:
            continue  # written with other transforms: leave it, a later change may repack it
        if store is None:
            store = ChunkStore(repo, pack_size)
        data = repo.storage.get(objects.pack_key(pack))
        if objects.content_name(data) != pack:
            log.warning("pack %s is damaged; not repacking it (run 'spare verify')", pack)
            continue
        for blob in repo.cache.live_blobs(pack):
            store.store_raw(blob.chunk_id, data[blob.offset : blob.offset + blob.length], blob.size)
        done.append(pack)
    if store is not None:
        store.finish()
    return done
