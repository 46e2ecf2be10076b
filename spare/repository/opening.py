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
import logging
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
    SpareError,
    WrongPassword,
)
from spare.keys import KdfParams, KeyRing, unwrap_master_key, wrap_master_key
from spare.plugins import Plugins
from spare.repository import objects
from spare.repository.repo import Repository
from spare.repository.snapshots import now
from spare.storage import Storage

log = logging.getLogger("spare")

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

    Raises before anything is written when the password is wrong, the bucket is not spare's or
    ``compression`` names no installed transform.
    When this host has opened the bucket before, the key is derived from the config it remembers
    *before* connecting: the KDF's memory and the S3 client's are then never needed at the same
    time. The bucket's config is still read, and wins if it differs; but a config of another
    repository (another id) than the one this host knows there is refused unless ``force``: a
    config swapped in from another bucket with the same password would otherwise make create
    delete every object of this one as foreign.
    """
    if compression and compression != "none":
        plugins.transforms.get(compression)  # an unknown one stops the run before any write
    remembered = KnownConfigs(cache_root).get(location)
    early = None
    if remembered is not None:
        with contextlib.suppress(WrongPassword, RepositoryDamaged):
            early = _unlock(remembered, password)
    storage = connect()
    candidates = _read_configs(storage, remembered)
    if not candidates:
        if not create:
            raise NoSnapshot("there is no backup in this bucket (it is empty or missing)")
        config, made = _initialise(storage, password)
        keys = made or _unlock(config, password)
    else:
        made = None
        config, keys = _choose(candidates, password, remembered, early)
    # An empty bucket made anew is no replacement: emptying a bucket is in its holder's power.
    replaced = (
        bool(candidates) and remembered is not None and config.get("id") != remembered.get("id")
    )
    if replaced and not force:
        assert remembered is not None
        raise IdentityMismatch(
            f"the bucket holds repository {str(config.get('id'))[:32]!r}, not "
            f"{str(remembered.get('id'))[:32]!r} "
            "that this host used there: its config was replaced; if the bucket was replaced on "
            "purpose, use --force"
        )
    if config != remembered:
        KnownConfigs(cache_root).put(location, config)
    repo = Repository(storage, config, keys, plugins, cache_root, compression)
    repo.initialised = not candidates and made is not None
    return repo


def _choose(
    candidates: list[dict[str, Any]],
    password: str,
    remembered: dict[str, Any] | None,
    early: KeyRing | None,
) -> tuple[dict[str, Any], KeyRing]:
    """The first config (of the bucket's two copies, or the one this host remembers when both
    are gone) that the password opens, with its key ring; raises the first one's error if none
    does (a damaged copy is passed over, a changed one never obeyed)."""
    first_error: SpareError | None = None
    for config in candidates:
        if early is not None and config == remembered:
            return config, early
        try:
            _check_version(config)
            return config, _unlock(config, password)
        except (WrongPassword, RepositoryDamaged) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def damaged_config_copies(repo: Repository) -> dict[str, str]:
    """The config's copies that are ``"missing"`` or ``"damaged"`` (differ from the config in
    use), by key."""
    canonical = _encode(repo.config)
    found = {}
    for key in objects.CONFIG_KEYS:
        try:
            if objects.read_whole(repo.storage, key, "config") == canonical:
                continue
            found[key] = "damaged"
        except ObjectNotFound:
            found[key] = "missing"
        except RepositoryDamaged:
            found[key] = "damaged"
    return found


def repair_config(repo: Repository) -> list[str]:
    """Store the config again where a copy of it is missing or differs; returns the keys
    written. Only while holding the bucket lock."""
    written = list(damaged_config_copies(repo))
    for key in written:
        repo.storage.put(key, _encode(repo.config))
    return written


def _encode(config: dict[str, Any]) -> bytes:
    return json.dumps(config, indent=2).encode()


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


def _read_configs(
    storage: Storage, remembered: dict[str, Any] | None, *, again: bool = True
) -> list[dict[str, Any]]:
    """The distinct spare configs that the bucket holds (``config``, then ``config.copy``),
    the one this host remembers first; or, when both copies are gone from a bucket that holds
    a backup, the one this host remembers. Empty for an empty bucket."""
    raws = []
    for key in objects.CONFIG_KEYS:
        with contextlib.suppress(ObjectNotFound):
            raws.append(objects.read_whole(storage, key, "config"))
    configs: list[dict[str, Any]] = []
    for raw in raws:
        config = _parse(raw)
        if config is not None and config not in configs:
            configs.append(config)
    configs.sort(key=lambda config: config != remembered)
    if configs:
        return configs
    found = next(iter(storage.list()), None)
    if found is None:
        return []
    if not raws and again:
        # Another spare may have made the bucket a repository since the read: look again.
        return _read_configs(storage, remembered, again=False)
    spares = [info.key for info in storage.list() if objects.is_spares(info.key)]
    if not spares:
        if raws:
            raise ForeignBucket(
                "the bucket's 'config' object is not spare's; spare only writes to buckets it "
                "owns: use an empty bucket (nothing was changed)"
            )
        raise ForeignBucket(
            f"the bucket holds objects (e.g. {found.key!r}) but is not a spare backup; "
            "spare only writes to buckets it owns: use an empty one (nothing was changed)"
        )
    if remembered is not None:
        log.warning(
            "the bucket's config is %s; using the copy this host remembers (the next create "
            "stores it again)",
            "damaged" if raws else "gone",
        )
        return [remembered]
    raise RepositoryDamaged(
        f"the bucket holds {len(spares)} objects of a spare backup, but its config (which holds "
        f"the key) is {'damaged' if raws else 'gone'}: copy it back from a host that backed up "
        "here (the file in SPARE_CACHE_DIR/buckets/ that names this repository, stored as "
        "'config'), or use 'create --force' to start a new backup here, deleting the old one"
    )


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The config ``raw`` holds, None if it is not a spare config (or is damaged)."""
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        return None
    return config


def _check_version(config: dict[str, Any]) -> None:
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
        storage.create(objects.CONFIG_KEY, _encode(config))
    except ObjectExists:  # another spare initialised it first: use theirs
        found = _read_configs(storage, None)
        assert found
        return found[0], None
    storage.put(objects.CONFIG_COPY_KEY, _encode(config))
    return config, keys
