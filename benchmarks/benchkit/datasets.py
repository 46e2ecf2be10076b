"""Data sets: their sizes from the options, generated (or copied) once, reused while a stamp
file says they are what the options ask for."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import generators as gen
from .common import GIB, MIB, note
from .trees import Entry, scan_tree

GENERATOR_VERSION = 2
#: The data sets of the performance targets, run by default.
ISSUE_DATASETS = ("stdlib", "million", "bigfile")
ALL_DATASETS = (*ISSUE_DATASETS, "small-files", "large", "unchanged-rerun")
#: Data sets that get the seeded 1 % change and a third backup (see change.py).
CHANGE_DATASETS = frozenset({"bigfile"})


@dataclass
class Dataset:
    name: str
    root: Path
    params: dict
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    manifest: dict[str, Entry] = field(default_factory=dict)
    #: What copying the corpus left out (stdlib only).
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.name in CHANGE_DATASETS

    def summary(self) -> dict:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "mib": round(self.bytes / MIB, 2),
            "params": self.params,
            "notes": self.notes,
        }


def default_corpus() -> Path:
    """The running interpreter's standard library directory (with its site-packages)."""
    return Path(sysconfig.get_paths()["stdlib"])


def dataset_params(name: str, args: argparse.Namespace) -> dict:
    """The sizes (and for stdlib the source) of one data set, from --scale and its own options."""
    scale = args.scale
    if name == "stdlib":
        corpus = Path(args.corpus or default_corpus()).resolve()
        return {
            "corpus": str(corpus),
            "share": min(1.0, scale),
            "random_bytes": max(MIB, int(210 * MIB * scale)),
        }
    if name == "million":
        n = args.million_files if args.million_files is not None else round(1_000_000 * scale)
        return {"files": max(1, n)}
    if name == "bigfile":
        mib = args.bigfile_mib if args.bigfile_mib is not None else 4 * GIB / MIB * scale
        return {"bytes": max(MIB, int(mib * MIB)), "small_files": max(100, round(2000 * scale))}
    if name == "small-files":
        n = args.small_files if args.small_files is not None else round(5000 * scale)
        return {"files": max(1, n)}
    if name == "large":
        mib = args.large_mib if args.large_mib is not None else 200 * scale
        return {"bytes": max(MIB, int(mib * MIB))}
    n = args.rerun_files if args.rerun_files is not None else round(50_000 * scale)
    return {"files": max(1, n)}


def generate(name: str, root: Path, params: dict, rng: random.Random, seed: int) -> list[str]:
    """Fill ``root`` with data set ``name``; return notes on what could not be copied."""
    if name == "stdlib":
        unreadable = gen.copy_corpus(Path(params["corpus"]), root, params["share"], seed)
        gen.gen_random_files(root / gen.RANDOM_DIR, params["random_bytes"], rng)
        if unreadable:
            return [f"{unreadable} files of {params['corpus']} could not be read (left out)"]
    elif name == "million":
        gen.gen_million(root, params["files"], rng)
    elif name == "bigfile":
        gen.gen_bigfile(root, params["bytes"], params["small_files"], rng)
    elif name == "small-files":
        gen.gen_small_files(root, params["files"], rng)
    elif name == "large":
        gen.gen_large(root, params["bytes"], rng)
    else:
        gen.gen_rerun_tree(root, params["files"], rng)
    return []


def changed_marker(datadir: Path, name: str) -> Path:
    """Present while a data set holds the 1 % change: a run killed then leaves it regenerated."""
    return datadir / f"{name}.changed"


def prepare_dataset(name: str, datadir: Path, args: argparse.Namespace) -> Dataset:
    params = dataset_params(name, args)
    root = datadir / name
    stamp_path = datadir / f"{name}.stamp.json"
    stamp: dict = {"generator": GENERATOR_VERSION, "seed": args.seed, "params": params}
    if name == "stdlib":
        stamp["corpus"] = gen.corpus_fingerprint(Path(params["corpus"]))
    previous: dict = {}
    if root.is_dir() and stamp_path.is_file() and not changed_marker(datadir, name).exists():
        try:
            previous = json.loads(stamp_path.read_text())
        except ValueError:
            previous = {}
    notes: list[str] = []
    if {k: v for k, v in previous.items() if k != "notes"} == stamp:
        notes = previous.get("notes", [])
        note(f"[{name}] reusing {root}")
    else:
        if root.exists():
            shutil.rmtree(root)
        stamp_path.unlink(missing_ok=True)
        changed_marker(datadir, name).unlink(missing_ok=True)
        root.mkdir(parents=True)
        # One seed per data set, so selecting data sets does not change their content.
        seed = int.from_bytes(hashlib.sha256(f"{args.seed}:{name}".encode()).digest()[:8], "big")
        t0 = time.perf_counter()
        notes = generate(name, root, params, random.Random(seed), args.seed)
        stamp_path.write_text(json.dumps({**stamp, "notes": notes}))
        note(f"[{name}] generated in {time.perf_counter() - t0:.1f} s")
    ds = Dataset(name, root, params, notes=notes)
    ds.manifest = scan_tree(root)
    for entry in ds.manifest.values():
        if entry[0] == "file":
            ds.files += 1
            ds.bytes += entry[2]
        elif entry[0] == "dir":
            ds.dirs += 1
    return ds
