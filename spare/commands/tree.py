"""What ``create`` makes of the tree: the entries the walk selects, each one a manifest entry,
each file's content stored as chunks (or taken from the cache when it is unchanged since the
last snapshot)."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from spare import xattrs
from spare.console import Console, Progress, Warnings
from spare.fstree import Found, Selection, Skipper, is_cache_directory, walk
from spare.owners import group_name, user_name
from spare.repository import manifest as mf
from spare.repository.cache import Cache
from spare.repository.chunks import ChunkStore
from spare.repository.manifest import Entry, ManifestWriter

if TYPE_CHECKING:
    from spare.commands.create import BackupOptions

_TYPES = {
    stat.S_IFREG: mf.FILE,
    stat.S_IFDIR: mf.DIRECTORY,
    stat.S_IFLNK: mf.SYMLINK,
    stat.S_IFIFO: mf.FIFO,
    stat.S_IFCHR: mf.CHAR_DEVICE,
    stat.S_IFBLK: mf.BLOCK_DEVICE,
}

#: How often a file that changes while it is read is read again before it is reported.
REREADS = 2


def tree_selection(cache_root: Path, options: BackupOptions) -> Selection:
    """What the walk leaves out: ``--skip``, the cache (backing it up would be absurd), other
    file systems with ``--one-file-system``, and the contents of cache directories."""
    return Selection(
        Skipper(options.skip, absolute=[os.fsencode(os.path.realpath(cache_root))]),
        one_file_system=options.one_file_system,
        cachedir_tags=options.cachedir_tags,
    )


def is_cache_root(source: str) -> bool:
    """Whether ``source`` is itself a directory marked as a cache."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False  # a file: the walk reports what cannot be read
    try:
        return is_cache_directory(fd)
    finally:
        os.close(fd)


def scan_totals(source: str, select: Selection, progress: Progress) -> None:
    """Count the files and bytes below ``source`` in a thread of its own, for the progress
    line of a first backup (no last snapshot tells them)."""

    def scan() -> None:
        files = total = 0
        for found in walk(os.fsencode(source), select, lambda message: None):
            if stat.S_ISREG(found.stat.st_mode):
                files += 1
                total += found.stat.st_size
        progress.total, progress.bytes_total = files, total

    threading.Thread(target=scan, name="scan", daemon=True).start()


def store_tree(
    root: bytes,
    select: Selection,
    warn: Warnings,
    store: ChunkStore,
    cache: Cache,
    manifest: ManifestWriter,
    progress: Progress,
) -> int:
    """Store the tree's entries; counts its files and bytes in ``progress``, returns how many
    files were read (the others were unchanged since the last snapshot)."""
    read = 0
    first_names: dict[tuple[int, int], bytes] = {}
    for found in walk(root, select, warn, Console.current().info):
        entry = _entry(found, warn)
        if entry is None:
            continue
        # Any inode but a directory may have several names: files, symlinks, pipes, devices.
        linked = entry.type != mf.DIRECTORY and found.stat.st_nlink > 1
        key = (found.stat.st_dev, found.stat.st_ino)
        if linked and key in first_names:
            entry.link = first_names[key]
            entry.chunks, entry.xattrs = [], {}
            manifest.write(entry)
            continue
        if entry.type == mf.FILE:
            outcome = _file_content(found, entry, store, cache, warn)
            if outcome is None:
                continue
            read += outcome
            progress.add(1, entry.size)
            cache.add_live(entry.chunks)
        if linked:
            first_names[key] = found.relative
        manifest.write(entry)
    return read


def _entry(found: Found, warn: Warnings) -> Entry | None:
    st = found.stat
    kind = _TYPES.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        # A socket is made by the program that listens on it; restoring one would mean nothing.
        warn.note(f"{found.display}: socket skipped (sockets are never backed up)")
        return None
    entry = Entry(
        path=found.relative,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        mtime_ns=st.st_mtime_ns,
    )
    try:
        if kind == mf.SYMLINK:
            entry.target = found.readlink()
        elif kind != mf.FILE:  # a file's attributes are read from its open descriptor
            entry.xattrs = xattrs.read(found.short_path)
    except FileNotFoundError:
        warn(f"{found.display}: vanished before it could be read")
        return None
    except OSError as exc:
        warn(f"{found.display}: cannot read ({exc.strerror})")
        return None
    if kind in (mf.CHAR_DEVICE, mf.BLOCK_DEVICE):
        entry.rdev = st.st_rdev
    return entry


def _file_content(
    found: Found, entry: Entry, store: ChunkStore, cache: Cache, warn: Warnings
) -> bool | None:
    """Fill ``entry`` with the file's size and chunks: True if the file was read, False if the
    cache knew it unchanged; None (with a warning) if it cannot be read."""
    st = found.stat
    known = cache.lookup_file(found.relative, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if known is not None and known.xattrs:
        try:
            entry.xattrs = xattrs.read(found.short_path)
        except OSError:
            known = None  # gone or changed since the walk saw it: read it as a new file
    if known is not None:
        ids = known.chunks
        entry.size = st.st_size
        entry.chunks = [ids[i : i + mf.ID_BYTES] for i in range(0, len(ids), mf.ID_BYTES)]
        cache.remember_file(
            found.relative,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            ids,
            bool(entry.xattrs),
        )
        return False
    name = found.display
    try:
        fd = _open(found)
    except FileNotFoundError:
        warn(f"{name}: vanished before it could be read")
        return None
    except OSError as exc:
        warn(f"{name}: cannot open ({exc.strerror})")
        return None
    attributes_read = False
    with os.fdopen(fd, "rb", buffering=0) as file:
        for attempt in range(REREADS + 1):
            before = os.fstat(fd)
            # Read in the same version check as the content: setting an attribute changes ctime.
            try:
                entry.xattrs = xattrs.read(fd)
                attributes_read = True
            except OSError as exc:
                if attempt == 0:
                    warn(f"{name}: cannot read extended attributes ({exc.strerror})")
            file.seek(0)
            try:
                if before.st_blocks * 512 < before.st_size:  # has holes
                    chunks, length = store.store_sparse(fd, before.st_size)
                else:
                    chunks, length = store.store_stream(file, before.st_size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                    raise  # the cache is full: no file can be stored, the run must stop
                warn(f"{name}: read error ({exc.strerror})")
                return None
            after = os.fstat(fd)
            if _same_version(before, after):
                break
            if attempt == REREADS:
                warn(f"{name}: changed while being read; stored as last read")
    entry.size = length  # what was read: a file that grew meanwhile is stored as read
    entry.mode = stat.S_IMODE(after.st_mode)
    entry.mtime_ns = after.st_mtime_ns
    entry.chunks = chunks
    if _same_version(before, after):
        cache.remember_file(
            found.relative,
            after.st_size,
            after.st_mtime_ns,
            after.st_ctime_ns,
            after.st_ino,
            b"".join(chunks),
            bool(entry.xattrs) or not attributes_read,  # unread: read again next time
        )
    return True


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _open(found: Found) -> int:
    flags = os.O_RDONLY
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        return found.open(flags | noatime)
    except PermissionError:
        if not noatime:
            raise
        return found.open(flags)  # O_NOATIME needs ownership or CAP_FOWNER
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the walk
            raise FileNotFoundError(exc.errno, exc.strerror) from exc
        raise
