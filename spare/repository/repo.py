"""An open repository: its bucket, keys and local cache, and the one way stored blobs are read.

Opening and creating are in :mod:`spare.repository.opening`; the index, snapshots and the lock
are in modules of their own that work on a :class:`Repository`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from spare.errors import ObjectNotFound, RepositoryDamaged
from spare.keys import KeyRing
from spare.plugins import Plugins
from spare.processes import process_tag, tagged_process_gone
from spare.repository import objects
from spare.repository.cache import Cache
from spare.repository.objects import BlobRecord
from spare.repository.packs import BLOB_CONTEXT, blobs_of
from spare.storage import Storage
from spare.transform import TransformChain

ENCRYPTION = "aes-siv"

#: Wanted blobs closer than this in a pack are fetched in one ranged GET, the gap read through.
GAP = 1 << 20


@dataclass(frozen=True)
class LoadedBlob:
    """One blob read from a pack: its plaintext, checked against its id, or what is wrong."""

    record: BlobRecord
    #: The blob as stored (encoded), which repacking copies unchanged.
    stored: bytes
    #: The decoded chunk; None when the blob is damaged or missing.
    plain: bytes | None
    problem: str | None = None


class Repository:
    """A bucket opened with the right password; see :func:`spare.repository.opening.open`."""

    def __init__(
        self,
        storage: Storage,
        config: dict[str, Any],
        keys: KeyRing,
        plugins: Plugins,
        cache_root: Path,
        compression: str | None = "lzma",
    ) -> None:
        self.storage = storage
        self.config = config
        self.keys = keys
        self.plugins = plugins
        self.id = config["id"]
        self.cache_dir = cache_root / self.id
        #: Whether opening made this repository, in an empty bucket.
        self.initialised = False
        #: What this host remembers of its buckets (kept when the cache is thrown away).
        self.state_dir = cache_root / "buckets"
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chains: dict[tuple[str, ...], TransformChain] = {}
        self._damage: list[tuple[bytes, str]] = []
        self._damage_lock = threading.Lock()
        names = [compression, ENCRYPTION] if compression and compression != "none" else [ENCRYPTION]
        self.chain = self.chain_for(names)

    @cached_property
    def cache(self) -> Cache:
        """Opened on first use, so that a run refused by the bucket lock never touches it."""
        return Cache(self.cache_dir / "cache.sqlite")

    def scratch_dir(self, purpose: str) -> tempfile.TemporaryDirectory[str]:
        """A private temporary directory in the cache, removed when closed.

        Its name, ``tmp-<purpose>-<owner>-<random>``, names the process that owns it
        (:func:`~spare.processes.process_tag`), so that :meth:`clean_scratch` leaves it alone
        while that process runs.
        """
        prefix = f"tmp-{purpose}-{process_tag()}-"
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.cache_dir)

    def clean_scratch(self) -> None:
        """Remove the scratch directories that killed runs left behind.

        Only those whose owner certainly no longer runs (and those of older versions of spare,
        whose names carry no owner): two runs that overlap on this host, because a lock was
        removed with ``spare unlock --force``, never delete each other's.
        """
        for scratch in self.cache_dir.glob("tmp-*"):
            # The random end has no '-'; neither has the owner, which an old name lacks.
            parts = scratch.name.rsplit("-", 2)
            if len(parts) != 3 or tagged_process_gone(parts[1]):
                shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        if "cache" in self.__dict__:
            self.cache.close()
        self.storage.close()

    # -- transforms ---------------------------------------------------------------------------
    def chain_for(self, names: Sequence[str]) -> TransformChain:
        """The transform chain that stored objects name; it must end in encryption."""
        key = tuple(names)
        if key not in self._chains:
            if not names or names[-1] != ENCRYPTION:
                raise RepositoryDamaged(f"a stored object is not encrypted ({','.join(names)})")
            self._chains[key] = self.plugins.transforms.chain(names, self.keys)
        return self._chains[key]

    def encode_object(self, kind: int, payload: bytes, context: bytes) -> bytes:
        return objects.preamble(kind, self.chain.names) + self.chain.encode(payload, context)

    def decode_object(self, data: bytes, kind: int, context: bytes) -> bytes:
        names, start = objects.parse_preamble(data, kind)
        return self.chain_for(names).decode(data[start:], context)

    # -- blobs --------------------------------------------------------------------------------
    def load_blobs(
        self,
        pack: str,
        transforms: Sequence[str],
        records: Sequence[BlobRecord],
        *,
        whole: bytes | None = None,
    ) -> Iterator[LoadedBlob]:
        """Read the chunks ``records`` (sorted by offset, then start) from ``pack``: decoded,
        checked, in order.

        Blobs close together are fetched in one ranged GET, and a blob holding several chunks is
        decoded once. A chunk whose blob is missing, truncated or does not decode, or that does
        not match its id, comes back with ``plain`` None and the reason: one damaged blob never
        costs the others. ``whole`` is the pack's bytes when the caller
        has read them already (verify reads whole packs to check their checksums).
        """
        if whole is not None:
            yield from self._decode(pack, transforms, records, 0, whole)
            return
        for start, end, group in _ranges(records):
            try:
                data = self.storage.get(objects.pack_key(pack), start, end)
            except ObjectNotFound:
                data = b""
            yield from self._decode(pack, transforms, group, start, data)

    def _decode(
        self,
        pack: str,
        transforms: Sequence[str],
        records: Sequence[BlobRecord],
        start: int,
        data: bytes,
    ) -> Iterator[LoadedBlob]:
        for offset, length, members in blobs_of(records):
            stored = data[offset - start : offset - start + length]
            if len(stored) != length:
                problem = f"pack {pack} is missing or truncated"
                yield from (LoadedBlob(record, stored, None, problem) for record in members)
                continue
            try:
                plain = self.chain_for(transforms).decode(stored, BLOB_CONTEXT)
            except RepositoryDamaged as exc:
                yield from (LoadedBlob(record, stored, None, str(exc)) for record in members)
                continue
            for record in members:
                chunk = self._chunk_of(plain, record)
                if chunk is None:
                    problem = f"chunk {record.chunk_id.hex()} does not match its id"
                    yield LoadedBlob(record, stored, None, problem)
                else:
                    yield LoadedBlob(record, stored, chunk)

    def _chunk_of(self, plain: bytes, record: BlobRecord) -> bytes | None:
        """The chunk ``record`` names in a blob's plaintext, if it matches its id."""
        if record.start == 0 and record.size == len(plain):
            chunk = plain  # a blob of one chunk: no copy
        else:
            chunk = plain[record.start : record.start + record.size]
        if len(chunk) != record.size or self.keys.chunk_id(chunk) != record.chunk_id:
            return None
        return chunk

    def read_chunk(self, chunk_id: bytes, cache: Cache | None = None) -> bytes:
        """Fetch, decode and check one chunk: its first copy that checks, in the order that
        ``cache`` (the local cache by default) gives. Damaged copies are noted."""
        problems = []
        for where in (cache or self.cache).locations(chunk_id):
            record = BlobRecord(chunk_id, where.offset, where.length, where.size, where.start)
            (loaded,) = self.load_blobs(where.pack, where.transforms, [record])
            if loaded.plain is not None:
                return loaded.plain
            self.note_damage([(chunk_id, where.pack)])
            problems.append(f"{loaded.problem}")
        if not problems:
            raise RepositoryDamaged(f"chunk {chunk_id.hex()} is in no pack of the bucket")
        raise RepositoryDamaged(f"chunk {chunk_id.hex()}: {'; '.join(problems)}")

    # -- damage found while reading ------------------------------------------------------------
    def note_damage(self, found: Iterable[tuple[bytes, str]]) -> None:
        """Note damaged copies ``(chunk id, pack)``; any thread may call this."""
        with self._damage_lock:
            self._damage.extend(found)

    def record_damage(self) -> int:
        """Write the noted damage into the local cache (from the main thread), so that the next
        create stores those chunks anew; returns how many copies were newly found damaged."""
        with self._damage_lock:
            found, self._damage = self._damage, []
        if not found:
            return 0
        self.cache.begin()
        new = self.cache.mark_damaged(found)
        self.cache.commit()
        return new


def _ranges(
    records: Sequence[BlobRecord],
) -> Iterator[tuple[int, int, list[BlobRecord]]]:
    """Group blobs sorted by offset into byte ranges worth one GET each."""
    group: list[BlobRecord] = []
    start = end = 0
    for record in records:
        if group and record.offset - end > GAP:
            yield start, end, group
            group = []
        if not group:
            start = record.offset
        group.append(record)
        end = max(end, record.offset + record.length)
    if group:
        yield start, end, group
