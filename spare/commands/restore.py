"""``spare restore``: recreate the snapshot's tree, or part of it, in an empty or new directory.

Three passes keep it fast and safe: (1) stream the manifest and create every entry through the
target's directory descriptors (see :mod:`spare.commands.restore_target`), recording where each
chunk goes in a scratch database (:class:`~spare.repository.cache.RestorePlan`); (2) read the
packs, each once, in parallel, and write every chunk to all places that need it, leaving runs of
zeros as holes; (3) apply owners, attributes, modes and times, deepest first, so that read-only
directories are filled before they are closed.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spare.commands.context import READERS, Context, reading
from spare.commands.patterns import Patterns
from spare.commands.restore_destination import Destination, open_destination
from spare.commands.restore_target import Target
from spare.console import Progress, Warnings, say
from spare.errors import (
    CannotCreate,
    CompletedWithWarnings,
    EntryReplaced,
    RepositoryDamaged,
    TargetNotEmpty,
    UsageError,
    VerifyFailed,
)
from spare.owners import group_id, user_id
from spare.repository import manifest as mf
from spare.repository.manifest import Entry, ManifestLines
from spare.repository.repo import Repository
from spare.repository.scratch import Place, RestorePlan
from spare.repository.snapshots import Snapshot


@dataclass
class RestoreOptions:
    path: str
    include: list[str] = field(default_factory=list)
    numeric_owner: bool = False
    #: Restore anyway: as root into a directory another user controls, or a snapshot older than
    #: one this host has seen, or of a repository this host knew as another.
    force: bool = False


@dataclass(frozen=True)
class RestoreStats:
    files: int
    bytes: int
    bytes_downloaded: int
    seconds: float
    snapshot: Snapshot

    def figures(self) -> dict[str, Any]:
        """The figures of the JSON summary (docs/json.rst)."""
        return {
            "files": self.files,
            "bytes": self.bytes,
            "bytes_downloaded": self.bytes_downloaded,
            "snapshot": self.snapshot.describe(),
        }


def restore(ctx: Context, options: RestoreOptions) -> RestoreStats:
    # The target is opened (and refused if need be) before the bucket is, and only once.
    destination = open_destination(options.path, force=options.force)
    try:
        with reading(ctx, "restore", force=options.force) as (repo, snapshot):
            ctx.console.report(
                f"restoring snapshot {snapshot.seq} of {snapshot.host}:{snapshot.path}, "
                f"taken {snapshot.time}"
            )
            try:
                with ctx.console.progress(
                    "restore",
                    total=snapshot.stats.get("files"),
                    bytes_total=snapshot.stats.get("bytes"),
                ) as progress:
                    files, size = Restorer(repo, snapshot, destination, options, progress).run()
            finally:
                repo.record_damage()
    except BaseException:
        destination.remove_if_empty()
        raise
    finally:
        destination.close()
    return RestoreStats(files, size, ctx.traffic.bytes_downloaded, ctx.console.elapsed(), snapshot)


class Restorer:
    def __init__(
        self,
        repo: Repository,
        snapshot: Snapshot,
        destination: Destination,
        options: RestoreOptions,
        progress: Progress,
    ) -> None:
        self.repo = repo
        self.progress = progress
        self.snapshot = snapshot
        self.destination = destination
        self.options = options
        self.selection = Patterns(options.include, snapshot.path)
        self.warn = Warnings()
        self.is_root = os.geteuid() == 0
        self.scratch_dir = repo.scratch_dir("restore")
        self.plan = RestorePlan(Path(self.scratch_dir.name) / "restore.sqlite")
        self.manifest = ManifestLines(snapshot.manifest_ids, repo.read_chunk, resilient=True)
        self.target: Target | None = None
        self.files = 0
        self.bytes = 0
        self.damaged: set[bytes] = set()
        #: Chunks whose first copy did not check, with the places they go.
        self.failed: list[tuple[bytes, list[Place]]] = []
        self.replaced: set[bytes] = set()  # entries someone else replaced: reported once
        self.found_lock = threading.Lock()
        self.relinked: dict[bytes, bytes] = {}

    def run(self) -> tuple[int, int]:
        """Restore; returns the files and bytes restored."""
        try:
            self._create_entries()
            if self.selection:  # the progress of what --include selected
                self.progress.total, self.progress.bytes_total = self.files, self.bytes
            self._write_contents()
            self._apply_metadata()
        finally:
            self.plan.close()
            self.scratch_dir.cleanup()
            if self.target is not None:
                self.target.close()
        assert self.target is not None
        for path in sorted(self.damaged):
            say(f"damaged: {self.target.display(path)}")
        for part in self.manifest.lost:
            say(f"damaged: part of the file list is lost: {part.describe()}")
        if self.damaged or self.manifest.lost:
            raise VerifyFailed(
                f"restored, but {len(self.damaged)} files are damaged in the backup and were "
                f"restored incomplete, and {len(self.manifest.lost)} parts of the file list are "
                "lost (listed above); run 'spare verify'"
            )
        if self.selection and self.files == 0 and self.plan.late_count <= 1:
            raise UsageError("--include matched nothing in the backup; nothing was restored")
        if self.warn.count:
            raise CompletedWithWarnings(f"restored, with {self.warn.count} warnings (see above)")
        return self.files, self.bytes

    # -- pass 1 -----------------------------------------------------------------------------
    def _open_target(self, root: Entry) -> Entry:
        """Open the target for the snapshot's root entry; returns the entry to create there."""
        if root.path != b".":
            raise RepositoryDamaged("the backup's file list does not start with its root")
        where = self.destination
        if root.type == mf.DIRECTORY:
            self.target = Target(where.take_directory(), where.path, self.plan)
            return root
        if root.type != mf.FILE or root.link is not None:
            raise RepositoryDamaged(
                f"the backup's root is of type {root.type!r}, not a directory or a file; "
                "refusing to restore it"
            )
        # A backup of a single file: --path names the file, or an empty directory to put it in.
        if where.exists:
            self.target = Target(where.take_directory(), where.path, self.plan)
            root.path = os.path.basename(os.fsencode(self.snapshot.path))
        else:
            self.target = Target(os.dup(where.parent_fd), os.path.dirname(where.path), self.plan)
            root.path = where.name
        try:
            self.target.create(root, devices=self.is_root)
        except RepositoryDamaged:
            if not where.exists and _exists(where.parent_fd, where.name):  # free a moment ago
                raise TargetNotEmpty(
                    f"{os.fsdecode(where.path)} appeared while the restore was starting: "
                    "restore into an empty or new directory"
                ) from None
            raise
        return root

    def _create_entries(self) -> None:
        lines = iter(self.manifest)
        first = next(lines, None)
        if first is None or (self.manifest.lost and self.manifest.lost[0].after is None):
            reason = self.manifest.lost[0].reason if self.manifest.lost else "it is empty"
            raise RepositoryDamaged(
                f"the start of the backup's file list cannot be read ({reason}); nothing can "
                "be restored"
            )
        root = self._open_target(Entry.from_line(first))
        self._late(root)
        if root.type == mf.FILE:
            self._places(root)
            if next(lines, None) is not None:
                raise RepositoryDamaged(
                    "the backup is of a single file but lists more entries; refusing to restore it"
                )
        pending: list[Entry] = []  # directories waiting for a selected entry below them
        chosen: list[bytes] = []  # selected directories whose every descendant is selected
        for line in lines:
            entry = Entry.from_line(line)
            if self.selection:
                while pending and not entry.path.startswith(pending[-1].path + b"/"):
                    pending.pop()
                while chosen and not entry.path.startswith(chosen[-1] + b"/"):
                    chosen.pop()
                if not chosen and not self.selection.names(entry.path):
                    if entry.type == mf.DIRECTORY:
                        pending.append(entry)
                    elif entry.link is None:  # a hardlink's first name may be needed later
                        self.plan.add_unselected(entry.path, line)
                    continue
                for ancestor in pending:
                    self._create(ancestor)
                pending.clear()
                if entry.type == mf.DIRECTORY:
                    chosen.append(entry.path)
            self._create(entry, line)
        self.plan.commit()

    def _create(self, entry: Entry, line: bytes | None = None) -> None:
        """Create ``entry``; ``line`` is its encoding, if the entry is as the manifest has it."""
        assert self.target is not None
        if entry.link is not None:
            resolved = self._resolve_link(entry)
            line = None if resolved is not entry else line
            entry = resolved
        if self.replaced and self._below_replaced(entry.path):
            return  # said once, for the directory someone replaced
        if self.manifest.lost:
            self._make_lost_ancestors(entry.path)
        try:
            created = self.target.create(entry, devices=self.is_root)
        except CannotCreate as exc:
            self.warn(str(exc))
            return
        except EntryReplaced as exc:
            self._replaced(exc)
            return
        if not created:
            self.warn(
                f"{self.target.display(entry.path)}: devices can only be restored as root; skipped"
            )
            return
        if entry.link is not None:
            return  # shares the first name's inode, data and metadata
        self._late(entry, line)
        if entry.type == mf.FILE:
            self._places(entry)

    def _make_lost_ancestors(self, path: bytes) -> None:
        """After a lost part of the file list, the directories that were listed in it are made
        (private, owned by the restoring user) so that what lies below them is restored."""
        parts = path.split(b"/")
        for depth in range(1, len(parts)):
            ancestor = b"/".join(parts[:depth])
            if self.plan.created(ancestor) is not None:
                continue
            assert self.target is not None
            made = Entry(ancestor, mf.DIRECTORY, 0o700, os.geteuid(), os.getegid(), 0)
            self.target.create(made, devices=False)
            self.damaged.add(ancestor)

    def _resolve_link(self, entry: Entry) -> Entry:
        """A hardlink whose first name was not restored (--include) becomes an inode of its own."""
        assert entry.link is not None
        if entry.link in self.relinked:
            return replace(entry, link=self.relinked[entry.link])
        line = self.plan.unselected(entry.link)
        if line is None:
            return entry  # the first name was restored: link to it
        first = Entry.from_line(line)
        self.relinked[entry.link] = entry.path
        first.path = entry.path
        return first

    def _late(self, entry: Entry, line: bytes | None = None) -> None:
        self.plan.add_late(entry.path, line or entry.to_line())

    def _replaced(self, exc: EntryReplaced) -> None:
        """Someone replaced an entry restore made: say so once, and leave it alone."""
        with self.found_lock:
            if exc.path in self.replaced:
                return
            self.replaced.add(exc.path)
            self.warn(str(exc))

    def _below_replaced(self, path: bytes) -> bool:
        parts = path.split(b"/")
        return any(b"/".join(parts[:depth]) in self.replaced for depth in range(1, len(parts)))

    def _places(self, entry: Entry) -> None:
        """Note the file's chunks; where they are stored is looked up in one join afterwards."""
        self.plan.want(entry.path, entry.chunks)
        self.files += 1
        self.bytes += entry.size
        self.progress.add_locked(1)

    # -- pass 2 -----------------------------------------------------------------------------
    def _write_contents(self) -> None:
        self._damaged(self.plan.locate(self.repo.cache.path))
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            for _ in pool.map(lambda pack: self._restore_pack(*pack), self.plan.packs()):
                pass
        # A blob that did not check: its chunk may have another copy (the manifest has two, a
        # chunk stored anew after damage has one more until the prune).
        for chunk_id, here in self.failed:
            try:
                plain = self.repo.read_chunk(chunk_id)
            except RepositoryDamaged:
                self._damaged(path for _, path, _, _ in here)
                continue
            self._write(plain, here)

    def _restore_pack(self, pack: str, transforms: tuple[str, ...]) -> None:
        assert self.target is not None
        places: defaultdict[tuple[int, int], list[Place]] = defaultdict(list)
        for place in self.plan.places(pack):
            places[place[0].offset, place[0].start].append(place)
        records = [group[0][0] for group in places.values()]
        for blob in self.repo.load_blobs(pack, transforms, records):
            here = places[blob.record.offset, blob.record.start]
            if blob.plain is None:
                self.repo.note_damage([(blob.record.chunk_id, pack)])
                with self.found_lock:
                    self.failed.append((blob.record.chunk_id, here))
                continue
            self._write(blob.plain, here)

    def _write(self, plain: bytes, here: list[Place]) -> None:
        assert self.target is not None
        self.progress.add_locked(0, len(plain) * len(here))
        if plain.count(0) == len(plain):
            return  # the file was created at its full size: zeros stay a hole
        for _, path, at, made in here:
            if path in self.replaced:
                continue
            try:
                self.target.write(path, plain, at, made)
            except EntryReplaced as exc:
                self._replaced(exc)

    def _damaged(self, paths: Iterable[bytes]) -> None:
        with self.found_lock:
            self.damaged.update(paths)

    # -- pass 3 -----------------------------------------------------------------------------
    def _apply_metadata(self) -> None:
        assert self.target is not None
        numeric = self.options.numeric_owner
        for line, made in self.plan.late_entries():
            entry = Entry.from_line(line)
            if self.replaced and (entry.path in self.replaced or self._below_replaced(entry.path)):
                continue
            uid = entry.uid if numeric else user_id(entry.user, entry.uid)
            gid = entry.gid if numeric else group_id(entry.group, entry.gid)
            try:
                self.target.apply(entry, made, uid, gid, chown=self.is_root)
            except EntryReplaced as exc:
                self._replaced(exc)
            except OSError as exc:
                self.warn(
                    f"{self.target.display(entry.path)}: cannot set metadata ({exc.strerror})"
                )


def _exists(dir_fd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
