"""What the host refuses (a full disk, an unusable cache) is one line and exit code 16."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import EXIT_LOCAL, SpareRunner, assert_error, assert_ok

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB file system: smaller than one pack."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_unusable_cache_directory(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    write_file(tmp_path / "src" / "a.txt", b"a\n", 0o644)
    (tmp_path / "file").write_text("not a directory")
    env = {
        **file_backend.env,
        "SPARE_PASSWORD": password,
        "SPARE_CACHE_DIR": str(tmp_path / "file" / "cache"),
    }
    line = assert_error(run_spare("create", "--path", tmp_path / "src", env=env), EXIT_LOCAL)
    assert "SPARE_CACHE_DIR" in line


def test_full_cache_disk_stops_the_run_and_keeps_the_backup(
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    tmp_path: Path,
    tiny_disk: Path,
) -> None:
    source = tmp_path / "src"
    write_file(source / "small.txt", b"first version\n", 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    before = snapshot_tree(source)

    write_file(source / "big.bin", os.urandom(8 * MiB), 0o644)
    full = {**env, "SPARE_CACHE_DIR": str(tiny_disk / "cache")}
    line = assert_error(run_spare("create", "--path", source, env=full), EXIT_LOCAL)
    assert "No space left" in line

    # The bucket still holds the previous snapshot, whole; the lock was released.
    restored = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", restored, env=env))
    assert_trees_equal(before, snapshot_tree(restored))
