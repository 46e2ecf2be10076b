"""Walking the tree to back up: depth first, names sorted bytewise, never following symlinks.

Every entry is reached relative to an open descriptor of its directory (``openat(2)`` and
friends), never by its full path: paths may be far longer than ``PATH_MAX`` (a tree 60 levels deep
with long names), and a directory renamed or replaced by a symlink during the walk cannot lead
the walk outside the tree.

What the walk leaves out is a :class:`Selection`: ``--skip``, other file systems
(``--one-file-system``) and the contents of cache directories (``CACHEDIR.TAG``).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: The file that marks a cache directory, and what it must start with to count
#: (https://bford.info/cachedir/): a file of that name without the signature marks nothing.
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@dataclass(frozen=True)
class Found:
    """One entry: its path below the root, and where to reach it (``dir_fd`` + ``name``)."""

    relative: bytes
    path: bytes  # for messages and --skip only: it may be too long for a system call
    dir_fd: int
    name: bytes
    stat: os.stat_result

    def open(self, flags: int) -> int:
        return os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)

    def readlink(self) -> bytes:
        return os.readlink(self.name, dir_fd=self.dir_fd)

    @property
    def short_path(self) -> bytes:
        """A path that reaches the entry itself (not what a symlink points to) and always fits a
        system call, for the calls that take no directory descriptor (extended attributes)."""
        return b"/proc/self/fd/%d/%s" % (self.dir_fd, self.name)

    @property
    def display(self) -> str:
        return os.fsdecode(self.path)


def normalise_skip(pattern: str) -> bytes:
    """``./cache``, ``cache/`` and ``cache`` all name ``cache`` below the backed-up path."""
    raw = os.fsencode(pattern).strip()
    while raw.startswith(b"./"):
        raw = raw[2:]
    return raw.rstrip(b"/") or b"."


class Skipper:
    """Decides which relative paths ``--skip`` names: exact paths, or glob patterns.

    Patterns are matched against the whole path below ``--path`` (``fnmatch``: ``*`` matches
    across ``/`` too); a skipped directory is not entered.
    """

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


@dataclass(frozen=True)
class Selection:
    """What the walk leaves out.

    ``skip`` names paths (``--skip``) that are not visited at all. With ``one_file_system``, a
    directory on another file system than the root's (a mount point) is yielded but not
    entered, and other entries on another file system are left out, as restic's
    ``--one-file-system`` does. With ``cachedir_tags``, a directory holding a valid
    ``CACHEDIR.TAG`` is yielded with its tag only, as restic's and GNU tar's
    ``--exclude-caches`` do: a restore gives the application its cache directory back, empty
    and still marked.
    """

    skip: Callable[[bytes, bytes], bool] = lambda relative, path: False
    one_file_system: bool = False
    cachedir_tags: bool = False


def is_cache_directory(dir_fd: int) -> bool:
    """Whether the directory open as ``dir_fd`` holds a ``CACHEDIR.TAG`` that starts with the
    signature: a regular file, not followed if a symlink, never blocking if a FIFO."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(CACHEDIR_TAG, flags, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.pread(fd, len(CACHEDIR_SIGNATURE), 0) == CACHEDIR_SIGNATURE
    except OSError:
        return False
    finally:
        os.close(fd)


def open_root(root: bytes) -> tuple[int, bytes, os.stat_result]:
    """The directory holding the root, the root's name in it, and the root's stat.

    The root itself may be a symlink (followed, at the top only), a directory or a file.
    """
    real = os.path.realpath(root)
    parent, name = os.path.split(real)
    dir_fd = os.open(parent or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.stat(name or b".", dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        os.close(dir_fd)
        raise
    return dir_fd, name or b".", st


def walk(
    root: bytes,
    select: Selection,
    warn: Callable[[str], None],
    tell: Callable[[str], None] = lambda message: None,
) -> Iterator[Found]:
    """Yield the root (relative path ``.``) and every entry below it, parents before children.

    A directory that cannot be listed is yielded, with a warning, but not entered; an entry that
    vanishes between listing and ``lstat`` is left out with a warning. What ``select`` leaves
    out of a directory or of another file system is told with ``tell`` (for ``--verbose``). A
    ``Found``'s descriptor stays open until the walk leaves its directory.
    """
    parent_fd, root_name, root_stat = open_root(root)
    try:
        yield Found(b".", root, parent_fd, root_name, root_stat)
        if not stat.S_ISDIR(root_stat.st_mode):
            return
        stack = [_Level.enter(b"", root, parent_fd, root_name, warn).select(select, tell)]
        while stack:
            level = stack[-1]
            name = level.next_name()
            if name is None:
                stack.pop().close()
                continue
            relative = level.prefix + name
            path = os.path.join(level.path, name)
            if select.skip(relative, path):
                continue
            try:
                st = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
            except FileNotFoundError:
                warn(f"{os.fsdecode(path)}: vanished before it could be read")
                continue
            except OSError as exc:
                warn(f"{os.fsdecode(path)}: cannot stat ({exc.strerror})")
                continue
            elsewhere = select.one_file_system and st.st_dev != root_stat.st_dev
            if elsewhere and not stat.S_ISDIR(st.st_mode):
                tell(f"{os.fsdecode(path)}: on another file system; left out (--one-file-system)")
                continue
            yield Found(relative, path, level.fd, name, st)
            if elsewhere:
                # The mount point itself is kept, empty, so that a restore shows where it was.
                tell(f"{os.fsdecode(path)}: a mount point; not entered (--one-file-system)")
            elif stat.S_ISDIR(st.st_mode):
                level = _Level.enter(relative + b"/", path, level.fd, name, warn)
                stack.append(level.select(select, tell))
    finally:
        os.close(parent_fd)


class _Level:
    """An open directory of the walk and the sorted names still to visit in it."""

    def __init__(self, prefix: bytes, path: bytes, fd: int, names: list[bytes]) -> None:
        self.prefix = prefix
        self.path = path
        self.fd = fd
        self.names = names
        self.index = 0

    @classmethod
    def enter(
        cls, prefix: bytes, path: bytes, parent_fd: int, name: bytes, warn: Callable[[str], None]
    ) -> _Level:
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            warn(f"{os.fsdecode(path)}: directory vanished while being read")
            return cls(prefix, path, -1, [])
        except OSError as exc:
            warn(f"{os.fsdecode(path)}: cannot open directory ({exc.strerror})")
            return cls(prefix, path, -1, [])
        try:
            with os.scandir(fd) as entries:
                names = sorted(os.fsencode(entry.name) for entry in entries)
        except OSError as exc:
            warn(f"{os.fsdecode(path)}: cannot list directory ({exc.strerror})")
            names = []
        return cls(prefix, path, fd, names)

    def select(self, select: Selection, tell: Callable[[str], None]) -> _Level:
        """Keep only the tag of a cache directory, if ``select`` says so."""
        if select.cachedir_tags and CACHEDIR_TAG in self.names and is_cache_directory(self.fd):
            self.names = [CACHEDIR_TAG]
            tell(f"{os.fsdecode(self.path)}: a cache directory (CACHEDIR.TAG); only its tag kept")
        return self

    def next_name(self) -> bytes | None:
        if self.index == len(self.names):
            return None
        self.index += 1
        return self.names[self.index - 1]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
