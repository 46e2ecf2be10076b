"""The restore target: nothing in a backup reaches outside it, no symlink is followed, and an
entry someone else put in the place of one restore made is neither written to nor changed.

The swaps below are what a user who can write to the target does between restore's passes; the
end-to-end tests (``e2e/test_restore_hostile_user.py``) do them as another user, for real.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from spare.commands.restore_target import Target, split
from spare.errors import EntryReplaced, RepositoryDamaged
from spare.repository import manifest as mf
from spare.repository.manifest import Entry
from spare.repository.scratch import RestorePlan

IS_ROOT = os.geteuid() == 0
NOBODY = 65534
OUTSIDE_MODE = 0o755
OUTSIDE_MTIME_NS = 1_500_000_000_000_000_000


def entry(path: bytes, kind: str = mf.FILE, **fields: object) -> Entry:
    values: dict[str, object] = {"mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 10**18}
    return Entry(path=path, type=kind, **{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [b"/etc/passwd", b"../up", b"a/../../up", b"a//b", b"a/./b", b"", b"a/\0b", b"x" * 256],
)
def test_unsafe_paths_are_refused(path: bytes) -> None:
    with pytest.raises(RepositoryDamaged, match="unsafe path"):
        split(path)


def test_split() -> None:
    assert split(b"a/b/c") == (b"a/b", b"c")
    assert split(b"c") == (b".", b"c")


@pytest.fixture
def plan(tmp_path: Path) -> Iterator[RestorePlan]:
    plan = RestorePlan(tmp_path / "plan.sqlite")
    try:
        yield plan
    finally:
        plan.close()


@pytest.fixture
def target(tmp_path: Path, plan: RestorePlan) -> Iterator[Target]:
    root = tmp_path / "target"
    root.mkdir()
    target = Target(os.open(root, os.O_RDONLY | os.O_DIRECTORY), bytes(root), plan)
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the target, as an attacker would like restore to write to or chmod."""
    path = tmp_path / "outside"
    path.write_bytes(b"#!/bin/sh\necho outside\n")
    path.chmod(OUTSIDE_MODE)
    os.utime(path, ns=(OUTSIDE_MTIME_NS, OUTSIDE_MTIME_NS))
    return path


def assert_untouched(outside: Path) -> None:
    st = outside.stat()
    assert outside.read_bytes() == b"#!/bin/sh\necho outside\n"
    assert stat.S_IMODE(st.st_mode) == OUTSIDE_MODE  # above all, not setuid
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert st.st_mtime_ns == OUTSIDE_MTIME_NS


def here(target: Target, relative: str) -> Path:
    return Path(os.fsdecode(target.root)) / relative


def test_entries_are_created_and_written_below_the_root(target: Target, plan: RestorePlan) -> None:
    root = Path(os.fsdecode(target.root))
    assert target.create(entry(b"dir", mf.DIRECTORY), devices=False)
    assert target.create(entry(b"dir/file", size=10), devices=False)
    target.write(b"dir/file", b"abc", 4, plan.created(b"dir/file"))
    assert (root / "dir" / "file").read_bytes() == b"\0\0\0\0abc\0\0\0"
    assert target.create(entry(b"dir/link", mf.SYMLINK, target=b"/etc/passwd"), devices=False)
    assert os.readlink(root / "dir" / "link") == "/etc/passwd"
    assert target.create(entry(b"dir/hard", link=b"dir/file"), devices=False)
    assert (root / "dir" / "hard").stat().st_ino == (root / "dir" / "file").stat().st_ino
    assert target.display(b"dir/file") == str(root / "dir" / "file")


def test_devices_only_when_allowed(target: Target) -> None:
    assert not target.create(entry(b"null", mf.CHAR_DEVICE, rdev=os.makedev(1, 3)), devices=False)


