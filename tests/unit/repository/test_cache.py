"""The local SQLite databases: the cache, restore's plan and verify's set of good chunks."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from spare.errors import Locked
from spare.repository import database
from spare.repository.cache import Cache
from spare.repository.objects import BlobRecord
from spare.repository.packs import PackInfo
from spare.repository.scratch import ChunkSet, Inode, RestorePlan


def chunk_id(n: int) -> bytes:
    return n.to_bytes(32, "big")


def pack(name: str, *chunks: tuple[int, int, int, int]) -> PackInfo:
    """A pack named ``name`` (hex) holding (chunk number, offset, length, size) blobs."""
    return PackInfo(
        name,
        ("lzma", "aes-siv"),
        10_000,
        tuple(BlobRecord(chunk_id(n), offset, length, size) for n, offset, length, size in chunks),
    )


PACK_A = "aa" * 32
PACK_B = "bb" * 32


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    cache = Cache(tmp_path / "cache.sqlite")
    yield cache
    cache.close()


def test_a_pack_once_added_locates_its_chunks(cache: Cache) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 110, 50, 50)), indexed_in=None)
    (where,) = cache.locations(chunk_id(2))
    assert (where.pack, where.transforms, where.offset, where.length, where.size) == (
        PACK_A,
        ("lzma", "aes-siv"),
        110,
        50,
        50,
    )
    assert cache.has_chunk(chunk_id(1)) and not cache.has_chunk(chunk_id(3))
    assert cache.locations(chunk_id(3)) == []
    assert cache.pack_info(PACK_A) == pack(PACK_A, (1, 10, 100, 400), (2, 110, 50, 50))
    assert cache.pack_names() == {PACK_A}


def test_removing_a_pack_forgets_its_chunks(cache: Cache) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (2, 10, 100, 400)), indexed_in=None)
    cache.remove_packs([PACK_A])
    assert cache.pack_names() == {PACK_B}
    assert not cache.has_chunk(chunk_id(1)) and cache.has_chunk(chunk_id(2))


def test_index_objects_and_the_packs_they_name(cache: Cache) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 110, 10, 10)), indexed_in="i1")
    cache.add_pack(pack(PACK_B, (3, 10, 100, 400)), indexed_in=None)
    cache.add_index("i1")
    assert cache.index_names() == {"i1"}
    assert cache.packs_indexed_in("i1") == [PACK_A]
    assert cache.unindexed_packs() == [PACK_B]
    cache.add_index("i2")
    cache.set_indexed([PACK_B], "i2")
    assert cache.index_sizes() == {"i1": 2, "i2": 1}
    cache.remove_index("i1")
    assert cache.index_names() == {"i2"}
    assert cache.unindexed_packs() == [PACK_A]
    cache.clear_index()
    assert cache.index_names() == set() and cache.pack_names() == set()


def test_live_chunks_give_each_packs_usage(cache: Cache) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 110, 300, 300)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (3, 10, 50, 50)), indexed_in=None)
    cache.start_live()
    cache.add_live([chunk_id(1), chunk_id(1), chunk_id(9)])
    cache.hold_live()
    assert sorted(cache.pack_usage()) == [(PACK_A, 100, 400), (PACK_B, 0, 50)]
    assert cache.live_blobs(PACK_A) == [BlobRecord(chunk_id(1), 10, 100, 400)]
    assert cache.live_blobs(PACK_B) == []


def test_a_transaction_ends_only_at_its_commit(tmp_path: Path) -> None:
    """What a prune or an index rebuild changes in the cache is kept whole or not at all: a
    process killed before its commit (the connection closed without one) leaves the cache as it
    was, whatever steps ran in between. sqlite3 commits before any script, so none may run in a
    transaction: a prune's repacked pack was known, after a kill, though it was never stored."""
    path = tmp_path / "cache.sqlite"
    cache = Cache(path)
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400)), indexed_in="i1")
    cache.add_index("i1")
    cache.begin()
    cache.start_live()
    cache.add_live([chunk_id(1)])
    cache.hold_live()
    cache.add_pack(pack(PACK_B, (2, 10, 100, 400)), indexed_in=None)  # a repack's new pack
    cache.clear_index()
    cache.db.close()  # killed: no commit

    reopened = Cache(path)
    assert reopened.pack_names() == {PACK_A} and reopened.index_names() == {"i1"}
    reopened.begin()
    with pytest.raises(RuntimeError, match="script would commit"):
        reopened.db.executescript("SELECT 1;")
    reopened.close()


