"""Snapshot roots: one encrypted object per snapshot, naming the chunks of its manifest.

Storing a root is the commit point of ``create``; a bucket holds one, two while a create prunes.
Each root is stored twice (``snapshots/<name>`` and ``snapshots/<name>.copy``), so that losing
one object never loses the snapshot.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spare.errors import ObjectNotFound, RepositoryDamaged, RolledBack
from spare.repository import objects
from spare.repository.repo import Repository

_CHUNK_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Snapshot:
    """The root object of a snapshot."""

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

    def describe(self) -> dict[str, Any]:
        """What a person or a monitoring check wants to know of the snapshot (JSON output)."""
        return {"seq": self.seq, "time": self.time, "host": self.host, "path": self.path}

    @classmethod
    def from_json(cls, raw: bytes) -> Snapshot:
        """The root that ``raw`` encodes; raises RepositoryDamaged unless every field is sound."""
        try:
            data = json.loads(raw)
            snapshot = cls(**data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise RepositoryDamaged(f"a snapshot root is malformed ({exc})") from exc
        fields = (
            (snapshot.seq, int),
            (snapshot.time, str),
            (snapshot.host, str),
            (snapshot.path, str),
            (snapshot.inode, int),
            (snapshot.manifest, list),
            (snapshot.stats, dict),
        )
        if (
            any(type(value) is not kind for value, kind in fields)
            or snapshot.seq < 1
            or not all(
                isinstance(chunk, str) and _CHUNK_HEX.match(chunk) for chunk in snapshot.manifest
            )
            or not all(type(value) is int for value in snapshot.stats.values())
        ):
            raise RepositoryDamaged("a snapshot root has a field of the wrong kind")
        return snapshot


def now() -> str:
    """The time in ISO 8601, UTC, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def list_snapshots(repo: Repository) -> tuple[list[Snapshot], list[str]]:
    """Every readable snapshot, oldest first, and the names of the unreadable ones (neither
    the root nor its copy can be read)."""
    keys: dict[str, list[str]] = {}
    for info in repo.storage.list(objects.SNAPSHOTS):
        name = objects.snapshot_name(info.key)
        if name is not None:
            keys.setdefault(name, []).append(info.key)
    found, unreadable = [], []
    for name, stored in sorted(keys.items()):
        snapshot = _read_root(repo, sorted(stored))
        if snapshot is None:
            unreadable.append(name)
            continue
        snapshot.name = name
        found.append(snapshot)
    return sorted(found, key=lambda snapshot: snapshot.seq), unreadable


def _read_root(repo: Repository, keys: list[str]) -> Snapshot | None:
    """The root held by the first of ``keys`` that can be read."""
    for key in keys:
        try:
            data = objects.read_whole(repo.storage, key, "snapshot")
            raw = repo.decode_object(data, objects.KIND_SNAPSHOT, b"snapshot")
            return Snapshot.from_json(raw)
        except (RepositoryDamaged, ObjectNotFound):
            continue
    return None


def damaged_root_copies(repo: Repository, snapshot: Snapshot) -> dict[str, str]:
    """``snapshot``'s two root objects that are ``"missing"``, or ``"damaged"`` (unreadable, or
    holding another root), by key."""
    listed = {info.key for info in repo.storage.list(objects.SNAPSHOTS)}
    found = {}
    for key in objects.snapshot_keys(snapshot.name):
        if key not in listed:
            found[key] = "missing"
            continue
        root = _read_root(repo, [key])
        if root is None or replace(root, name=snapshot.name) != snapshot:
            found[key] = "damaged"
    return found


def latest_snapshot(repo: Repository) -> Snapshot | None:
    """The backup, None if there is none; raises if the only snapshot root is damaged."""
    snapshots, unreadable = list_snapshots(repo)
    if unreadable and not snapshots:
        raise RepositoryDamaged(
            f"the bucket's snapshot {unreadable[0]} is damaged and cannot be read; "
            "the next 'spare create' replaces it"
        )
    return snapshots[-1] if snapshots else None


def store_snapshot(repo: Repository, snapshot: Snapshot) -> None:
    """Store ``snapshot`` under a new random name (set on it), twice: the first is the commit
    point."""
    snapshot.name = os.urandom(16).hex()
    payload = asdict(snapshot)
    del payload["name"]
    data = repo.encode_object(objects.KIND_SNAPSHOT, json.dumps(payload).encode(), b"snapshot")
    for key in objects.snapshot_keys(snapshot.name):
        repo.storage.put(key, data)


def _seen_path(repo: Repository) -> Path:
    return repo.state_dir / f"{repo.id}.seen"


def highest_seen(repo: Repository) -> int:
    """The highest snapshot sequence this host has seen in the repository (0: none)."""
    try:
        return int(_seen_path(repo).read_text())
    except (OSError, ValueError):
        return 0


def remember_seen(repo: Repository, snapshot: Snapshot) -> None:
    """Remember ``snapshot``'s sequence, if it is the highest seen yet."""
    if snapshot.seq <= highest_seen(repo):
        return
    path = _seen_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(str(snapshot.seq))
    os.replace(tmp, path)


def check_not_rolled_back(repo: Repository, snapshot: Snapshot | None, *, force: bool) -> None:
    """Refuse a newest snapshot older than one this host has seen, unless ``force``.

    Whoever holds the bucket can put an older root and its packs back in place; the root is
    authentic, so only its sequence number tells. The newest accepted one is remembered.
    """
    if snapshot is None:
        return  # none at all: deleting is in the bucket holder's power, and no rollback
    seen = highest_seen(repo)
    if snapshot.seq < seen and not force:
        raise RolledBack(
            f"the bucket's newest snapshot is number {snapshot.seq}, but this host has seen "
            f"number {seen}: an older copy was put back in place; use --force to accept it"
        )
    remember_seen(repo, snapshot)
