"""Restore is faithful to the last bit: names, types, metadata, sparseness, selection.

The round trip of the richest tree (``spare.testing.trees.build_richest_tree``) must come back
with no difference at all; each part of it also has a test of its own, so that a failure says at
once what was lost. What the current user cannot build is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest
from support.buckets import Backend, stored_bytes
from support.crafted import entry, store_crafted_snapshot
from support.harness import (
    EXIT_USAGE,
    SpareResult,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
    short_tempdir,
)

from spare.testing.trees import (
    NFC,
    NFD,
    PRE_1970_NS,
    WEIRD_NAMES,
    YEAR_2099_NS,
    Difference,
    MiB,
    TreePlan,
    build_tree,
    compare_scans,
    compare_trees,
    pattern_bytes,
    scan_tree,
    set_mtimes,
    unnamed_id,
)

pytestmark = pytest.mark.timeout(240)

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    """A file:// bucket: most of these tests are about the tree, not the storage."""
    return {**file_backend.env, "SPARE_PASSWORD": password}


def round_trip(
    run_spare: SpareRunner,
    env: dict[str, str],
    source: Path,
    target: Path,
    create_args: Iterable[str] = (),
    restore_args: Iterable[str] = (),
) -> tuple[SpareResult, SpareResult]:
    created = run_spare("create", "--path", source, *create_args, env=env)
    assert_ok(created)
    restored = run_spare("restore", "--path", target, *restore_args, env=env)
    assert_ok(restored)
    return created, restored


def assert_no_differences(diffs: list[Difference] | list[str], context: str = "") -> None:
    lines = [str(diff) for diff in diffs]
    assert not lines, (
        f"{len(lines)} difference(s) between the source and the restored tree{context}:\n"
        + "\n".join(lines[:80])
    )


def build_or_skip(root: Path, *parts: str, feature: str | None = None, **kw: int) -> dict:
    """Build parts of the richest tree; skip the test if ``feature`` could not be built."""
    report = build_tree(root, parts, **kw)
    if feature is not None and feature in report["skipped"]:
        pytest.skip(f"{feature}: {report['skipped'][feature]}")
    return report


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
# Metadata
# --------------------------------------------------------------------------------------------


def test_permission_bits_setuid_setgid_sticky_read_only(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "permissions")
    if IS_ROOT:  # mode 000 has a test of its own
        for name in ("mode-000-file", "mode-000-dir", "exec-only-dir"):
            path = source / "perms" / name
            if path.is_dir():
                _make_removable(path)
                shutil.rmtree(path)
            else:
                path.unlink()
        set_mtimes(source)
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert restored[b"perms/setuid"]["mode"] == "0o4755"
    assert restored[b"perms/all-bits"]["mode"] == "0o7777"
    assert restored[b"perms/sticky-dir"]["mode"] == "0o1777"
    assert (target / "perms" / "read-only-dir" / "sub" / "deeper.txt").read_bytes() == b"deeper\n"
    assert_no_differences(compare_scans(scan_tree(source), restored))


def _make_removable(path: Path) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o700)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700)