PACK_C = "cc" * 32


def test_copies_are_used_known_first_and_damaged_last(cache: Cache) -> None:
    """A pack found later (a replayed one) never comes before a known copy; a damaged copy
    comes after every other, and no longer counts as stored."""
    cache.add_pack(pack(PACK_B, (1, 10, 100, 400)), indexed_in=None)
    cache.add_pack(pack(PACK_A, (1, 20, 100, 400), (2, 120, 5, 5)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (1, 10, 100, 400)), indexed_in="i1")  # listed again: same rank
    assert [where.pack for where in cache.locations(chunk_id(1))] == [PACK_B, PACK_A]
    assert cache.good_copies(chunk_id(1)) == 2
    assert cache.mark_damaged([(chunk_id(1), PACK_B)]) == 1
    assert cache.mark_damaged([(chunk_id(1), PACK_B)]) == 0
    assert [where.pack for where in cache.locations(chunk_id(1))] == [PACK_A, PACK_B]
    assert cache.good_copies(chunk_id(1)) == 1 and cache.has_chunk(chunk_id(1))
    assert cache.damaged_packs() == {PACK_B}
    cache.clear_index()  # damage marks outlive a rebuild of the index tables
    cache.add_pack(pack(PACK_B, (1, 10, 100, 400)), indexed_in=None)
    assert not cache.has_chunk(chunk_id(1))
    cache.remove_packs([PACK_B])
    assert cache.damaged_packs() == set()


def test_damage_makes_create_read_the_files_that_use_it(cache: Cache) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 120, 5, 5)), indexed_in=None)
    cache.start_files()
    cache.remember_file(b"a", 1, 1, 1, 1, chunk_id(7) + chunk_id(1))
    cache.remember_file(b"b", 1, 1, 1, 1, chunk_id(2))
    cache.commit_files("snapshot-1")
    cache.mark_damaged([(chunk_id(1), PACK_A)])
    assert cache.lookup_file(b"a", 1, 1, 1, 1) is None
    assert cache.lookup_file(b"b", 1, 1, 1, 1) == (chunk_id(2), True)


def test_the_prune_keeps_as_many_copies_as_a_chunk_needs(cache: Cache) -> None:
    """The manifest's chunks are kept twice, other chunks once; copies of a kept chunk in a
    pack that keeps nothing are named with the kept copies that must check first."""
    cache.add_pack(pack(PACK_A, (1, 10, 100, 100), (2, 110, 100, 100)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (1, 10, 100, 100)), indexed_in=None)
    cache.add_pack(pack(PACK_C, (1, 10, 100, 100), (2, 110, 100, 100)), indexed_in=None)
    cache.start_live()
    cache.add_live([chunk_id(1)], copies=2)
    cache.add_live([chunk_id(2)])
    cache.hold_live()
    assert sorted(cache.pack_usage()) == [(PACK_A, 200, 200), (PACK_B, 100, 100), (PACK_C, 0, 200)]
    assert cache.copies_elsewhere([PACK_C]) == {
        PACK_A: [BlobRecord(chunk_id(1), 10, 100, 100), BlobRecord(chunk_id(2), 110, 100, 100)],
        PACK_B: [BlobRecord(chunk_id(1), 10, 100, 100)],
    }
    cache.mark_damaged([(chunk_id(1), PACK_B)])
    cache.hold_live()
    assert sorted(cache.pack_usage()) == [(PACK_A, 200, 200), (PACK_B, 0, 100), (PACK_C, 100, 200)]


