"""``spare verify``: download every pack, check every blob, name every damaged file."""

from __future__ import annotations

import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

from spare.commands.common import READERS, Context, reading
from spare.errors import ObjectNotFound, RepositoryDamaged, VerifyFailed
from spare.repository import objects
from spare.repository.manifest import read_manifest
from spare.repository.packs import read_pack
from spare.repository.repo import Repository


def verify(ctx: Context) -> dict[str, int]:
    with reading(ctx, "verify") as (repo, snapshot):
        return Verifier(repo).run(snapshot.manifest_ids)


class Verifier:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.scratch = repo.scratch_dir("verify")
        self.db = sqlite3.connect(
            os.path.join(self.scratch.name, "verify.sqlite"), check_same_thread=False
        )
        self.db.execute("CREATE TABLE good(id BLOB PRIMARY KEY) WITHOUT ROWID")
        self.problems: list[str] = []

    def run(self, manifest_ids: list[bytes]) -> dict[str, int]:
        try:
            packs = sorted(self.repo.cache.pack_names())
            with ThreadPoolExecutor(max_workers=READERS) as pool:
                for good in pool.map(self._check_pack, packs):
                    self.db.executemany(
                        "INSERT OR IGNORE INTO good VALUES(?)", ((chunk,) for chunk in good)
                    )
            damaged = self._check_files(manifest_ids)
        finally:
            self.db.close()
            self.scratch.cleanup()
        if self.problems or damaged:
            raise VerifyFailed(
                f"the backup is damaged: {damaged} files cannot be restored whole, "
                f"{len(self.problems)} problems found (listed above)"
            )
        return {"packs": len(packs)}

    def _report(self, message: str) -> None:
        self.problems.append(message)
        print(f"spare: {message}", file=sys.stderr, flush=True)

    def _check_pack(self, pack: str) -> list[bytes]:
        """The ids of the chunks of ``pack`` that decode and match their id."""
        try:
            data = self.repo.storage.get(objects.pack_key(pack))
        except ObjectNotFound:
            self._report(f"pack {pack} is missing")
            return []
        try:
            chain, records = read_pack(data, pack, self.repo.chain_for)
            transforms = tuple(chain.names)
        except RepositoryDamaged as exc:
            self._report(f"pack {pack} is damaged ({exc}); checking its blobs one by one")
            info = self.repo.cache.pack_info(pack)
            records, transforms = list(info.blobs), info.transforms
        good = []
        for record in records:
            blob = data[record.offset : record.offset + record.length]
            try:
                self.repo.decode_blob(record.chunk_id, blob, transforms)
            except RepositoryDamaged:
                continue
            good.append(record.chunk_id)
        return good

    def _is_good(self, chunk_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM good WHERE id=?", (chunk_id,)).fetchone() is not None

    def _check_files(self, manifest_ids: list[bytes]) -> int:
        if not all(self._is_good(chunk) for chunk in manifest_ids):
            self._report("the snapshot's file list (manifest) is damaged; no file can be named")
            return 0
        damaged = 0
        for entry in read_manifest(manifest_ids, self.repo.read_chunk):
            if entry.chunks and not all(self._is_good(chunk) for chunk in entry.chunks):
                damaged += 1
                print(f"spare: damaged: {os.fsdecode(entry.path)}", file=sys.stderr, flush=True)
        return damaged
