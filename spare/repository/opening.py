"""Opening a bucket as a repository, and making an empty bucket one; changing its password.

The ``config`` object is the bucket's only plaintext: the marker that the bucket is spare's, the
format version, the repository's id, the chunker's and the KDF's parameters, and the master key
wrapped with the password's key. Every other field is authenticated with the wrapped key, and
every value is checked against spare's bounds before it is used: a config changed by whoever
holds the bucket is refused, never obeyed.

``spare passwd`` wraps the same master key anew (nothing else changes) and counts the wraps in
the config's ``generation``, so that a copy under a newer password is told from damage.
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
    UsageError,
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
    escrow: dict[str, Any] | None = None,
) -> Repository:
    """Open the bucket ``connect()`` reaches; with ``create``, make an empty one a repository.

    ``escrow`` is the config of a key file (``spare key export``), used when both copies of the
    bucket's config are gone or damaged.

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
    candidates, lost = _read_configs(storage, remembered, escrow)
    if not candidates:
        if not create:
            raise NoSnapshot("there is no backup in this bucket (it is empty or missing)")
        config, made = _initialise(storage, password)
        keys = made or _unlock(config, password)
    else:
        made = None
        config, keys = _choose(candidates, password, remembered, early)
        if lost:
            log.warning(
                "the bucket's config is %s; using %s (the next create stores it again)",
                lost,
                "the key file" if config is escrow else "the copy this host remembers",
            )
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
    """The config's copies that are ``"missing"``, ``"damaged"`` (differ from the config in
    use), or this repository's config wrapped by ``spare passwd`` under another password:
    ``"older"`` or ``"newer"`` than the config in use; by key."""
    canonical = encode_config(repo.config)
    found = {}
    for key in objects.CONFIG_KEYS:
        try:
            raw = objects.read_whole(repo.storage, key, "config")
        except ObjectNotFound:
            found[key] = "missing"
            continue
        except RepositoryDamaged:
            found[key] = "damaged"
            continue
        if raw != canonical:
            found[key] = _compare(_parse(raw), repo.config)
    return found


def _compare(other: dict[str, Any] | None, config: dict[str, Any]) -> str:
    """How the stored config ``other`` differs from ``config``, the one in use."""
    if other is None or other.get("id") != config["id"]:
        return "damaged"
    if generation(other) > generation(config):
        return "newer"
    return "older" if generation(other) < generation(config) else "damaged"


def repair_config(repo: Repository) -> dict[str, str]:
    """Store the config again where a copy of it is missing, damaged or older; returns what
    :func:`damaged_config_copies` found. Only while holding the bucket lock.

    A ``"newer"`` copy is left alone: it is a ``spare passwd`` killed between its two writes,
    and this run, opened with the old password, must not undo it; a run with the new password
    stores it in both copies.
    """
    found = damaged_config_copies(repo)
    for key, how in found.items():
        if how != "newer":
            repo.storage.put(key, encode_config(repo.config))
    return found


def config_copy_note(key: str, how: str) -> str:
    """What :func:`repair_config` did about the copy ``key`` found ``how``."""
    if how == "newer":
        return (
            f"the bucket's {key} holds the key under a newer password (a 'spare passwd' that did "
            "not finish): left alone; this password opens the bucket until a create with the "
            "new one stores it in both copies"
        )
    if how == "older":
        return (
            f"the bucket's {key} held the key under the password used before 'spare passwd', "
            "which did not finish: stored it under this one"
        )
    return f"the bucket's {key} was {how}; stored it again"


def generation(config: dict[str, Any]) -> int:
    """How many times ``spare passwd`` wrapped this config's key anew (0 for none)."""
    value = config.get("generation", 0)
    return value if type(value) is int and value >= 0 else 0