def test_a_file_is_known_only_while_nothing_about_it_changed(cache: Cache) -> None:
    chunks = chunk_id(1) + chunk_id(2)
    cache.start_files()
    cache.remember_file(b"etc/app.conf", 10, 111, 222, 333, chunks)
    assert cache.lookup_file(b"etc/app.conf", 10, 111, 222, 333) is None  # not committed yet
    cache.commit_files("snapshot-1")
    assert cache.get_meta("files_snapshot") == "snapshot-1"
    assert cache.lookup_file(b"etc/app.conf", 10, 111, 222, 333) == (chunks, True)
    for changed in [
        (11, 111, 222, 333),
        (10, 112, 222, 333),
        (10, 111, 223, 333),
        (10, 111, 222, 334),
    ]:
        assert cache.lookup_file(b"etc/app.conf", *changed) is None
    cache.start_files()
    cache.commit_files("snapshot-2")  # the next run saw no file: none is known any more
    assert cache.lookup_file(b"etc/app.conf", 10, 111, 222, 333) is None
    cache.start_files()
    cache.remember_file(b"x", 1, 1, 1, 1, chunks)
    cache.commit_files("snapshot-3")
    cache.forget_files()
    assert cache.lookup_file(b"x", 1, 1, 1, 1) is None
    assert cache.get_meta("files_snapshot") is None


def test_a_cache_of_another_schema_is_thrown_away(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    cache = Cache(path)
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400)), indexed_in=None)
    cache.set_meta("schema", "0")
    cache.close()
    reopened = Cache(path)
    try:
        assert reopened.pack_names() == set()
        assert reopened.get_meta("schema") != "0"
    finally:
        reopened.close()


def test_the_plan_locates_every_chunk_and_names_files_with_a_missing_one(
    cache: Cache, tmp_path: Path
) -> None:
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 110, 50, 300)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (3, 10, 60, 200)), indexed_in=None)
    plan = RestorePlan(tmp_path / "plan.sqlite")
    try:
        plan.want(b"whole", [chunk_id(1), chunk_id(3), chunk_id(2)])
        plan.want(b"holed", [chunk_id(2), chunk_id(9), chunk_id(1)])  # chunk 9 is in no pack
        plan.want(b"twice", [chunk_id(1), chunk_id(1)])
        plan.add_created(b"whole", WHOLE)
        plan.commit()
        assert plan.locate(cache.path) == [b"holed"]
        assert sorted(plan.packs()) == [
            (PACK_A, ("lzma", "aes-siv")),
            (PACK_B, ("lzma", "aes-siv")),
        ]
        places_a = {(record.chunk_id, path, at) for record, path, at, _ in plan.places(PACK_A)}
        assert places_a == {
            (chunk_id(1), b"whole", 0),
            (chunk_id(2), b"whole", 600),
            (chunk_id(2), b"holed", 0),  # the chunks before the missing one
            (chunk_id(1), b"twice", 0),
            (chunk_id(1), b"twice", 400),
        }
        assert [(r.chunk_id, path, at) for r, path, at, _ in plan.places(PACK_B)] == [
            (chunk_id(3), b"whole", 400)
        ]
        # Each place carries the inode restore made for its file, to check before writing.
        assert {made for _, path, _, made in plan.places(PACK_A) if path == b"whole"} == {WHOLE}
        assert {made for _, path, _, made in plan.places(PACK_A) if path != b"whole"} == {None}
        offsets = [record.offset for record, _, _, _ in plan.places(PACK_A)]
        assert offsets == sorted(offsets)
    finally:
        plan.close()


WHOLE = Inode(dev=7, ino=1234, uid=0, kind=stat.S_IFREG)


