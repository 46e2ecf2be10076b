"""The restore target: every entry is created and changed through descriptors of directories
this restore made itself, so that no path in a backup can reach outside the target.

A path from the manifest is split into its directory and its name; the directory is opened from
the target's root one component at a time with ``O_NOFOLLOW | O_DIRECTORY``, so a symlink (made
earlier by the same restore, say) is never traversed, and paths longer than ``PATH_MAX`` work.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict

from spare import xattrs
from spare.errors import CannotCreate, RepositoryDamaged
from spare.fstree import DIRECTORY_FLAGS
from spare.repository import manifest as mf
from spare.repository.manifest import Entry

#: Open directory descriptors kept for reuse; restores visit directories in runs.
OPEN_DIRECTORIES = 64


def split(path: bytes) -> tuple[bytes, bytes]:
    """``a/b/c`` -> (``a/b``, ``c``); refuses what could leave the target."""
    parts = path.split(b"/")
    if (
        path.startswith(b"/")
        or b"\0" in path
        or any(part in (b"", b".", b"..") for part in parts)
        or any(len(part) > 255 for part in parts)
    ):
        raise RepositoryDamaged(f"the backup holds an unsafe path {path!r}; refusing to restore it")
    return b"/".join(parts[:-1]) or b".", parts[-1]


class Target:
    """The directory a restore writes into, and a cache of its open subdirectories."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # One cache per thread: a descriptor is never closed while another thread uses it.
        self._local = threading.local()
        self._caches: list[OrderedDict[bytes, int]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for cache in self._caches:
                for fd in cache.values():
                    os.close(fd)
                cache.clear()
        os.close(self.fd)

    @property
    def _dirs(self) -> OrderedDict[bytes, int]:
        cache: OrderedDict[bytes, int] | None = getattr(self._local, "dirs", None)
        if cache is None:
            cache = self._local.dirs = OrderedDict()
            with self._lock:
                self._caches.append(cache)
        return cache

    def display(self, relative: bytes) -> str:
        return os.fsdecode(self.root if relative == b"." else os.path.join(self.root, relative))

    def directory(self, relative: bytes) -> int:
        """A descriptor of the directory ``relative`` (``.`` is the root); do not close it."""
        if relative == b".":
            return self.fd
        dirs = self._dirs
        if relative in dirs:
            dirs.move_to_end(relative)
            return dirs[relative]
        parent, name = split(relative)
        fd = os.open(name, DIRECTORY_FLAGS, dir_fd=self.directory(parent))
        dirs[relative] = fd
        while len(dirs) > OPEN_DIRECTORIES:
            os.close(dirs.popitem(last=False)[1])
        return fd

    def forget(self, relative: bytes) -> None:
        """Drop this thread's cached descriptor of a directory that is done with."""
        fd = self._dirs.pop(relative, None)
        if fd is not None:
            os.close(fd)

    # -- creating -----------------------------------------------------------------------------
    def create(self, entry: Entry, *, devices: bool) -> bool:
        """Create ``entry`` (without its metadata); False if it cannot be made here."""
        parent, name = split(entry.path)
        try:
            if entry.link is not None:
                # The first name's directory gets a descriptor of its own: taking it from the
                # cache could evict the other one while it is in use.
                source_parent, source_name = split(entry.link)
                source_fd = self.open_directory(source_parent)
                try:
                    os.link(
                        source_name,
                        name,
                        src_dir_fd=source_fd,
                        dst_dir_fd=self.directory(parent),
                        follow_symlinks=False,
                    )
                finally:
                    os.close(source_fd)
                return True
            dir_fd = self.directory(parent)
            if entry.type == mf.DIRECTORY:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            elif entry.type == mf.FILE:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dir_fd,
                )
                try:
                    if entry.size:
                        os.ftruncate(fd, entry.size)  # unwritten ranges stay holes
                finally:
                    os.close(fd)
            elif entry.type == mf.SYMLINK:
                assert entry.target is not None
                os.symlink(entry.target, name, dir_fd=dir_fd)
            elif entry.type == mf.FIFO:
                os.mkfifo(name, 0o600, dir_fd=dir_fd)
            elif devices:
                kind = stat.S_IFCHR if entry.type == mf.CHAR_DEVICE else stat.S_IFBLK
                os.mknod(name, 0o600 | kind, entry.rdev, dir_fd=dir_fd)
            else:
                return False
        except FileExistsError:
            raise RepositoryDamaged(
                f"the backup lists {self.display(entry.path)} twice; refusing to restore it"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ENOENT, errno.ELOOP):
                raise CannotCreate(
                    f"{self.display(entry.path)}: cannot be created here ({exc.strerror})"
                ) from exc
            raise RepositoryDamaged(
                f"the backup puts {self.display(entry.path)} below something that is not a "
                f"directory it restored ({exc.strerror}); refusing to restore it"
            ) from None
        return True

    def open_directory(self, relative: bytes) -> int:
        """A descriptor of its own (the caller closes it) of the directory ``relative``."""
        if relative == b".":
            return os.dup(self.fd)
        parent, name = split(relative)
        return os.open(name, DIRECTORY_FLAGS, dir_fd=self.directory(parent))

    def write(self, relative: bytes, data: bytes, at: int) -> None:
        parent, name = split(relative)
        fd = os.open(
            name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.directory(parent)
        )
        try:
            os.pwrite(fd, data, at)
        finally:
            os.close(fd)

    # -- metadata -----------------------------------------------------------------------------
    def apply(self, entry: Entry, uid: int, gid: int, *, chown: bool) -> None:
        """Owner, attributes, mode and time, in the one order that keeps them all."""
        if entry.path == b".":
            dir_fd, name = self.fd, b"."
        else:
            parent, name = split(entry.path)
            dir_fd = self.directory(parent)
            if entry.type == mf.DIRECTORY:
                self.forget(entry.path)
        symlink = entry.type == mf.SYMLINK
        short = b"/proc/self/fd/%d/%s" % (dir_fd, name)
        if chown:  # first: changing the owner clears setuid and setgid
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if entry.xattrs and not symlink:
            xattrs.write(short, entry.xattrs, acls=False)  # before the mode may forbid it
        if not symlink:
            os.chmod(name, entry.mode, dir_fd=dir_fd)
        if entry.xattrs and not symlink:
            xattrs.write(short, entry.xattrs, acls=True)  # after the mode: ACLs set group bits
        os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
