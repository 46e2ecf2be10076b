"""Where ``restore --path`` points, opened once, before anything is read from the bucket.

The target is never reached by its path again: a user who can write to the directory holding
it could otherwise swap it for a symlink between a check and a use, and have root restore
(setuid files included) into any directory. So the target's parent is opened (its missing
directories made one at a time, through descriptors), and the target itself is opened in it with
``O_NOFOLLOW | O_DIRECTORY`` and checked through that descriptor: a symlink is refused, and so is
a directory that is not empty, or that another user controls when running as root (unless
``--force``). A target that does not exist is made by restore, mode 0700, once the backup says
whether it is a directory or a single file.
"""

from __future__ import annotations

import contextlib
import os
import stat

from spare.errors import LocalSystemError, TargetNotEmpty, UnsafeTarget
from spare.fstree import DIRECTORY_FLAGS

#: The target is opened without following a symlink and without waiting on a FIFO.
TARGET_FLAGS = DIRECTORY_FLAGS | os.O_NONBLOCK | os.O_NOCTTY


class Destination:
    """The directory holding the target, and the target itself if it exists (empty).

    ``path`` (absolute) is for messages only. :meth:`take_directory` hands over the target's
    descriptor; :meth:`close` closes what was not handed over.
    """

    def __init__(
        self,
        path: bytes,
        parent_fd: int,
        name: bytes,
        fd: int | None,
        force: bool,
        made_parents: list[bytes] | None = None,
    ):
        self.path = path
        self.parent_fd = parent_fd
        self.name = name
        self.fd = fd
        self.force = force
        #: The directories above the target that opening it made, outermost first.
        self.made_parents = made_parents or []
        self.made_target = False

    @property
    def exists(self) -> bool:
        return self.fd is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        os.close(self.parent_fd)

    def remove_if_empty(self) -> None:
        """Remove the directories restore made, target and parents, if still empty: a restore
        that failed or restored nothing leaves nothing behind. Call before :meth:`close`."""
        with contextlib.suppress(OSError):
            if self.made_target:
                os.rmdir(self.name, dir_fd=self.parent_fd)
            for made in reversed(self.made_parents):
                os.rmdir(made)

    def take_directory(self) -> int:
        """The target directory's descriptor (the caller closes it): the empty one that was
        there, or a new one, mode 0700 until restore sets the backup's metadata on it."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            return fd
        display = os.fsdecode(self.path)
        try:
            os.mkdir(self.name, 0o700, dir_fd=self.parent_fd)
        except FileExistsError:
            raise TargetNotEmpty(
                f"{display} appeared while the restore was starting: restore into an empty or "
                "new directory"
            ) from None
        except OSError as exc:
            raise LocalSystemError(
                f"cannot create {display} ({exc.strerror}): restore into a directory this user "
                "may write to"
            ) from None
        self.made_target = True
        made = open_directory(self.parent_fd, self.name, self.path, force=self.force)
        if made is None:
            raise TargetNotEmpty(f"{display} vanished while the restore was starting")
        return made


def open_destination(path: str, *, force: bool) -> Destination:
    """Open where ``path`` points; refuse a target that restore must not write into."""
    absolute = os.fsencode(os.path.abspath(path))
    parent, name = os.path.split(absolute)
    parent_fd, made = _open_parent(parent)
    destination = Destination(absolute, parent_fd, name or b".", None, force, made)
    try:
        destination.fd = open_directory(parent_fd, name or b".", absolute, force=force)
    except BaseException:
        destination.remove_if_empty()
        destination.close()
        raise
    return destination


def _open_parent(parent: bytes) -> tuple[int, list[bytes]]:
    """A descriptor of ``parent``, made like ``mkdir -p`` if missing; and the directories made,
    outermost first.

    The part that exists is opened as named, symlinks and all: it is the administrator's path.
    What is missing is made one directory at a time, each opened in the one before with
    ``O_NOFOLLOW``, mode 0755 at most (never writable by others, whatever the umask).
    """
    missing: list[bytes] = []
    head = parent
    while True:
        try:
            fd = os.open(head, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            break
        except FileNotFoundError:
            head, tail = os.path.split(head)
            missing.append(tail)
        except OSError as exc:
            raise LocalSystemError(f"cannot open {os.fsdecode(head)} ({exc.strerror})") from None
    made: list[bytes] = []
    for name in reversed(missing):
        head = os.path.join(head, name)
        try:
            with contextlib.suppress(FileExistsError):  # made meanwhile: opened as any other
                os.mkdir(name, 0o755, dir_fd=fd)
                made.append(head)
            below = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise LocalSystemError(
                f"cannot create {os.fsdecode(head)} ({exc.strerror}): restore into a directory "
                "this user may write to"
            ) from None
        finally:
            os.close(fd)
        fd = below
    return fd, made


def open_directory(parent_fd: int, name: bytes, path: bytes, *, force: bool) -> int | None:
    """The target ``name`` in ``parent_fd`` opened and checked, or None if it does not exist."""
    display = os.fsdecode(path)
    try:
        fd = os.open(name, TARGET_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafeTarget(
                f"{display} is a symlink: restore never follows one there; give the directory "
                "it points to"
            ) from None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise TargetNotEmpty(
                f"{display} exists and is not a directory: restore into an empty or new directory"
            ) from None
        raise LocalSystemError(f"cannot open {display} ({exc.strerror})") from None
    try:
        _check(fd, display, force=force)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check(fd: int, display: str, *, force: bool) -> None:
    with os.scandir(fd) as entries:
        if next(entries, None) is not None:
            raise TargetNotEmpty(f"{display} is not empty: restore into an empty or new directory")
    _check_writable(fd, display)
    if os.geteuid() != 0 or force:
        return
    st = os.fstat(fd)
    if st.st_uid != 0:
        raise UnsafeTarget(
            f"{display} belongs to uid {st.st_uid}, not to root: its owner could redirect what "
            "root restores there; restore into a directory of root's, or give --force"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeTarget(
            f"{display} is writable by its group or by others (mode {stat.S_IMODE(st.st_mode):o}):"
            " they could redirect what root restores there; restore into a directory only root "
            "can write to, or give --force"
        )


def _check_writable(fd: int, display: str) -> None:
    """Refuse, before anything is read from the bucket, a target this process cannot write in:
    on a read-only file system, or forbidden by its permissions or attributes (immutable)."""
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        raise LocalSystemError(
            f"{display} is on a read-only file system: restore into a writable directory, or "
            "remount it read-write"
        )
    proc = f"/proc/self/fd/{fd}"  # the kernel resolves it to this very directory, not by name
    effective = os.access in os.supports_effective_ids
    if os.path.isdir(proc) and not os.access(proc, os.W_OK | os.X_OK, effective_ids=effective):
        raise LocalSystemError(
            f"{display} may not be written to by this user (uid {os.geteuid()}): check its "
            "owner, mode and attributes ('lsattr -d'), or restore into a directory this user may "
            "write to"
        )