def test_a_symlink_is_never_followed(target: Target, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target.create(entry(b"escape", mf.SYMLINK, target=str(outside).encode()), devices=False)
    with pytest.raises(RepositoryDamaged, match="not a directory it restored"):
        target.create(entry(b"escape/file"), devices=False)
    assert list(outside.iterdir()) == []


def test_an_entry_listed_twice_is_damage(target: Target) -> None:
    target.create(entry(b"file"), devices=False)
    with pytest.raises(RepositoryDamaged, match="twice"):
        target.create(entry(b"file"), devices=False)


def test_metadata_is_applied(target: Target, plan: RestorePlan) -> None:
    root = Path(os.fsdecode(target.root))
    target.create(entry(b"file"), devices=False)
    target.apply(
        entry(b"file", mode=0o640, mtime_ns=1_500_000_000_123_456_789),
        plan.created(b"file"),
        0,
        0,
        chown=False,
    )
    st = (root / "file").stat()
    assert st.st_mode & 0o7777 == 0o640
    assert st.st_mtime_ns == 1_500_000_000_123_456_789


def test_every_inode_restore_makes_is_recorded(target: Target, plan: RestorePlan) -> None:
    made = {
        b"dir": entry(b"dir", mf.DIRECTORY),
        b"dir/file": entry(b"dir/file", size=3),
        b"dir/link": entry(b"dir/link", mf.SYMLINK, target=b"file"),
        b"dir/fifo": entry(b"dir/fifo", mf.FIFO),
    }
    for item in made.values():
        target.create(item, devices=False)
    target.create(entry(b"hard", link=b"dir/file"), devices=False)
    for path in made:
        st = os.lstat(here(target, os.fsdecode(path)))
        recorded = plan.created(path)
        assert recorded is not None
        assert (recorded.dev, recorded.ino, recorded.uid) == (st.st_dev, st.st_ino, st.st_uid)
        assert recorded.kind == stat.S_IFMT(st.st_mode)
    assert plan.created(b"hard") is None  # a second name of an inode recorded already


# --------------------------------------------------------------------------------------------
# Entries swapped between the passes
# --------------------------------------------------------------------------------------------


def swap_for_symlink(target: Target, relative: str, to: Path) -> None:
    path = here(target, relative)
    path.unlink()
    path.symlink_to(to)


def swap_for_fifo(target: Target, relative: str) -> None:
    path = here(target, relative)
    path.unlink()
    os.mkfifo(path)


def test_a_file_swapped_for_a_symlink_is_neither_followed_nor_changed(
    target: Target, plan: RestorePlan, outside: Path
) -> None:
    target.create(entry(b"tool", size=5), devices=False)
    swap_for_symlink(target, "tool", outside)
    with pytest.raises(EntryReplaced, match="tool: replaced") as caught:
        target.write(b"tool", b"pwned", 0, plan.created(b"tool"))
    assert caught.value.path == b"tool"
    with pytest.raises(EntryReplaced, match="tool: replaced"):
        target.apply(entry(b"tool", mode=0o4755), plan.created(b"tool"), 0, 0, chown=IS_ROOT)
    assert_untouched(outside)
    assert here(target, "tool").is_symlink()


def test_a_file_swapped_for_a_hardlink_of_another_file_is_not_changed(
    target: Target, plan: RestorePlan, outside: Path
) -> None:
    """O_NOFOLLOW alone does not catch a hardlink: the inode restore made does."""
    target.create(entry(b"tool", size=5), devices=False)
    here(target, "tool").unlink()
    os.link(outside, here(target, "tool"))
    with pytest.raises(EntryReplaced):
        target.write(b"tool", b"pwned", 0, plan.created(b"tool"))
    with pytest.raises(EntryReplaced):
        target.apply(entry(b"tool", mode=0o4755), plan.created(b"tool"), 0, 0, chown=IS_ROOT)
    assert_untouched(outside)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("reader", [False, True], ids=["no reader", "a reader"])
def test_a_file_swapped_for_a_fifo_does_not_block(
    target: Target, plan: RestorePlan, reader: bool
) -> None:
    """Without a reader, opening a FIFO to write would wait for one forever; with one (the
    attacker's), the data would go to it."""
    target.create(entry(b"data", size=5), devices=False)
    swap_for_fifo(target, "data")
    reading = os.open(here(target, "data"), os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        with pytest.raises(EntryReplaced, match="data: replaced"):
            target.write(b"data", b"secret", 0, plan.created(b"data"))
        with pytest.raises(EntryReplaced, match="data: replaced"):
            target.apply(entry(b"data", mode=0o644), plan.created(b"data"), 0, 0, chown=False)
        if reading is not None:
            assert os.read(reading, 100) == b""  # no writer, nothing written
    finally:
        if reading is not None:
            os.close(reading)


def test_a_directory_swapped_for_a_symlink_is_not_traversed(
    target: Target, plan: RestorePlan, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_bytes(b"not restore's\n")
    target.create(entry(b"dir", mf.DIRECTORY), devices=False)
    target.create(entry(b"dir/file", size=5), devices=False)
    target.forget(b"dir")  # as if evicted from the cache, or in another thread
    here(target, "dir").rename(here(target, "dir.moved"))
    here(target, "dir").symlink_to(elsewhere)
    with pytest.raises(EntryReplaced, match="dir: replaced") as caught:
        target.create(entry(b"dir/new"), devices=False)
    assert caught.value.path == b"dir"
    with pytest.raises(EntryReplaced, match="dir: replaced"):
        target.write(b"dir/file", b"pwned", 0, plan.created(b"dir/file"))
    with pytest.raises(EntryReplaced, match="dir: replaced"):
        target.apply(entry(b"dir/file", mode=0o4755), plan.created(b"dir/file"), 0, 0, chown=False)
    assert sorted(os.listdir(elsewhere)) == ["file"]
    assert (elsewhere / "file").read_bytes() == b"not restore's\n"


def test_a_directory_swapped_for_another_directory_is_not_traversed(
    target: Target, plan: RestorePlan
) -> None:
    target.create(entry(b"dir", mf.DIRECTORY), devices=False)
    target.create(entry(b"dir/file", size=5), devices=False)
    target.forget(b"dir")
    here(target, "dir").rename(here(target, "dir.moved"))
    here(target, "dir").mkdir()
    (here(target, "dir") / "file").write_bytes(b"12345")
    with pytest.raises(EntryReplaced, match="dir: replaced"):
        target.write(b"dir/file", b"pwned", 0, plan.created(b"dir/file"))
    assert (here(target, "dir") / "file").read_bytes() == b"12345"


@pytest.mark.skipif(not IS_ROOT, reason="needs root: makes a file of another user")
def test_a_file_of_another_user_with_the_same_inode_number_is_not_taken_for_restore_s(
    target: Target, plan: RestorePlan
) -> None:
    """A file system may give a removed file's inode number to the next file made: another
    user's file with restore's inode number is still not restore's."""
    target.create(entry(b"tool", size=5), devices=False)
    os.chown(here(target, "tool"), NOBODY, NOBODY)  # what a reused inode number would look like
    with pytest.raises(EntryReplaced):
        target.write(b"tool", b"pwned", 0, plan.created(b"tool"))
    with pytest.raises(EntryReplaced):
        target.apply(entry(b"tool", mode=0o4755), plan.created(b"tool"), 0, 0, chown=True)
    assert stat.S_IMODE(here(target, "tool").stat().st_mode) == 0o600


def test_a_symlink_gets_its_metadata_without_its_target_changing(
    target: Target, plan: RestorePlan, outside: Path
) -> None:
    target.create(entry(b"link", mf.SYMLINK, target=os.fsencode(outside)), devices=False)
    owner = NOBODY if IS_ROOT else os.geteuid()
    target.apply(
        entry(b"link", mf.SYMLINK, mtime_ns=1_234_567_890_123_456_789),
        plan.created(b"link"),
        owner,
        owner,
        chown=IS_ROOT,
    )
    st = os.lstat(here(target, "link"))
    assert st.st_mtime_ns == 1_234_567_890_123_456_789
    assert (st.st_uid, st.st_gid) == (owner, owner)
    assert_untouched(outside)


@pytest.mark.timeout(20)
def test_a_fifo_gets_its_metadata_without_blocking(target: Target, plan: RestorePlan) -> None:
    target.create(entry(b"fifo", mf.FIFO), devices=False)
    target.apply(
        entry(b"fifo", mf.FIFO, mode=0o640, mtime_ns=OUTSIDE_MTIME_NS),
        plan.created(b"fifo"),
        0,
        0,
        chown=False,
    )
    st = os.lstat(here(target, "fifo"))
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o640, OUTSIDE_MTIME_NS)


@pytest.mark.skipif(not IS_ROOT, reason="needs root: makes a device node")
def test_a_device_gets_its_metadata_through_a_descriptor(target: Target, plan: RestorePlan) -> None:
    target.create(entry(b"null", mf.CHAR_DEVICE, rdev=os.makedev(1, 3)), devices=True)
    target.apply(
        entry(b"null", mf.CHAR_DEVICE, mode=0o666, mtime_ns=OUTSIDE_MTIME_NS),
        plan.created(b"null"),
        NOBODY,
        NOBODY,
        chown=True,
    )
    st = os.lstat(here(target, "null"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns) == (
        0o666,
        NOBODY,
        OUTSIDE_MTIME_NS,
    )