@pytest.mark.parametrize("damaged", [False, True])
def test_the_plan_locates_each_chunk_from_one_copy(
    cache: Cache, tmp_path: Path, damaged: bool
) -> None:
    """One place per chunk, from its first copy: the one known first, unless it is damaged."""
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400), (2, 110, 50, 300)), indexed_in=None)
    cache.add_pack(pack(PACK_C, (2, 10, 50, 300), (1, 60, 100, 400)), indexed_in=None)
    if damaged:
        cache.mark_damaged([(chunk_id(1), PACK_A)])
    plan = RestorePlan(tmp_path / "plan.sqlite")
    try:
        plan.want(b"f", [chunk_id(1), chunk_id(2)])
        plan.commit()
        assert plan.locate(cache.path) == []
        places = sorted(
            (pack, record.chunk_id, at)
            for pack in (PACK_A, PACK_C)
            for record, _, at, _ in plan.places(pack)
        )
        first = PACK_C if damaged else PACK_A
        assert places == sorted([(first, chunk_id(1), 0), (PACK_A, chunk_id(2), 400)])
    finally:
        plan.close()


def test_restore_plan_records_the_inodes_restore_made(tmp_path: Path) -> None:
    plan = RestorePlan(tmp_path / "plan.sqlite")
    try:
        plan.add_created(b"dir", Inode(7, 11, 0, stat.S_IFDIR))
        plan.add_created(b"dir/file", WHOLE)
        assert plan.created(b"dir") == Inode(7, 11, 0, stat.S_IFDIR)
        assert plan.created(b"dir/file") == WHOLE
        assert plan.created(b"dir/other") is None
    finally:
        plan.close()


def test_restore_plan_keeps_late_entries_and_unselected_ones(tmp_path: Path) -> None:
    plan = RestorePlan(tmp_path / "plan.sqlite")
    try:
        for path in (b".", b"dir", b"dir/file"):
            plan.add_late(path, b"line of " + path)
        plan.add_created(b"dir/file", Inode(1, 2, 3, stat.S_IFREG))
        assert plan.late_count == 3
        assert list(plan.late_entries()) == [
            (b"line of dir/file", Inode(1, 2, 3, stat.S_IFREG)),
            (b"line of dir", None),
            (b"line of .", None),
        ]
        plan.add_unselected(b"other/first-name", b"entry line")
        assert plan.unselected(b"other/first-name") == b"entry line"
        assert plan.unselected(b"nothing") is None
    finally:
        plan.close()


def test_chunk_set(tmp_path: Path) -> None:
    good = ChunkSet(tmp_path / "good.sqlite")
    try:
        ids = [os.urandom(32) for _ in range(50)]
        good.add(ids[:40])
        good.add(ids[:10])
        assert all(chunk in good for chunk in ids[:40])
        assert not any(chunk in good for chunk in ids[40:])
    finally:
        good.close()


def test_a_cache_another_process_writes_to_is_locked_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds the database past the busy timeout: exit code 7, naming the cache.
    The writer is a second connection, as another spare process would hold it."""
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.2)
    first = Cache(tmp_path / "cache.sqlite")
    second = Cache(tmp_path / "cache.sqlite")
    try:
        first.begin()
        first.add_index("held")
        with pytest.raises(Locked, match=r"another spare run is using the local cache .*locked"):
            second.add_index("waits")
        first.commit()
        second.add_index("waits")
        assert second.index_names() == {"held", "waits"}
    finally:
        first.close()
        second.close()


def test_other_sqlite_errors_stay_bugs(cache: Cache) -> None:
    """Only what the host refuses is translated: a wrong statement still crashes loudly."""
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        cache.db.execute("SELEKT 1")


@pytest.mark.parametrize(
    "garbage", [b"not a database at all" * 300, b"SQLite format 3\0" + bytes(4000)]
)
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, garbage: bytes) -> None:
    """A cache file damaged by the disk is removed and started afresh, never a traceback: it is
    all rebuilt from the bucket."""
    path = tmp_path / "cache.sqlite"
    path.write_bytes(garbage)
    cache = Cache(path)
    try:
        cache.add_pack(pack(PACK_A, (1, 10, 100, 400)), indexed_in=None)
        assert cache.pack_names() == {PACK_A}
    finally:
        cache.close()


def test_the_files_of_the_previous_run_leave_the_file_on_close(tmp_path: Path) -> None:
    """A nightly run replaces every file row: the cache must not keep both runs' worth."""
    path = tmp_path / "cache.sqlite"
    cache = Cache(path)
    for run in range(3):
        cache.start_files()
        for n in range(20_000):
            cache.remember_file(b"dir/file-%d" % n, n, run, run, n, chunk_id(n))
        cache.commit_files(f"snapshot-{run}")
        cache.close()
        if run == 0:
            one_run = path.stat().st_size
        cache = Cache(path)
    assert cache.lookup_file(b"dir/file-7", 7, 2, 2, 7) == (chunk_id(7), True)
    assert cache.lookup_file(b"dir/file-7", 7, 1, 1, 7) is None
    cache.close()
    assert path.stat().st_size < one_run * 1.2


