"""Restore is faithful to the last bit: names, types, sparseness (metadata and selection have
modules of their own).

The round trip of the richest tree (``spare.testing.trees.build_richest_tree``) must come back
with no difference at all; each part of it also has a test of its own, so that a failure says at
once what was lost. What the current user cannot build is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest
from support.buckets import Backend, stored_bytes
from support.fidelity import IS_ROOT, assert_no_differences, build_or_skip, round_trip
from support.harness import SpareRunner, assert_ok, describe, short_tempdir

from spare.testing.trees import (
    NFC,
    NFD,
    PRE_1970_NS,
    WEIRD_NAMES,
    YEAR_2099_NS,
    MiB,
    build_tree,
    compare_scans,
    compare_trees,
    scan_tree,
    set_mtimes,
)

pytestmark = pytest.mark.timeout(240)


# --------------------------------------------------------------------------------------------
# The whole tree
# --------------------------------------------------------------------------------------------


def test_richest_tree_round_trip(
    backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Every entry and every field comes back, on every storage kind; the source is untouched."""
    source = tmp_path / "source"
    report = build_tree(source, list(_all_parts()), sparse_mib=32)
    if report["skipped"]:
        warnings.warn(
            "richest tree built without: "
            + "; ".join(f"{what} ({why})" for what, why in report["skipped"].items()),
            stacklevel=1,
        )
    before = scan_tree(source)
    env = {**backend.env, "SPARE_PASSWORD": password}
    target = tmp_path / "restored"
    round_trip(run_spare, env, source, target)

    assert_no_differences(
        compare_scans(before, scan_tree(target)), f" (built: {', '.join(report['built'])})"
    )
    assert_no_differences(
        compare_scans(before, scan_tree(source), labels=("before", "after the backup")),
        " (the source changed during the backup)",
    )


