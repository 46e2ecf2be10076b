"""Walking the tree to back up: depth first, names sorted bytewise, never following symlinks."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Found:
    relative: bytes
    path: bytes
    stat: os.stat_result


def normalise_skip(pattern: str) -> bytes:
    """``./cache``, ``cache/`` and ``cache`` all name ``cache`` below the backed-up path."""
    raw = os.fsencode(pattern).strip()
    while raw.startswith(b"./"):
        raw = raw[2:]
    return raw.rstrip(b"/") or b"."


class Skipper:
    """Decides which relative paths ``--skip`` names (exact paths, or glob patterns)."""

    def __init__(self, patterns: list[str], absolute: list[bytes] | None = None) -> None:
        self.exact = set()
        self.globs = []
        for pattern in patterns:
            raw = normalise_skip(pattern)
            if any(char in raw for char in b"*?["):
                self.globs.append(raw)
            else:
                self.exact.add(raw)
        self.absolute = set(absolute or [])

    def __call__(self, relative: bytes, path: bytes) -> bool:
        if relative in self.exact or path in self.absolute:
            return True
        return any(fnmatch.fnmatchcase(relative, glob) for glob in self.globs)


def walk(
    root: bytes, skip: Callable[[bytes, bytes], bool], warn: Callable[[str], None]
) -> Iterator[Found]:
    """Yield the root (relative path ``.``) and every entry below it, parents before children.

    A directory that cannot be listed is yielded, with a warning, but not entered; an entry that
    vanishes between listing and ``lstat`` is left out with a warning.
    """
    yield Found(b".", root, os.stat(root))
    stack: list[Iterator[tuple[bytes, bytes]]] = [_children(b"", root, warn)]
    while stack:
        try:
            relative, path = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if skip(relative, path):
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            warn(f"{os.fsdecode(path)}: vanished before it could be read")
            continue
        except OSError as exc:
            warn(f"{os.fsdecode(path)}: cannot stat ({exc.strerror})")
            continue
        yield Found(relative, path, st)
        if stat.S_ISDIR(st.st_mode):
            stack.append(_children(relative + b"/", path, warn))


def _children(
    prefix: bytes, path: bytes, warn: Callable[[str], None]
) -> Iterator[tuple[bytes, bytes]]:
    try:
        with os.scandir(path) as entries:
            names = sorted(entry.name for entry in entries)
    except FileNotFoundError:
        warn(f"{os.fsdecode(path)}: directory vanished while being read")
        return
    except OSError as exc:
        warn(f"{os.fsdecode(path)}: cannot list directory ({exc.strerror})")
        return
    for name in names:
        yield prefix + name, os.path.join(path, name)
