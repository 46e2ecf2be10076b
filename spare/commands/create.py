"""``spare create``: back up one tree into the bucket, keep exactly that snapshot."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from dataclasses import dataclass, field
from typing import Any

from spare import xattrs
from spare.commands.context import Context, note_sync
from spare.console import Progress, Warnings
from spare.errors import (
    CompletedWithWarnings,
    IdentityMismatch,
    Interrupted,
    NoSnapshot,
    SourceUnavailable,
)
from spare.fstree import Found, Skipper, walk
from spare.hookspecs import CommittedSnapshot
from spare.owners import group_name, user_name
from spare.repository import manifest as mf
from spare.repository.cache import Cache
from spare.repository.chunks import PACK_SIZE, ChunkStore
from spare.repository.health import CHECK_SHARE, check_rotating_share
from spare.repository.index import sync_index, write_index
from spare.repository.locking import HeldLock, locked
from spare.repository.manifest import Entry, ManifestWriter
from spare.repository.opening import repair_config
from spare.repository.prune import prune
from spare.repository.repo import Repository
from spare.repository.snapshots import (
    Snapshot,
    check_not_rolled_back,
    highest_seen,
    list_snapshots,
    now,
    remember_seen,
    store_snapshot,
)
from spare.signals import uninterrupted

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


@dataclass
class BackupOptions:
    path: str
    skip: list[str] = field(default_factory=list)
    force: bool = False
    compression: str = "lzma"
    pack_size: int = PACK_SIZE
    #: Bytes per second that uploads may average; None for no limit.
    limit_upload: int | None = None
    #: Percent of the bucket's packs downloaded and checked before the backup.
    check_share: float = CHECK_SHARE
    #: Cores the run may use: chunks are compressed and encrypted in this many threads.
    jobs: int = 1
    #: Only say what would be stored: nothing is read but metadata, nothing is written.
    dry_run: bool = False


@dataclass(frozen=True)
class CreateStats:
    """What a create did (or, dry, would do): the tree it stored, what was new or changed since
    the last snapshot, what it wrote to the bucket and what the prune deleted."""

    entries: int
    files: int
    bytes: int
    #: Files read because the last snapshot did not hold them, or held another version.
    new_files: int
    changed_files: int
    #: Files of the last snapshot no longer in the tree; None when the cache cannot tell.
    deleted_files: int | None
    #: Bytes of the files read (a dry run), or of the chunks no snapshot held before.
    new_bytes: int
    stored_bytes: int
    objects_written: int
    bytes_uploaded: int
    deleted_objects: int
    repacked: int
    warnings: int
    seconds: float
    snapshot: Snapshot | None

    def figures(self) -> dict[str, Any]:
        """The figures of the JSON summary (docs/json.rst)."""
        figures = {
            name: getattr(self, name)
            for name in (
                "files",
                "bytes",
                "new_files",
                "changed_files",
                "deleted_files",
                "new_bytes",
                "stored_bytes",
                "objects_written",
                "bytes_uploaded",
                "deleted_objects",
            )
        }
        figures["entries"] = self.entries
        figures["dry_run"] = self.snapshot is None
        if self.snapshot is not None:
            figures["snapshot"] = self.snapshot.describe()
        return figures


def create(ctx: Context, options: BackupOptions) -> CreateStats:
    """Back up ``options.path``; returns the run's statistics. Raises CompletedWithWarnings."""
    source = os.path.abspath(options.path)
    root_stat = _check_source(source)
    if options.dry_run:
        return dry_run(ctx, source, options)
    limit_cores(options.jobs)
    repo = ctx.open(
        create=True,
        compression=options.compression,
        limit_upload=options.limit_upload,
        force=options.force,
    )
    warn = Warnings()
    if repo.initialised:
        warn.note(
            f"initialised a new backup in the empty {ctx.location.describe()}; if this is not "
            "the bucket you meant, check --bucket and --endpoint"
        )
    try:
        with locked(repo, "create", wait=ctx.lock_wait) as held:
            snapshots, unreadable = list_snapshots(repo)
            previous = snapshots[-1] if snapshots else None
            check_not_rolled_back(repo, previous, force=options.force)
            _check_identity(previous, source, root_stat.st_ino, options.force)
            repo.clean_scratch()
            for key in repair_config(repo):
                warn.note(f"the bucket's {key} was missing or damaged; stored it again")
            synced = sync_index(repo)
            if unreadable and previous is None:
                if not options.force:
                    _check_some_is_readable(repo, len(synced.unreadable))
                warn(f"the previous snapshot {unreadable[0]} is damaged; this run replaces it")
            note_sync(synced, warn.note, "this run")
            if check_rotating_share(repo, options.check_share):
                warn.note(
                    "this run's check found damaged objects in the bucket (see above); it "
                    "stores what they held anew and deletes them"
                )
            stats = _backup(repo, ctx, source, options, previous, warn, held)
    finally:
        repo.close()
    if stats.warnings:
        raise CompletedWithWarnings(f"backup stored, with {stats.warnings} warnings (see above)")
    return stats


