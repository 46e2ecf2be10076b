"""Opening a bucket as a repository, and making an empty bucket one.

The ``config`` object is the bucket's only plaintext: the marker that the bucket is spare's, the
format version, the repository's id, the chunker's and the KDF's parameters, and the master key
wrapped with the password's key. Every other field is authenticated with the wrapped key, and
every value is checked against spare's bounds before it is used: a config changed by whoever
holds the bucket is refused, never obeyed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spare.errors import (
    ForeignBucket,
    IdentityMismatch,
    NoSnapshot,
    ObjectExists,
    ObjectNotFound,
    RepositoryDamaged,
    WrongPassword,
)
from spare.keys import KdfParams, KeyRing, unwrap_master_key, wrap_master_key
from spare.plugins import Plugins
from spare.repository import objects
from spare.repository.repo import Repository
from spare.repository.snapshots import now
from spare.storage import Storage

CONFIG_FORMAT = "spare-repository"

#: Chunker parameters of new repositories. pyfastcdc's chunks average ``avg + min``: ~1 MiB. The
#: maximum bounds create's memory: pyfastcdc buffers two maximal chunks, the transforms a few more.
CHUNKER = {"avg": 768 << 10, "min": 256 << 10, "max": 2 << 20}

#: The chunker parameters spare accepts: tiny chunks would flood the index, huge ones memory.
CHUNKER_BOUNDS = {
    "min": (16 << 10, 1 << 20),
    "avg": (64 << 10, 4 << 20),
    "max": (256 << 10, 8 << 20),
}

#: A repository id names the cache directory of the bucket: 32 hex digits, nothing else.
REPOSITORY_ID = re.compile(r"^[0-9a-f]{32}$")


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


def open_repository(
    connect: Callable[[], Storage],
    password: str,
    plugins: Plugins,
    cache_root: Path,
    *,
    location: str,
    create: bool = False,
    compression: str | None = "lzma",
    force: bool = False,
) -> Repository:
    """Open the bucket ``connect()`` reaches; with ``create``, make an empty one a repository.

    Raises before anything is written when the password is wrong or the bucket is not spare's.
    When this host has opened the bucket before, the key is derived from the config it remembers
    *before* connecting: the KDF's memory and the S3 client's are then never needed at the same
    time. The bucket's config is still read, and wins if it differs; but a config of another
    repository (another id) than the one this host knows there is refused unless ``force``: a
    config swapped in from another bucket with the same password would otherwise make create
    delete every object of this one as foreign.
    """
    remembered = KnownConfigs(cache_root).get(location)
    early = None
    if remembered is not None:
        with contextlib.suppress(WrongPassword, RepositoryDamaged):
            early = _unlock(remembered, password)
    storage = connect()
    config = _read_config(storage)
    replaced = (
        config is not None and remembered is not None and config.get("id") != remembered.get("id")
    )
    if replaced and not force:
        assert config is not None and remembered is not None
        raise IdentityMismatch(
            f"the bucket holds repository {str(config.get('id'))[:32]!r}, not "
            f"{str(remembered.get('id'))[:32]!r} "
            "that this host used there: its config was replaced; if the bucket was replaced on "
            "purpose, use --force"
        )
    if config is None:
        if not create:
            raise NoSnapshot("there is no backup in this bucket (it is empty or missing)")
        config, keys = _initialise(storage, password)
    else:
        keys = early if early is not None and config == remembered else None
    if keys is None:
        keys = _unlock(config, password)
    if config != remembered:
        KnownConfigs(cache_root).put(location, config)
    return Repository(storage, config, keys, plugins, cache_root, compression)


def _unlock(config: dict[str, Any], password: str) -> KeyRing:
    """The key ring; raises unless the password opens the key and no field was changed."""
    kdf = _check_config(config)
    try:
        wrapped = bytes.fromhex(config["master_key"])
    except (KeyError, ValueError, TypeError) as exc:
        raise RepositoryDamaged("the bucket's config has no readable master key") from exc
    return KeyRing(unwrap_master_key(wrapped, kdf.derive(password), _bound(config)))


def _bound(config: dict[str, Any]) -> bytes:
    """Every field but the wrapped key, canonically: what the wrap authenticates."""
    fields = {name: value for name, value in config.items() if name != "master_key"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _check_config(config: dict[str, Any]) -> KdfParams:
    """Refuse values spare would never write, before any is used (the id names a directory);
    the KDF parameters, checked."""
    if not isinstance(config.get("id"), str) or not REPOSITORY_ID.match(config["id"]):
        raise RepositoryDamaged(
            f"the bucket's config has a malformed id {str(config.get('id'))[:40]!r}: it was "
            "tampered with"
        )
    chunker = config.get("chunker")
    if not isinstance(chunker, dict) or set(chunker) != set(CHUNKER_BOUNDS):
        raise RepositoryDamaged("the bucket's config has malformed chunker parameters")
    for name, (low, high) in CHUNKER_BOUNDS.items():
        value = chunker[name]
        if type(value) is not int or not low <= value <= high:
            raise RepositoryDamaged(
                f"the bucket's config has a chunker {name} of {value!r}, outside {low}..{high}: "
                "it was tampered with or made by a newer spare"
            )
    if not chunker["min"] <= chunker["avg"] <= chunker["max"]:
        raise RepositoryDamaged("the bucket's config has inconsistent chunker parameters")
    return KdfParams.from_json(config.get("kdf"))


def _read_config(storage: Storage, *, again: bool = True) -> dict[str, Any] | None:
    try:
        raw = objects.read_whole(storage, objects.CONFIG_KEY, "config")
    except ObjectNotFound:
        found = next(iter(storage.list()), None)
        if found is not None and again:
            # Another spare may have made the bucket a repository since the read: look again.
            return _read_config(storage, again=False)
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
    except (ValueError, RecursionError):
        raise ForeignBucket(
            "the bucket's 'config' object is not spare's; spare only writes to buckets it "
            "owns: use an empty bucket (nothing was changed)"
        ) from None
    version = config.get("version")
    if version != objects.FORMAT_VERSION:
        advice = (
            "restore it with the spare that made it, and back up into a new bucket"
            if isinstance(version, int) and version < objects.FORMAT_VERSION
            else "upgrade spare"
        )
        raise RepositoryDamaged(
            f"the bucket holds a spare repository of format version {str(version)[:20]}; this "
            f"spare reads version {objects.FORMAT_VERSION} only: {advice}"
        )
    return config


def _initialise(storage: Storage, password: str) -> tuple[dict[str, Any], KeyRing | None]:
    """Make the bucket a repository; the key ring is None if another spare was first."""
    storage.ensure_bucket()
    keys = KeyRing.generate()
    kdf = KdfParams.generate()
    config: dict[str, Any] = {
        "format": CONFIG_FORMAT,
        "version": objects.FORMAT_VERSION,
        "id": os.urandom(16).hex(),
        "created": now(),
        "kdf": kdf.to_json(),
        "chunker": CHUNKER,
    }
    config["master_key"] = wrap_master_key(keys.master, kdf.derive(password), _bound(config)).hex()
    try:
        storage.create(objects.CONFIG_KEY, json.dumps(config, indent=2).encode())
    except ObjectExists:  # another spare initialised it first: use theirs
        found = _read_config(storage)
        assert found is not None
        return found, None
    return config, keys
