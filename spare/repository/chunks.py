"""Writing chunks: each stored once, deduplicated against the cache and the pack being filled."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import pyfastcdc

from spare.repository.encoder import Encoder, Members
from spare.repository.packs import FinishedPack, PackWriter, Uploader
from spare.repository.repo import Repository
from spare.sparse import Extent, extents

log = logging.getLogger(__name__)

#: Default pack size: big enough that small files do not cost a PUT each, small enough for memory.
PACK_SIZE = 8 << 20


#: Chunks shorter than this (small files, mostly) share blobs: compressed together, they compress
#: better (8 % smaller on the Python library's files) and cost one compressor set-up per blob
#: instead of one each. Each keeps its own id, so each is deduplicated and read on its own.
SMALL_CHUNK = 64 << 10
#: A shared blob is encoded once its chunks add up to this much. It is also what one damaged
#: byte costs of small files: 256 KiB compresses within 1.5 % of 1 MiB blobs.
SHARED_BLOB = 256 << 10
#: Small chunks are sorted into two shared blobs by a quick zlib probe on their first bytes, so
#: that random data (which LZMA goes through four times slower than text, for nothing) is not
#: mixed with text.
_PROBE = 2048
_PROBE_RATIO = 0.97


@dataclass
class _SharedBlob:
    members: Members = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


def _compressible(data: bytes | memoryview) -> bool:
    sample = data[:_PROBE]
    return len(zlib.compress(sample, 1)) < len(sample) * _PROBE_RATIO


@dataclass
class WriteStats:
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = 0
    stored_bytes: int = 0


class ChunkStore:
    """Stores each chunk once: dedup against the cache and the open pack, then pack and upload."""

    def __init__(self, repo: Repository, pack_size: int = PACK_SIZE, jobs: int = 1) -> None:
        self.repo = repo
        self.stats = WriteStats()
        self._scratch = repo.scratch_dir("packs")
        self.tmpdir = self._scratch.name
        self.uploader = Uploader(repo.storage)
        self.packs = PackWriter(repo.chain, pack_size, self.tmpdir, self._pack_full)
        self.encoder = Encoder(repo.chain, jobs, self._encoded)
        self._shared = {True: _SharedBlob(), False: _SharedBlob()}
        self._waiting: set[bytes] = set()  # the chunks in the shared blobs being filled
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

    def store(self, data: bytes | memoryview, copies: int = 1) -> bytes:
        """The id of ``data``, stored if fewer than ``copies`` good copies of it are.

        A chunk found damaged counts as not stored: it is stored anew. Two copies of a chunk
        never share a pack: the caller flushes the pack between them.
        """
        chunk_id = self.repo.keys.chunk_id(data)
        self.stats.chunks += 1
        if (
            chunk_id in self._waiting
            or chunk_id in self.packs
            or chunk_id in self.encoder
            or self.repo.cache.good_copies(chunk_id, copies) >= copies
        ):
            return chunk_id
        self.stats.new_chunks += 1
        self.stats.new_bytes += len(data)
        if len(data) >= SMALL_CHUNK:
            self.encoder.submit([(chunk_id, len(data))], data)
            return chunk_id
        kind = _compressible(data)
        shared = self._shared[kind]
        shared.members.append((chunk_id, len(data)))
        shared.parts.append(bytes(data))  # the chunker reuses its buffer
        shared.size += len(data)
        self._waiting.add(chunk_id)
        if shared.size >= SHARED_BLOB:
            self._submit_shared(kind)
        return chunk_id

    def _submit_shared(self, kind: bool) -> None:
        shared = self._shared[kind]
        if shared.members:
            self.encoder.submit(shared.members, b"".join(shared.parts))
            self._waiting.difference_update(chunk_id for chunk_id, _ in shared.members)
            self._shared[kind] = _SharedBlob()  # the encoder keeps the members it was given

    def _encoded(self, members: Members, blob: bytes) -> None:
        self.packs.add(members, blob)
        self.stats.stored_bytes += len(blob)

    def flush(self) -> None:
        """Finish the pack being filled, with every chunk stored so far."""
        for kind in self._shared:
            self._submit_shared(kind)
        self.encoder.drain()
        self.packs.flush()

    def store_stream(
        self, stream: Any, size: int | None = None, copies: int = 1
    ) -> tuple[list[bytes], int]:
        """Cut a readable binary stream into content-defined chunks and store each.

        Returns the chunk ids and the number of bytes read. A stream known to hold at most one
        maximal chunk is read whole: pyfastcdc's stream reader allocates twice the maximal chunk
        size, which small files should not pay for.
        """
        if size is not None and size <= self.cdc.max_size:
            data = stream.read(size + 1)  # one byte more tells whether it grew meanwhile
            if len(data) <= size:
                chunks = self.cdc.cut_buf(data)
                return [self.store(chunk.data, copies) for chunk in chunks], len(data)
            stream.seek(0)
        ids, length = [], 0
        for chunk in self.cdc.cut_stream(stream):
            ids.append(self.store(chunk.data, copies))
            length += chunk.length
        return ids, length

    def store_sparse(self, fd: int, size: int) -> tuple[list[bytes], int]:
        """Store a file with holes without reading them: data runs are cut as usual, holes
        become all-zero chunks (of the maximal chunk size, and one shorter), which restore
        leaves as holes again. A 300 GB ``/var/log/lastlog`` costs what its data costs."""
        chunks: list[bytes] = []
        length = 0
        for start, end, is_data in extents(fd, size):
            if is_data:
                for chunk in self.cdc.cut_stream(Extent(fd, start, end)):
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

    def store_raw(self, members: Members, blob: bytes) -> None:
        """Store an already encoded blob (the prune's repacking copies blobs unchanged)."""
        self.encoder.drain()
        self.packs.add(members, blob)

    def finish(self) -> None:
        """Flush the last pack and wait until every upload has finished."""
        self.flush()
        self.encoder.close()
        self.uploader.close()
        self._scratch.cleanup()

    def abandon(self) -> None:
        """On interruption: the upload in flight finishes whole (bounded), nothing new starts."""
        self.encoder.close()
        self._waiting.clear()
        self.packs.discard()
        try:
            self.uploader.close(timeout=30)
        except Exception as exc:  # the run is failing already; the next one re-uploads
            log.debug("upload after interruption failed: %s", exc)
        self._scratch.cleanup()