def test_chunk_copies_follow_their_pack_by_name(cache: Cache) -> None:
    """Copies name their pack by number: removing a pack and adding others keeps each copy
    with the pack it is in."""
    cache.add_pack(pack(PACK_A, (1, 10, 100, 400)), indexed_in=None)
    cache.add_pack(pack(PACK_B, (1, 20, 100, 400), (2, 120, 50, 200)), indexed_in=None)
    cache.remove_packs([PACK_A])
    cache.add_pack(pack("cc" * 32, (3, 10, 70, 300)), indexed_in=None)
    assert [where.pack for where in cache.locations(chunk_id(1))] == [PACK_B]
    assert [(where.pack, where.offset) for where in cache.locations(chunk_id(3))] == [
        ("cc" * 32, 10)
    ]
    assert cache.pack_info(PACK_B).blobs == (
        BlobRecord(chunk_id(1), 20, 100, 400),
        BlobRecord(chunk_id(2), 120, 50, 200),
    )


def test_files_are_looked_up_in_one_pass_in_the_walk_order(tmp_path: Path) -> None:
    """The walk visits parents before children, names sorted as bytes: 'a/b' before 'a.b'
    (which sorts first as bytes). Lookups in that order find every unchanged file."""
    cache = Cache(tmp_path / "cache.sqlite")
    walk_order = [b"a", b"a/b", b"a/b/c", b"a/b.d", b"a.b", b"a0", b"b", b"b/\xff"]
    cache.start_files()
    for n, path in enumerate(walk_order):
        cache.remember_file(path, n, n, n, n, chunk_id(n))
    cache.commit_files("snapshot-1")
    cache.start_files()
    for n, path in enumerate(walk_order):
        if n != 2:  # a file gone since: the others are found all the same
            assert cache.lookup_file(path, n, n, n, n) == (chunk_id(n), True)
    assert cache.lookup_file(b"a/b", 1, 1, 1, 1) is None  # out of order: read again, not wrong
    cache.start_files()
    assert cache.lookup_file(b"a.b", 4, 4, 4, 4) == (chunk_id(4), True)
    assert cache.lookup_file(b"a0", 5, 9, 5, 5) is None  # changed
    cache.close()


def test_a_file_without_extended_attributes_is_remembered_so(cache: Cache) -> None:
    cache.start_files()
    cache.remember_file(b"plain", 1, 1, 1, 1, chunk_id(1), xattrs=False)
    cache.remember_file(b"with-acl", 1, 1, 1, 2, chunk_id(2), xattrs=True)
    cache.commit_files("snapshot-1")
    cache.start_files()
    assert cache.lookup_file(b"plain", 1, 1, 1, 1) == (chunk_id(1), False)
    assert cache.lookup_file(b"with-acl", 1, 1, 1, 2) == (chunk_id(2), True)
