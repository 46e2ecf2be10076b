"""A hostile file:// bucket directory can neither hurt the host nor make spare read a lie.

Whoever can write into the bucket directory plants symlinks and FIFOs there, after a real
backup: spare must not write, read or delete through them, must not hang on them, and must say
what is wrong with its documented exit code. What spare stores there is private to its user.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from support.buckets import PACKS, FileBackend, largest
from support.harness import (
    EXIT_DAMAGED,
    EXIT_VERIFY_FAILED,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
)

from spare.repository.objects import CONFIG_KEYS
from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(240)

#: A run that needs longer than this on a small tree hangs (on a FIFO, say).
NO_HANG = 60


@pytest.fixture
def store(tmp_path: Path) -> FileBackend:
    return FileBackend(tmp_path / "store", "bucket")


@pytest.fixture
def env(store: FileBackend, password: str) -> dict[str, str]:
    return {**store.env, "SPARE_PASSWORD": password}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Files of random bytes in a few packs; the largest pack holds file data only."""
    tree = tmp_path / "source"
    for index in range(3):
        write_file(tree / f"data-{index}.bin", os.urandom(3 << 20), 0o644)
    write_file(tree / "notes.txt", b"hello\n", 0o644)
    return tree


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, source: Path) -> Path:
    assert_ok(run_spare("create", "--path", source, env=env))
    return source


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the bucket holding a file: where the planted symlinks lead."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    (directory / "keep-me").write_bytes(b"the host's own file\n")
    return directory


def contents(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def damaged_files(stderr: str) -> list[str]:
    prefix = "spare: damaged: "
    return [line[len(prefix) :] for line in stderr.splitlines() if line.startswith(prefix)]


def test_create_never_writes_or_deletes_through_a_symlinked_directory(
    store: FileBackend,
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    elsewhere: Path,
) -> None:
    """``snapshots -> elsewhere``, which holds the real snapshot root: the new root is not
    written there, the old one is not deleted there, and the run says why it stops."""
    for root in (store.path / "snapshots").iterdir():
        shutil.move(root, elsewhere / root.name)
    (store.path / "snapshots").rmdir()
    (store.path / "snapshots").symlink_to(elsewhere)
    before = contents(elsewhere)
    write_file(backed_up / "new.txt", b"changed since\n", 0o644)

    result = run_spare("create", "--path", backed_up, env=env, timeout=NO_HANG)
    line = assert_error(result, EXIT_DAMAGED)
    assert "'snapshots' is a symlink" in line and "remove it" in line, line
    assert contents(elsewhere) == before
    assert (store.path / "snapshots").is_symlink()


def test_reads_never_go_through_a_symlinked_directory(
    store: FileBackend,
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
) -> None:
    """``packs -> elsewhere``, which holds the real packs: verify and restore do not read
    them; they stop and name the symlink."""
    moved = tmp_path / "moved-packs"
    shutil.move(store.path / "packs", moved)
    (store.path / "packs").symlink_to(moved)

    for args in (["verify"], ["restore", "--path", str(tmp_path / "restored")]):
        line = assert_error(run_spare(*args, env=env, timeout=NO_HANG), EXIT_DAMAGED)
        assert "'packs' is a symlink" in line, line
    assert not (tmp_path / "restored").exists()
    assert (store.path / "packs").is_symlink()


def test_a_fifo_named_as_a_pack_hangs_nothing(
    store: FileBackend,
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
) -> None:
    """A FIFO where a pack was: verify and restore finish and report the files it held."""
    key = largest(store.objects(), PACKS)
    store.delete(key)
    os.mkfifo(store.path / key)

    verify = run_spare("verify", env=env, timeout=NO_HANG)
    assert verify.returncode == EXIT_VERIFY_FAILED, describe(verify)
    assert "Traceback" not in verify.stderr
    named = damaged_files(verify.stderr)
    assert named and all(name.startswith("data-") for name in named), named

    target = tmp_path / "restored"
    restore = run_spare("restore", "--path", target, env=env, timeout=NO_HANG)
    assert restore.returncode == EXIT_VERIFY_FAILED, describe(restore)
    assert sorted(damaged_files(restore.stderr)) == sorted(str(target / name) for name in named)
    assert (target / "notes.txt").read_bytes() == b"hello\n"


def test_a_config_symlinked_to_a_file_elsewhere_is_never_read(
    store: FileBackend,
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
) -> None:
    """``config -> elsewhere/config`` (a real config, even this bucket's own) is not read: a new
    host finds the config gone; this host uses the one it remembers, and create stores it again
    in place of the symlinks, leaving what they pointed at alone."""
    elsewhere = tmp_path / "elsewhere-config"
    elsewhere.mkdir()
    for name in CONFIG_KEYS:
        shutil.move(store.path / name, elsewhere / name)
        (store.path / name).symlink_to(elsewhere / name)
    kept = {path.name: path.read_bytes() for path in elsewhere.iterdir()}
    before = store.objects()

    stranger = SpareRunner(tmp_path / "stranger-cache")
    restore = stranger("restore", "--path", tmp_path / "restored", env=env, timeout=NO_HANG)
    assert "config" in assert_error(restore, EXIT_DAMAGED)
    assert not (tmp_path / "restored").exists()
    assert_error(stranger("create", "--path", backed_up, env=env), EXIT_DAMAGED)
    assert store.objects() == before

    assert_ok(run_spare("create", "--path", backed_up, env=env))
    for name in CONFIG_KEYS:
        assert stat.S_ISREG(os.lstat(store.path / name).st_mode)
    assert {path.name: path.read_bytes() for path in elsewhere.iterdir()} == kept
    assert_ok(stranger("restore", "--path", tmp_path / "restored", env=env, timeout=NO_HANG))


def test_a_new_bucket_is_private(
    store: FileBackend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """With umask 022, every directory spare makes is 0700 and every object 0600: no other
    user can read ``config`` and guess the password offline."""
    umask_022 = ["sh", "-c", 'umask 022 && exec "$0" "$@"']
    assert_ok(run_spare("create", "--path", source, env=env, prefix=umask_022))
    modes = {
        path.relative_to(store.root).as_posix(): stat.filemode(path.lstat().st_mode)
        for path in [store.path, *store.path.rglob("*")]
    }
    assert "bucket/config" in modes
    wrong = {name: mode for name, mode in modes.items() if mode not in ("drwx------", "-rw-------")}
    assert wrong == {}, wrong
