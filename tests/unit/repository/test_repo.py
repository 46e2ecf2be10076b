"""The one read path for stored blobs: ranged GETs, decoding, id checks, damage per blob."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spare.errors import RepositoryDamaged
from spare.repository import objects
from spare.repository.chunks import SMALL_CHUNK, ChunkStore
from spare.repository.objects import BlobRecord
from spare.repository.repo import GAP, Repository, _ranges
from spare.storage import Storage


def record(offset: int, length: int) -> BlobRecord:
    return BlobRecord(offset.to_bytes(32, "big"), offset, length, length)


def test_ranges_join_blobs_closer_than_the_gap() -> None:
    near = [record(0, 10), record(10, 10), record(20 + GAP, 10)]
    far = [record(31 + 2 * GAP, 5)]  # one byte more than the gap after the last near one
    groups = list(_ranges(near + far))
    assert [(start, end) for start, end, _ in groups] == [
        (0, 30 + GAP),
        (31 + 2 * GAP, 36 + 2 * GAP),
    ]
    assert [group for _, _, group in groups] == [near, far]
    assert list(_ranges([])) == []


def store_chunks(repo: Repository, chunks: list[bytes]) -> tuple[str, list[BlobRecord]]:
    """Store ``chunks`` into one pack; its name and records, in offset order."""
    store = ChunkStore(repo)
    ids = [store.store(chunk) for chunk in chunks]
    store.finish()
    (name,) = repo.cache.pack_names()
    records = list(repo.cache.pack_info(name).blobs)
    assert sorted(r.chunk_id for r in records) == sorted(set(ids))
    return name, records


def big(count: int) -> list[bytes]:
    """Random chunks big enough for a blob each."""
    return [os.urandom(SMALL_CHUNK) for _ in range(count)]


def damage(storage: Storage, key: str, offset: int) -> None:
    data = bytearray(storage.get(key))
    data[offset] ^= 0x40
    storage.put(key, bytes(data))


def test_load_blobs_decodes_and_checks_each(repo: Repository) -> None:
    chunks = [os.urandom(3000), b"text " * 1000, os.urandom(10), *big(2)]
    name, records = store_chunks(repo, chunks)
    transforms = repo.cache.pack_info(name).transforms
    loaded = list(repo.load_blobs(name, transforms, records))
    assert [blob.plain for blob in loaded] == [
        next(c for c in chunks if repo.keys.chunk_id(c) == r.chunk_id) for r in records
    ]
    assert all(blob.problem is None for blob in loaded)
    assert [blob.record for blob in loaded] == records
    whole = repo.storage.get(objects.pack_key(name))
    again = list(repo.load_blobs(name, transforms, records, whole=whole))
    assert [blob.plain for blob in again] == [blob.plain for blob in loaded]
    assert [blob.stored for blob in again] == [blob.stored for blob in loaded]


def test_one_damaged_blob_costs_only_itself(repo: Repository) -> None:
    chunks = big(3)
    name, records = store_chunks(repo, chunks)
    transforms = repo.cache.pack_info(name).transforms
    damage(repo.storage, objects.pack_key(name), records[1].offset + records[1].length // 2)
    loaded = list(repo.load_blobs(name, transforms, records))
    assert [blob.plain for blob in loaded] == [chunks[0], None, chunks[2]]
    assert loaded[1].problem


def test_a_missing_or_truncated_pack_damages_its_blobs(repo: Repository) -> None:
    name, records = store_chunks(repo, big(2))
    transforms = repo.cache.pack_info(name).transforms
    key = objects.pack_key(name)
    repo.storage.put(key, repo.storage.get(key)[: records[1].offset + 10])
    loaded = list(repo.load_blobs(name, transforms, records))
    assert loaded[0].plain is not None and loaded[1].plain is None
    assert "missing or truncated" in (loaded[1].problem or "")
    repo.storage.delete([key])
    assert all(blob.plain is None for blob in repo.load_blobs(name, transforms, records))


def test_a_blob_stored_under_another_id_is_refused(repo: Repository) -> None:
    name, records = store_chunks(repo, big(2))
    transforms = repo.cache.pack_info(name).transforms
    swapped = BlobRecord(records[1].chunk_id, records[0].offset, records[0].length, SMALL_CHUNK)
    (loaded,) = repo.load_blobs(name, transforms, [swapped])
    assert loaded.plain is None


def test_small_chunks_share_blobs_and_each_reads_alone(repo: Repository) -> None:
    """Small chunks are stored together, text apart from random bytes; each is still read on
    its own, and damage to a shared blob costs its chunks and no others."""
    text = [b"line %d of a small text file\n" % n * 40 for n in range(10)]
    noise = [os.urandom(700) for _ in range(5)]
    name, records = store_chunks(repo, text + noise)
    transforms = repo.cache.pack_info(name).transforms
    blobs = {r.offset for r in records}
    assert len(blobs) == 2
    by_id = {repo.keys.chunk_id(c): c for c in text + noise}
    for record in records:
        (loaded,) = repo.load_blobs(name, transforms, [record])
        assert loaded.plain == by_id[record.chunk_id]
    text_blob = next(r for r in records if r.chunk_id == repo.keys.chunk_id(text[0])).offset
    size = next(r.length for r in records if r.offset == text_blob)
    damage(repo.storage, objects.pack_key(name), text_blob + size // 2)
    lost = {b.record.chunk_id for b in repo.load_blobs(name, transforms, records) if not b.plain}
    assert lost == {repo.keys.chunk_id(c) for c in text}
    lying = BlobRecord(records[0].chunk_id, records[0].offset, records[0].length, 10, 3)
    (loaded,) = repo.load_blobs(name, transforms, [lying])
    assert loaded.plain is None


def test_read_chunk(repo: Repository) -> None:
    chunk = b"manifest line\n" * 100
    name, records = store_chunks(repo, [chunk])
    assert repo.read_chunk(records[0].chunk_id) == chunk
    with pytest.raises(RepositoryDamaged, match="in no pack"):
        repo.read_chunk(os.urandom(32))
    damage(repo.storage, objects.pack_key(name), records[0].offset + 5)
    with pytest.raises(RepositoryDamaged):
        repo.read_chunk(records[0].chunk_id)


def test_clean_scratch_removes_only_what_dead_runs_left(repo: Repository) -> None:
    """A run's scratch directory stays while its owner runs, even when another run cleans up
    (two runs overlap after 'spare unlock --force'); those of gone processes and of older
    versions (no owner in the name) are removed."""
    live = repo.scratch_dir("packs")
    done = subprocess.run(
        [sys.executable, "-c", "from spare.processes import process_tag; print(process_tag())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = repo.cache_dir / f"tmp-packs-{done.stdout.strip()}-abcd1234"
    old = repo.cache_dir / "tmp-restore-q1w2e3r4"
    for left in (dead, old):
        left.mkdir()
        (left / "pack").write_bytes(b"left behind")
    try:
        repo.clean_scratch()
        assert Path(live.name).is_dir()
        assert not dead.exists() and not old.exists()
    finally:
        live.cleanup()