@pytest.mark.skipif(not IS_ROOT, reason="needs root: a mode 000 entry is unreadable to its owner")
def test_mode_000_files_and_directories_keep_their_content(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Content is restored first, the mode (000, 111) applied afterwards."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "permissions")
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert restored[b"perms/mode-000-dir"]["mode"] == "0o0"
    assert restored[b"perms/mode-000-dir/secret.txt"]["size"] > 0
    assert (target / "perms" / "mode-000-file").read_bytes() == b"secret content\n"
    assert_no_differences(compare_scans(scan_tree(source), restored))


@pytest.mark.skipif(not IS_ROOT, reason="needs root: only root can give files away")
def test_owners_named_and_unnamed(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Owners by name, ids without a name kept as numbers (files, dirs, symlinks, fifos)."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "owners", feature="owners")
    round_trip(run_spare, env, source, target)
    unnamed = unnamed_id()
    restored = scan_tree(target)
    assert (restored[b"owners/unnamed"]["uid"], restored[b"owners/unnamed"]["gid"]) == (
        unnamed,
        unnamed,
    )
    assert restored[b"owners/setuid-unnamed"]["mode"] == "0o6755"
    assert_no_differences(compare_scans(scan_tree(source), restored))


@pytest.mark.skipif(not IS_ROOT, reason="needs root: restore sets owners only as root")
def test_numeric_owner(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """Owners are restored by name, falling back to the id; ``--numeric-owner`` uses the ids.

    The manifest is written by hand: the host's users cannot be renamed between a backup and a
    restore in a test.
    """
    unnamed = unnamed_id(34567)
    missing_name = "no-such-user-spare-test"
    store_crafted_snapshot(
        env,
        tmp_path / "craft-cache",
        [
            entry(b".", "d"),
            # named root, but with another id: by name it is 0, by number ``unnamed``
            entry(b"by-name", uid=unnamed, gid=unnamed, user="root", group="root"),
            entry(
                b"unknown-name",
                uid=unnamed + 1,
                gid=unnamed + 1,
                user=missing_name,
                group=missing_name,
            ),
            entry(b"no-name", uid=unnamed + 2, gid=unnamed + 2),
        ],
        {b"by-name": b"a\n", b"unknown-name": b"b\n", b"no-name": b"c\n"},
    )
    by_name, numeric = tmp_path / "by-name", tmp_path / "numeric"
    assert_ok(run_spare("restore", "--path", by_name, env=env))
    assert_ok(run_spare("restore", "--path", numeric, "--numeric-owner", env=env))

    def owners(root: Path, name: str) -> tuple[int, int]:
        st = os.lstat(root / name)
        return st.st_uid, st.st_gid

    assert owners(by_name, "by-name") == (0, 0)
    assert owners(numeric, "by-name") == (unnamed, unnamed)
    for root in (by_name, numeric):
        assert owners(root, "unknown-name") == (unnamed + 1, unnamed + 1)
        assert owners(root, "no-name") == (unnamed + 2, unnamed + 2)
        assert (root / "no-name").read_bytes() == b"c\n"


def test_mtimes_to_the_nanosecond_before_1972_and_after_2038(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """1969, 1971, 2038 + 1 s, 2099; files, a directory older than its content, a symlink."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "times")
    round_trip(run_spare, env, source, target)
    restored = scan_tree(target)
    assert restored[b"times/pre-1970"]["mtime_ns"] == PRE_1970_NS
    assert restored[b"times/year-2099"]["mtime_ns"] == YEAR_2099_NS
    assert restored[b"times/old-dir"]["mtime_ns"] == PRE_1970_NS + 1
    assert_no_differences(compare_scans(scan_tree(source), restored))


def test_user_extended_attributes(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Text, binary (all 256 byte values), empty values, many per file; on directories and the
    root too; on a read-only file and in a directory 0500."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "xattrs", feature="xattrs")
    round_trip(run_spare, env, source, target)
    assert os.getxattr(target / "xattrs" / "binary", "user.binary") == bytes(range(256))
    assert os.getxattr(target / "xattrs" / "empty-value", "user.empty") == b""
    assert os.getxattr(target, "user.on-the-root") == b"root attribute"
    assert_no_differences(compare_trees(source, target))


def test_posix_acls(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """Access and default ACLs come back byte for byte, and the mode with them."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "acls", feature="acls")
    round_trip(run_spare, env, source, target)
    for name in ("system.posix_acl_access", "system.posix_acl_default"):
        assert os.getxattr(target / "acl" / "dir", name) == os.getxattr(
            source / "acl" / "dir", name
        )
    assert_no_differences(compare_trees(source, target))


def test_file_capabilities(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """security.capability survives (restore sets it after chown, which would clear it)."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "capabilities", feature="capabilities")
    round_trip(run_spare, env, source, target)
    path = target / "caps" / "ping-like"
    assert os.getxattr(path, "security.capability") == os.getxattr(
        source / "caps" / "ping-like", "security.capability"
    )
    assert_no_differences(compare_trees(source, target))


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
    """The same 8 MB of random bytes three times in one file store about 8 MB."""
    source, target = tmp_path / "source", tmp_path / "restored"
    source.mkdir()
    block = os.urandom(8_000_000)
    (source / "thrice.bin").write_bytes(block * 3)
    round_trip(run_spare, env, source, target)
    stored = stored_bytes(file_backend.objects())
    assert stored < 12_000_000, f"the bucket holds {stored} bytes for 3 x 8 MB of one block"
    assert (target / "thrice.bin").read_bytes() == block * 3


# --------------------------------------------------------------------------------------------
# What is backed up: --skip, --path
# --------------------------------------------------------------------------------------------


def _skip_tree(source: Path) -> None:
    plan = TreePlan(source)
    source.mkdir()
    for name, data in {
        b"keep.txt": b"kept\n",
        b"top.log": b"log\n",
        b"docs/readme.txt": b"readme\n",
        b"docs/old.log": b"old log\n",
        b"cache/blob": b"cached\n",
        b"cache/sub/deeper": b"cached deeper\n",
        b"foo/inside": b"foo\n",
        b"foo2/keep": b"not foo\n",
        b"nested/foo/keep": b"foo, but not at the top\n",
    }.items():
        plan.file(name, data)
    plan.finish()


def test_skip_patterns(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    """``--skip '*.log'``, ``--skip 'cache/*'`` and ``--skip ./foo`` leave out what they name,
    and only that."""
    source, target = tmp_path / "source", tmp_path / "restored"
    _skip_tree(source)
    expected = scan_tree(source)
    for gone in (
        b"top.log",
        b"docs/old.log",
        b"cache/blob",
        b"cache/sub",
        b"cache/sub/deeper",
        b"foo",
        b"foo/inside",
    ):
        del expected[gone]
    round_trip(
        run_spare,
        env,
        source,
        target,
        create_args=["--skip", "*.log", "--skip", "cache/*", "--skip", "./foo"],
    )
    assert_no_differences(compare_scans(expected, scan_tree(target)))


def test_path_may_be_a_symlink_to_a_directory(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """``--path`` is followed at the top only; symlinks inside stay links."""
    source, target = tmp_path / "source", tmp_path / "restored"
    build_or_skip(source, "links")
    link = tmp_path / "link-to-source"
    link.symlink_to(source)
    round_trip(run_spare, env, link, target)
    assert (target / "links" / "to-dir").is_symlink()
    assert_no_differences(compare_trees(source, target))


def test_path_may_be_a_single_file(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A single file is backed up; restore writes it at ``--path``, or into ``--path`` when
    that is an existing empty directory, with its metadata."""
    source = tmp_path / "data" / "single.bin"
    source.parent.mkdir()
    source.write_bytes(pattern_bytes(9, 3 * MiB + 17))
    os.chmod(source, 0o4751 if IS_ROOT else 0o751)
    with contextlib.suppress(OSError):
        os.setxattr(source, "user.single", b"\x00one")
    os.utime(source, ns=(YEAR_2099_NS, YEAR_2099_NS))
    assert_ok(run_spare("create", "--path", source, env=env))

    at_path = tmp_path / "new" / "restored.bin"
    assert_ok(run_spare("restore", "--path", at_path, env=env))
    assert at_path.is_file()
    assert_no_differences(compare_trees(source, at_path))

    into = tmp_path / "empty-dir"
    into.mkdir()
    assert_ok(run_spare("restore", "--path", into, env=env))
    assert os.listdir(into) == ["single.bin"]
    assert_no_differences(compare_trees(source, into / "single.bin"))


# --------------------------------------------------------------------------------------------
# restore --include
# --------------------------------------------------------------------------------------------


@pytest.fixture
def include_source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    plan = TreePlan(source)
    for name, data in {
        b"top.txt": b"top\n",
        b"docs/a.txt": b"a\n",
        b"docs/sub/b.txt": b"b\n",
        b"docs/x.log": b"x\n",
        b"src/main.py": b"print()\n",
        b"src/deep/er/est/leaf.py": b"leaf\n",
        b"logs/1.log": b"1\n",
        b"logs/2.log": b"2\n",
        b"logs/keep.txt": b"k\n",
        b"first-name": pattern_bytes(5, 10_000),
    }.items():
        plan.file(name, data, 0o640)
    plan.dir(b"src", 0o750)
    plan.dir(b"src/deep/er", 0o700)
    plan.dir(b"docs/empty", 0o755)
    os.link(source / "first-name", source / "src" / "second-name")
    os.link(source / "first-name", source / "src" / "third-name")
    plan.mtimes[b"src/deep"] = PRE_1970_NS
    plan.finish()
    return source


def selected(scan: dict[bytes, dict], *roots: bytes) -> dict[bytes, dict]:
    """The entries at or below ``roots`` and their ancestors (with ``.``)."""
    keep = {}
    for path, record in scan.items():
        if path == b"." or any(
            path == root or path.startswith(root + b"/") or root.startswith(path + b"/")
            for root in roots
        ):
            keep[path] = record
    return keep


def test_include_one_subtree(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, include_source: Path
) -> None:
    target = tmp_path / "restored"
    round_trip(run_spare, env, include_source, target, restore_args=["--include", "./docs/"])
    expected = selected(scan_tree(include_source), b"docs")
    assert_no_differences(compare_scans(expected, scan_tree(target)))


def test_include_a_deep_file_creates_its_ancestors(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, include_source: Path
) -> None:
    """Ancestors come with their own metadata (mode 0700, an mtime of 1969)."""
    target = tmp_path / "restored"
    leaf = b"src/deep/er/est/leaf.py"
    round_trip(run_spare, env, include_source, target, restore_args=["--include", leaf.decode()])
    expected = selected(scan_tree(include_source), leaf)
    assert b"src/main.py" not in expected
    assert_no_differences(compare_scans(expected, scan_tree(target)))


def test_include_several_paths_and_globs(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, include_source: Path
) -> None:
    target = tmp_path / "restored"
    round_trip(
        run_spare,
        env,
        include_source,
        target,
        restore_args=["--include", "logs/*.log", "--include", "top.txt", "--include", "docs/sub"],
    )
    expected = selected(
        scan_tree(include_source), b"logs/1.log", b"logs/2.log", b"top.txt", b"docs/sub"
    )
    assert_no_differences(compare_scans(expected, scan_tree(target)))


def test_include_a_hardlink_whose_first_name_is_left_out(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, include_source: Path
) -> None:
    """The second name of a hardlinked file comes back as a file of its own, content and all."""
    target = tmp_path / "restored"
    round_trip(run_spare, env, include_source, target, restore_args=["--include", "src"])
    expected = selected(scan_tree(include_source), b"src")
    restored = scan_tree(target)
    assert_no_differences(compare_scans(expected, restored, ignore=["hardlinks"]))
    # The names that were restored stay one inode.
    assert restored[b"src/second-name"].get("hardlinks") == (b"src/second-name", b"src/third-name")
    assert (target / "src" / "second-name").read_bytes() == pattern_bytes(5, 10_000)
    assert not (target / "first-name").exists()


def test_include_that_matches_nothing_is_a_usage_error(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, include_source: Path
) -> None:
    assert_ok(run_spare("create", "--path", include_source, env=env))
    target = tmp_path / "restored"
    result = run_spare("restore", "--path", target, "--include", "no/such/*", env=env)
    line = assert_error(result, EXIT_USAGE)
    assert "include" in line, describe(result)
    assert not target.exists() or not os.listdir(target)
