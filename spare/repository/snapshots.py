"""Snapshot roots: one encrypted object per snapshot, naming the chunks of its manifest.

Storing a root is the commit point of ``create``; a bucket holds one, two while a create prunes.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field

from spare.errors import RepositoryDamaged
from spare.repository import objects
from spare.repository.repo import Repository


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


def now() -> str:
    """The time in ISO 8601, UTC, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def list_snapshots(repo: Repository) -> tuple[list[Snapshot], list[str]]:
    """Every readable snapshot, oldest first, and the names of the unreadable ones."""
    found, unreadable = [], []
    for info in repo.storage.list(objects.SNAPSHOTS):
        name = objects.snapshot_name(info.key)
        if name is None:
            continue
        try:
            raw = repo.decode_object(repo.storage.get(info.key), objects.KIND_SNAPSHOT, b"snapshot")
            snapshot = Snapshot(**json.loads(raw))
        except (RepositoryDamaged, ValueError, TypeError):
            unreadable.append(name)
            continue
        snapshot.name = name
        found.append(snapshot)
    return sorted(found, key=lambda snapshot: snapshot.seq), unreadable


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
    """Store ``snapshot`` under a new random name (set on it): the commit point."""
    snapshot.name = os.urandom(16).hex()
    payload = asdict(snapshot)
    del payload["name"]
    data = repo.encode_object(objects.KIND_SNAPSHOT, json.dumps(payload).encode(), b"snapshot")
    repo.storage.put(objects.snapshot_key(snapshot.name), data)
