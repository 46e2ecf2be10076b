"""What is backed up and what is restored: ``--skip`` patterns, ``--path`` as a symlink or a single
file, ``restore --include`` of subtrees, deep files, globs and one name of a hard link.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from support.fidelity import IS_ROOT, assert_no_differences, build_or_skip, round_trip
from support.harness import EXIT_USAGE, SpareRunner, assert_error, assert_ok, describe

from spare.testing.trees import (
    PRE_1970_NS,
    YEAR_2099_NS,
    MiB,
    TreePlan,
    compare_scans,
    compare_trees,
    pattern_bytes,
    scan_tree,
)

pytestmark = pytest.mark.timeout(240)


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