def _all_parts() -> Iterable[str]:
    from spare.testing.trees import PARTS

    return PARTS.keys()


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def test_weird_names(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """Non-UTF-8, newlines, tabs, quotes, dashes, NFC and NFD, emoji, 255-byte names."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "names")
    round_trip(run_spare, env, source, target)
    restored = set(os.listdir(os.fsencode(target / "names")))
    for name in WEIRD_NAMES:
        assert name in restored, f"{name!r} was not restored (restored: {sorted(restored)})"
    assert NFC != NFD and {NFC, NFD} <= restored
    assert_no_differences(compare_trees(source, target))


def test_path_longer_than_path_max(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A tree 64 directories deep (over 6,000 bytes of path) is backed up and restored."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "deep")
    deepest = max(scan_tree(source), key=len)
    assert len(deepest) > 4096
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert deepest in restored
    assert_no_differences(compare_scans(scan_tree(source), restored))


def test_directory_of_twenty_thousand_entries(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, big_dir=20_000)
    round_trip(run_spare, env, source, target)
    assert len(os.listdir(target / "big")) == 20_000
    assert_no_differences(compare_trees(source, target))


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


def test_files_directories_and_fifos(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "types")
    if IS_ROOT:
        # Devices have a test of their own; here the part without them.
        for name in ("char-null", "char-big-numbers", "block-loop"):
            (source / "types" / name).unlink(missing_ok=True)
        set_mtimes(source)
    round_trip(run_spare, env, source, target)
    assert stat.S_ISFIFO(os.lstat(target / "types" / "fifo").st_mode)
    assert_no_differences(compare_trees(source, target))


def test_device_nodes(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """Character and block devices with their numbers (major 300, minor 70000 too)."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "types", feature="devices")
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert restored[b"types/char-big-numbers"]["rdev"] == (300, 70000)
    assert restored[b"types/block-loop"]["type"] == "block device"
    assert_no_differences(compare_scans(scan_tree(source), restored))


def test_symlinks_are_stored_as_links(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Relative, absolute, dangling, to directories, loops: never followed, targets as bytes,
    their own mtimes kept."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "types", "links")
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert restored[b"links/weird-target"]["target"] == b"tar\nget \xff with \\ bytes"
    assert restored[b"links/loop-a"]["type"] == "symlink"
    assert restored[b"links/to-dir"]["type"] == "symlink"
    assert b"links/to-dir/inside.txt" not in restored
    assert restored[b"links/relative"]["mtime_ns"] == YEAR_2099_NS
    assert restored[b"links/dangling"]["mtime_ns"] == PRE_1970_NS
    assert_no_differences(compare_scans(scan_tree(source), restored))


def test_hardlink_groups(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """Three names of one inode across directories, two empty names of another."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "hardlinks")
    round_trip(run_spare, env, source, target)
    first = os.lstat(target / "hard" / "first.dat")
    assert first.st_nlink == 3
    assert os.lstat(target / "hard-other" / "third.dat").st_ino == first.st_ino
    assert (
        os.lstat(target / "hard" / "empty-a").st_ino
        == os.lstat(target / "hard-other" / "empty-b").st_ino
    )
    assert_no_differences(compare_trees(source, target))


def test_hardlinked_fifos_symlinks_and_devices(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Linux hard-links any non-directory: two names of one FIFO, of one symlink, of one device
    node stay one inode."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "special-hardlinks")
    round_trip(run_spare, env, source, target)
    assert_no_differences(compare_trees(source, target))


def test_sockets_are_skipped_with_a_note(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A socket is left out with a note on stderr; the exit code stays 0."""
    source, target = tmp_path / "source", tmp_path / "restored"
    (source / "run").mkdir(parents=True)
    (source / "run" / "app.pid").write_text("42\n")
    short = short_tempdir()
    try:
        # A socket's path must fit in 108 bytes: bind in a short directory, then move it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(os.path.join(short, "s"))
        os.rename(os.path.join(short, "s"), source / "run" / "app.sock")
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert stat.S_ISSOCK(os.lstat(source / "run" / "app.sock").st_mode)
    expected = scan_tree(source)
    del expected[b"run/app.sock"]

    created = run_spare("create", "--path", source, env=env)
    assert_ok(created)
    assert "app.sock" in created.stderr and "socket" in created.stderr, describe(created)
    assert "warning" not in created.stderr, describe(created)
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert not (target / "run" / "app.sock").exists()
    restored = scan_tree(target)
    # Leaving the socket out must not change anything else (its directory's mtime included).
    assert_no_differences(compare_scans(expected, restored))


# --------------------------------------------------------------------------------------------
# Sparse files and deduplication
# --------------------------------------------------------------------------------------------


def test_sparse_file_is_stored_small_and_restored_sparse(
    file_backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """200 MiB with two 4 KiB written regions: a few chunks stored, holes restored as holes."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, sparse_mib=200, feature="sparse")
    round_trip(run_spare, env, source, target)
    stored = stored_bytes(file_backend.objects())
    assert stored < 2 * MiB, f"the bucket holds {stored} bytes for a 200 MiB sparse file"
    restored = os.stat(target / "sparse" / "sparse.img")
    assert restored.st_size == 200 * MiB
    allocated = restored.st_blocks * 512
    assert allocated < 4 * MiB, f"the restored sparse file allocates {allocated} bytes"
    assert_no_differences(compare_trees(source, target))


def test_internal_repetition_is_stored_once(
    file_backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The same 8 MB of random bytes three times in one file store one copy, and the chunks
    across each junction: 9 to 13 MB, by where the key puts the cuts, never 24."""
    source, target = tmp_path / "source", tmp_path / "restored"
    source.mkdir()
    block = os.urandom(8_000_000)
    (source / "thrice.bin").write_bytes(block * 3)
    round_trip(run_spare, env, source, target)
    stored = stored_bytes(file_backend.objects())
    assert stored < 2 * len(block), f"the bucket holds {stored} bytes for 3 x 8 MB of one block"
    assert (target / "thrice.bin").read_bytes() == block * 3
