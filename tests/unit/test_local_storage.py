"""The file:// storage (spare_plugins.local_storage) in a hostile bucket directory.

Whoever can write into the bucket directory plants symlinks, FIFOs and devices there: spare
never follows, reads, writes or deletes through them, and what it creates is private.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from spare.errors import ObjectExists, ObjectNotFound, StorageError, StorageUnreachable
from spare.plugins import Plugins
from spare.storage import Storage, StorageLocation

T = TypeVar("T")


@pytest.fixture
def endpoint(tmp_path: Path) -> Path:
    """The endpoint directory: it exists, as a mounted backup disk does."""
    directory = tmp_path / "store"
    directory.mkdir()
    return directory


@pytest.fixture
def bucket(endpoint: Path) -> Storage:
    storage = file_storage(endpoint, "bucket")
    storage.ensure_bucket()
    return storage


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the bucket with a file in it: what a planted symlink points to."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "x").write_bytes(b"not the bucket's")
    return directory


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Sets the process umask for the test; the old one is put back afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def file_storage(endpoint: Path, name: str) -> Storage:
    return Plugins().storages.get("file")(StorageLocation("file", str(endpoint), name))


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry below ``root``: file contents, or the kind of anything else."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = f"symlink to {os.readlink(path)}"
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_bytes()
        else:
            found[path.relative_to(root).as_posix()] = stat.filemode(path.lstat().st_mode)
    return found


def within(seconds: float, call: Callable[[], T]) -> T:
    """Run ``call`` in a thread; fail (rather than hang the suite) if it blocks."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for {seconds} s"
    if failure:
        raise failure[0]
    return outcome[0]


# -- a symlink for a directory ----------------------------------------------------------------
def test_no_write_through_a_symlinked_directory(
    bucket: Storage, endpoint: Path, outside: Path
) -> None:
    (endpoint / "bucket" / "snapshots").symlink_to(outside)
    before = tree(outside)
    for write in (bucket.put, bucket.create):
        with pytest.raises(StorageError, match="'snapshots' is a symlink, not a directory"):
            write("snapshots/x", b"root")
    assert tree(outside) == before


def test_no_read_list_or_delete_through_a_symlinked_directory(
    bucket: Storage, endpoint: Path, outside: Path
) -> None:
    bucket.put("packs/aa/kept", b"pack")
    (endpoint / "bucket" / "packs" / "bb").symlink_to(outside)
    before = tree(outside)
    with pytest.raises(ObjectNotFound, match="'packs/bb' is a symlink"):
        bucket.get("packs/bb/x")
    assert [info.key for info in bucket.list()] == ["packs/aa/kept"]
    assert [info.key for info in bucket.list("packs/")] == ["packs/aa/kept"]
    with pytest.raises(ObjectNotFound, match="'packs/bb' is a symlink"):
        bucket.list("packs/bb/")
    bucket.delete(["packs/bb/x", "packs/aa/kept"])
    assert tree(outside) == before
    assert list(bucket.list()) == []


def test_a_regular_file_for_a_directory_is_refused(bucket: Storage, endpoint: Path) -> None:
    (endpoint / "bucket" / "index").write_bytes(b"junk")
    with pytest.raises(StorageError, match="'index' is a regular file, not a directory"):
        bucket.put("index/abc", b"index")
    with pytest.raises(ObjectNotFound):
        bucket.get("index/abc")
    with pytest.raises(ObjectNotFound, match="'index' is a regular file"):
        bucket.list("index/")


# -- a symlink, FIFO, device or directory for an object --------------------------------------
def test_an_object_that_is_a_symlink_is_never_read(
    bucket: Storage, endpoint: Path, outside: Path
) -> None:
    (endpoint / "bucket" / "config").symlink_to(outside / "x")
    with pytest.raises(ObjectNotFound, match="'config' is a symlink, not a regular file"):
        bucket.get("config")
    assert list(bucket.list()) == []


def test_create_refuses_a_name_taken_by_a_symlink(
    bucket: Storage, endpoint: Path, outside: Path
) -> None:
    (endpoint / "bucket" / "lock").symlink_to(outside / "x")
    with pytest.raises(StorageError, match="'lock' is a symlink") as refused:
        bucket.create("lock", b"holder")
    assert not isinstance(refused.value, ObjectExists)
    assert (outside / "x").read_bytes() == b"not the bucket's"


def test_put_and_delete_replace_a_symlink_not_its_target(
    bucket: Storage, endpoint: Path, outside: Path
) -> None:
    link = endpoint / "bucket" / "config"
    link.symlink_to(outside / "x")
    bucket.put("config", b"spare's")
    assert not link.is_symlink() and bucket.get("config") == b"spare's"
    link.unlink()
    link.symlink_to(outside / "x")
    bucket.delete(["config"])
    assert not link.is_symlink() and (outside / "x").read_bytes() == b"not the bucket's"


