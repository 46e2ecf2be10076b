"""``spare info``, ``ls`` and ``dump``: look inside the backup without restoring it."""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from spare.commands.context import Context, reading
from spare.commands.patterns import Patterns
from spare.errors import RepositoryDamaged, UsageError
from spare.repository import manifest as mf
from spare.repository import objects
from spare.repository.locking import LockInfo, lock_holder
from spare.repository.manifest import Entry, ManifestLines
from spare.repository.snapshots import Snapshot, check_not_rolled_back, list_snapshots


@dataclass(frozen=True)
class BucketInfo:
    """What ``spare info`` tells: the snapshot, the bucket's objects, the lock."""

    snapshot: Snapshot | None
    objects: int
    packs: int
    stored_bytes: int
    holder: LockInfo | None

    def figures(self) -> dict[str, Any]:
        """The figures of the JSON summary (docs/json.rst)."""
        snapshot = self.snapshot
        figures: dict[str, Any] = {
            "objects": self.objects,
            "packs": self.packs,
            "stored_bytes": self.stored_bytes,
            "locked": self.holder is not None,
            "lock": (
                {
                    "command": self.holder.command,
                    "host": self.holder.host,
                    "pid": self.holder.pid,
                    "since": self.holder.time,
                    "refreshed": self.holder.refreshed or None,
                }
                if self.holder
                else None
            ),
        }
        if snapshot is not None:
            figures["snapshot"] = snapshot.describe()
            figures["age_seconds"] = round(age_seconds(snapshot.time))
            figures["files"] = snapshot.stats.get("files")
            figures["bytes"] = snapshot.stats.get("bytes")
            figures["ratio"] = self.ratio
        return figures

    @property
    def ratio(self) -> float | None:
        """Original bytes per byte stored: what deduplication and compression save."""
        original = self.snapshot.stats.get("bytes") if self.snapshot else None
        if original is None or not self.stored_bytes:
            return None
        return round(original / self.stored_bytes, 2)


def info(ctx: Context) -> BucketInfo:
    """The bucket's snapshot (None if it has none yet), objects and lock.

    No lock is taken: a monitoring check may run while a create does.
    """
    repo = ctx.open(compression=None)
    try:
        snapshots, _ = list_snapshots(repo)
        snapshot = snapshots[-1] if snapshots else None
        check_not_rolled_back(repo, snapshot, force=False)
        count = packs = stored = 0
        for found in repo.storage.list():
            count += 1
            stored += found.size
            packs += objects.pack_name(found.key) is not None
        return BucketInfo(snapshot, count, packs, stored, lock_holder(repo))
    finally:
        repo.close()


def age_seconds(iso_time: str) -> float:
    """Seconds since ``iso_time`` (a snapshot's UTC time)."""
    taken = datetime.datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - taken).total_seconds()


def listing(ctx: Context, patterns: list[str]) -> Iterator[tuple[Snapshot, Patterns, Entry]]:
    """The entries of the snapshot that ``patterns`` select (all without patterns), in order."""
    with reading(ctx, "ls") as (repo, snapshot):
        selection = Patterns(patterns, snapshot.path)
        manifest = ManifestLines(snapshot.manifest_ids, repo.read_chunk)
        for line in manifest:
            entry = Entry.from_line(line)
            if selection.selects(entry.path):
                yield snapshot, selection, entry


def dump(ctx: Context, path: str, out: BinaryIO) -> int:
    """Write the content of the file ``path`` of the snapshot to ``out``; returns its size."""
    with reading(ctx, "dump") as (repo, snapshot):
        wanted = Patterns([path], snapshot.path)
        if not wanted.literal:
            raise UsageError(f"{path}: dump takes one file's path, not a pattern")
        [relative] = wanted.patterns
        entry = _find(ManifestLines(snapshot.manifest_ids, repo.read_chunk), relative)
        if entry is None:
            raise UsageError(f"{path} is not in the backup ('spare ls' lists what is)")
        if entry.type != mf.FILE:
            kind = {mf.DIRECTORY: "a directory", mf.SYMLINK: "a symlink"}.get(entry.type, "no file")
            raise UsageError(f"{path} is {kind} in the backup, not a file: dump writes a file")
        written = 0
        for chunk_id in entry.chunks:
            data = repo.read_chunk(chunk_id)
            out.write(data)
            written += len(data)
        out.flush()
        if written != entry.size:
            raise RepositoryDamaged(
                f"{path} should hold {entry.size} bytes, but its chunks hold {written}"
            )
        return written


def _find(lines: ManifestLines, relative: bytes) -> Entry | None:
    """The entry at ``relative``; for a hardlink's later name, its first name's entry."""
    for line in lines:
        entry = Entry.from_line(line)
        if entry.path == relative:
            if entry.link is None:
                return entry
            return _find(lines, entry.link)  # a first name comes before the later ones
    return None


_TYPE_BITS = {
    mf.FILE: stat.S_IFREG,
    mf.DIRECTORY: stat.S_IFDIR,
    mf.SYMLINK: stat.S_IFLNK,
    mf.FIFO: stat.S_IFIFO,
    mf.CHAR_DEVICE: stat.S_IFCHR,
    mf.BLOCK_DEVICE: stat.S_IFBLK,
}


def ls_line(entry: Entry, host_path: bytes) -> bytes:
    """``entry`` as ``ls -l`` shows it: type and mode, owner, size, mtime, path, target."""
    mode = stat.filemode(_TYPE_BITS[entry.type] | entry.mode)
    owner = f"{entry.user or entry.uid}/{entry.group or entry.gid}"
    if entry.type in (mf.CHAR_DEVICE, mf.BLOCK_DEVICE):
        size = f"{os.major(entry.rdev)},{os.minor(entry.rdev)}"
    else:
        size = str(entry.size)
    when = datetime.datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    line = f"{mode} {owner:<17} {size:>12} {when} ".encode() + host_path
    if entry.target is not None:
        line += b" -> " + entry.target
    if entry.link is not None:
        line += b" link to " + entry.link
    return line + b"\n"


def ls_record(entry: Entry, host_path: bytes) -> dict[str, Any]:
    """``entry`` as a JSON object of ``ls --json`` (docs/json.rst)."""
    record: dict[str, Any] = {
        "path": os.fsdecode(host_path),
        "kind": _KINDS[entry.type],
        "mode": f"{entry.mode:04o}",
        "uid": entry.uid,
        "gid": entry.gid,
        "user": entry.user,
        "group": entry.group,
        "size": entry.size,
        "mtime": datetime.datetime.fromtimestamp(entry.mtime_ns / 1e9, datetime.UTC).isoformat(),
    }
    if entry.target is not None:
        record["target"] = os.fsdecode(entry.target)
    if entry.link is not None:
        record["link"] = os.fsdecode(entry.link)
    if entry.type in (mf.CHAR_DEVICE, mf.BLOCK_DEVICE):
        record["rdev"] = [os.major(entry.rdev), os.minor(entry.rdev)]
    return record


_KINDS = {
    mf.FILE: "file",
    mf.DIRECTORY: "directory",
    mf.SYMLINK: "symlink",
    mf.FIFO: "fifo",
    mf.CHAR_DEVICE: "char-device",
    mf.BLOCK_DEVICE: "block-device",
}
