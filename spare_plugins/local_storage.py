"""The ``file`` storage: each bucket a directory below the endpoint, reached through descriptors.

Whoever can write into a bucket directory can plant anything there: ``snapshots`` as a symlink to
``/etc``, a FIFO where a pack belongs, ``config`` as a symlink to a file of their choice. So below
the bucket directory nothing is trusted. The bucket directory is opened from the endpoint for each
operation, then every component of a key from the one above it, with ``O_NOFOLLOW`` (and
``O_DIRECTORY`` for directories), never by a full path: no symlink is followed, written through or
deleted through, and only regular files are read as objects (a FIFO is opened non-blocking, so it
cannot hang a read). What spare creates is private: directories 0700, files 0600, whatever the
umask. The endpoint itself is the user's choice and may be reached through symlinks; it must
exist (spare creates the bucket directory in it, never the endpoint: a missing endpoint is most
often a disk that is not mounted).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from spare.errors import (
    AccessDenied,
    BadEndpoint,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageTransient,
)
from spare.hookspecs import hookimpl
from spare.registry import StorageRegistry
from spare.storage import TEMPORARY_MARK, ObjectInfo, Storage, StorageLocation

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

#: Keys have at most this many components (spare's have three); listings go no deeper, so a
#: bucket nested without end cannot exhaust descriptors or the stack.
MAX_DEPTH = 16

#: Bytes copied at a time by ``put_file``: packs are streamed, never held in memory whole.
COPY_CHUNK = 1 << 20

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OBJECT = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_TEMPORARY = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
    stat.S_IFREG: "a regular file",
}


class _NotThere(Exception):
    """A directory or object of a key is not in the bucket: missing, or something spare will not
    go through or read (``kind`` says what it is then)."""

    def __init__(self, shown: str, kind: str | None = None, expected: str = "") -> None:
        super().__init__(shown)
        self.shown = shown
        self.kind = kind
        self.expected = expected

    def reason(self) -> str:
        return f"{self.shown!r} is {self.kind}, not {self.expected}"


def _kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "of an unknown kind")


def _kind(parent: int, name: str) -> str:
    """What the entry ``name`` of ``parent`` is, for a message."""
    try:
        return _kind_of(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def _parts(key: str) -> list[str]:
    parts = key.split("/")
    if len(parts) > MAX_DEPTH or any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise ValueError(f"not an object key: {key!r}")
    return parts


def _open_directory(parent: int, name: str, shown: str) -> int | None:
    """The directory ``name`` of ``parent``, never through a symlink; None if it is missing."""
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # O_NOFOLLOW | O_DIRECTORY fails on a symlink with ENOTDIR (ELOOP on older kernels).
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _NotThere(shown, _kind(parent, name), "a directory") from None
        raise


def _subdirectory(parent: int, name: str, shown: str, *, create: bool) -> int:
    """Open the directory ``name`` of ``parent``; with ``create``, make it (private) if missing."""
    fd = _open_directory(parent, name, shown)
    if fd is not None:
        return fd
    if not create:
        raise _NotThere(shown)
    try:
        os.mkdir(name, DIRECTORY_MODE, dir_fd=parent)
        made = True
    except FileExistsError:  # made meanwhile by another writer
        made = False
    fd = _open_directory(parent, name, shown)
    if fd is None:
        raise _NotThere(shown)
    if made:
        os.fchmod(fd, DIRECTORY_MODE)  # the umask may have taken bits away, or left some
        os.fsync(parent)
    return fd


def _open_object(directory: int, name: str, shown: str) -> tuple[int, int]:
    """A descriptor of the regular file ``name`` and its size; never a symlink, FIFO or device."""
    try:
        # Checked before opening, so that a device node is never opened at all.
        mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise _NotThere(shown, _kind_of(mode), "a regular file")
        fd = os.open(name, _OBJECT, dir_fd=directory)
    except FileNotFoundError:
        raise _NotThere(shown) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since the check
            raise _NotThere(shown, "a symlink", "a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # swapped since the check
        os.close(fd)
        raise _NotThere(shown, _kind_of(info.st_mode), "a regular file")
    return fd, info.st_size


def _read_range(fd: int, size: int, start: int | None, end: int | None) -> bytes:
    first = max(0, start or 0)
    want = (size if end is None else min(end, size)) - first
    if want <= 0:
        return b""
    data = os.pread(fd, want, first)  # one read, one buffer, for a whole object
    if len(data) == want:
        return data
    parts = [data]
    got = len(data)
    while got < want and (more := os.pread(fd, want - got, first + got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy(source: BinaryIO, fd: int) -> None:
    while chunk := source.read(COPY_CHUNK):
        _write_all(fd, chunk)


def _scan(directory: int, prefix: str, depth: int, found: list[ObjectInfo]) -> None:
    """Add the regular files below ``directory`` to ``found``; symlinks are not followed."""
    subdirectories = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):  # deleted since it was seen
                    size = entry.stat(follow_symlinks=False).st_size
                    found.append(ObjectInfo(prefix + entry.name, size))
    if depth + 1 >= MAX_DEPTH:
        return
    for name in subdirectories:
        try:
            fd = _open_directory(directory, name, prefix + name)
        except _NotThere:  # swapped for something else since it was seen
            continue
        if fd is None:
            continue
        try:
            _scan(fd, f"{prefix}{name}/", depth + 1, found)
        finally:
            os.close(fd)


def _translate(exc: OSError, what: str, where: str) -> StorageError:
    text = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        return AccessDenied(f"{what}: {text}; check the permissions of {where}")
    if exc.errno in (errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR):
        return StorageTransient(f"{what}: {text} (in {where})")
    return StorageError(f"{what}: {text} (in {where})")


class LocalStorage(Storage):
    """The bucket ``<endpoint>/<bucket>``; each object a regular file in it, reached by descriptor.

    Puts are written under a temporary name in the object's directory, synced and renamed into
    place; ``create`` links the finished temporary file into place, which fails if the name exists.
    """

    atomic_create = True

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.path = os.path.join(endpoint, bucket)

    # -- reaching directories -------------------------------------------------------------------
    def _open_bucket(self, *, create: bool) -> int:
        try:
            endpoint = os.open(self.endpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            # Most often a backup disk that is not mounted: creating the directory would write
            # the backup onto the root file system, under the mount point.
            raise BadEndpoint(
                f"{self.endpoint} does not exist: is the disk mounted? spare creates only the "
                "bucket directory below it"
            ) from None
        except NotADirectoryError:
            raise BadEndpoint(
                f"the endpoint {self.endpoint} is not a directory; check --endpoint"
            ) from None
        try:
            return _subdirectory(endpoint, self.bucket, self.bucket, create=create)
        except _NotThere as exc:
            if exc.kind is None:
                raise
            raise BadEndpoint(
                f"the bucket directory {self.path} is {exc.kind}, not a directory; spare does "
                "not follow it: give --endpoint the directory that holds the real bucket"
            ) from None
        finally:
            os.close(endpoint)

    @contextmanager
    def _directory(self, parts: Sequence[str], *, create: bool) -> Iterator[int]:
        """A descriptor of the bucket's directory ``parts``, opened one component at a time."""
        fd = self._open_bucket(create=create)
        try:
            for depth, name in enumerate(parts):
                child = _subdirectory(fd, name, "/".join(parts[: depth + 1]), create=create)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _refusal(self, what: str, exc: _NotThere) -> str:
        if exc.kind is None:
            return f"{what}: not found in {self.path}"
        return (
            f"{what}: {exc.reason()}, in the bucket {self.path}; spare never follows or opens "
            "it: remove it"
        )

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Errors of a read: whatever is not a regular file in the bucket is no object."""
        try:
            yield
        except _NotThere as exc:
            raise ObjectNotFound(self._refusal(what, exc)) from None
        except OSError as exc:
            raise _translate(exc, what, self.path) from exc

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        try:
            yield
        except _NotThere as exc:
            if exc.kind is None:  # a directory vanished while it was being made
                raise StorageTransient(self._refusal(what, exc)) from None
            raise StorageError(self._refusal(what, exc)) from None
        except OSError as exc:
            raise _translate(exc, what, self.path) from exc

    # -- the contract ---------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        with self._writing(f"creating {self.path}"), self._directory([], create=True):
            pass

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        *parents, name = _parts(key)
        with self._reading(f"reading {key}"), self._directory(parents, create=False) as directory:
            fd, size = _open_object(directory, name, key)
            try:
                return _read_range(fd, size, start, end)
            finally:
                os.close(fd)

    def put(self, key: str, data: bytes) -> None:
        self._store(key, lambda fd: _write_all(fd, data), exclusive=False)

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as source:  # the host's own file: its errors are the host's
            self._store(key, lambda fd: _copy(source, fd), exclusive=False)

    def create(self, key: str, data: bytes) -> None:
        self._store(key, lambda fd: _write_all(fd, data), exclusive=True)

    def _store(self, key: str, fill: Callable[[int], None], *, exclusive: bool) -> None:
        *parents, name = _parts(key)
        what = f"{'creating' if exclusive else 'storing'} {key}"
        with self._writing(what), self._directory(parents, create=True) as directory:
            temporary = f"{name}{TEMPORARY_MARK}{uuid.uuid4().hex}"
            fd = os.open(temporary, _TEMPORARY, FILE_MODE, dir_fd=directory)
            try:
                try:
                    os.fchmod(fd, FILE_MODE)
                    fill(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if exclusive:
                    _link(directory, temporary, name, key)
                else:
                    _replace(directory, temporary, name, key)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=directory)
            os.fsync(directory)  # the name is stored before anything that refers to it

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Regular files only. Anything else below the prefix is no object and is skipped; a
        prefix whose own directory is a symlink (``snapshots -> /etc``) is refused, so that the
        run stops there and says so rather than take a whole namespace for empty."""
        head = prefix.rpartition("/")[0]
        parts = _parts(head) if head else []
        found: list[ObjectInfo] = []
        with self._reading(f"listing {prefix or 'the bucket'}"):
            try:
                with self._directory(parts, create=False) as directory:
                    _scan(directory, f"{head}/" if head else "", len(parts), found)
            except _NotThere as exc:
                if exc.kind is not None:
                    raise
        return iter([info for info in found if info.key.startswith(prefix)])

    def delete(self, keys: Iterable[str]) -> None:
        by_directory: dict[tuple[str, ...], list[str]] = {}
        for key in keys:
            *parents, name = _parts(key)
            by_directory.setdefault(tuple(parents), []).append(name)
        for directory_parts, names in by_directory.items():
            with self._writing(f"deleting {'/'.join((*directory_parts, names[0]))}"):
                try:
                    with self._directory(directory_parts, create=False) as directory:
                        for name in names:
                            # unlink(2) removes the entry, a symlink included, never its target.
                            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                                os.unlink(name, dir_fd=directory)
                except _NotThere:  # missing, or not a directory: nothing of the bucket there
                    continue


def _replace(directory: int, temporary: str, name: str, key: str) -> None:
    """rename(2) the temporary file over ``name``: replaces a symlink, never writes through it."""
    try:
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except (IsADirectoryError, NotADirectoryError):
        raise _NotThere(key, _kind(directory, name), "a regular file") from None


def _link(directory: int, temporary: str, name: str, key: str) -> None:
    """link(2) the temporary file to ``name``: atomic, and fails if the name is taken."""
    try:
        os.link(temporary, name, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False)
    except FileExistsError:
        kind = _kind(directory, name)
        if kind != _KINDS[stat.S_IFREG]:
            raise _NotThere(key, kind, "a regular file") from None
        raise ObjectExists(f"creating {key}: already exists") from None


def make_local(location: StorageLocation) -> Storage:
    return LocalStorage(location.url, location.bucket)


@hookimpl(trylast=True)
def spare_register_storages(registry: StorageRegistry) -> None:
    registry.add_storage("file", make_local)
