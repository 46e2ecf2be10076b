"""Naming and framing of stored objects.

Every stored object but the config starts with a preamble naming the format version, the kind of
object and the transforms applied to its blobs, so reading never depends on today's configuration::

    b"SPARE" | version (u8) | kind (u8) | count (u8) | count x (length (u8) | ascii name)

Object keys carry no user data: ``config``, ``lock``, ``packs/<2 hex>/<random hex>``,
``index/<sha256 of the object>`` and ``snapshots/<random hex>``. The config and each snapshot root
are stored twice (``config.copy``, ``snapshots/<name>.copy``): losing any one object never costs
the key or the snapshot.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from spare.errors import RepositoryDamaged
from spare.storage import TEMPORARY_MARK, Storage

MAGIC = b"SPARE"
FORMAT_VERSION = 4

KIND_PACK = 1
KIND_INDEX = 2
KIND_SNAPSHOT = 3
KIND_LOCK = 4

CONFIG_KEY = "config"
CONFIG_COPY_KEY = "config.copy"
CONFIG_KEYS = (CONFIG_KEY, CONFIG_COPY_KEY)
COPY = ".copy"
PACKS = "packs/"
INDEX = "index/"
SNAPSHOTS = "snapshots/"

_PACK_KEY = re.compile(r"^packs/([0-9a-f]{2})/([0-9a-f]{64})$")
_INDEX_KEY = re.compile(r"^index/([0-9a-f]{64})$")
_SNAPSHOT_KEY = re.compile(r"^snapshots/([0-9a-f]{32})(?:\.copy)?$")

#: The most bytes spare reads of an object of each kind it reads whole: a hostile bucket cannot
#: make it hold more (a snapshot root lists a few thousand manifest chunks at most).
MAX_BYTES = {
    "config": 64 << 10,
    "lock": 64 << 10,
    "snapshot": 16 << 20,
    "index object": 64 << 20,
    "pack": 300 << 20,
}

#: One chunk in a pack: its id, the offset and stored length of the blob that holds it, its
#: length, and where it starts in the blob's plaintext (small chunks share a blob).
BLOB_RECORD = struct.Struct(">32sIIII")


@dataclass(frozen=True)
class BlobRecord:
    chunk_id: bytes
    offset: int
    length: int
    size: int
    start: int = 0

    def pack(self) -> bytes:
        return BLOB_RECORD.pack(self.chunk_id, self.offset, self.length, self.size, self.start)


def pack_key(name: str) -> str:
    return f"{PACKS}{name[:2]}/{name}"


def index_key(name: str) -> str:
    return f"{INDEX}{name}"


def snapshot_key(name: str, *, copy: bool = False) -> str:
    return f"{SNAPSHOTS}{name}{COPY if copy else ''}"


def snapshot_keys(name: str) -> tuple[str, str]:
    """Both objects that hold the snapshot root ``name``."""
    return snapshot_key(name), snapshot_key(name, copy=True)


def pack_name(key: str) -> str | None:
    match = _PACK_KEY.match(key)
    return match.group(2) if match and match.group(1) == match.group(2)[:2] else None


def index_name(key: str) -> str | None:
    match = _INDEX_KEY.match(key)
    return match.group(1) if match else None


def snapshot_name(key: str) -> str | None:
    """The snapshot whose root (or the root's copy) ``key`` holds."""
    match = _SNAPSHOT_KEY.match(key)
    return match.group(1) if match else None


def is_spares(key: str, *, leftovers: bool = False, also: Collection[str] = ()) -> bool:
    """Whether ``key`` is named as spare names objects, or is one of ``also`` (the lock's keys,
    which are the lock plugin's to name); with ``leftovers``, also what a killed put of such an
    object left under a temporary name (see :data:`spare.storage.TEMPORARY_MARK`)."""
    named, mark, rest = key.partition(TEMPORARY_MARK)
    if mark and not (leftovers and _TEMPORARY_END.fullmatch(rest)):
        return False
    return bool(
        pack_name(named)
        or index_name(named)
        or snapshot_name(named)
        or named in CONFIG_KEYS
        or named in also
    )


_TEMPORARY_END = re.compile(r"[0-9a-f]{32}")


def content_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def preamble(kind: int, transforms: Sequence[str]) -> bytes:
    out = bytearray(MAGIC)
    out += bytes((FORMAT_VERSION, kind, len(transforms)))
    for name in transforms:
        raw = name.encode("ascii")
        out += bytes((len(raw),)) + raw
    return bytes(out)


def parse_preamble(data: bytes, kind: int) -> tuple[list[str], int]:
    """The transform names and the offset where the body starts; checks magic, version and kind."""
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + 3:
        raise RepositoryDamaged("a stored object is not a spare object (bad magic)")
    version, found_kind, count = data[len(MAGIC) : len(MAGIC) + 3]
    if version != FORMAT_VERSION:
        raise RepositoryDamaged(
            f"a stored object has format version {version}; this spare reads version "
            f"{FORMAT_VERSION}: upgrade spare"
        )
    if found_kind != kind:
        raise RepositoryDamaged(f"a stored object is of kind {found_kind}, expected {kind}")
    pos = len(MAGIC) + 3
    names = []
    for _ in range(count):
        if pos >= len(data):
            raise RepositoryDamaged("a stored object's preamble is truncated")
        length = data[pos]
        names.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    return names, pos


def read_whole(storage: Storage, key: str, kind: str) -> bytes:
    """The object ``key``, refused as damage if it is larger than an object of ``kind`` can be.

    One ranged GET of a byte more than the cap: an oversized object costs no more than that.
    """
    cap = MAX_BYTES[kind]
    data = storage.get(key, 0, cap + 1)
    if len(data) > cap:
        raise RepositoryDamaged(
            f"{key} is larger than a {kind} can be ({cap} bytes): the bucket was tampered with"
        )
    return data
