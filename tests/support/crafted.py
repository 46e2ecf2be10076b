"""Store a snapshot whose manifest the test writes itself, through spare's own repository code.

A real ``spare create`` only writes what it finds on disk; a hostile or corrupted manifest (an
absolute path, ``..``, a file below a symlink, a path listed twice) or one that names owners this
host does not have can only be made by hand. The snapshot is stored exactly as ``create`` stores
one (packs, index, root object), so ``spare restore`` run as a subprocess cannot tell it apart.

Lock payloads are made (and read) the same way: a lock left by a run on another host, or hours
ago, is encrypted exactly as spare encrypts its own.
"""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from spare.commands.context import Context
from spare.processes import this_host
from spare.repository.chunks import ChunkStore
from spare.repository.index import write_index
from spare.repository.locking import LockInfo, bucket_lock, describe_lock, encode_lock
from spare.repository.manifest import Entry
from spare.repository.repo import Repository
from spare.repository.snapshots import Snapshot, now, store_snapshot
from spare.storage import parse_endpoint

DIR_MODE = 0o755
FILE_MODE = 0o644
MTIME_NS = 1_600_000_000_123_456_789


def entry(path: bytes, kind: str = "f", **fields: object) -> object:
    """A manifest :class:`spare.repository.manifest.Entry` with harmless defaults."""
    values: dict[str, object] = {
        "path": path,
        "type": kind,
        "mode": DIR_MODE if kind == "d" else FILE_MODE,
        "uid": 0,
        "gid": 0,
        "mtime_ns": MTIME_NS,
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def context(env: Mapping[str, str], cache_dir: Path) -> Context:
    """What spare, run with ``env``, would work with; ``cache_dir`` must not be the runs' cache."""
    location = parse_endpoint(
        env["SPARE_ENDPOINT"],
        env["SPARE_BUCKET"],
        env.get("SPARE_ACCESS_KEY"),
        env.get("SPARE_SECRET_KEY"),
    )
    return Context(location, env["SPARE_PASSWORD"], cache_dir)


@contextmanager
def opened(env: Mapping[str, str], cache_dir: Path) -> Iterator[Repository]:
    """The existing repository spare, run with ``env``, would open."""
    repo = context(env, cache_dir).open()
    try:
        yield repo
    finally:
        repo.close()


def crafted_lock(env: Mapping[str, str], cache_dir: Path, **fields: object) -> bytes:
    """A lock payload as a ``spare create`` of this process would store, with ``fields`` changed
    (``host_id``, ``pid``, ``time``...), encrypted for the repository spare opens with ``env``."""
    info = dataclasses.replace(LockInfo.for_this_process("create", this_host()), **fields)
    with opened(env, cache_dir) as repo:
        return encode_lock(repo, info)


def read_lock(env: Mapping[str, str], cache_dir: Path) -> LockInfo | None:
    """Who holds the bucket's lock, as spare reads it; None when it is free."""
    with opened(env, cache_dir) as repo:
        return describe_lock(repo, bucket_lock(repo).read())


def store_crafted_snapshot(
    env: Mapping[str, str],
    cache_dir: Path,
    entries: Sequence[object],
    contents: Mapping[bytes, bytes] | None = None,
    *,
    backed_up_path: str = "/crafted/source",
) -> None:
    """Store a snapshot listing ``entries`` (Entry objects or raw manifest lines, in order).

    ``contents`` gives the data of file entries by path; it is chunked and stored, and the
    entry's chunks and size are filled in. ``env`` is what spare is run with (endpoint, bucket,
    keys, password); ``cache_dir`` must not be the cache of the spare runs.
    """
    repo = context(env, cache_dir).open(create=True)
    try:
        cache = repo.cache
        cache.begin()
        store = ChunkStore(repo)
        lines = []
        for item in entries:
            if isinstance(item, Entry):
                data = (contents or {}).get(item.path)
                if data is not None:
                    item.chunks, _ = store.store_stream(io.BytesIO(data), len(data))
                    item.size = len(data)
                lines.append(item.to_line())
            else:
                assert isinstance(item, bytes)
                lines.append(item if item.endswith(b"\n") else item + b"\n")
        store.packs.flush()
        manifest = b"".join(lines)
        manifest_ids, _ = store.store_stream(io.BytesIO(manifest), len(manifest))
        store.finish()
        write_index(repo, cache.unindexed_packs())
        cache.commit()
        store_snapshot(
            repo,
            Snapshot(
                seq=1,
                time=now(),
                host=socket.gethostname(),
                path=backed_up_path,
                inode=0,
                manifest=[chunk.hex() for chunk in manifest_ids],
            ),
        )
    finally:
        repo.close()
