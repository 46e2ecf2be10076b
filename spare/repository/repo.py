"""Opening a bucket as a repository: the marker and config, keys, snapshots, index and lock."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from spare.errors import (
    ForeignBucket,
    Locked,
    NoSnapshot,
    ObjectExists,
    ObjectNotFound,
    RepositoryDamaged,
    WrongPassword,
)
from spare.keys import KdfParams, KeyRing, unwrap_master_key, wrap_master_key
from spare.lock import LockHeld
from spare.plugins import Plugins
from spare.repository import objects
from spare.repository.cache import Cache, PackInfo
from spare.repository.objects import BLOB_RECORD, BlobRecord
from spare.repository.packs import blob_context, parse_trailer, trailer_size
from spare.storage import Storage
from spare.transform import TransformChain

log = logging.getLogger(__name__)

CONFIG_FORMAT = "spare-repository"
ENCRYPTION = "aes-siv"

#: Chunker parameters of new repositories. pyfastcdc's chunks average ``avg + min``: ~1 MiB. The
#: maximum bounds create's memory: pyfastcdc buffers two maximal chunks, the transforms a few more.
CHUNKER = {"avg": 768 << 10, "min": 256 << 10, "max": 2 << 20}

_PACK_HEADER = struct.Struct(">32sQB")
_COUNT = struct.Struct(">I")


@dataclass
class Snapshot:
    """The root object of a snapshot; storing it is the commit point of ``create``."""

    seq: int
    time: str
    host: str
    path: str
    inode: int
    manifest: list[str]
    stats: dict[str, int] = field(default_factory=dict)
    name: str = ""

    @property
    def manifest_ids(self) -> list[bytes]:
        return [bytes.fromhex(chunk) for chunk in self.manifest]


@dataclass
class LockInfo:
    command: str
    host: str
    pid: int
    time: str

    def describe(self) -> str:
        return f"'spare {self.command}' on host {self.host} (pid {self.pid}) since {self.time}"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KnownConfigs:
    """The configs of the buckets this host has opened, by location, to derive keys early."""

    def __init__(self, cache_root: Path) -> None:
        self.dir = cache_root / "buckets"

    def _path(self, location: str) -> Path:
        return self.dir / f"{hashlib.sha256(location.encode()).hexdigest()[:32]}.json"

    def get(self, location: str) -> dict[str, Any] | None:
        try:
            config = json.loads(self._path(location).read_text())
        except (OSError, ValueError):
            return None
        return config if isinstance(config, dict) else None

    def put(self, location: str, config: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(location)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, path)


class Repository:
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
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chains: dict[tuple[str, ...], TransformChain] = {}
        names = [compression, ENCRYPTION] if compression and compression != "none" else [ENCRYPTION]
        self.chain = self.chain_for(names)

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        connect: Callable[[], Storage],
        password: str,
        plugins: Plugins,
        cache_root: Path,
        *,
        location: str,
        create: bool = False,
        compression: str | None = "lzma",
    ) -> Repository:
        """Open the bucket ``connect()`` reaches; with ``create``, make an empty one a repository.

        Raises before anything is written when the password is wrong or the bucket is not spare's.
        When this host has opened the bucket before, the key is derived from the config it
        remembers *before* connecting: the KDF's memory and the S3 client's are then never
        needed at the same time. The bucket's config is still read, and wins if it differs.
        """
        remembered = KnownConfigs(cache_root).get(location)
        early = None
        if remembered is not None:
            with contextlib.suppress(WrongPassword, RepositoryDamaged):
                early = cls._unlock(remembered, password)
        storage = connect()
        config = cls._read_config(storage)
        if config is None:
            if not create:
                raise NoSnapshot("there is no backup in this bucket (it is empty or missing)")
            config, keys = cls._initialise(storage, password)
        else:
            keys = early if early is not None and config == remembered else None
        if keys is None:
            keys = cls._unlock(config, password)
        if config != remembered:
            KnownConfigs(cache_root).put(location, config)
        return cls(storage, config, keys, plugins, cache_root, compression)

    @staticmethod
    def _unlock(config: dict[str, Any], password: str) -> KeyRing:
        kdf = KdfParams.from_json(config.get("kdf", {}))
        try:
            wrapped = bytes.fromhex(config["master_key"])
        except (KeyError, ValueError) as exc:
            raise RepositoryDamaged("the bucket's config has no readable master key") from exc
        return KeyRing(unwrap_master_key(wrapped, kdf.derive(password)))

    @staticmethod
    def _read_config(storage: Storage) -> dict[str, Any] | None:
        try:
            raw = storage.get(objects.CONFIG_KEY)
        except ObjectNotFound:
            found = next(iter(storage.list()), None)
            if found is not None:
                raise ForeignBucket(
                    f"the bucket holds objects (e.g. {found.key!r}) but is not a spare backup; "
                    "spare only writes to buckets it owns: use an empty one (nothing was changed)"
                ) from None
            return None
        try:
            config = json.loads(raw)
            if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
                raise ValueError("no spare marker")
        except ValueError:
            raise ForeignBucket(
                "the bucket's 'config' object is not spare's; spare only writes to buckets it "
                "owns: use an empty bucket (nothing was changed)"
            ) from None
        if config.get("version") != objects.FORMAT_VERSION:
            raise RepositoryDamaged(
                f"the bucket holds a spare repository of version {config.get('version')}; this "
                f"spare reads version {objects.FORMAT_VERSION}: upgrade spare"
            )
        return config

    @classmethod
    def _initialise(cls, storage: Storage, password: str) -> tuple[dict[str, Any], KeyRing | None]:
        """Make the bucket a repository; the key ring is None if another spare was first."""
        storage.ensure_bucket()
        keys = KeyRing.generate()
        kdf = KdfParams.generate()
        config = {
            "format": CONFIG_FORMAT,
            "version": objects.FORMAT_VERSION,
            "id": os.urandom(16).hex(),
            "created": now(),
            "kdf": kdf.to_json(),
            "master_key": wrap_master_key(keys.master, kdf.derive(password)).hex(),
            "chunker": CHUNKER,
        }
        try:
            storage.create(objects.CONFIG_KEY, json.dumps(config, indent=2).encode())
        except ObjectExists:  # another spare initialised it first: use theirs
            found = cls._read_config(storage)
            assert found is not None
            return found, None
        return config, keys

    @cached_property
    def cache(self) -> Cache:
        """Opened on first use, so that a run refused by the bucket lock never touches it."""
        return Cache(self.cache_dir / "cache.sqlite")

    def scratch_dir(self, purpose: str) -> tempfile.TemporaryDirectory[str]:
        """A private temporary directory in the cache, removed when closed."""
        return tempfile.TemporaryDirectory(prefix=f"tmp-{purpose}-", dir=self.cache_dir)

    def clean_scratch(self) -> None:
        """Remove what killed runs left behind; only while holding the bucket lock alone."""
        for stale in self.cache_dir.glob("tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def close(self) -> None:
        if "cache" in self.__dict__:
            self.cache.close()
        self.storage.close()

    # -- transforms ---------------------------------------------------------------------------
    def chain_for(self, names: list[str] | tuple[str, ...]) -> TransformChain:
        key = tuple(names)
        if key not in self._chains:
            if not names or names[-1] != ENCRYPTION:
                raise RepositoryDamaged(f"a stored object is not encrypted ({','.join(names)})")
            self._chains[key] = TransformChain.from_names(names, self.plugins.transforms, self.keys)
        return self._chains[key]

    def encode_object(self, kind: int, payload: bytes, context: bytes) -> bytes:
        return objects.preamble(kind, self.chain.names) + self.chain.encode(payload, context)

    def decode_object(self, data: bytes, kind: int, context: bytes) -> bytes:
        names, start = objects.parse_preamble(data, kind)
        return self.chain_for(names).decode(data[start:], context)

    # -- chunks -------------------------------------------------------------------------------
    def read_chunk(self, chunk_id: bytes) -> bytes:
        """Fetch, decode and check one chunk."""
        where = self.cache.locate(chunk_id)
        if where is None:
            raise RepositoryDamaged(f"chunk {chunk_id.hex()} is in no pack of the bucket")
        data = self.storage.get(
            objects.pack_key(where.pack), where.offset, where.offset + where.length
        )
        return self.decode_blob(chunk_id, data, where.transforms)

    def decode_blob(self, chunk_id: bytes, data: bytes, transforms: tuple[str, ...]) -> bytes:
        plain = self.chain_for(transforms).decode(data, blob_context(chunk_id))
        if self.keys.chunk_id(plain) != chunk_id:
            raise RepositoryDamaged(f"chunk {chunk_id.hex()} does not match its id")
        return plain

    # -- index ----------------------------------------------------------------------------------
    def sync_index(self) -> None:
        """Bring the local cache in line with the bucket's index objects and packs."""
        cache = self.cache
        in_bucket = {
            name: info.size
            for info in self.storage.list(objects.INDEX)
            if (name := objects.index_name(info.key))
        }
        packs = {
            name: info.size
            for info in self.storage.list(objects.PACKS)
            if (name := objects.pack_name(info.key))
        }
        cache.begin()
        if set(in_bucket) != cache.index_names():
            log.info("rebuilding the local cache from %d index objects", len(in_bucket))
            cache.clear_index()
            cache.forget_files()
            for name in in_bucket:
                self._load_index(name)
        cached = cache.pack_names()
        lost = cached - set(packs)
        if lost:
            # The files cache may name chunks that were in them: every file is read again, so
            # that create stores those chunks anew instead of pointing at nothing.
            log.info("%d packs are missing from the bucket; reading every file again", len(lost))
            cache.remove_packs(lost)
            cache.forget_files()
        for name in sorted(set(packs) - cached):
            self._adopt_pack(name, packs[name])
        cache.commit()

    def _load_index(self, name: str) -> None:
        data = self.storage.get(objects.index_key(name))
        if objects.content_name(data) != name:
            raise RepositoryDamaged(f"index object {name} does not match its checksum")
        body = self.decode_object(data, objects.KIND_INDEX, b"index")
        for pack in decode_index(body):
            self.cache.add_pack(pack, indexed_in=name)
        self.cache.add_index(name)

    def _adopt_pack(self, name: str, size: int) -> None:
        """A pack no index knows (an interrupted run's): read its trailer so it can be reused."""
        key = objects.pack_key(name)
        try:
            head = self.storage.get(key, 0, 256)
            names, _ = objects.parse_preamble(head, objects.KIND_PACK)
            chain = self.chain_for(names)
            tail = self.storage.get(key, max(0, size - 64 * 1024), size)
            if trailer_size(tail) > len(tail):
                tail = self.storage.get(key, max(0, size - trailer_size(tail)), size)
            blobs = parse_trailer(tail, chain)
        except RepositoryDamaged as exc:
            log.warning("ignoring damaged pack %s (%s); it will be pruned", name, exc)
            return
        self.cache.add_pack(PackInfo(name, tuple(names), size, tuple(blobs)), indexed_in=None)

    def write_index(self, packs: list[str]) -> list[str]:
        """Store index objects covering ``packs``; returns their names."""
        written = []
        group: list[PackInfo] = []
        blobs = 0
        for name in packs:
            info = self.cache.pack_info(name)
            group.append(info)
            blobs += len(info.blobs)
            if blobs >= INDEX_BLOBS:
                written.append(self._store_index(group))
                group, blobs = [], 0
        if group:
            written.append(self._store_index(group))
        return written

    def _store_index(self, packs: list[PackInfo]) -> str:
        data = self.encode_object(objects.KIND_INDEX, encode_index(packs), b"index")
        name = objects.content_name(data)
        self.storage.put(objects.index_key(name), data)
        self.cache.add_index(name)
        self.cache.set_indexed((pack.name for pack in packs), name)
        return name

    # -- snapshots ------------------------------------------------------------------------------
    def snapshots(self) -> tuple[list[Snapshot], list[str]]:
        """Every readable snapshot, oldest first, and the names of the unreadable ones."""
        found, unreadable = [], []
        for info in self.storage.list(objects.SNAPSHOTS):
            name = objects.snapshot_name(info.key)
            if name is None:
                continue
            try:
                raw = self.decode_object(
                    self.storage.get(info.key), objects.KIND_SNAPSHOT, b"snapshot"
                )
                snapshot = Snapshot(**json.loads(raw))
            except (RepositoryDamaged, ValueError, TypeError):
                unreadable.append(name)
                continue
            snapshot.name = name
            found.append(snapshot)
        return sorted(found, key=lambda snapshot: snapshot.seq), unreadable

    def latest_snapshot(self) -> Snapshot | None:
        """The backup, None if there is none; raises if the only snapshot root is damaged."""
        snapshots, unreadable = self.snapshots()
        if unreadable and not snapshots:
            raise RepositoryDamaged(
                f"the bucket's snapshot {unreadable[0]} is damaged and cannot be read; "
                "the next 'spare create' replaces it"
            )
        return snapshots[-1] if snapshots else None

    def store_snapshot(self, snapshot: Snapshot) -> None:
        snapshot.name = os.urandom(16).hex()
        payload = asdict(snapshot)
        del payload["name"]
        data = self.encode_object(objects.KIND_SNAPSHOT, json.dumps(payload).encode(), b"snapshot")
        self.storage.put(objects.snapshot_key(snapshot.name), data)

    # -- lock -------------------------------------------------------------------------------------
    def lock_payload(self, command: str) -> bytes:
        info = LockInfo(command, socket.gethostname(), os.getpid(), now())
        return self.encode_object(objects.KIND_LOCK, json.dumps(asdict(info)).encode(), b"lock")

    def describe_lock(self, payload: bytes | None) -> LockInfo | None:
        if payload is None:
            return None
        try:
            return LockInfo(**json.loads(self.decode_object(payload, objects.KIND_LOCK, b"lock")))
        except (RepositoryDamaged, ValueError, TypeError):
            return LockInfo("(unreadable lock)", "unknown", 0, "unknown")

    @contextmanager
    def locked(self, command: str, *, under_manual_lock: bool = False) -> Iterator[None]:
        """Hold the bucket lock while the block runs; released on any exit.

        With ``under_manual_lock``, a lock set by ``spare lock`` is no obstacle (read-only
        commands run on a frozen backup), but the lock of a running command is.
        """
        lock = self.plugins.locks.get("object")(self.storage)
        payload = self.lock_payload(command)
        try:
            lock.acquire(payload)
        except LockHeld as held:
            info = self.describe_lock(held.payload)
            if info is not None and info.command == "lock" and under_manual_lock:
                yield
                return
            raise self.locked_error(info) from None
        try:
            yield
        finally:
            lock.release(payload)

    @staticmethod
    def locked_error(info: LockInfo | None) -> Locked:
        if info is None:
            return Locked("the bucket was locked a moment ago; try again")
        if info.command == "lock":
            return Locked(
                f"the bucket was locked by hand with {info.describe()}; run 'spare unlock' to "
                "allow changes again"
            )
        return Locked(
            f"the bucket is locked by {info.describe()}; if no spare runs there any more, run "
            "'spare unlock'"
        )


#: Blobs per index object: ~44 bytes each, so that one index object (and what it takes to write
#: or read one) stays under a MiB.
INDEX_BLOBS = 16384


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
