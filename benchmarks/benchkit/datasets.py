"""Data sets: reproducible trees generated from a seeded random generator."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import KIB, MIB, note
from .trees import scan_tree

GENERATOR_VERSION = 1
ALL_DATASETS = ("small-files", "large", "unchanged-rerun")

_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_LETTER_WEIGHTS = (
    12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
    2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07,
)  # fmt: skip


class TextGen:
    """Compressible, text-like bytes drawn from a seeded, Zipf-weighted vocabulary.

    Every call draws fresh words, so generated text does not repeat (no accidental dedup).
    """

    def __init__(self, rng: random.Random, words: int = 6000) -> None:
        self.rng = rng
        vocab: set[str] = set()
        while len(vocab) < words:
            length = min(1 + int(rng.expovariate(1 / 5)), 16)
            vocab.add("".join(rng.choices(_LETTERS, _LETTER_WEIGHTS, k=length)))
        ordered = sorted(vocab)
        rng.shuffle(ordered)
        tokens = [w + " " for w in ordered]
        # Punctuation and line breaks among the most frequent tokens.
        for rank, tok in ((1, "\n"), (3, ", "), (6, ". "), (40, "\n\n"), (80, "(x) ")):
            tokens.insert(rank, tok)
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(tokens))]
        self.tokens = tokens
        self.cum_weights = list(itertools.accumulate(weights))
        total = self.cum_weights[-1]
        self.mean_len = sum(len(t) * w for t, w in zip(tokens, weights, strict=True)) / total

    def bytes(self, n: int) -> bytes:
        if n <= 0:
            return b""
        parts: list[str] = []
        have = 0
        while have < n:
            k = int((n - have) / self.mean_len) + 8
            chunk = "".join(self.rng.choices(self.tokens, cum_weights=self.cum_weights, k=k))
            parts.append(chunk)
            have += len(chunk)
        return "".join(parts).encode("ascii")[:n]


def _random_dirs(rng: random.Random, count: int, max_depth: int) -> list[str]:
    dirs = [""]
    for i in range(count):
        parent = rng.choice(dirs)
        if parent.count("/") >= max_depth - 1:
            parent = ""
        dirs.append(f"{parent}/d{i:04d}" if parent else f"d{i:04d}")
    return dirs


def _set_times(root: Path, rng: random.Random) -> None:
    """Give every entry a fixed, seeded mtime (nanosecond precision) so data sets are identical."""
    base = 1_600_000_000
    entries: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        entries.extend(os.path.join(dirpath, name) for name in sorted(filenames) + links)
    for path in entries:
        t = base * 10**9 + rng.randrange(0, 10**8 * 10**9)
        os.utime(path, ns=(t, t), follow_symlinks=False)
    # Directories last, deepest first, since writing into a directory changes its mtime.
    dirs = [dp for dp, _, _ in os.walk(root)]
    for path in sorted(dirs, key=lambda p: p.count(os.sep), reverse=True):
        t = base * 10**9 + rng.randrange(0, 10**8 * 10**9)
        os.utime(path, ns=(t, t))


def gen_small_files(root: Path, files: int, rng: random.Random) -> None:
    """N files of 1-16 KiB (60 % text, 38 % random, 2 % duplicates) in nested directories."""
    text = TextGen(rng)
    dirs = _random_dirs(rng, max(1, files // 40), max_depth=5)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i in range(files):
        d = rng.choice(dirs)
        size = rng.randint(1 * KIB, 16 * KIB)
        r = rng.random()
        if written and r < 0.02:
            data, ext = rng.choice(written).read_bytes(), ".dup"
        elif r < 0.62:
            data, ext = text.bytes(size), ".txt"
        else:
            data, ext = rng.randbytes(size), ".bin"
        path = root / d / f"f{i:05d}{ext}"
        path.write_bytes(data)
        path.chmod(rng.choice((0o644,) * 8 + (0o600, 0o755)))
        written.append(path)
    # A few entries that a faithful restore must get right.
    (root / "empty.txt").write_bytes(b"")
    (root / "empty-dir").mkdir()
    (root / "spaces dir").mkdir()
    (root / "spaces dir" / "a file with spaces.txt").write_bytes(text.bytes(3000))
    (root / "unicode").mkdir()
    (root / "unicode" / "caf\u00e9 \u00fcn\u00efc\u00f8d\u00e9 \u2603.txt").write_bytes(
        text.bytes(2000)
    )
    (root / "links").mkdir()
    if written:
        target = os.path.relpath(rng.choice(written), root / "links")
        os.symlink(target, root / "links" / "to-file")
    os.symlink("no-such-file", root / "links" / "dangling")
    _set_times(root, rng)


def gen_large(root: Path, total: int, rng: random.Random) -> None:
    """A few large files: half compressible text, half random bytes."""
    text = TextGen(rng)
    root.mkdir(parents=True, exist_ok=True)
    half = total // 2
    big = half * 4 // 5
    specs = (
        ("text-0.txt", "text", big),
        ("random-0.bin", "random", big),
        ("text-1.txt", "text", half - big),
        ("random-1.bin", "random", total - half - big),
    )
    for name, kind, size in specs:
        with open(root / name, "wb") as f:
            left = size
            while left > 0:
                n = min(left, MIB)
                f.write(text.bytes(n) if kind == "text" else rng.randbytes(n))
                left -= n
    _set_times(root, rng)


def gen_rerun_tree(root: Path, files: int, rng: random.Random) -> None:
    """Many small files (100 B - 4 KiB, 70 % text) about 100 per directory, three levels deep."""
    text = TextGen(rng)
    dirs = _random_dirs(rng, max(1, files // 100), max_depth=3)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(files):
        size = rng.randint(100, 4 * KIB)
        data = text.bytes(size) if rng.random() < 0.7 else rng.randbytes(size)
        (root / rng.choice(dirs) / f"f{i:06d}").write_bytes(data)
    _set_times(root, rng)


@dataclass
class Dataset:
    name: str
    root: Path
    params: dict
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    manifest: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "mib": round(self.bytes / MIB, 2),
            "params": self.params,
        }


def dataset_params(name: str, args: argparse.Namespace) -> dict:
    if name == "small-files":
        n = args.small_files if args.small_files is not None else round(5000 * args.scale)
        return {"files": max(1, n)}
    if name == "large":
        mib = args.large_mib if args.large_mib is not None else 200 * args.scale
        return {"bytes": max(MIB, int(mib * MIB))}
    n = args.rerun_files if args.rerun_files is not None else round(50_000 * args.scale)
    return {"files": max(1, n)}


def prepare_dataset(name: str, datadir: Path, args: argparse.Namespace) -> Dataset:
    params = dataset_params(name, args)
    root = datadir / name
    stamp_path = datadir / f"{name}.stamp.json"
    stamp = {"generator": GENERATOR_VERSION, "seed": args.seed, "params": params}
    reuse = False
    if root.is_dir() and stamp_path.is_file():
        try:
            reuse = json.loads(stamp_path.read_text()) == stamp
        except ValueError:
            reuse = False
    if not reuse:
        if root.exists():
            shutil.rmtree(root)
        stamp_path.unlink(missing_ok=True)
        root.mkdir(parents=True)
        # One seed per data set, so selecting data sets does not change their content.
        seed = int.from_bytes(hashlib.sha256(f"{args.seed}:{name}".encode()).digest()[:8], "big")
        rng = random.Random(seed)
        t0 = time.perf_counter()
        if name == "small-files":
            gen_small_files(root, params["files"], rng)
        elif name == "large":
            gen_large(root, params["bytes"], rng)
        else:
            gen_rerun_tree(root, params["files"], rng)
        stamp_path.write_text(json.dumps(stamp))
        note(f"[{name}] generated in {time.perf_counter() - t0:.1f} s")
    else:
        note(f"[{name}] reusing {root}")
    ds = Dataset(name, root, params)
    ds.manifest = scan_tree(root)
    for entry in ds.manifest.values():
        if entry[0] == "file":
            ds.files += 1
            ds.bytes += entry[2]
        elif entry[0] == "dir":
            ds.dirs += 1
    return ds
