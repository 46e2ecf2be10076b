"""``spare verify``: download every pack (or a share), check every blob, name every damaged file.

Chunks are located as a new host would locate them: from the bucket's index objects and the
packs' trailers alone, in a cache of verify's own. A chunk counts as good when one of its copies
checks, which is what ``restore`` reads (it falls back to the next copy when one is damaged): so
"verify passed" means that a new host can restore. Damage found is marked in the local cache,
and the next create stores those chunks anew.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spare.commands.context import READERS, Context, reading
from spare.console import Progress, Warnings, say
from spare.errors import CompletedWithWarnings, RepositoryDamaged, VerifyFailed
from spare.repository.cache import Cache
from spare.repository.health import PackCheck, check_pack, choose_share
from spare.repository.index import sync_index
from spare.repository.manifest import FILE, Entry, ManifestLines
from spare.repository.opening import damaged_config_copies
from spare.repository.repo import Repository
from spare.repository.scratch import ChunkSet
from spare.repository.snapshots import Snapshot, damaged_root_copies


@dataclass(frozen=True)
class VerifyStats:
    packs: int
    checked: int
    files: int
    bytes_downloaded: int
    seconds: float
    snapshot: Snapshot

    def figures(self) -> dict[str, Any]:
        """The figures of the JSON summary (docs/json.rst)."""
        return {
            "packs": self.packs,
            "packs_checked": self.checked,
            "files": self.files,
            "bytes_downloaded": self.bytes_downloaded,
            "snapshot": self.snapshot.describe(),
        }


def verify(ctx: Context, *, force: bool = False, share: float = 100.0) -> VerifyStats:
    with reading(ctx, "verify", force=force) as (repo, snapshot):
        verifier = Verifier(repo, share)
        try:
            with ctx.console.progress("verify", unit="packs") as progress:
                packs, checked, files = verifier.run(snapshot, progress)
        finally:
            repo.record_damage()
    return VerifyStats(
        packs, checked, files, ctx.traffic.bytes_downloaded, ctx.console.elapsed(), snapshot
    )


class Verifier:
    def __init__(self, repo: Repository, share: float = 100.0) -> None:
        self.repo = repo
        self.share = share
        self.scratch = repo.scratch_dir("verify")
        scratch = Path(self.scratch.name)
        #: Where a new host would find each chunk: built from the bucket alone.
        self.cold = Cache(scratch / "cold.sqlite")
        self.good = ChunkSet(scratch / "verify.sqlite")
        self.problems: list[str] = []

    def run(self, snapshot: Snapshot, progress: Progress) -> tuple[int, int, int]:
        """Check the snapshot; returns the bucket's packs, those checked, and the files."""
        try:
            self._check_copies(damaged_config_copies(self.repo), "the bucket's", all_missing=True)
            self._check_copies(damaged_root_copies(self.repo, snapshot), "the snapshot root")
            # Packs that no index names and that do not open are noted by reading(): they are
            # an interrupted upload's or not this repository's, and no part of the backup.
            synced = sync_index(self.repo, self.cold)
            for name in synced.damaged_indexes:
                self._report(
                    f"index object {name} is damaged; what it lists was read from the packs "
                    "(the next create writes it anew)"
                )
            self._forget_indexes(synced.damaged_indexes)
            for name in synced.lost:
                self._report(f"pack {name} is missing or changed size")
            packs = sorted(self.cold.pack_names())
            chosen = choose_share(packs, self.share)
            sizes = self.cold.pack_sizes()  # one query, not a pack's blob records per pack
            progress.total = len(chosen)
            progress.bytes_total = sum(sizes[pack] for pack in chosen)
            unchecked = set(packs) - set(chosen)
            for pack in unchecked:
                self.good.add(chunk.chunk_id for chunk in self.cold.pack_info(pack).blobs)
            with ThreadPoolExecutor(max_workers=READERS) as pool:
                for found in pool.map(lambda pack: check_pack(self.repo, self.cold, pack), chosen):
                    self._found(found)
                    progress.add(1, sizes[found.pack])
            damaged, files = self._check_files(snapshot.manifest_ids)
        finally:
            self.cold.close()
            self.good.close()
            self.scratch.cleanup()
        if damaged is None or damaged:
            what = "the file list" if damaged is None else f"{damaged} files"
            raise VerifyFailed(
                f"the backup is damaged: {what} cannot be restored whole, "
                f"{len(self.problems)} problems found (listed above)"
            )
        if self.problems:
            raise CompletedWithWarnings(
                f"every file can be restored, but {len(self.problems)} problems were found "
                "(listed above); the next create repairs them"
            )
        return len(packs), len(chosen), files

    def _check_copies(self, found: dict[str, str], what: str, *, all_missing: bool = False) -> None:
        """Report damaged copies of an object stored twice. A missing one is only noted (a
        create killed between storing the two leaves one; the next create stores both), unless
        ``all_missing`` and both are missing."""
        for key, how in found.items():
            message = f"{what} {key} is {how}; the next create stores it again"
            if how in ("older", "newer"):
                # An interrupted 'spare passwd': one copy under each password, no damage.
                message = (
                    f"{what} {key} holds the key under the {'new' if how == 'newer' else 'old'} "
                    "password of a 'spare passwd' that did not finish; the next create with "
                    "the new password stores it in both copies"
                )
                Warnings().note(message)
            elif how == "missing" and not (all_missing and len(found) == 2):
                Warnings().note(message)
            else:
                self._report(message)

    def _forget_indexes(self, names: list[str]) -> None:
        """Make the local cache forget damaged index objects: a cache that knows an index object
        never reads it again, so only then does the next create write its packs' index anew."""
        if not names:
            return
        self.repo.cache.begin()
        for name in names:
            self.repo.cache.remove_index(name)
        self.repo.cache.commit()

    def _report(self, message: str) -> None:
        self.problems.append(message)
        say(message)

    def _found(self, found: PackCheck) -> None:
        self.good.add(found.good)
        self.repo.note_damage((chunk, found.pack) for chunk in found.to_replace)
        if found.problem:
            self._report(f"pack {found.pack} is damaged ({found.problem})")
        elif found.damaged:
            self._report(f"pack {found.pack} has {len(found.damaged)} damaged blobs")

    def _check_files(self, manifest_ids: list[bytes]) -> tuple[int | None, int]:
        """How many files (and lost parts of the file list) cannot be restored whole, None if
        the file list cannot be read at all; and how many files it lists."""
        manifest = ManifestLines(
            manifest_ids, lambda chunk: self.repo.read_chunk(chunk, self.cold), resilient=True
        )
        damaged = files = 0
        try:
            for line in manifest:
                entry = Entry.from_line(line)
                files += entry.type == FILE and not entry.link
                if entry.chunks and not all(chunk in self.good for chunk in entry.chunks):
                    damaged += 1
                    say(f"damaged: {os.fsdecode(entry.path)}")
        except RepositoryDamaged as exc:
            self._report(f"the snapshot's file list cannot be read ({exc})")
            return None, files
        for part in manifest.lost:
            say(f"damaged: part of the file list is lost: {part.describe()}")
        return damaged + len(manifest.lost), files
