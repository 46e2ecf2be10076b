"""A hostile or corrupted manifest is refused, and nothing is written outside the target.

Whoever can write to the bucket cannot forge a snapshot without the key, but a bug, a damaged
cache or a stolen password can produce a manifest with absolute paths, ``..``, a file below a
symlink or a path listed twice. Restore must refuse it (exit 14, one line, no traceback) without
touching anything outside the directory it was told to restore into. The manifests are crafted
through spare's own repository code (see ``support/crafted.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.buckets import Backend
from support.crafted import entry, store_crafted_snapshot
from support.harness import EXIT_DAMAGED, SpareRunner, assert_error, assert_ok

from spare.testing.trees import compare_scans, scan_tree

pytestmark = pytest.mark.timeout(120)

VICTIM = b"the file the attacker wants to overwrite\n"


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    return {**file_backend.env, "SPARE_PASSWORD": password}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the restore target, with a file in it: nothing may change here."""
    path = tmp_path / "outside"
    path.mkdir()
    victim = path / "victim"
    victim.write_bytes(VICTIM)
    victim.chmod(0o644)
    os.utime(victim, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    return path


def hostile_manifests(outside: Path) -> dict[str, tuple[list, dict[bytes, bytes]]]:
    """name -> (entries, file contents). The target is ``<tmp>/target``, next to ``outside``."""
    out = os.fsencode(outside)
    root = entry(b".", "d")
    pwned = {b"pwned": b"pwned\n"}

    def file(path: bytes, **fields: object) -> object:
        return entry(path, "f", **fields)

    def with_content(*paths: bytes) -> dict[bytes, bytes]:
        return {path: b"pwned\n" for path in paths}

    return {
        "absolute path": ([root, file(out + b"/pwned")], with_content(out + b"/pwned")),
        "absolute directory": (
            [root, entry(out + b"/newdir", "d"), file(out + b"/newdir/pwned")],
            with_content(out + b"/newdir/pwned"),
        ),
        "dot-dot": ([root, file(b"../outside/pwned")], with_content(b"../outside/pwned")),
        "dot-dot inside": (
            [root, entry(b"a", "d"), file(b"a/../../outside/pwned")],
            with_content(b"a/../../outside/pwned"),
        ),
        "dot-dot overwriting": (
            [root, file(b"../outside/victim")],
            with_content(b"../outside/victim"),
        ),
        "file below a symlink": (
            [root, entry(b"evil", "l", target=out), file(b"evil/pwned")],
            with_content(b"evil/pwned"),
        ),
        "file below a symlink, overwriting": (
            [root, entry(b"evil", "l", target=out), file(b"evil/victim")],
            with_content(b"evil/victim"),
        ),
        "directory below a symlink": (
            [
                root,
                entry(b"evil", "l", target=out),
                entry(b"evil/sub", "d"),
                file(b"evil/sub/pwned"),
            ],
            with_content(b"evil/sub/pwned"),
        ),
        "fifo below a symlink": (
            [root, entry(b"evil", "l", target=out), entry(b"evil/pwned", "p")],
            {},
        ),
        "symlink below a symlink": (
            [root, entry(b"evil", "l", target=out), entry(b"evil/pwned", "l", target=b"x")],
            {},
        ),
        "hardlink to an absolute path": (
            [root, file(b"h", link=out + b"/victim")],
            {},
        ),
        "hardlink with dot-dot": ([root, file(b"h", link=b"../outside/victim")], {}),
        "hardlink through a symlink": (
            [root, entry(b"evil", "l", target=out), file(b"h", link=b"evil/victim")],
            {},
        ),
        "duplicate file": (
            [root, file(b"same"), file(b"same", mode=0o4777)],
            with_content(b"same"),
        ),
        "directory then file of the same name": (
            [root, entry(b"x", "d"), file(b"x")],
            with_content(b"x"),
        ),
        "symlink then directory of the same name": (
            [root, entry(b"evil", "l", target=out), entry(b"evil", "d"), file(b"evil/pwned")],
            with_content(b"evil/pwned"),
        ),
        "duplicate root": ([root, entry(b".", "d", mode=0o777)], {}),
        "empty component": ([root, entry(b"a", "d"), file(b"a//pwned")], pwned),
        "dot component": ([root, entry(b"a", "d"), file(b"a/./pwned")], pwned),
        "NUL in a path": ([root, file(b"a\x00b")], {}),
        "root not first": ([file(b"first"), root], {}),
        "root a symlink": ([entry(b".", "l", target=out), file(b"pwned")], pwned),
        # A root that is a file is a single-file backup: nothing may follow it.
        "root a file, then more entries": (
            [file(b".", mode=0o600), file(b"pwned"), entry(b"sub", "d")],
            {b".": b"root\n", b"pwned": b"pwned\n"},
        ),
    }


CASES = sorted(hostile_manifests(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_hostile_manifest_is_refused(
    case: str,
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
    outside: Path,
) -> None:
    entries, contents = hostile_manifests(outside)[case]
    store_crafted_snapshot(env, tmp_path / "craft-cache", entries, contents)
    before = scan_tree(outside)
    parent_before = sorted(os.listdir(tmp_path))

    target = tmp_path / "target"
    result = run_spare("restore", "--path", target, env=env)
    line = assert_error(result, EXIT_DAMAGED)
    assert "restor" in line or "backup" in line or "manifest" in line, line

    assert compare_scans(before, scan_tree(outside), labels=("before", "after")) == []
    assert (outside / "victim").read_bytes() == VICTIM
    # Nothing appeared next to the target either (the cache is the test's, made before).
    assert set(os.listdir(tmp_path)) - {"target"} == set(parent_before)
    assert not (tmp_path / "pwned").exists()


def test_a_sound_crafted_manifest_restores(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, outside: Path
) -> None:
    """The control: the crafting helper makes snapshots spare restores, so the refusals above
    are about the entries, not the way they were stored."""
    out = os.fsencode(outside)
    store_crafted_snapshot(
        env,
        tmp_path / "craft-cache",
        [
            entry(b".", "d"),
            entry(b"dir", "d"),
            entry(b"dir/file", "f"),
            entry(b"link", "l", target=out + b"/victim"),
            entry(b"second", "f", link=b"dir/file"),
        ],
        {b"dir/file": b"hello\n"},
    )
    target = tmp_path / "target"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "dir" / "file").read_bytes() == b"hello\n"
    assert os.readlink(target / "link") == str(outside / "victim")
    assert os.lstat(target / "second").st_ino == os.lstat(target / "dir" / "file").st_ino
    assert (outside / "victim").read_bytes() == VICTIM