def limit_cores(jobs: int) -> None:
    """Keep create on one core, as promised, or on the ``--jobs`` cores the user allows: the
    host it runs on is a production server."""
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > jobs:
            first = os.getpid() % len(cores)
            os.sched_setaffinity(0, {cores[(first + i) % len(cores)] for i in range(jobs)})


def _check_source(source: str) -> os.stat_result:
    """The stat of what ``--path`` names: a directory (through a symlink, too) or a file."""
    try:
        st = os.stat(source)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(source):
                pass
        elif stat.S_ISREG(st.st_mode):
            os.close(os.open(source, os.O_RDONLY | os.O_CLOEXEC))
        else:
            raise SourceUnavailable(f"{source} is neither a directory nor a file: check --path")
    except FileNotFoundError:
        raise SourceUnavailable(f"{source} does not exist: check --path") from None
    except PermissionError:
        raise SourceUnavailable(f"{source} cannot be read: run spare as a user who can") from None
    except NotADirectoryError:
        raise SourceUnavailable(f"{source} is not reachable: check --path") from None
    return st


def _check_some_is_readable(repo: Repository, unreadable_packs: int) -> None:
    """Refuse to replace a backup of which nothing opens with the key: its config was swapped
    for another bucket's with the same password, and the prune would delete all of it."""
    if unreadable_packs and not repo.cache.pack_names():
        raise IdentityMismatch(
            f"nothing in this bucket opens with its key ({unreadable_packs} packs and the "
            "snapshot): its config was replaced, or all of it is damaged; nothing was deleted; "
            "use --force to replace the backup"
        )


def _check_identity(previous: Snapshot | None, source: str, inode: int, force: bool) -> None:
    if previous is None or force:
        return
    host = socket.gethostname()
    if previous.host != host or previous.path != source:
        raise IdentityMismatch(
            f"this bucket holds the backup of {previous.path} on host {previous.host}, not of "
            f"{source} on {host}; use one bucket per host and path, or --force to replace it"
        )
    if previous.inode != inode:
        raise IdentityMismatch(
            f"{source} is not the directory backed up before (its inode changed); if it was "
            "replaced on purpose, use --force"
        )


def _backup(
    repo: Repository,
    ctx: Context,
    source: str,
    options: BackupOptions,
    previous: Snapshot | None,
    warn: Warnings,
    held: HeldLock,
) -> CreateStats:
    cache = repo.cache
    cache.begin()
    if previous is None or cache.get_meta("files_snapshot") != previous.name:
        cache.forget_files()
    cache.start_files()
    cache.start_live()
    store = ChunkStore(repo, options.pack_size, options.jobs)
    manifest = ManifestWriter(store.tmpdir)
    try:
        skip = _skipper(ctx, options)
        known = cache.known_files()
        with ctx.console.progress(
            "create",
            total=previous.stats.get("files") if previous else None,
            bytes_total=previous.stats.get("bytes") if previous else None,
        ) as progress:
            if previous is None and ctx.console.shows_progress:
                scan_totals(source, skip, progress)
            read = _walk(os.fsencode(source), skip, warn, store, cache, manifest, progress)
        files, total = progress.done, progress.bytes
        new_data = store.stats.new_bytes  # the file list's own chunks are not the tree's
        manifest_ids = _store_manifest(store, manifest)
        store.finish()
    except BaseException:
        store.abandon()
        raise
    finally:
        manifest.close()
    write_index(repo, cache.unindexed_packs())
    snapshot = Snapshot(
        # Above every sequence this host has seen, so that a rollback is told from this one.
        seq=max(previous.seq if previous else 0, highest_seen(repo)) + 1,
        time=now(),
        host=socket.gethostname(),
        path=source,
        inode=os.stat(source).st_ino,
        manifest=[chunk.hex() for chunk in manifest_ids],
        stats={
            "entries": manifest.entries,
            "files": files,
            "bytes": total,
            "new_bytes": store.stats.new_bytes,
            "stored_bytes": store.stats.stored_bytes,
        },
    )
    held.ensure_held("no new snapshot was written")
    with uninterrupted():
        store_snapshot(repo, snapshot)  # the commit point
        remember_seen(repo, snapshot)
        cache.commit()
        cache.commit_files(snapshot.name)
    ctx.plugins.snapshot_committed(
        CommittedSnapshot(
            time=snapshot.time,
            host=snapshot.host,
            path=snapshot.path,
            seq=snapshot.seq,
            entries=manifest.entries,
            files=files,
            bytes=total,
            new_bytes=store.stats.new_bytes,
            stored_bytes=store.stats.stored_bytes,
        )
    )
    held.ensure_held("the new snapshot was stored, but nothing was pruned")
    try:
        pruned = prune(repo, snapshot, options.pack_size)
    except Interrupted as exc:
        raise Interrupted(exc.signum, after_commit=True) from None
    changed = cache.files_matched - (files - read)
    return CreateStats(
        entries=manifest.entries,
        files=files,
        bytes=total,
        new_files=read - changed,
        changed_files=changed,
        deleted_files=known - cache.files_matched if known else None,
        new_bytes=new_data,
        stored_bytes=store.stats.stored_bytes,
        objects_written=ctx.traffic.objects_written,
        bytes_uploaded=ctx.traffic.bytes_uploaded,
        deleted_objects=pruned.deleted_objects,
        repacked=pruned.repacked,
        warnings=warn.count,
        seconds=ctx.console.elapsed(),
        snapshot=snapshot,
    )


