"""Build directory trees that exercise what a backup must keep, and compare trees faithfully.

A restore is only as good as its weakest entry: a lost permission bit on a private key, a symlink
turned into a copy, a hard link split in two or a directory mtime reset by writing its content are
the classic bugs. ``build_rich_tree`` holds one of each; ``snapshot_tree`` records everything that
must come back, so ``assert_trees_equal`` can say precisely what did not.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

# mtimes with every digit of the nanoseconds set, so that truncation to seconds, microseconds or
# float precision shows. 1_234_567_890 s is in 2009.
BASE_MTIME_NS = 1_234_567_890_123_456_789


def odd_mtime_ns(index: int) -> int:
    """A distinct mtime per entry, none of them a round number of anything."""
    return BASE_MTIME_NS + index * 1_000_003_007


def compressible_text(size: int) -> bytes:
    """Text that looks like a log file (compresses well, but not trivially)."""
    lines = []
    total = 0
    index = 0
    while total < size:
        line = (
            f"2026-11-26T04:{index % 60:02d}:{(index * 7) % 60:02d} host app[{index % 977}]: "
            f"request {index} served in {(index * 37) % 1000} ms, status {200 + index % 5}\n"
        )
        lines.append(line)
        total += len(line)
        index += 1
    return "".join(lines).encode()[:size]


def write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def build_rich_tree(root: Path, random_mib: int = 3, text_mib: int = 2) -> None:
    """Populate ``root`` with every kind of entry a backup of a server directory meets.

    Sizes stay small (a few MiB) because every test builds its own tree.
    """
    root.mkdir(parents=True, exist_ok=True)
    shared = os.urandom(MiB)

    write_file(root / "empty.txt", b"", 0o644)
    write_file(root / "tiny.txt", b"x\n", 0o640)
    write_file(root / "data" / "random.bin", os.urandom(random_mib * MiB), 0o600)
    write_file(root / "docs" / "server.log", compressible_text(text_mib * MiB), 0o644)
    write_file(root / "docs" / "nested" / "deeper" / "deepest" / "leaf.txt", b"leaf\n", 0o644)
    # Same content under two names, not hard-linked: must be stored once, restored twice.
    write_file(root / "data" / "duplicate-a.bin", shared, 0o644)
    write_file(root / "copies" / "duplicate-b.bin", shared, 0o644)
    write_file(root / "bin" / "tool.sh", b"#!/bin/sh\necho hello\n", 0o755)
    write_file(root / "private" / "key.pem", b"not really a key\n", 0o400)
    write_file(root / "read-only-dir" / "inside.txt", b"written before the dir was locked\n", 0o644)
    (root / "empty-dir").mkdir()
    (root / "docs" / "empty-nested-dir").mkdir()

    # A hard-link group across two directories.
    write_file(root / "hard" / "first.dat", os.urandom(100 * 1024), 0o640)
    (root / "hard-other").mkdir()
    os.link(root / "hard" / "first.dat", root / "hard-other" / "second.dat")

    links = root / "links"
    links.mkdir()
    os.symlink("../docs/server.log", links / "relative")
    os.symlink(str(root / "tiny.txt"), links / "absolute")
    os.symlink("does/not/exist", links / "dangling")
    os.symlink("../docs", links / "to-dir")

    os.chmod(root / "private", 0o750)
    # Its content is written first: a restore must do the same (and chmod afterwards).
    os.chmod(root / "read-only-dir", 0o555)
    set_odd_mtimes(root)


def set_odd_mtimes(root: Path) -> None:
    """Give every entry an odd mtime; directories last, since adding entries changes theirs."""
    entries = sorted(walk(root))
    directories = [path for path in entries if path.is_dir() and not path.is_symlink()]
    others = [path for path in entries if path not in set(directories)]
    for index, path in enumerate(others + directories):
        mtime = odd_mtime_ns(index)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def walk(root: Path) -> list[Path]:
    """Every entry under ``root`` (not ``root`` itself), without following symlinks."""
    found = []
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as scan:
            for entry in scan:
                path = Path(entry.path)
                found.append(path)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_tree(root: Path, *, owners: bool = True) -> dict[str, dict[str, Any]]:
    """Record everything a faithful restore brings back, per path relative to ``root``.

    The root itself is left out: a restore target is created (or given) by the user. Symlinks
    are compared by target, not by mtime: spare does not promise to restore a link's own mtime.
    Hard links are recorded as the set of paths sharing an inode, never inode numbers, which
    differ after any restore. ``owners=False`` leaves uid and gid out, for a user who cannot
    chown.
    """
    records: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[str]] = defaultdict(list)
    for path in walk(root):
        rel = path.relative_to(root).as_posix()
        info = path.lstat()
        record: dict[str, Any] = {}
        if owners:
            record.update(uid=info.st_uid, gid=info.st_gid)
        if stat.S_ISLNK(info.st_mode):
            record.update(type="symlink", target=os.readlink(path))
        else:
            record.update(mode=oct(stat.S_IMODE(info.st_mode)), mtime_ns=info.st_mtime_ns)
            if stat.S_ISDIR(info.st_mode):
                record["type"] = "dir"
            elif stat.S_ISREG(info.st_mode):
                record.update(type="file", size=info.st_size, sha256=sha256_file(path))
                if info.st_nlink > 1:
                    inodes[(info.st_dev, info.st_ino)].append(rel)
            else:
                record["type"] = f"special ({stat.filemode(info.st_mode)[0]})"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                    record["device"] = (os.major(info.st_rdev), os.minor(info.st_rdev))
        records[rel] = record
    for group in inodes.values():
        if len(group) > 1:
            for rel in group:
                records[rel]["hardlinked_with"] = sorted(group)
    return records


def assert_trees_equal(
    expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]
) -> None:
    """Fail with one line per difference (missing, unexpected or changed entry and field)."""
    problems = []
    for rel in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing after restore: {rel} ({expected[rel].get('type')})")
    for rel in sorted(actual.keys() - expected.keys()):
        problems.append(f"unexpected after restore: {rel} ({actual[rel].get('type')})")
    for rel in sorted(expected.keys() & actual.keys()):
        want, got = expected[rel], actual[rel]
        for name in sorted(want.keys() | got.keys()):
            if want.get(name) != got.get(name):
                problems.append(
                    f"{rel}: {name} was {want.get(name)!r}, restored as {got.get(name)!r}"
                )
    assert not problems, f"{len(problems)} difference(s) between the trees:\n" + "\n".join(
        problems[:60]
    )


def regular_files(root: Path) -> list[str]:
    """Relative paths of the regular files under ``root`` (what verify may have to name)."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in walk(root)
        if path.is_file() and not path.is_symlink()
    )
