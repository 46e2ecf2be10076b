"""SIGKILL at random instants of a real ``spare create``: nothing is lost, nothing needs a human.

The OOM killer, a power cut of the process, ``kill -9`` from a tired sysadmin: they come at any
instant. After each kill, on ``file://`` and on the S3 server:

* ``spare verify`` passes (exit 0);
* ``spare restore`` gives, exactly (contents and the set of paths, and all they record), either
  the tree of the last completed create or the tree the killed one was backing up;
* the next ``spare create`` completes (exit 0) without ``spare unlock``: the lock of the dead
  process is cleared by the first command that meets it.

The tree changes between runs (new, changed and deleted files, big and small), so the old and
the new snapshot differ. Each instant is drawn uniformly within the measured duration of a create
of the same amount of change, from a seeded RNG. ``SPARE_KILLS`` sets how many kills in all (half
on each storage; default 10), ``SPARE_KILL_SEED`` the seed (printed with every failure). Only the
command line is looked at, never the bucket's objects, whose format may change.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.buckets import Backend, FileBackend
from support.harness import SpareResult, SpareRunner, assert_ok, describe, finish
from support.plugin import through

from spare.testing.trees import MiB, compare_scans, snapshot_tree, write_file

KILLS = int(os.environ.get("SPARE_KILLS", "10"))
SEED = int(os.environ.get("SPARE_KILL_SEED", "1126"))

#: Small packs, so that a run writes several and a kill can fall between any two.
PACK_SIZE = ["--pack-size", "1"]

#: Per storage: how many big files (1 MiB each, incompressible) the tree holds, and how many
#: each change replaces. A create spends some 0.7 s starting (imports, key derivation) whatever
#: the tree; file:// stores 50 MiB/s or so, moto a tenth of that: this gives each run at least
#: as long again of real work, for the kills to fall in.
BIG_FILES = {"file": (48, 24), "s3": (20, 8)}
SMALL_FILES = 40

pytestmark = pytest.mark.timeout(120 + 60 * KILLS)

Tree = dict[str, dict[str, Any]]


class ChangingTree:
    """The tree backed up: some MiB of random data in several files and some small files, each
    change replacing about half of the data (seeded, so a failure can be replayed)."""

    def __init__(self, root: Path, rng: random.Random, big_files: int, replaced: int) -> None:
        self.root = root
        self.rng = rng
        self.replaced = replaced
        self.serial = 0
        for _ in range(big_files):
            self._new_big()
        for _ in range(SMALL_FILES):
            self._new_small()

    def _name(self, kind: str) -> Path:
        self.serial += 1
        return self.root / f"{kind}-{self.serial % 4}" / f"{kind}-{self.serial}.dat"

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def _new_big(self) -> None:
        self._write(self._name("big"), self.rng.randbytes(MiB))

    def _new_small(self) -> None:
        self._write(self._name("small"), b"small %d\n" % self.rng.getrandbits(64))

    def _files(self, kind: str) -> list[Path]:
        return sorted(self.root.glob(f"{kind}-*/*.dat"))

    def change(self) -> None:
        """Replace some big files by new ones, rewrite the middle of another; the same for small
        files (deleted, added, appended to)."""
        for path in self.rng.sample(self._files("big"), self.replaced):
            path.unlink()
        for _ in range(self.replaced):
            self._new_big()
        with open(self.rng.choice(self._files("big")), "r+b") as file:
            file.seek(MiB // 4)
            file.write(self.rng.randbytes(MiB // 2))
        for path in self.rng.sample(self._files("small"), 5):
            path.unlink()
        for _ in range(5):
            self._new_small()
        for path in self.rng.sample(self._files("small"), 5):
            with open(path, "ab") as file:
                file.write(b"changed\n")


#: What a run may say after a kill: that it cleared the dead run's lock, and that a kill between
#: storing the two copies of the snapshot root (or of a new bucket's config) left one.
AFTER_A_KILL = re.compile(
    r"spare: (warning: cleared the stale lock of 'spare create'"
    r"|note: (the snapshot root snapshots/[0-9a-f]{32}\.copy|the bucket's config\.copy) is "
    r"missing; the next create stores it again$)"
)


def assert_ok_but_for_a_cleared_lock(result: subprocess.CompletedProcess[str], where: str) -> None:
    """Exit 0, and nothing on stderr but the warning that a dead process's lock was cleared, or
    the note that a copy the killed run was about to store is missing."""
    assert result.returncode == 0, f"{where}\n{describe(result)}"
    for line in result.stderr.splitlines():
        assert AFTER_A_KILL.match(line), f"{where}\n{describe(result)}"


def differences(expected: Tree, actual: Tree) -> list[str]:
    """Every way ``actual`` differs from ``expected``: missing, unexpected or changed entries."""
    return [
        str(difference)
        for difference in compare_scans(
            {os.fsencode(rel): record for rel, record in expected.items()},
            {os.fsencode(rel): record for rel, record in actual.items()},
        )
    ]


def timed_create(run_spare: SpareRunner, env: dict[str, str], source: Path) -> float:
    started = time.monotonic()
    assert_ok(run_spare("create", "--path", source, *PACK_SIZE, env=env))
    return time.monotonic() - started


def test_killed_creates_lose_nothing(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Each kill is followed by verify, restore (old or new tree) and a create that completes;
    a kill that comes after the run ended checks that run like any other."""
    kills = KILLS // 2 + (KILLS % 2 if isinstance(backend, FileBackend) else 0)
    rng = random.Random(f"{SEED}-{backend.kind}")
    source = tmp_path / "source"
    tree = ChangingTree(source, rng, *BIG_FILES[backend.kind])
    timed_create(run_spare, env, source)
    tree.change()
    duration = timed_create(run_spare, env, source)  # a run of one change's worth of data

    history: list[str] = []
    for kill in range(kills):
        old = snapshot_tree(source)
        tree.change()
        new = snapshot_tree(source)
        instant = rng.uniform(0, duration)
        proc = run_spare.popen("create", "--path", source, *PACK_SIZE, env=env)
        try:
            proc.wait(timeout=instant)
        except subprocess.TimeoutExpired:
            proc.kill()
        result = finish(proc)
        killed = result.returncode == -signal.SIGKILL
        history.append(
            f"kill {kill + 1}: at {instant:.2f} s of {duration:.2f} s, "
            + ("killed" if killed else f"ended first ({result.returncode})")
        )
        where = f"seed {SEED} on {backend.kind}; " + "; ".join(history)
        if not killed:
            assert_ok(result)

        assert_ok_but_for_a_cleared_lock(run_spare("verify", env=env), where)
        restored = tmp_path / f"restored-{kill}"
        assert_ok_but_for_a_cleared_lock(run_spare("restore", "--path", restored, env=env), where)
        got = snapshot_tree(restored)
        from_new, from_old = differences(new, got), differences(old, got)
        assert not from_new or (killed and not from_old), (
            f"{where}\nthe restore is neither the old tree nor the new one:\n"
            f"against the new one: {from_new[:10]}\nagainst the old one: {from_old[:10]}"
        )
        history[-1] += f", restored the {'old' if from_new else 'new'} tree"
        shutil.rmtree(restored)
        assert_ok_but_for_a_cleared_lock(
            run_spare("create", "--path", source, *PACK_SIZE, env=env), where
        )

    restored = tmp_path / "restored-last"
    assert_ok(run_spare("restore", "--path", restored, env=env))
    assert not differences(snapshot_tree(source), snapshot_tree(restored)), "; ".join(history)


