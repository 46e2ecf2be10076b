"""The index: encrypted objects that list every pack and the blobs in it.

The local cache holds the same facts for fast lookups; :func:`sync_index` brings it in line with
the bucket, and adopts packs that no index object names yet (those of an interrupted run).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from spare.errors import ObjectNotFound, RepositoryDamaged
from spare.repository import objects
from spare.repository.cache import Cache
from spare.repository.objects import BLOB_RECORD, BlobRecord
from spare.repository.packs import PackInfo, parse_trailer, trailer_size
from spare.repository.repo import Repository

log = logging.getLogger(__name__)

#: Blobs per index object (~44 bytes each): one object, and what it takes to write or read it,
#: stays near 700 KiB. A pack is never split between objects, so the last pack may go past it.
INDEX_BLOBS = 16384

_PACK_HEADER = struct.Struct(">32sQB")
_COUNT = struct.Struct(">I")


@dataclass
class IndexSync:
    """What :func:`sync_index` found wrong in the bucket."""

    #: Packs that no readable index names and whose trailer cannot be read (damaged, or not this
    #: repository's): the prune deletes them.
    unreadable: list[str] = field(default_factory=list)
    #: Index objects that cannot be read; their packs were read from the packs' trailers.
    damaged_indexes: list[str] = field(default_factory=list)
    #: Packs the index names that are gone, or whose size is not the indexed one: their chunks
    #: are stored anew by the next create.
    lost: list[str] = field(default_factory=list)


def sync_index(repo: Repository, cache: Cache | None = None) -> IndexSync:
    """Bring ``cache`` (the local cache by default) in line with the bucket's index and packs.

    What a damaged index object names is read from the packs' trailers instead. Packs that are
    gone or changed size are forgotten, and so are the index objects that name them, so that
    the next create writes an index that names only packs that are there.
    """
    cache = cache or repo.cache
    found = IndexSync()
    in_bucket = {
        name: info.size
        for info in repo.storage.list(objects.INDEX)
        if (name := objects.index_name(info.key))
    }
    packs = {
        name: info.size
        for info in repo.storage.list(objects.PACKS)
        if (name := objects.pack_name(info.key))
    }
    cache.begin()
    if set(in_bucket) != cache.index_names():
        log.info("rebuilding the local cache from %d index objects", len(in_bucket))
        cache.clear_index()
        cache.forget_files()
        overlapping: set[str] = set()
        for name in sorted(in_bucket):
            try:
                overlapping |= _load_index(repo, cache, name)
            except RepositoryDamaged as exc:
                log.info("index object %s cannot be read: %s", name, exc)
                found.damaged_indexes.append(name)
        _drop_overlapping(cache, overlapping)
    known = cache.pack_sizes()
    found.lost = sorted(name for name, size in known.items() if packs.get(name) != size)
    if found.lost:
        log.info("%d packs are missing or changed in the bucket", len(found.lost))
        cache.forget_packs(found.lost)
    found.unreadable = [
        name
        for name in sorted(set(packs) - set(known))
        if not _adopt_pack(repo, cache, name, packs[name])
    ]
    cache.commit()
    return found


def _load_index(repo: Repository, cache: Cache, name: str) -> set[str]:
    """Know what the index object ``name`` lists; returns the index objects loaded before it
    that name one of its packs too."""
    earlier = set()
    for pack in _read_index(repo, name):
        if (other := cache.pack_indexed_in(pack.name)) is not None:
            earlier.add(other)
        cache.add_pack(pack, indexed_in=name)
    cache.add_index(name)
    return earlier


def _drop_overlapping(cache: Cache, names: set[str]) -> None:
    """Forget the index objects ``names``, each of which names a pack that a later one names too.

    That is what a create killed between writing a new index object and deleting the one it
    replaces leaves. The cache keeps one index object per pack, and the prune deletes the index
    objects that name a dead pack by that: an older one it does not know of would survive,
    naming packs that are gone. So these are forgotten: the packs only they name become
    unindexed (the next create writes them into a new index object) and the next prune, which
    keeps only the index objects the cache knows, deletes them, after that new one is written.
    """
    for name in sorted(names):
        log.info("index object %s names packs that another names too: it is replaced", name)
        cache.remove_index(name)  # its packs become unindexed


def _read_index(repo: Repository, name: str) -> list[PackInfo]:
    """What the index object ``name`` lists; all of it decodes, or RepositoryDamaged."""
    data = objects.read_whole(repo.storage, objects.index_key(name), "index object")
    if objects.content_name(data) != name:
        raise RepositoryDamaged(f"index object {name} does not match its checksum")
    return list(decode_index(repo.decode_object(data, objects.KIND_INDEX, b"index")))


def check_index(repo: Repository, name: str) -> str | None:
    """What is wrong with the index object ``name``, or None if it reads whole."""
    try:
        _read_index(repo, name)
    except ObjectNotFound:
        return "it is missing"
    except RepositoryDamaged as exc:
        return str(exc)
    return None


def _adopt_pack(repo: Repository, cache: Cache, name: str, size: int) -> bool:
    """A pack no readable index names (an interrupted run's, or one of a damaged index object):
    read its trailer so it can be used.

    False if it cannot be read: damaged, or not written by this repository.
    """
    key = objects.pack_key(name)
    try:
        head = repo.storage.get(key, 0, 256)
        names, _ = objects.parse_preamble(head, objects.KIND_PACK)
        chain = repo.chain_for(names)
        tail = repo.storage.get(key, max(0, size - 64 * 1024), size)
        if trailer_size(tail) > len(tail):
            tail = repo.storage.get(key, max(0, size - trailer_size(tail)), size)
        blobs = parse_trailer(tail, chain, name)
    except RepositoryDamaged as exc:
        log.info("cannot adopt pack %s: %s", name, exc)
        return False
    cache.add_pack(PackInfo(name, tuple(names), size, tuple(blobs)), indexed_in=None)
    return True


def write_index(repo: Repository, packs: list[str]) -> list[str]:
    """Store index objects covering ``packs``; returns their names."""
    written = []
    group: list[PackInfo] = []
    blobs = 0
    for name in packs:
        info = repo.cache.pack_info(name)
        group.append(info)
        blobs += len(info.blobs)
        if blobs >= INDEX_BLOBS:
            written.append(_store_index(repo, group))
            group, blobs = [], 0
    if group:
        written.append(_store_index(repo, group))
    return written


def _store_index(repo: Repository, packs: list[PackInfo]) -> str:
    data = repo.encode_object(objects.KIND_INDEX, encode_index(packs), b"index")
    name = objects.content_name(data)
    repo.storage.put(objects.index_key(name), data)
    repo.cache.add_index(name)
    repo.cache.set_indexed((pack.name for pack in packs), name)
    return name


def encode_index(packs: list[PackInfo]) -> bytes:
    out = bytearray(_COUNT.pack(len(packs)))
    for pack in packs:
        transforms = ",".join(pack.transforms).encode("ascii")
        out += _PACK_HEADER.pack(bytes.fromhex(pack.name), pack.size, len(transforms))
        out += transforms
        out += _COUNT.pack(len(pack.blobs))
        out += b"".join(blob.pack() for blob in pack.blobs)
    return bytes(out)


def decode_index(body: bytes) -> Iterator[PackInfo]:
    try:
        (count,) = _COUNT.unpack_from(body, 0)
        pos = _COUNT.size
        for _ in range(count):
            raw_name, size, length = _PACK_HEADER.unpack_from(body, pos)
            pos += _PACK_HEADER.size
            transforms = tuple(body[pos : pos + length].decode("ascii").split(","))
            pos += length
            (blobs,) = _COUNT.unpack_from(body, pos)
            pos += _COUNT.size
            records = tuple(
                BlobRecord(*BLOB_RECORD.unpack_from(body, pos + i * BLOB_RECORD.size))
                for i in range(blobs)
            )
            pos += blobs * BLOB_RECORD.size
            yield PackInfo(raw_name.hex(), transforms, size, records)
    except (struct.error, UnicodeError) as exc:
        raise RepositoryDamaged(f"an index object is malformed ({exc})") from exc
