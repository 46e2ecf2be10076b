"""The seeded 1 % change of a data set (bigfile): what it is, applying it, and undoing it.

About 1 % of the large file changes: eight ranges overwritten in place (0.8 % of it, random bytes)
and text appended at its end (0.2 %); and 1 % of the small files (at least two): half of them
touched (new mtime, same content), half rewritten (new content of the same size). The change is
drawn from the seed alone, so every tool and every repetition backs up the same change. It is
undone after each run, so the data set is reused as it was generated.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field

from .datasets import Dataset, changed_marker
from .generators import BIGFILE_NAME, TextGen
from .trees import Entry, scan_entry

RANGES = 8
#: The change's modification time (2024-01-01), after every generated one.
CHANGE_MTIME_NS = 1_704_067_200 * 10**9


@dataclass
class Change:
    overwrites: list[tuple[int, bytes]]
    append: bytes
    touched: list[str]
    rewritten: list[tuple[str, bytes]]
    #: The manifest of the changed tree, filled in the first time the change is applied.
    manifest: dict[str, Entry] = field(default_factory=dict)

    @property
    def changed_bytes(self) -> int:
        """Bytes of content that differ from the original tree (touched files not counted)."""
        return (
            sum(len(d) for _, d in self.overwrites)
            + len(self.append)
            + sum(len(d) for _, d in self.rewritten)
        )

    def summary(self) -> dict:
        return {
            "overwritten_ranges": len(self.overwrites),
            "overwritten_bytes": sum(len(d) for _, d in self.overwrites),
            "appended_bytes": len(self.append),
            "small_files_touched": len(self.touched),
            "small_files_rewritten": len(self.rewritten),
            "changed_bytes": self.changed_bytes,
        }


def plan_change(ds: Dataset, seed: int) -> Change:
    rng = random.Random(
        int.from_bytes(hashlib.sha256(f"{seed}:{ds.name}:change".encode()).digest()[:8], "big")
    )
    size = ds.manifest[BIGFILE_NAME][2]
    budget = max(RANGES, size // 100)
    length = budget * 4 // 5 // RANGES
    slot = size // RANGES
    overwrites = []
    for i in range(RANGES):
        start = i * slot + rng.randrange(max(1, slot - length))
        overwrites.append((start, rng.randbytes(min(length, size - start))))
    append = TextGen(rng).bytes(budget - length * RANGES)
    small = sorted(rel for rel, e in ds.manifest.items() if e[0] == "file" and rel != BIGFILE_NAME)
    picked = rng.sample(small, min(len(small), max(2, round(len(small) / 100))))
    half = len(picked) // 2
    rewritten = [(rel, rng.randbytes(ds.manifest[rel][2])) for rel in picked[half:]]
    return Change(overwrites, append, picked[:half], rewritten)


def apply_change(ds: Dataset, change: Change, saved: dict[str, bytes]) -> None:
    """Change the tree, keeping in ``saved`` what each overwritten range and rewritten file held
    before (as it goes, so that revert_change undoes a change that failed half way)."""
    changed_marker(ds.root.parent, ds.name).write_text("the 1 % change is applied\n")
    big = ds.root / BIGFILE_NAME
    with open(big, "r+b") as f:
        for offset, data in change.overwrites:
            f.seek(offset)
            saved[f"{BIGFILE_NAME}@{offset}"] = f.read(len(data))
            f.seek(offset)
            f.write(data)
        f.seek(0, os.SEEK_END)
        f.write(change.append)
    for rel, data in change.rewritten:
        saved[rel] = (ds.root / rel).read_bytes()
        (ds.root / rel).write_bytes(data)
    for rel in [BIGFILE_NAME, *change.touched, *(rel for rel, _ in change.rewritten)]:
        os.utime(ds.root / rel, ns=(CHANGE_MTIME_NS, CHANGE_MTIME_NS))
    if not change.manifest:
        change.manifest = dict(ds.manifest)
        for rel in [BIGFILE_NAME, *change.touched, *(rel for rel, _ in change.rewritten)]:
            change.manifest[rel] = scan_entry(ds.root / rel)


def revert_change(ds: Dataset, change: Change, saved: dict[str, bytes]) -> None:
    """Put back what apply_change changed, mtimes included."""
    big = ds.root / BIGFILE_NAME
    with open(big, "r+b") as f:
        for offset, _ in change.overwrites:
            if f"{BIGFILE_NAME}@{offset}" in saved:
                f.seek(offset)
                f.write(saved[f"{BIGFILE_NAME}@{offset}"])
        f.truncate(ds.manifest[BIGFILE_NAME][2])
    for rel, _ in change.rewritten:
        if rel in saved:
            (ds.root / rel).write_bytes(saved[rel])
    for rel in [BIGFILE_NAME, *change.touched, *(rel for rel, _ in change.rewritten)]:
        mtime = ds.manifest[rel][4]
        os.utime(ds.root / rel, ns=(mtime, mtime))
    changed_marker(ds.root.parent, ds.name).unlink(missing_ok=True)
