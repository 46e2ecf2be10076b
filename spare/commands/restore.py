"""``spare restore``: recreate the snapshot's tree in an empty or new directory.

Three passes keep it fast and safe: (1) stream the manifest and create every entry, recording
where each chunk goes in a scratch SQLite table; (2) read the packs, each once, in parallel, and
write every chunk to all places that need it; (3) apply owners, modes and times, deepest first,
so that read-only directories are filled before they are closed.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby

from spare.commands.common import READERS, Context, Warnings, group_id, log, reading, user_id
from spare.errors import (
    CompletedWithWarnings,
    ObjectNotFound,
    RepositoryDamaged,
    TargetNotEmpty,
    VerifyFailed,
)
from spare.repository import manifest as mf
from spare.repository import objects
from spare.repository.manifest import Entry, read_manifest
from spare.repository.repo import Repository

#: Two packs' worth of bytes between two wanted blobs are read through rather than split.
GAP = 1 << 20


def restore(ctx: Context, target: str) -> dict[str, int]:
    target = os.path.abspath(target)
    _check_target(target)
    with reading(ctx, "restore") as (repo, snapshot):
        return Restorer(repo, target).run(snapshot.manifest_ids)


def _check_target(target: str) -> None:
    try:
        with os.scandir(target) as entries:
            if next(entries, None) is not None:
                raise TargetNotEmpty(
                    f"{target} is not empty: restore into an empty or new directory"
                )
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        raise TargetNotEmpty(
            f"{target} is a file: restore into an empty or new directory"
        ) from None


def safe_relative(path: bytes) -> bytes:
    """Refuse manifest paths that would leave the target: absolute, empty parts, ``..``."""
    if path == b".":
        return path
    parts = path.split(b"/")
    if path.startswith(b"/") or any(part in (b"", b".", b"..") for part in parts) or b"\0" in path:
        raise RepositoryDamaged(f"the manifest holds an unsafe path {path!r}; refusing to restore")
    return path


class Restorer:
    def __init__(self, repo: Repository, target: str) -> None:
        self.repo = repo
        self.target = os.fsencode(target)
        self.warn = Warnings()
        self.is_root = os.geteuid() == 0
        self.scratch_dir = repo.scratch_dir("restore")
        self.db = sqlite3.connect(
            os.path.join(self.scratch_dir.name, "restore.sqlite"), check_same_thread=False
        )
        self.db.executescript(
            "CREATE TABLE places(pack TEXT, offset INTEGER, length INTEGER, id BLOB, path BLOB,"
            " at INTEGER);"
            "CREATE TABLE late(seq INTEGER PRIMARY KEY, entry BLOB);"
        )
        self.files = 0
        self.bytes = 0
        self.damaged: set[bytes] = set()
        self.damaged_lock = threading.Lock()

    def run(self, manifest_ids: list[bytes]) -> dict[str, int]:
        try:
            os.makedirs(self.target, mode=0o700, exist_ok=True)
            self._create_entries(manifest_ids)
            self._write_contents()
            self._apply_metadata()
        finally:
            self.db.close()
            self.scratch_dir.cleanup()
        for path in sorted(self.damaged):
            print(f"spare: damaged: {os.fsdecode(path)}", file=sys.stderr, flush=True)
        if self.damaged:
            raise VerifyFailed(
                f"restored, but {len(self.damaged)} files are damaged in the backup and were "
                "restored incomplete (listed above); run 'spare verify'"
            )
        if self.warn.count:
            raise CompletedWithWarnings(f"restored, with {self.warn.count} warnings (see above)")
        return {"files": self.files, "bytes": self.bytes}

    def _path(self, relative: bytes) -> bytes:
        return mf.entry_path(self.target, safe_relative(relative))

    # -- pass 1 -----------------------------------------------------------------------------
    def _create_entries(self, manifest_ids: list[bytes]) -> None:
        seq = 0
        for entry in read_manifest(manifest_ids, self.repo.read_chunk):
            path = self._path(entry.path)
            if entry.type == mf.DIRECTORY:
                if entry.path != b".":
                    os.mkdir(path, 0o700)
            elif entry.type == mf.FILE:
                if entry.link is not None:
                    os.link(self._path(entry.link), path)
                    continue  # metadata is shared with the first name
                self._create_file(path, entry)
            elif entry.type == mf.SYMLINK:
                assert entry.target is not None
                os.symlink(entry.target, path)
            elif entry.type == mf.FIFO:
                os.mkfifo(path, 0o600)
            elif self.is_root:
                kind = stat.S_IFCHR if entry.type == mf.CHAR_DEVICE else stat.S_IFBLK
                os.mknod(path, 0o600 | kind, entry.rdev)
            else:
                self.warn(f"{os.fsdecode(path)}: devices can only be restored as root; skipped")
                continue
            seq += 1
            self.db.execute("INSERT INTO late VALUES(?, ?)", (seq, entry.to_line()))
        self.db.commit()

    def _create_file(self, path: bytes, entry: Entry) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if entry.size:
                os.ftruncate(fd, entry.size)
        finally:
            os.close(fd)
        at = 0
        rows = []
        for chunk_id in entry.chunks:
            where = self.repo.cache.locate(chunk_id)
            if where is None:
                self.warn(
                    f"{os.fsdecode(path)}: part of it is missing from the bucket, "
                    "restored incomplete"
                )
                break
            rows.append((where.pack, where.offset, where.length, chunk_id, path, at))
            at += where.size
        self.db.executemany("INSERT INTO places VALUES(?,?,?,?,?,?)", rows)
        self.files += 1
        self.bytes += entry.size

    # -- pass 2 -----------------------------------------------------------------------------
    def _write_contents(self) -> None:
        self.db.execute("CREATE INDEX places_by_pack ON places(pack, offset)")
        packs = [row[0] for row in self.db.execute("SELECT DISTINCT pack FROM places")]
        transforms = {pack: self.repo.cache.pack_info(pack).transforms for pack in packs}
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            for _ in pool.map(lambda pack: self._restore_pack(pack, transforms[pack]), packs):
                pass

    def _restore_pack(self, pack: str, transforms: tuple[str, ...]) -> None:
        rows = self.db.execute(
            "SELECT offset, length, id, path, at FROM places WHERE pack=? ORDER BY offset", (pack,)
        ).fetchall()
        for start, end, group in _ranges(rows):
            try:
                data = self.repo.storage.get(objects.pack_key(pack), start, end)
            except ObjectNotFound:
                data = b""
            for (offset, length, chunk_id), places in groupby(group, key=lambda r: r[:3]):
                blob = data[offset - start : offset - start + length]
                try:
                    if len(blob) != length:
                        raise RepositoryDamaged(f"pack {pack} is missing or truncated")
                    plain = self.repo.decode_blob(chunk_id, blob, transforms)
                except RepositoryDamaged:
                    self._damaged(path for _, _, _, path, _ in places)
                    continue
                for _, _, _, path, at in places:
                    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
                    try:
                        os.pwrite(fd, plain, at)
                    finally:
                        os.close(fd)

    def _damaged(self, paths: Iterable[bytes]) -> None:
        with self.damaged_lock:
            self.damaged.update(paths)

    # -- pass 3 -----------------------------------------------------------------------------
    def _apply_metadata(self) -> None:
        for (line,) in self.db.execute("SELECT entry FROM late ORDER BY seq DESC"):
            entry = Entry.from_line(line)
            path = self._path(entry.path)
            try:
                self._apply(path, entry)
            except OSError as exc:
                self.warn(f"{os.fsdecode(path)}: cannot set metadata ({exc.strerror})")

    def _apply(self, path: bytes, entry: Entry) -> None:
        symlink = entry.type == mf.SYMLINK
        uid = user_id(entry.user, entry.uid)
        gid = group_id(entry.group, entry.gid)
        if self.is_root:
            os.chown(path, uid, gid, follow_symlinks=False)
        elif (uid, gid) != (os.geteuid(), os.getegid()):
            try:  # a user may still give a file to a group they belong to
                os.chown(path, -1, gid, follow_symlinks=False)
            except OSError:
                log.debug("cannot set the group of %s", os.fsdecode(path))
        if not symlink:
            os.chmod(path, entry.mode)
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)


def _ranges(
    rows: list[tuple[int, int, bytes, bytes, int]],
) -> Iterator[tuple[int, int, list[tuple[int, int, bytes, bytes, int]]]]:
    """Group a pack's wanted blobs into byte ranges worth one GET each."""
    group: list[tuple[int, int, bytes, bytes, int]] = []
    start = end = 0
    for row in rows:
        offset, length = row[0], row[1]
        if group and offset - end > GAP:
            yield start, end, group
            group = []
        if not group:
            start = offset
        group.append(row)
        end = max(end, offset + length)
    if group:
        yield start, end, group
