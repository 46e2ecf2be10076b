"""The generators behind the data sets: seeded text and random bytes, trees of them, and the
copy of a real source tree.

Every generator takes a ``random.Random`` seeded for its data set, so the same seed and sizes give
byte-identical trees (with fixed modification times) on every machine. The copied corpus is the
exception: its content is whatever the source tree holds.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import stat
from pathlib import Path

from .common import KIB, MIB

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


def gen_million(root: Path, files: int, rng: random.Random) -> None:
    """Many tiny files (0-2 KiB, 70 % text) exactly 100 to a directory, 100 directories to a group.

    The layout is fixed by the file's number (``g0012/d34/f0123456``), so generating a million
    costs one write per file and nothing else.
    """
    text = TextGen(rng)
    for i in range(files):
        leaf = root / f"g{i // 10_000:04d}" / f"d{i // 100 % 100:02d}"
        if i % 100 == 0:
            leaf.mkdir(parents=True, exist_ok=True)
        size = rng.randint(0, 2 * KIB)
        data = text.bytes(size) if rng.random() < 0.7 else rng.randbytes(size)
        (leaf / f"f{i:07d}").write_bytes(data)
    _set_times(root, rng)


BIGFILE_NAME = "big.bin"
BIGFILE_BLOCK = 4 * MIB


def gen_bigfile(root: Path, total: int, small_files: int, rng: random.Random) -> None:
    """One large file of ``total`` bytes, 4 MiB blocks each text or random at even odds, and
    ``small_files`` files of 1-16 KiB (60 % text) about 100 to a directory under ``small/``."""
    text = TextGen(rng)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / BIGFILE_NAME, "wb") as f:
        left = total
        while left > 0:
            n = min(left, BIGFILE_BLOCK)
            f.write(text.bytes(n) if rng.random() < 0.5 else rng.randbytes(n))
            left -= n
    for i in range(small_files):
        leaf = root / "small" / f"d{i // 100:03d}"
        if i % 100 == 0:
            leaf.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1 * KIB, 16 * KIB)
        data = text.bytes(size) if rng.random() < 0.6 else rng.randbytes(size)
        (leaf / f"s{i:05d}").write_bytes(data)
    _set_times(root, rng)


RANDOM_DIR = "zz-bench-random"
RANDOM_FILE = 10 * MIB


def corpus_fingerprint(corpus: Path) -> dict:
    """Files, bytes and newest mtime of a source tree: a copy is reused only while these hold."""
    files = size = newest = 0
    for dirpath, _, filenames in os.walk(corpus):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            files += 1
            size += st.st_size
            newest = max(newest, st.st_mtime_ns)
    return {"files": files, "bytes": size, "newest_mtime_ns": newest}


def _chosen(rel: str, seed: int, share: float) -> bool:
    """Whether a corpus path is in a copy of ``share`` of the files: a stable, seeded choice."""
    if share >= 1:
        return True
    digest = hashlib.sha256(f"{seed}:{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def copy_corpus(corpus: Path, root: Path, share: float, seed: int) -> int:
    """Copy the regular files and symbolic links of ``corpus`` (a seeded ``share`` of them) into
    ``root`` with their modes and mtimes; return how many could not be read and were left out."""
    unreadable = 0
    dirs: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(corpus):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, corpus)
        target_dir = os.path.normpath(os.path.join(root, rel_dir))
        dirs.append((dirpath, target_dir))
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(f"{dirpath}/{d}")]:
            src = os.path.join(dirpath, name)
            if not _chosen(os.path.normpath(os.path.join(rel_dir, name)), seed, share):
                continue
            st = os.lstat(src)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue  # sockets, FIFOs and devices are no source code
            os.makedirs(target_dir, exist_ok=True)
            try:
                shutil.copy2(src, os.path.join(target_dir, name), follow_symlinks=False)
            except OSError:
                unreadable += 1
    # Directory times last, deepest first (creating entries changes a directory's mtime), for
    # the directories that received something.
    for src_dir, target_dir in reversed(dirs):
        if os.path.isdir(target_dir):
            shutil.copystat(src_dir, target_dir)
    return unreadable


def gen_random_files(root: Path, total: int, rng: random.Random) -> None:
    """``total`` random bytes in files of 10 MiB (the last one shorter) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range((total + RANDOM_FILE - 1) // RANDOM_FILE):
        size = min(RANDOM_FILE, total - i * RANDOM_FILE)
        with open(root / f"random-{i:03d}.bin", "wb") as f:
            for offset in range(0, size, MIB):
                f.write(rng.randbytes(min(MIB, size - offset)))
    _set_times(root, rng)
