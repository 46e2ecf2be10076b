"""The storage contract of :class:`spare.storage.Storage`, as tests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from spare.errors import ObjectExists, ObjectNotFound
from spare.storage import Storage


class StorageContract:
    """Subclass and provide a ``storage`` fixture: a fresh bucket, ``ensure_bucket`` not called."""

    #: How many objects the listing test stores; above 1,000, S3 listings are paged.
    many = 1050

    @pytest.fixture
    def bucket(self, storage: Storage) -> Storage:
        storage.ensure_bucket()
        return storage

    def test_ensure_bucket_twice(self, storage: Storage) -> None:
        storage.ensure_bucket()
        storage.ensure_bucket()
        assert list(storage.list()) == []

    def test_put_then_get(self, bucket: Storage) -> None:
        data = os.urandom(100_000)
        bucket.put("packs/ab/cd", data)
        assert bucket.get("packs/ab/cd") == data

    def test_put_replaces(self, bucket: Storage) -> None:
        bucket.put("snapshots/x", b"old")
        bucket.put("snapshots/x", b"new contents")
        assert bucket.get("snapshots/x") == b"new contents"

    def test_empty_object(self, bucket: Storage) -> None:
        bucket.put("empty", b"")
        assert bucket.get("empty") == b""

    def test_ranged_get(self, bucket: Storage) -> None:
        data = bytes(range(256)) * 64
        bucket.put("packs/00/range", data)
        assert bucket.get("packs/00/range", 10, 20) == data[10:20]
        assert bucket.get("packs/00/range", 0, 1) == data[:1]
        assert bucket.get("packs/00/range", len(data) - 5, len(data)) == data[-5:]
        assert bucket.get("packs/00/range", len(data) - 5, len(data) + 100) == data[-5:]

    def test_ranged_get_past_the_end_is_empty(self, bucket: Storage) -> None:
        """A range that starts at or past the end is cut to nothing, even of an empty object:
        a truncated pack is damage that restore names, not a storage failure."""
        bucket.put("packs/00/short", b"0123456789")
        bucket.put("packs/00/empty", b"")
        assert bucket.get("packs/00/short", 10, 20) == b""
        assert bucket.get("packs/00/short", 50, 60) == b""
        assert bucket.get("packs/00/empty", 0, 11) == b""

    def test_get_missing(self, bucket: Storage) -> None:
        with pytest.raises(ObjectNotFound):
            bucket.get("nothing/here")

    def test_put_file(self, bucket: Storage, tmp_path: Path) -> None:
        data = os.urandom(3 << 20)
        path = tmp_path / "pack"
        path.write_bytes(data)
        bucket.put_file("packs/ff/file", str(path))
        assert bucket.get("packs/ff/file") == data
        assert path.read_bytes() == data  # the local file is left alone

    def test_create_refuses_existing(self, bucket: Storage) -> None:
        bucket.create("lock", b"first")
        with pytest.raises(ObjectExists):
            bucket.create("lock", b"second")
        assert bucket.get("lock") == b"first"

    def test_create_concurrent_has_one_winner(self, bucket: Storage) -> None:
        if not bucket.atomic_create:
            pytest.skip("this storage does not claim an atomic create")
        winners: list[int] = []
        losers: list[int] = []
        start = threading.Barrier(8)

        def contend(number: int) -> None:
            start.wait()
            try:
                bucket.create("lock", str(number).encode())
            except ObjectExists:
                losers.append(number)
            else:
                winners.append(number)

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1 and len(losers) == 7
        assert bucket.get("lock") == str(winners[0]).encode()

    def test_list_by_prefix(self, bucket: Storage) -> None:
        for key in ("config", "packs/aa/1", "packs/bb/2", "index/3", "snapshots/4"):
            bucket.put(key, key.encode())
        assert sorted(info.key for info in bucket.list("packs/")) == ["packs/aa/1", "packs/bb/2"]
        assert sorted(info.key for info in bucket.list()) == [
            "config",
            "index/3",
            "packs/aa/1",
            "packs/bb/2",
            "snapshots/4",
        ]
        assert {info.key: info.size for info in bucket.list("index/")} == {"index/3": 7}
        assert list(bucket.list("nothing/")) == []

    def test_list_and_delete_many(self, bucket: Storage) -> None:
        keys = [f"packs/{n % 256:02x}/{n:064x}" for n in range(self.many)]
        for key in keys:
            bucket.put(key, b"x")
        assert sorted(info.key for info in bucket.list("packs/")) == sorted(keys)
        bucket.delete(keys[:-1])
        assert [info.key for info in bucket.list()] == [keys[-1]]

    def test_delete_ignores_missing(self, bucket: Storage) -> None:
        bucket.put("a", b"1")
        bucket.delete(["a", "not-there"])
        bucket.delete([])
        assert list(bucket.list()) == []

    def test_listing_sees_other_writers(self, bucket: Storage) -> None:
        """No listing cache: what another client wrote is seen at once."""
        assert list(bucket.list("index/")) == []
        bucket.put("index/new", b"1")
        assert [info.key for info in bucket.list("index/")] == ["index/new"]
