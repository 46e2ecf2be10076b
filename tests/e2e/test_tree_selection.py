"""Tree selection as restic and borg users expect it: ``--one-file-system`` stays on the file
system of ``--path`` (mount points are stored, empty), and a directory holding a valid
``CACHEDIR.TAG`` is stored with its tag only unless ``--no-cachedir-tag``. ``--dry-run`` walks
the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, assert_error, assert_ok, describe

from spare.testing.trees import snapshot_tree, write_file

pytestmark = pytest.mark.timeout(120)

SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted at ``source/mnt`` (root only), holding one file; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs inside the tree needs root")
    point = tmp_path / "source" / "mnt"
    point.mkdir(parents=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        write_file(point / "other-fs.txt", b"on the tmpfs\n", 0o644)
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert_ok(result)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary", describe(result)
    return summary


def test_one_file_system_and_cache_directories(
    mounted: Path, file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = mounted.parent
    write_file(source / "keep.txt", b"keep\n", 0o644)
    write_file(source / "app" / "cache" / "CACHEDIR.TAG", SIGNATURE + b"\n# app cache\n", 0o644)
    write_file(source / "app" / "cache" / "blob.bin", b"cached\n", 0o644)
    write_file(source / "app" / "cache" / "sub" / "deep.bin", b"cached\n", 0o644)
    write_file(source / "fake" / "CACHEDIR.TAG", b"Signature: not the right one\n", 0o644)
    write_file(source / "fake" / "data.txt", b"not a cache\n", 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    selected = {
        "keep.txt",
        "mnt",
        "app",
        "app/cache",
        "app/cache/CACHEDIR.TAG",
        "fake",
        "fake/CACHEDIR.TAG",
        "fake/data.txt",
    }
    left_out = {"mnt/other-fs.txt", "app/cache/blob.bin", "app/cache/sub", "app/cache/sub/deep.bin"}

    dry = _summary(run_spare("create", "--path", source, "-x", "--dry-run", "--json", env=env))
    assert (dry["files"], dry["entries"]) == (4, len(selected) + 1), dry

    created = run_spare("create", "--path", source, "--one-file-system", "-v", env=env)
    assert_ok(created)
    assert "mnt: a mount point; not entered" in created.stderr, describe(created)
    assert "cache: a cache directory (CACHEDIR.TAG)" in created.stderr, describe(created)
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert set(snapshot_tree(target)) == selected
    assert (target / "app" / "cache" / "CACHEDIR.TAG").read_bytes().startswith(SIGNATURE)

    # Both from the environment, as a cron job's unit file sets them: everything is kept.
    whole = {**env, "SPARE_NO_CACHEDIR_TAG": "1"}
    dry = _summary(run_spare("create", "--path", source, "--dry-run", "--json", env=whole))
    assert (dry["files"], dry["entries"]) == (7, len(selected | left_out) + 1), dry
    assert_ok(run_spare("create", "--path", source, env=whole))
    everything = tmp_path / "everything"
    assert_ok(run_spare("restore", "--path", everything, env=env))
    assert set(snapshot_tree(everything)) == selected | left_out

    kept_to_one = {**env, "SPARE_ONE_FILE_SYSTEM": "1", "SPARE_NO_CACHEDIR_TAG": "1"}
    assert_ok(run_spare("create", "--path", source, env=kept_to_one))
    third = tmp_path / "third"
    assert_ok(run_spare("restore", "--path", third, env=env))
    assert set(snapshot_tree(third)) == (selected | left_out) - {"mnt/other-fs.txt"}


def test_a_cache_directory_as_the_path_is_said(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Pointing --path at a cache directory stores its tag only, and says so; a dry run into an
    empty bucket, where nothing tells the deleted files, sums up all the same."""
    source = tmp_path / "cache"
    write_file(source / "CACHEDIR.TAG", SIGNATURE, 0o644)
    write_file(source / "blob.bin", b"cached\n", 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    dry = run_spare("create", "--path", source, "--dry-run", "-v", env=env)
    assert_ok(dry)
    assert f"{source} is a cache directory" in dry.stderr, describe(dry)
    assert "--no-cachedir-tag" in dry.stderr
    assert "would store 1 new and 0 changed files" in dry.stderr, describe(dry)


def test_skip_from_reads_patterns_from_files(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """``--skip-from FILE`` (repeatable, or SPARE_SKIP_FROM): one pattern a line, blank lines
    and ``#`` comments ignored, added to ``--skip``; a file that cannot be read is exit 2."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    for name in ("keep.txt", "cache/big.bin", "logs/a.log", "tmp/x", "notes.log"):
        write_file(source / name, b"x\n", 0o644)
    patterns = tmp_path / "skips"
    patterns.write_text("# caches and logs\n./cache/\n\n  *.log  \n")
    more = tmp_path / "more-skips"
    more.write_text("tmp\n")
    created = run_spare(
        "create", "--path", source, "--skip-from", patterns, "--skip", "nothing", env=env
    )
    assert_ok(created)
    listed = run_spare("ls", env=env).stdout
    assert "keep.txt" in listed and "tmp/x" in listed
    assert not {"cache", "a.log", "notes.log"} & {
        line.rsplit("/", 1)[-1] for line in listed.splitlines()
    }

    assert_ok(run_spare("create", "--path", source, env={**env, "SPARE_SKIP_FROM": str(more)}))
    listed = run_spare("ls", env=env).stdout
    assert "tmp/x" not in listed and "a.log" in listed

    missing = run_spare("create", "--path", source, "--skip-from", tmp_path / "none", env=env)
    assert "cannot read the --skip-from file" in assert_error(missing, 2)
