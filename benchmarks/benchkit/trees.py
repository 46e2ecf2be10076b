"""Tree comparison and disk usage."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from pathlib import Path

# relative path -> (kind, sha256 or link target, size, mode, mtime_ns)
Entry = tuple[str, str, int, int, int]


def scan_entry(path: str | Path) -> Entry:
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path), 0, 0, 0)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", "", 0, mode, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return ("file", digest, st.st_size, mode, st.st_mtime_ns)
    return ("other", "", 0, mode, st.st_mtime_ns)


def scan_tree(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in itertools.chain(dirnames, filenames):
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = scan_entry(path)
    return out


def compare_trees(src: dict[str, Entry], dst: dict[str, Entry]) -> dict:
    """Paths, kinds, contents and link targets must match; modes and mtimes are reported."""
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    differ: list[str] = []
    mode_diff: list[str] = []
    mtime_diff: list[str] = []
    for rel in sorted(set(src) & set(dst)):
        a, b = src[rel], dst[rel]
        if a[0] != b[0] or a[1] != b[1] or a[2] != b[2]:
            differ.append(rel)
            continue
        if a[0] in ("file", "dir") and a[3] != b[3]:
            mode_diff.append(rel)
        # File mtimes within a microsecond (a float timestamp is good to about 0.25 us).
        if a[0] == "file" and abs(a[4] - b[4]) > 1000:
            mtime_diff.append(rel)
    return {
        "correct": not (missing or extra or differ),
        "missing": len(missing),
        "extra": len(extra),
        "differ": len(differ),
        "mode_mismatch": len(mode_diff),
        "mtime_mismatch": len(mtime_diff),
        "examples": {
            k: v[:5]
            for k, v in (
                ("missing", missing),
                ("extra", extra),
                ("differ", differ),
                ("mode_mismatch", mode_diff),
                ("mtime_mismatch", mtime_diff),
            )
            if v
        },
    }


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(bytes allocated like du, apparent bytes, regular files) under root."""
    disk = apparent = files = 0
    if not root.exists():
        return 0, 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in itertools.chain(dirnames, filenames):
            st = os.lstat(os.path.join(dirpath, name))
            disk += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                apparent += st.st_size
                files += 1
    disk += os.lstat(root).st_blocks * 512
    return disk, apparent, files


# relative path or object key -> (size, what tells a rewrite: mtime and inode, or ETag)
ObjectStates = dict[str, tuple[int, str]]


def file_states(root: Path) -> ObjectStates:
    """Size, mtime and inode of every regular file under root, to see later what was written."""
    out: ObjectStates = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(path, root)
                out[rel] = (st.st_size, f"{st.st_mtime_ns}:{st.st_ino}")
    return out


def written_since(before: ObjectStates, after: ObjectStates) -> tuple[int, int]:
    """(bytes, objects) of those in ``after`` that are new or changed since ``before``: what a
    run wrote into a repository (a file rewritten or appended to counts whole)."""
    changed = [state for key, state in after.items() if before.get(key) != state]
    return sum(size for size, _ in changed), len(changed)