def rewrapped(config: dict[str, Any], keys: KeyRing, new_password: str, gen: int) -> dict[str, Any]:
    """``config`` with the master key wrapped under ``new_password`` (a fresh KDF salt) as
    generation ``gen``; every other field is kept."""
    kdf = KdfParams.generate()
    new = {name: value for name, value in config.items() if name != "master_key"}
    new["kdf"] = kdf.to_json()
    new["generation"] = gen
    new["master_key"] = wrap_master_key(keys.master, kdf.derive(new_password), _bound(new)).hex()
    return new


def next_generation(repo: Repository) -> int:
    """Above the generation of the config in use and of any copy of it in the bucket."""
    seen = [generation(repo.config)]
    for key in objects.CONFIG_KEYS:
        with contextlib.suppress(ObjectNotFound, RepositoryDamaged):
            stored = _parse(objects.read_whole(repo.storage, key, "config"))
            if stored is not None and stored.get("id") == repo.id:
                seen.append(generation(stored))
    return max(seen) + 1


def store_rewrapped(
    repo: Repository, config: dict[str, Any], cache_root: Path, location: str
) -> None:
    """Store the config of :func:`rewrapped` in both copies, then remember it on this host.
    Only while holding the bucket lock.

    ``config.copy`` is written first and ``config`` last: until the second write the old
    password still opens ``config``. A run killed between the two leaves one copy under each
    password: both open the bucket, the old one's runs leave the newer copy alone (see
    :func:`repair_config`), and the first create with the new password stores it in both.
    """
    for key in (objects.CONFIG_COPY_KEY, objects.CONFIG_KEY):
        repo.storage.put(key, encode_config(config))
    repo.config = config
    KnownConfigs(cache_root).put(location, config)


def read_key_file(path: Path) -> dict[str, Any]:
    """The config a key file of ``spare key export`` holds (the key still wrapped)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(objects.MAX_BYTES["config"] + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the key file {path}: {exc.strerror}") from None
    config = _parse(raw) if len(raw) <= objects.MAX_BYTES["config"] else None
    if config is None:
        raise UsageError(f"{path} is not a key file of 'spare key export'")
    return config


def encode_config(config: dict[str, Any]) -> bytes:
    """The bytes of the ``config`` object (and of a key file)."""
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
    if "generation" in config and generation(config) != config["generation"]:
        raise RepositoryDamaged("the bucket's config has a malformed generation")
    return KdfParams.from_json(config.get("kdf"))


def _read_configs(
    storage: Storage,
    remembered: dict[str, Any] | None,
    escrow: dict[str, Any] | None = None,
    *,
    again: bool = True,
) -> tuple[list[dict[str, Any]], str | None]:
    """The distinct spare configs that the bucket holds (``config``, then ``config.copy``),
    the one this host remembers first; or, when both copies are gone from a bucket that holds
    a backup, the key file's (``escrow``) and the one this host remembers, with how the
    bucket's were lost (``"gone"`` or ``"damaged"``). Empty for an empty bucket."""
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
        return configs, None
    found = next(iter(storage.list()), None)
    if found is None:
        return [], None
    if not raws and again:
        # Another spare may have made the bucket a repository since the read: look again.
        return _read_configs(storage, remembered, escrow, again=False)
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
    fallbacks = [config for config in (escrow, remembered) if config is not None]
    if fallbacks:
        return fallbacks, "damaged" if raws else "gone"
    raise RepositoryDamaged(
        f"the bucket holds {len(spares)} objects of a spare backup, but its config (which holds "
        f"the key) is {'damaged' if raws else 'gone'}: give the key exported by 'spare key "
        "export' with --key-file, or copy it back from a host that backed up here (the file in "
        "SPARE_CACHE_DIR/buckets/ that names this repository, stored as 'config'), or use "
        "'create --force' to start a new backup here, deleting the old one"
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
        storage.create(objects.CONFIG_KEY, encode_config(config))
    except ObjectExists:  # another spare initialised it first: use theirs
        found, _ = _read_configs(storage, None)
        assert found
        return found[0], None
    storage.put(objects.CONFIG_COPY_KEY, encode_config(config))
    return config, keys
