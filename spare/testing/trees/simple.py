"""A small tree with one entry of each classic kind, and the view of a tree every restore keeps.

A restore is only as good as its weakest entry: a lost permission bit on a private key, a symlink
turned into a copy, a hard link split in two or a directory mtime reset by writing its content are
the classic bugs. ``build_rich_tree`` holds one of each, with a few MiB of data; ``snapshot_tree``
records what must come back (a :func:`~spare.testing.trees.scan.scan_tree` without the fields
only the fidelity tests ask for), so ``assert_trees_equal`` can say precisely what did not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spare.testing.trees.compare import compare_scans
from spare.testing.trees.content import MiB, compressible_text
from spare.testing.trees.plan import TreePlan, set_mtimes
from spare.testing.trees.scan import scan_tree

#: The fields of :func:`snapshot_tree`: extended attributes, ACLs, capabilities and sparseness are
#: left out, and so are a symlink's own mtime and the inode sharing of anything but a file.
SNAPSHOT_FIELDS = (
    "type",
    "uid",
    "gid",
    "mode",
    "mtime_ns",
    "size",
    "sha256",
    "target",
    "rdev",
    "hardlinks",
)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` (making its directories) and give it ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def build_rich_tree(root: Path, random_mib: int = 3, text_mib: int = 2) -> None:
    """Populate ``root`` with every kind of entry a backup of a server directory meets.

    Sizes stay small (a few MiB) because every test builds its own tree. Every entry gets an odd
    mtime; the root's own is left alone.
    """
    root.mkdir(parents=True, exist_ok=True)
    plan = TreePlan(root)
    shared = os.urandom(MiB)

    plan.file(b"empty.txt", b"", 0o644)
    plan.file(b"tiny.txt", b"x\n", 0o640)
    plan.file(b"data/random.bin", os.urandom(random_mib * MiB), 0o600)
    plan.file(b"docs/server.log", compressible_text(text_mib * MiB), 0o644)
    plan.file(b"docs/nested/deeper/deepest/leaf.txt", b"leaf\n", 0o644)
    # Same content under two names, not hard-linked: must be stored once, restored twice.
    plan.file(b"data/duplicate-a.bin", shared, 0o644)
    plan.file(b"copies/duplicate-b.bin", shared, 0o644)
    plan.file(b"bin/tool.sh", b"#!/bin/sh\necho hello\n", 0o755)
    plan.file(b"private/key.pem", b"not really a key\n", 0o400)
    plan.file(b"read-only-dir/inside.txt", b"written before the dir was locked\n", 0o644)
    plan.dir(b"empty-dir", mode=None)
    plan.dir(b"docs/empty-nested-dir", mode=None)

    # A hard-link group across two directories.
    plan.file(b"hard/first.dat", os.urandom(100 * 1024), 0o640)
    plan.dir(b"hard-other", mode=None)
    os.link(plan.path(b"hard/first.dat"), plan.path(b"hard-other/second.dat"))

    plan.symlink(b"../docs/server.log", b"links/relative")
    plan.symlink(os.fsencode(root / "tiny.txt"), b"links/absolute")
    plan.symlink(b"does/not/exist", b"links/dangling")
    plan.symlink(b"../docs", b"links/to-dir")

    plan.dir(b"private", 0o750)
    # Its content is written first: a restore must do the same (and chmod afterwards).
    plan.dir(b"read-only-dir", 0o555)
    plan.finish(include_root=False)


def set_odd_mtimes(root: Path) -> None:
    """Give every entry under ``root`` an odd mtime, leaving the root's own alone."""
    set_mtimes(root, include_root=False)


def snapshot_tree(root: Path, *, owners: bool = True) -> dict[str, dict[str, Any]]:
    """Record everything a faithful restore brings back, per path relative to ``root``.

    The root itself is left out: a restore target is created (or given) by the user. Symlinks
    are compared by target, not by mtime: spare does not promise to restore a link's own mtime.
    Hard links are recorded as the names sharing an inode, never inode numbers, which differ
    after any restore. ``owners=False`` leaves uid and gid out, for a user who cannot chown. An
    entry that cannot be read raises its OSError.
    """
    fields = set(SNAPSHOT_FIELDS) if owners else set(SNAPSHOT_FIELDS) - {"uid", "gid"}
    records: dict[str, dict[str, Any]] = {}
    for relative, scanned in scan_tree(root, strict=True).items():
        if relative == b".":
            continue
        record = {name: value for name, value in scanned.items() if name in fields}
        if record["type"] == "symlink":
            del record["mtime_ns"]
        if record["type"] != "file":
            record.pop("hardlinks", None)
        records[os.fsdecode(relative)] = record
    return records


def assert_trees_equal(
    expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]
) -> None:
    """Fail with one line per difference (missing, unexpected or changed entry and field)."""
    problems = [
        str(diff)
        for diff in compare_scans(
            {os.fsencode(rel): record for rel, record in expected.items()},
            {os.fsencode(rel): record for rel, record in actual.items()},
        )
    ]
    assert not problems, f"{len(problems)} difference(s) between the trees:\n" + "\n".join(
        problems[:60]
    )


def regular_files(root: Path) -> list[str]:
    """Relative paths of the regular files under ``root`` (what verify may have to name)."""
    return sorted(
        os.fsdecode(relative)
        for relative, record in scan_tree(root, strict=True).items()
        if relative != b"." and record["type"] == "file"
    )
