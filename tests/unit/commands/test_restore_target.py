"""The restore target: nothing in a backup reaches outside it, and no symlink is followed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spare.commands.restore_target import Target, split
from spare.errors import RepositoryDamaged
from spare.repository import manifest as mf
from spare.repository.manifest import Entry


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
def target(tmp_path: Path) -> Iterator[Target]:
    root = tmp_path / "target"
    root.mkdir()
    target = Target(bytes(root))
    try:
        yield target
    finally:
        target.close()


def test_entries_are_created_and_written_below_the_root(target: Target) -> None:
    root = Path(os.fsdecode(target.root))
    assert target.create(entry(b"dir", mf.DIRECTORY), devices=False)
    assert target.create(entry(b"dir/file", size=10), devices=False)
    target.write(b"dir/file", b"abc", 4)
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


def test_metadata_is_applied(target: Target) -> None:
    root = Path(os.fsdecode(target.root))
    target.create(entry(b"file"), devices=False)
    target.apply(entry(b"file", mode=0o640, mtime_ns=1_500_000_000_123_456_789), 0, 0, chown=False)
    st = (root / "file").stat()
    assert st.st_mode & 0o7777 == 0o640
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
