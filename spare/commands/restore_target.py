"""The restore target: every entry is created and changed through descriptors of directories
this restore made itself, so that no path in a backup can reach outside the target, and no one
who can write to the target can make restore write to or change an inode it did not make.

A path from the manifest is split into its directory and its name; the directory is opened from
the target's root one component at a time with ``O_NOFOLLOW | O_DIRECTORY``, so a symlink (made
earlier by the same restore, say) is never traversed, and paths longer than ``PATH_MAX`` work.

Every inode restore makes is recorded (:class:`~spare.repository.cache.Inode`, in the
restore's plan). Whenever restore comes back to an entry (a directory to go through, a file to
write, an entry whose metadata is due), it opens it without following a symlink and without
blocking, and checks with ``fstat`` that it is the inode it made; anything else (a symlink, a
FIFO or another file put in its place) is left alone and reported (:class:`EntryReplaced`).
Owner, attributes, mode and times are then set through that descriptor, never by name.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict

from spare import xattrs
from spare.errors import CannotCreate, EntryReplaced, LocalSystemError, RepositoryDamaged
from spare.fstree import DIRECTORY_FLAGS
from spare.repository import manifest as mf
from spare.repository.manifest import Entry
from spare.repository.scratch import Inode, RestorePlan

#: Open directory descriptors kept for reuse; restores visit directories in runs.
OPEN_DIRECTORIES = 64

#: Opening an entry again never follows a symlink, never waits on a FIFO (no writer or no
#: reader) and never makes a terminal the controlling one.
_REOPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: How a file's content is written.
WRITE_FLAGS = os.O_WRONLY | _REOPEN
#: How an entry is opened to set its metadata. Symlinks and devices get an ``O_PATH``
#: descriptor: a symlink cannot be opened otherwise, and opening a device runs its driver (a
#: restored watchdog node would arm the watchdog). Their metadata is set through
#: ``/proc/self/fd/N``, which the kernel resolves to that descriptor's own inode.
METADATA_FLAGS = {
    mf.DIRECTORY: DIRECTORY_FLAGS | _REOPEN,
    mf.FILE: os.O_RDONLY | _REOPEN,
    mf.FIFO: os.O_RDONLY | _REOPEN,
}
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

#: What opening an entry fails with when something else was put in its place (a symlink, a
#: FIFO without a reader, a directory, a file restore may not open) or it was removed.
REPLACED_ERRORS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.ELOOP,
    errno.ENXIO,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
}

#: What the target's file system answers when it refuses every entry, not just one: the
#: restore stops (exit code 16) instead of going on with a warning per entry.
REFUSED_ERRORS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}

#: The kind of inode each entry type makes.
KINDS = {
    mf.DIRECTORY: stat.S_IFDIR,
    mf.FILE: stat.S_IFREG,
    mf.SYMLINK: stat.S_IFLNK,
    mf.FIFO: stat.S_IFIFO,
    mf.CHAR_DEVICE: stat.S_IFCHR,
    mf.BLOCK_DEVICE: stat.S_IFBLK,
}


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


def inode_of(st: os.stat_result) -> Inode:
    return Inode(st.st_dev, st.st_ino, st.st_uid, stat.S_IFMT(st.st_mode))


class Target:
    """The directory a restore writes into, and a cache of its open subdirectories.

    ``fd`` is a descriptor of that directory, which the target takes over; ``root`` names it in
    messages only; ``plan`` records the inodes this restore makes.
    """

    def __init__(self, fd: int, root: bytes, plan: RestorePlan) -> None:
        self.root = root
        self.fd = fd
        self.plan = plan
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
        return self._keep(relative, self.open_directory(relative))

    def _keep(self, relative: bytes, fd: int) -> int:
        dirs = self._dirs
        dirs[relative] = fd
        while len(dirs) > OPEN_DIRECTORIES:
            os.close(dirs.popitem(last=False)[1])
        return fd

    def forget(self, relative: bytes) -> None:
        """Drop this thread's cached descriptor of a directory that is done with."""
        fd = self._dirs.pop(relative, None)
        if fd is not None:
            os.close(fd)

    def open_directory(self, relative: bytes) -> int:
        """A descriptor of its own (the caller closes it) of the directory ``relative``, which
        must be one this restore made."""
        if relative == b".":
            return os.dup(self.fd)
        parent, name = split(relative)
        made = self.plan.created(relative)
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=self.directory(parent))
        except OSError as exc:
            if made is None or made.kind != stat.S_IFDIR or exc.errno not in REPLACED_ERRORS:
                raise  # not a directory restore made: the backup's doing (see create)
            raise self._replaced(relative, exc.strerror) from None
        return self._checked(fd, relative, made)

    def _replaced(self, relative: bytes, what: str | None = None) -> EntryReplaced:
        how = f" ({what})" if what else ""
        return EntryReplaced(
            f"{self.display(relative)}: replaced or removed while being restored{how}; "
            "left alone, not fully restored",
            relative,
        )

    def _checked(self, fd: int, relative: bytes, made: Inode | None) -> int:
        """``fd``, if it is the inode restore made at ``relative``; closed and refused if not."""
        if made is None or inode_of(os.fstat(fd)) != made:
            os.close(fd)
            raise self._replaced(relative, "by something restore did not make")
        return fd

    def _reopen(self, relative: bytes, flags: int, made: Inode | None) -> int:
        """The entry restore made at ``relative`` (``made``), opened again with ``flags``."""
        parent, name = split(relative)
        try:
            fd = os.open(name, flags, dir_fd=self.directory(parent))
        except OSError as exc:
            if exc.errno not in REPLACED_ERRORS:
                raise
            raise self._replaced(relative, exc.strerror) from None
        return self._checked(fd, relative, made)

    # -- creating -----------------------------------------------------------------------------
    def create(self, entry: Entry, *, devices: bool) -> bool:
        """Create ``entry`` (without its metadata) and record its inode; False if it cannot be
        made here."""
        parent, name = split(entry.path)
        made: Inode | None = None
        try:
            if entry.link is not None:
                self._link(entry.link, parent, name)
                return True  # an inode restore made already
            dir_fd = self.directory(parent)
            if entry.type == mf.DIRECTORY:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            elif entry.type == mf.FILE:
                made = self._create_file(name, dir_fd, entry.size)
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
            if exc.errno in REFUSED_ERRORS:
                raise self._refused(entry.path, exc) from None
            if exc.errno not in (errno.ENOTDIR, errno.ENOENT, errno.ELOOP):
                raise CannotCreate(
                    f"{self.display(entry.path)}: cannot be created here ({exc.strerror})"
                ) from exc
            raise RepositoryDamaged(
                f"the backup puts {self.display(entry.path)} below something that is not a "
                f"directory it restored ({exc.strerror}); refusing to restore it"
            ) from None
        if made is None:
            made = self._identify(entry, dir_fd, name)
        self.plan.add_created(entry.path, made)
        return True

    def _link(self, link: bytes, parent: bytes, name: bytes) -> None:
        # The first name's directory gets a descriptor of its own: taking it from the cache could
        # evict the other one while it is in use.
        source_parent, source_name = split(link)
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

    @staticmethod
    def _create_file(name: bytes, dir_fd: int, size: int) -> Inode:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            if size:
                os.ftruncate(fd, size)  # unwritten ranges stay holes
            return inode_of(os.fstat(fd))
        finally:
            os.close(fd)

    def _identify(self, entry: Entry, dir_fd: int, name: bytes) -> Inode:
        """The inode just made for ``entry``; a new directory's descriptor goes to the cache,
        as its entries come next."""
        try:
            if entry.type == mf.DIRECTORY:
                fd = os.open(name, DIRECTORY_FLAGS, dir_fd=dir_fd)
                made = inode_of(os.fstat(fd))
                self._keep(entry.path, fd)
            else:
                made = inode_of(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except OSError as exc:
            raise self._replaced(entry.path, exc.strerror) from None
        if made.kind != KINDS[entry.type]:
            raise self._replaced(entry.path, "by something restore did not make")
        return made

    def _refused(self, relative: bytes, exc: OSError) -> LocalSystemError:
        return LocalSystemError(
            f"cannot write {self.display(relative)} ({exc.strerror}): the restore target's file "
            "system refuses; free space there or restore into a writable directory with room "
            "(what was restored so far stays)"
        )

    def write(self, relative: bytes, data: bytes, at: int, made: Inode | None) -> None:
        """Write ``data`` at offset ``at`` of the file restore made at ``relative`` (``made``)."""
        fd = self._reopen(relative, WRITE_FLAGS, made)
        try:
            os.pwrite(fd, data, at)
        except OSError as exc:
            if exc.errno not in REFUSED_ERRORS:
                raise
            raise self._refused(relative, exc) from None
        finally:
            os.close(fd)

    # -- metadata -----------------------------------------------------------------------------
    def apply(self, entry: Entry, made: Inode | None, uid: int, gid: int, *, chown: bool) -> None:
        """Owner, attributes, mode and time, in the one order that keeps them all, set through
        a descriptor of the inode restore made (``made``; the root's is held from the start)."""
        if entry.path == b".":
            self._set_metadata(self.fd, entry, uid, gid, chown=chown)
            return
        if entry.type == mf.DIRECTORY:
            self.forget(entry.path)
        flags = METADATA_FLAGS.get(entry.type, PATH_FLAGS)
        fd = self._reopen(entry.path, flags, made)
        try:
            where: int | bytes = b"/proc/self/fd/%d" % fd if flags == PATH_FLAGS else fd
            self._set_metadata(where, entry, uid, gid, chown=chown)
        finally:
            os.close(fd)

    @staticmethod
    def _set_metadata(where: int | bytes, entry: Entry, uid: int, gid: int, *, chown: bool) -> None:
        """``where`` is a descriptor, or the ``/proc/self/fd/N`` path of an ``O_PATH`` one: a
        path the kernel resolves to that descriptor's inode, even a symlink's, and follows no
        further."""
        symlink = entry.type == mf.SYMLINK
        if chown:  # first: changing the owner clears setuid and setgid
            os.chown(where, uid, gid)
        if entry.xattrs and not symlink:
            xattrs.write(where, entry.xattrs, acls=False)  # before the mode may forbid it
        if not symlink:
            os.chmod(where, entry.mode)
        if entry.xattrs and not symlink:
            xattrs.write(where, entry.xattrs, acls=True)  # after the mode: ACLs set group bits
        os.utime(where, ns=(entry.mtime_ns, entry.mtime_ns))
