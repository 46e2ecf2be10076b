"""What the host refuses (a full disk, an unusable cache, a read-only or forbidden restore target)
is one line and exit code 16, saying what to fix, and never costs what the bucket holds.

The file systems are real: small tmpfs mounts, read-only remounts and immutable directories
(``chattr +i``, or a read-only bind mount where the file system has no such attribute). They
need root; as another user these tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import EXIT_LOCAL, SpareRunner, assert_error, assert_ok

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(240)

Mount = Callable[..., Path]


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, check=False)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mounts a tmpfs of the given size (``read_only`` once mounted); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str, *, read_only: bool = False, name: str = "tiny") -> Path:
        where = tmp_path / name
        where.mkdir()
        done = run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", where)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        if read_only:
            done = run("mount", "-o", "remount,ro", where)
            assert done.returncode == 0, done.stderr
        return where

    yield mount
    for where in reversed(mounted):
        run("umount", where)


@contextlib.contextmanager
def frozen(directory: Path) -> Iterator[str]:
    """``directory`` made unwritable even for root: immutable, or a read-only bind mount of
    itself where its file system has no immutable attribute. Yields which of the two."""
    if os.geteuid() != 0:
        pytest.skip("making a directory unwritable for spare needs root")
    if run("chattr", "+i", directory).returncode == 0:
        try:
            yield "immutable"
        finally:
            run("chattr", "-i", directory)
        return
    done = run("mount", "--bind", directory, directory)
    if done.returncode != 0:
        pytest.skip(f"neither chattr +i nor a bind mount work here: {done.stderr.strip()}")
    try:
        assert run("mount", "-o", "remount,bind,ro", directory).returncode == 0
        yield "read-only bind mount"
    finally:
        run("umount", directory)


def small_files(root: Path, count: int) -> None:
    for index in range(count):
        write_file(root / f"dir-{index % 10}" / f"file-{index}.txt", b"%d\n" % index, 0o644)


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    return {**file_backend.env, "SPARE_PASSWORD": password}


def assert_restores(
    run_spare: SpareRunner, env: dict[str, str], expected: dict[str, object], where: Path
) -> None:
    assert_ok(run_spare("restore", "--path", where, env=env))
    assert_trees_equal(expected, snapshot_tree(where))  # type: ignore[arg-type]


# -- the cache -----------------------------------------------------------------------------


def test_unusable_cache_directory(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    write_file(tmp_path / "src" / "a.txt", b"a\n", 0o644)
    (tmp_path / "file").write_text("not a directory")
    env = {**env, "SPARE_CACHE_DIR": str(tmp_path / "file" / "cache")}
    line = assert_error(run_spare("create", "--path", tmp_path / "src", env=env), EXIT_LOCAL)
    assert "SPARE_CACHE_DIR" in line


@pytest.mark.parametrize("size", ["200k", "3m"])
def test_full_cache_disk_stops_the_run_and_keeps_the_backup(
    size: str, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, mount_tmpfs: Mount
) -> None:
    """A cache on a file system smaller than one pack (3 MiB), or than the cache's database
    (200 KiB): whichever write fails first, the run stops in one line."""
    source = tmp_path / "src"
    write_file(source / "small.txt", b"first version\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    before = snapshot_tree(source)

    write_file(source / "big.bin", os.urandom(8 * MiB), 0o644)
    small_files(source / "many", 2000)
    full = {**env, "SPARE_CACHE_DIR": str(mount_tmpfs(size) / "cache")}
    line = assert_error(run_spare("create", "--path", source, env=full), EXIT_LOCAL)
    assert "space left" in line.lower(), line

    # The bucket still holds the previous snapshot, whole; the lock was released.
    assert_restores(run_spare, env, before, tmp_path / "restored")


def test_full_cache_database_is_one_line(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, mount_tmpfs: Mount
) -> None:
    """The cache's file system fills up while the cache is in use: the first write to fail is
    SQLite's (every file is read again, as its mtime changed, but nothing new is stored). One
    line naming the cache and SPARE_CACHE_DIR; once there is room again, the next run goes on."""
    disk = mount_tmpfs("2m")
    cached = {**env, "SPARE_CACHE_DIR": str(disk / "cache")}
    source = tmp_path / "src"
    small_files(source, 300)
    assert_ok(run_spare("create", "--path", source, env=cached))
    before = snapshot_tree(source)

    filler = disk / "filler"
    with open(filler, "wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(bytes(64 * 1024))
    for path in source.rglob("*.txt"):
        os.utime(path, ns=(10**18, 10**18))
    line = assert_error(run_spare("create", "--path", source, env=cached), EXIT_LOCAL)
    # SQLite says "database or disk is full", or "disk I/O error" when its shared memory file
    # could not grow: either way spare says what it is.
    assert "no space left for the local cache" in line and "SQLITE_" in line, line
    assert "SPARE_CACHE_DIR" in line, line
    assert_restores(run_spare, env, before, tmp_path / "restored-before")

    filler.unlink()
    assert_ok(run_spare("create", "--path", source, env=cached))
    assert_restores(run_spare, cached, snapshot_tree(source), tmp_path / "restored-after")


@pytest.mark.parametrize("which", ["cache directory", "bucket's directory in it"])
def test_unwritable_cache_directory(
    which: str, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """SPARE_CACHE_DIR, or the directory of this bucket's cache in it, may not be written to
    (immutable or read-only): create, verify and restore stop in one line; the backup is intact
    and the next run, once the directory is writable, goes on."""
    source = tmp_path / "src"
    small_files(source, 20)
    assert_ok(run_spare("create", "--path", source, env=env))
    expected = snapshot_tree(source)
    (bucket_dir,) = (p for p in run_spare.cache_dir.iterdir() if p.name != "buckets")
    directory = run_spare.cache_dir if which == "cache directory" else bucket_dir

    write_file(source / "new.txt", b"new\n", 0o644)
    with frozen(directory):
        for command in (("create", "--path", source), ("verify",)):
            line = assert_error(run_spare(*command, env=env), EXIT_LOCAL)
            assert "writable" in line and str(directory) in line, line
        restored = tmp_path / "restored-frozen"
        assert_error(run_spare("restore", "--path", restored, env=env), EXIT_LOCAL)

    assert_ok(run_spare("verify", env=env))
    assert_restores(run_spare, env, expected, tmp_path / "restored")
    assert_ok(run_spare("create", "--path", source, env=env))


def test_immutable_state_directory(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """What this host remembers of its buckets (``buckets`` in the cache directory) cannot be
    written ("Operation not permitted"): one line and 16; writable again, the next run goes on
    and the backup is whole."""
    source = tmp_path / "src"
    small_files(source, 20)
    assert_ok(run_spare("create", "--path", source, env=env))
    write_file(source / "new.txt", b"new\n", 0o644)
    with frozen(run_spare.cache_dir / "buckets") as how:
        line = assert_error(run_spare("create", "--path", source, env=env), EXIT_LOCAL)
        wanted = "Read-only file system" if how == "read-only bind mount" else "not permitted"
        assert wanted in line and str(run_spare.cache_dir / "buckets") in line, line

    assert_ok(run_spare("verify", env=env))
    assert_ok(run_spare("create", "--path", source, env=env))
    assert_restores(run_spare, env, snapshot_tree(source), tmp_path / "restored")


# -- the restore target --------------------------------------------------------------------


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> dict[str, object]:
    """A backup of a small tree with subdirectories; what it holds."""
    source = tmp_path / "src"
    small_files(source, 30)
    write_file(source / "data" / "random.bin", os.urandom(3 * MiB), 0o600)
    assert_ok(run_spare("create", "--path", source, env=env))
    return snapshot_tree(source)  # type: ignore[return-value]


def test_read_only_target(
    env: dict[str, str], run_spare: SpareRunner, mount_tmpfs: Mount, backed_up: object
) -> None:
    """An empty target on a read-only file system is the target's fault (16), not the backup's:
    refused before anything is read, and a new target below it as well."""
    target = mount_tmpfs("1m", read_only=True)
    line = assert_error(run_spare("restore", "--path", target, env=env), EXIT_LOCAL)
    assert f"{target} is on a read-only file system" in line, line
    line = assert_error(run_spare("restore", "--path", target / "new", env=env), EXIT_LOCAL)
    assert f"cannot create {target / 'new'} (Read-only file system)" in line, line
    assert os.listdir(target) == []


def test_unwritable_target(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, backed_up: dict[str, object]
) -> None:
    """An empty target that this user may not write to (immutable here, as root cannot be kept
    out by a mode) is refused with 16 before anything is read; writable again, it works."""
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    with frozen(target) as how:
        line = assert_error(run_spare("restore", "--path", target, env=env), EXIT_LOCAL)
        wanted = "read-only file system" if how == "read-only bind mount" else "may not be written"
        assert str(target) in line and wanted in line, line
    assert os.listdir(target) == []
    assert_restores(run_spare, env, backed_up, target)


def test_full_target(
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
    mount_tmpfs: Mount,
    backed_up: dict[str, object],
) -> None:
    """A target too small for the backup: one line naming the file that did not fit, 16."""
    target = mount_tmpfs("1m")
    line = assert_error(run_spare("restore", "--path", target, env=env), EXIT_LOCAL)
    assert f"cannot write {target}/" in line and "No space left on device" in line, line
    assert "restore target" in line, line
    run("umount", target)
    assert_restores(run_spare, env, backed_up, tmp_path / "roomy")


def test_a_damaged_cache_file_is_rebuilt(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The disk damaged the local cache: the next run says so, rebuilds it from the bucket and
    backs up as usual, with no traceback."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    write_file(source / "a.bin", os.urandom(MiB), 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    (database,) = run_spare.cache_dir.glob("*/cache.sqlite")
    with open(database, "r+b") as file:
        file.write(b"\xff" * 100)  # the header: no longer an SQLite database
    result = run_spare("create", "--path", source, env=env)
    assert_ok(result)
    assert "local cache" in result.stderr and "damaged" in result.stderr, result.stderr
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(snapshot_tree(source), snapshot_tree(target))
