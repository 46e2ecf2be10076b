"""``restore --path``: opened once, never a symlink, never a directory another user controls."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spare.commands.restore_destination import Destination, open_destination
from spare.errors import TargetNotEmpty, UnsafeTarget

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


@contextmanager
def opened(path: Path, *, force: bool = False) -> Iterator[Destination]:
    destination = open_destination(str(path), force=force)
    try:
        yield destination
    finally:
        destination.close()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_missing_target_is_made_mode_0700_with_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "target"
    with umask(0), opened(target) as destination:
        assert not destination.exists
        assert not target.exists()  # made only once the backup says it is a directory
        fd = destination.take_directory()
        try:
            assert os.path.samestat(os.fstat(fd), target.stat())
        finally:
            os.close(fd)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    for parent in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(parent.stat().st_mode) == 0o755  # never writable by others


def test_the_directories_above_the_target_are_followed_as_named(tmp_path: Path) -> None:
    """They are the administrator's path; only the target itself must not be a symlink."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with opened(tmp_path / "link" / "target") as destination:
        os.close(destination.take_directory())
    assert (tmp_path / "real" / "target").is_dir()


def test_an_empty_directory_is_kept_open_whatever_happens_to_its_path(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    original = target.stat()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with opened(target) as destination:
        assert destination.exists
        target.rename(tmp_path / "moved")
        target.symlink_to(elsewhere)
        fd = destination.take_directory()
        try:
            assert os.path.samestat(os.fstat(fd), original)
        finally:
            os.close(fd)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("points_to", ["a directory", "nothing"])
def test_a_symlink_is_refused(tmp_path: Path, force: bool, points_to: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    if points_to == "a directory":
        elsewhere.mkdir()
    (tmp_path / "target").symlink_to(elsewhere)
    with pytest.raises(UnsafeTarget, match="is a symlink"):
        open_destination(str(tmp_path / "target"), force=force)
    assert not elsewhere.exists() or os.listdir(elsewhere) == []


def test_a_directory_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "precious").write_bytes(b"keep\n")
    with pytest.raises(TargetNotEmpty, match="is not empty"):
        open_destination(str(tmp_path / "target"), force=True)


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"keep\n")
    with pytest.raises(TargetNotEmpty, match="is not a directory"):
        open_destination(str(tmp_path / "target"), force=True)


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "target")
    with pytest.raises(TargetNotEmpty, match="is not a directory"):
        open_destination(str(tmp_path / "target"), force=True)


@pytest.mark.parametrize("appeared", ["a directory", "a symlink"])
def test_a_target_that_appears_before_restore_makes_it_is_refused(
    tmp_path: Path, appeared: str
) -> None:
    target = tmp_path / "target"
    with opened(target) as destination:
        if appeared == "a directory":
            target.mkdir()
        else:
            target.symlink_to(tmp_path)
        with pytest.raises(TargetNotEmpty, match="appeared"):
            destination.take_directory()


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the checks are root's")
@pytest.mark.parametrize(
    ("owner", "mode", "why"),
    [
        (NOBODY, 0o700, "belongs to uid 65534"),
        (0, 0o770, "writable by its group or by others"),
        (0, 0o1777, "writable by its group or by others"),
    ],
)
def test_as_root_a_directory_another_user_controls_is_refused_unless_forced(
    tmp_path: Path, owner: int, mode: int, why: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    os.chown(target, owner, owner)
    target.chmod(mode)
    with pytest.raises(UnsafeTarget, match=why):
        open_destination(str(target), force=False)
    with opened(target, force=True) as destination:
        assert destination.exists