def test_a_fifo_named_as_an_object_blocks_nothing(bucket: Storage, endpoint: Path) -> None:
    bucket.put("packs/ab/good", b"pack")
    fifo = endpoint / "bucket" / "packs" / "ab" / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ObjectNotFound, match="'packs/ab/fifo' is a FIFO, not a regular file"):
        within(10, lambda: bucket.get("packs/ab/fifo"))
    assert [info.key for info in within(10, lambda: list(bucket.list()))] == ["packs/ab/good"]
    with pytest.raises(StorageError, match="FIFO"):
        within(10, lambda: bucket.create("packs/ab/fifo", b"x"))
    within(10, lambda: bucket.put("packs/ab/fifo", b"a pack"))  # renamed over, never opened
    assert bucket.get("packs/ab/fifo") == b"a pack"


def test_a_device_named_as_an_object_is_not_opened(bucket: Storage, endpoint: Path) -> None:
    try:
        os.mknod(endpoint / "bucket" / "config", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    with pytest.raises(ObjectNotFound, match="'config' is a character device"):
        bucket.get("config")
    assert list(bucket.list()) == []


def test_a_directory_named_as_an_object(bucket: Storage, endpoint: Path) -> None:
    (endpoint / "bucket" / "snapshots" / "abc").mkdir(parents=True)
    with pytest.raises(ObjectNotFound, match="is a directory, not a regular file"):
        bucket.get("snapshots/abc")
    with pytest.raises(StorageError, match="is a directory, not a regular file"):
        bucket.put("snapshots/abc", b"root")
    bucket.delete(["snapshots/abc"])
    assert (endpoint / "bucket" / "snapshots" / "abc").is_dir()


# -- the bucket directory and the endpoint ---------------------------------------------------
def test_the_bucket_directory_must_not_be_a_symlink(endpoint: Path, outside: Path) -> None:
    (endpoint / "bucket").symlink_to(outside)
    storage = file_storage(endpoint, "bucket")
    before = tree(outside)
    calls: list[Callable[[], object]] = [
        storage.ensure_bucket,
        lambda: storage.put("config", b"{}"),
        lambda: storage.get("x"),
        lambda: list(storage.list()),
        lambda: storage.delete(["x"]),
    ]
    for call in calls:
        with pytest.raises(StorageUnreachable, match=r"bucket directory .* is a symlink"):
            call()
    assert tree(outside) == before


def test_the_endpoint_may_be_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    storage = file_storage(tmp_path / "link", "bucket")
    storage.ensure_bucket()
    storage.put("packs/ab/cd", b"pack")
    assert (tmp_path / "real" / "bucket" / "packs" / "ab" / "cd").read_bytes() == b"pack"
    assert [info.key for info in storage.list()] == ["packs/ab/cd"]


def test_a_missing_bucket_is_empty(endpoint: Path) -> None:
    storage = file_storage(endpoint, "bucket")
    assert list(storage.list()) == []
    with pytest.raises(ObjectNotFound):
        storage.get("config")
    storage.delete(["config"])
    assert list(endpoint.iterdir()) == []


def test_a_missing_endpoint_is_refused_and_never_created(endpoint: Path) -> None:
    """An unmounted backup disk: nothing is written to the mount point's directory."""
    mount_point = endpoint / "mnt" / "backup"
    storage = file_storage(mount_point, "bucket")
    calls: list[Callable[[], object]] = [
        storage.ensure_bucket,
        lambda: storage.put("config", b"{}"),
        lambda: storage.create("lock", b"holder"),
        lambda: storage.get("config"),
        lambda: list(storage.list()),
        lambda: storage.delete(["config"]),
    ]
    for call in calls:
        with pytest.raises(StorageUnreachable, match=r"backup does not exist: is the disk mounted"):
            call()
    assert list(endpoint.iterdir()) == []


# -- what spare creates is private -----------------------------------------------------------
@pytest.mark.parametrize("mask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_directories_and_objects_are_private(
    mask: int, endpoint: Path, tmp_path: Path, umask: Callable[[int], None]
) -> None:
    umask(mask)
    storage = file_storage(endpoint, "bucket")
    storage.ensure_bucket()
    storage.put("snapshots/abc", b"root")
    storage.create("lock", b"holder")
    pack = tmp_path / "pack"
    pack.write_bytes(os.urandom(3 << 20))
    storage.put_file("packs/ab/cd", str(pack))
    bucket = endpoint / "bucket"
    modes = {
        path.relative_to(endpoint).as_posix(): stat.S_IMODE(path.lstat().st_mode)
        for path in [bucket, *bucket.rglob("*")]
    }
    assert modes == {
        "bucket": 0o700,
        "bucket/snapshots": 0o700,
        "bucket/snapshots/abc": 0o600,
        "bucket/lock": 0o600,
        "bucket/packs": 0o700,
        "bucket/packs/ab": 0o700,
        "bucket/packs/ab/cd": 0o600,
    }
