"""``spare create``: back up one tree into the bucket, keep exactly that snapshot."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from typing import Any

from spare.commands.context import Context, note_sync
from spare.commands.tree import is_cache_root, scan_totals, store_tree, tree_selection
from spare.console import Warnings
from spare.errors import (
    CompletedWithWarnings,
    IdentityMismatch,
    Interrupted,
    NoSnapshot,
    SourceUnavailable,
)
from spare.fstree import walk
from spare.hookspecs import CommittedSnapshot
from spare.repository.cache import Cache
from spare.repository.chunks import PACK_SIZE, ChunkStore
from spare.repository.health import CHECK_SHARE, check_rotating_share
from spare.repository.index import sync_index, write_index
from spare.repository.locking import HeldLock, locked
from spare.repository.manifest import ManifestWriter
from spare.repository.opening import config_copy_note, repair_config
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
    #: Stay on the file system of ``path``: mount points below it are stored empty.
    one_file_system: bool = False
    #: Store only the tag of a directory holding a valid ``CACHEDIR.TAG``.
    cachedir_tags: bool = True


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
            )
        }
        figures["objects_deleted"] = self.deleted_objects
        figures["entries"] = self.entries
        figures["dry_run"] = self.snapshot is None
        if self.snapshot is not None:
            figures["snapshot"] = self.snapshot.describe()
        return figures


def create(ctx: Context, options: BackupOptions) -> CreateStats:
    """Back up ``options.path``; returns the run's statistics. Raises CompletedWithWarnings."""
    source = os.path.abspath(options.path)
    root_stat = _check_source(source)
    if options.cachedir_tags and is_cache_root(source):
        Warnings().note(
            f"{source} is a cache directory (it holds a CACHEDIR.TAG): only the tag is backed "
            "up; use --no-cachedir-tag to back it up whole"
        )
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
            for key, how in repair_config(repo).items():
                warn.note(config_copy_note(key, how))
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
        select = tree_selection(ctx.cache_root, options)
        known = cache.known_files()
        with ctx.console.progress(
            "create",
            total=previous.stats.get("files") if previous else None,
            bytes_total=previous.stats.get("bytes") if previous else None,
        ) as progress:
            if previous is None and ctx.console.shows_progress:
                scan_totals(source, select, progress)
            read = store_tree(os.fsencode(source), select, warn, store, cache, manifest, progress)
            new_data = store.stats.new_bytes  # the file list's own chunks are not the tree's
            manifest_ids = _store_manifest(store, manifest)
            store.finish()  # the last packs' upload: shown at 100 % of the files until done
        files, total = progress.done, progress.bytes
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
    select = tree_selection(ctx.cache_root, options)
    for found in walk(os.fsencode(source), select, warn, ctx.console.info):
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