def _skipper(ctx: Context, options: BackupOptions) -> Skipper:
    """What the walk leaves out: ``--skip``, and the cache (backing it up would be absurd)."""
    return Skipper(options.skip, absolute=[os.fsencode(os.path.realpath(ctx.cache_root))])


def dry_run(ctx: Context, source: str, options: BackupOptions) -> CreateStats:
    """What a create of ``source`` would store, found from the files' metadata and the cache
    alone: nothing is read of the files, nothing written to the bucket, nothing locked."""
    warn = Warnings()
    try:
        repo = ctx.open(compression=None, force=options.force)
    except NoSnapshot:
        repo = None  # an empty bucket: every file is new
    try:
        cache = None
        if repo is not None:
            snapshots, _ = list_snapshots(repo)
            previous = snapshots[-1] if snapshots else None
            if previous is not None and repo.cache.get_meta("files_snapshot") == previous.name:
                cache = repo.cache
            elif previous is not None:
                warn.note(
                    "this host's cache does not know the bucket's snapshot: every file counts as "
                    "new, and deleted files cannot be told"
                )
        return _dry_walk(ctx, source, options, cache, warn)
    finally:
        if repo is not None:
            repo.close()


def _dry_walk(
    ctx: Context, source: str, options: BackupOptions, cache: Cache | None, warn: Warnings
) -> CreateStats:
    known = cache.known_files() if cache else 0
    if cache:
        cache.start_lookups()
    entries = files = total = read = read_bytes = 0
    first_names: set[tuple[int, int]] = set()
    for found in walk(os.fsencode(source), _skipper(ctx, options), warn):
        entries += 1
        st = found.stat
        if not stat.S_ISREG(st.st_mode):
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in first_names:
                continue
            first_names.add((st.st_dev, st.st_ino))
        files += 1
        total += st.st_size
        args = (found.relative, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if cache is None or cache.lookup_file(*args) is None:
            read += 1
            read_bytes += st.st_size
    matched = cache.files_matched if cache else 0
    changed = matched - (files - read)
    return CreateStats(
        entries=entries,
        files=files,
        bytes=total,
        new_files=read - changed,
        changed_files=changed,
        deleted_files=known - matched if cache else None,
        new_bytes=read_bytes,
        stored_bytes=0,
        objects_written=0,
        bytes_uploaded=0,
        deleted_objects=0,
        repacked=0,
        warnings=warn.count,
        seconds=ctx.console.elapsed(),
        snapshot=None,
    )


def scan_totals(source: str, skip: Skipper, progress: Progress) -> None:
    """Count the files and bytes below ``source`` in a thread of its own, for the progress
    line of a first backup (no last snapshot tells them)."""

    def scan() -> None:
        files = total = 0
        for found in walk(os.fsencode(source), skip, lambda message: None):
            if stat.S_ISREG(found.stat.st_mode):
                files += 1
                total += found.stat.st_size
        progress.total, progress.bytes_total = files, total

    threading.Thread(target=scan, name="scan", daemon=True).start()


def _store_manifest(store: ChunkStore, manifest: ManifestWriter) -> list[bytes]:
    """Store the file list twice, in packs of its own: losing a data pack costs the files in it,
    losing any one pack costs nothing of the list. Returns its chunk ids."""
    store.flush()
    manifest_ids, _ = store.store_stream(manifest.finish())
    store.flush()
    if any(store.repo.cache.good_copies(chunk) < 2 for chunk in manifest_ids):
        store.store_stream(manifest.finish(), copies=2)
        store.flush()
    store.repo.cache.add_live(manifest_ids, copies=2)
    return manifest_ids


def _walk(
    root: bytes,
    skip: Skipper,
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
    for found in walk(root, skip, warn):
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
