"""Restore is faithful to the last bit of metadata: permission bits, owners, nanosecond mtimes,
extended attributes, POSIX ACLs and file capabilities.

Each test builds one part of the richest tree (``spare.testing.trees.build_tree``); what the
current user cannot build is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.crafted import entry, store_crafted_snapshot
from support.fidelity import IS_ROOT, assert_no_differences, build_or_skip, round_trip
from support.harness import SpareRunner, assert_ok

from spare.testing.trees import (
    PRE_1970_NS,
    YEAR_2099_NS,
    compare_scans,
    compare_trees,
    scan_tree,
    set_mtimes,
    unnamed_id,
)

pytestmark = pytest.mark.timeout(240)


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


def test_attributes_set_or_removed_on_an_unchanged_file_reach_the_next_backup(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The nightly run reads an unchanged file's attributes only if it had some: setting or
    removing one changes the file's ctime, so the run notices it all the same."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "plain").write_bytes(b"no attributes yet")
    (source / "tagged").write_bytes(b"one attribute, removed later")
    try:
        os.setxattr(source / "tagged", "user.tag", b"first")
    except OSError as exc:
        pytest.skip(f"this file system has no user attributes ({exc.strerror})")
    assert_ok(run_spare("create", "--path", source, env=env))
    os.setxattr(source / "plain", "user.added", b"later")
    os.removexattr(source / "tagged", "user.tag")
    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert os.getxattr(target / "plain", "user.added") == b"later"
    assert os.listxattr(target / "tagged") == []


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