def test_a_create_killed_before_each_write_of_its_commit_and_prune(
    quirks: Path, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Not at random instants but before each write, from the snapshot on, of one create whose
    prune repacks a pack (the writes are counted by the test plugin's ``killat://`` storage):
    each kill leaves a bucket that verify passes and that restores the old tree if the snapshot
    was not written yet, the new one if it was. (That the next create completes after any kill
    is the random test's part.)"""
    store = FileBackend(tmp_path / "store", "bucket")
    base = through("killat", store, password, quirks)
    source = tmp_path / "source"
    big = [source / f"big-{index}.bin" for index in range(4)]
    for path in big:
        write_file(path, random.Random(path.name).randbytes(300 << 10), 0o644)
    for index in range(10):
        write_file(source / "small" / f"{index}.txt", b"small %d\n" % index, 0o644)
    template_cache = tmp_path / "cache-template"
    assert_ok(
        run_spare(
            "create",
            "--path",
            source,
            *PACK_SIZE,
            env={**base, "SPARE_CACHE_DIR": str(template_cache)},
        )
    )
    template = tmp_path / "store-template"
    shutil.copytree(store.path, template)
    old = snapshot_tree(source)
    for path in big[:3]:  # the pack that held them keeps a quarter of its bytes: it is repacked
        path.unlink()
    write_file(source / "small" / "new.txt", b"new\n", 0o644)
    new = snapshot_tree(source)

    def run_killed(at: int, writes: Path | None = None) -> tuple[dict[str, str], SpareResult]:
        """A create on a fresh copy of the template, killed before its write number ``at``;
        the environment of the runs after it."""
        shutil.rmtree(store.path)
        shutil.copytree(template, store.path)
        cache = tmp_path / f"cache-{at}"
        shutil.copytree(template_cache, cache)
        env = {**base, "SPARE_CACHE_DIR": str(cache)}
        knobs = {"SPARE_TEST_KILL_AT": str(at)}
        if writes is not None:
            knobs["SPARE_TEST_WRITES"] = str(writes)
        return env, run_spare("create", "--path", source, *PACK_SIZE, env={**env, **knobs})

    log = tmp_path / "writes"
    assert_ok(run_killed(0, log)[1])
    writes = log.read_text().splitlines()
    committed = next(i for i, write in enumerate(writes, 1) if write.startswith("put snapshots/"))
    assert any(write.startswith("put packs/") for write in writes[committed:]), (
        f"the prune repacked nothing: {writes}"
    )

    for at in range(committed, len(writes) + 1):
        env, result = run_killed(at)
        where = f"killed before write {at} of {writes}"
        assert result.returncode == -signal.SIGKILL, f"{where}\n{describe(result)}"
        assert_ok_but_for_a_cleared_lock(run_spare("verify", env=env), where)
        restored = tmp_path / f"restored-{at}"
        assert_ok(run_spare("restore", "--path", restored, env=env))
        assert not differences(old if at == committed else new, snapshot_tree(restored)), where
