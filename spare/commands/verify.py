"""``spare verify``: download every pack, check every blob, name every damaged file.

A blob counts as good only where the index locates its chunk, which is where ``restore`` will
read it: a good copy elsewhere does not hide a damaged one that restore would use.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from spare.commands.context import READERS, Context, reading
from spare.console import say
from spare.errors import ObjectNotFound, RepositoryDamaged, VerifyFailed
from spare.repository import objects
from spare.repository.cache import ChunkSet
from spare.repository.manifest import read_manifest
from spare.repository.packs import read_pack
from spare.repository.repo import Repository


@dataclass(frozen=True)
class VerifyStats:
    packs: int


def verify(ctx: Context, *, force: bool = False) -> VerifyStats:
    with reading(ctx, "verify", force=force) as (repo, snapshot):
        return Verifier(repo).run(snapshot.manifest_ids)


class Verifier:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.scratch = repo.scratch_dir("verify")
        self.good = ChunkSet(Path(self.scratch.name) / "verify.sqlite")
        self.problems: list[str] = []

    def run(self, manifest_ids: list[bytes]) -> VerifyStats:
        try:
            packs = sorted(self.repo.cache.pack_names())
            with ThreadPoolExecutor(max_workers=READERS) as pool:
                for good in pool.map(self._check_pack, packs):
                    self.good.add(good)
            damaged = self._check_files(manifest_ids)
        finally:
            self.good.close()
            self.scratch.cleanup()
        if self.problems or damaged:
            raise VerifyFailed(
                f"the backup is damaged: {damaged} files cannot be restored whole, "
                f"{len(self.problems)} problems found (listed above)"
            )
        return VerifyStats(packs=len(packs))

    def _report(self, message: str) -> None:
        self.problems.append(message)
        say(message)

    def _check_pack(self, pack: str) -> list[bytes]:
        """The ids of the chunks located in ``pack`` that decode there and match their id."""
        info = self.repo.cache.pack_info(pack)
        try:
            data = objects.read_whole(self.repo.storage, objects.pack_key(pack), "pack")
        except ObjectNotFound:
            self._report(f"pack {pack} is missing")
            return []
        except RepositoryDamaged as exc:
            self._report(f"pack {pack} is damaged ({exc})")
            return []
        try:
            _, records = read_pack(data, pack, self.repo.chain_for)
        except RepositoryDamaged as exc:
            self._report(f"pack {pack} is damaged ({exc}); checking its blobs one by one")
        else:
            if not set(info.blobs) <= set(records):
                self._report(f"pack {pack} does not hold the blobs the index says it holds")
        return [
            blob.record.chunk_id
            for blob in self.repo.load_blobs(pack, info.transforms, info.blobs, whole=data)
            if blob.plain is not None
        ]

    def _check_files(self, manifest_ids: list[bytes]) -> int:
        if not all(chunk in self.good for chunk in manifest_ids):
            self._report("the snapshot's file list (manifest) is damaged; no file can be named")
            return 0
        damaged = 0
        for entry in read_manifest(manifest_ids, self.repo.read_chunk):
            if entry.chunks and not all(chunk in self.good for chunk in entry.chunks):
                damaged += 1
                say(f"damaged: {os.fsdecode(entry.path)}")
        return damaged
