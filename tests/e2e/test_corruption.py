"""Damage to every kind of object, one object at a time, and one create that heals it (issue 10).

For each kind (config, data pack, pack of the file list, index object, snapshot root, lock) a
byte is flipped, the object is truncated, deleted, or swapped with another of its kind. Then:

* ``verify`` exits 12 and names exactly the files that cannot be restored whole, or exits 3
  when every file can be restored but something was found wrong, or 0 when nothing is wrong;
* ``restore`` into a new directory brings back every other file byte for byte and names the
  damaged ones (exit 12), or is whole (exit 0);
* one ``spare create`` of the unchanged tree heals the bucket: ``verify`` then exits 0 and a new
  host (an empty cache) restores the tree whole.

No run may end with a traceback or exit 1. Damage to an object that is stored twice (the config,
the snapshot root, the file list) or that can be rebuilt from the packs (an index object) must
cost no file.

The create heals what verify and restore found and marked in the host's cache (a damaged blob or
pack, a damaged index object); left to itself, a create finds damage to a pack only when its
rotating ``--check-share`` reaches that pack, and never reads an index object it already knows.
A lock is different: one that does not decode names no holder, so no run can prove its holder
dead, and a human must run ``spare unlock``.

The file:// cases share one backup made once per module: each case copies the bucket and the
cache of the host that made it, so that the damage meets a host that backed up there the night
before. A few cases run on S3 (moto) as well, each with a backup of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.buckets import Backend, FileBackend, S3Backend, S3Server, new_bucket_name
from support.crafted import crafted_lock, opened
from support.harness import (
    EXIT_DAMAGED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    EXIT_WARNINGS,
    SpareResult,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
)

from spare.repository.index import sync_index
from spare.repository.manifest import read_manifest
from spare.repository.snapshots import latest_snapshot
from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(300)

#: Small packs, so that a tree of a few MiB fills several.
PACK_MIB = "1"
#: A spare run prints each damaged file on a line of its own.
DAMAGED = "spare: damaged: "


# --------------------------------------------------------------------------------------------
# The backup every case starts from
# --------------------------------------------------------------------------------------------


def grow_tree(root: Path, part: str, small: int, large: int) -> None:
    """Add ``small`` files of a few KiB (which share blobs), three of 96 KiB (a blob each, in one
    pack: what a flipped byte in a blob costs is told apart from what a lost pack costs) and
    ``large`` of 1.5 MiB, all random (nothing is deduplicated, so each file's chunks are its
    own)."""
    for index in range(small):
        write_file(root / part / f"small-{index:02d}.txt", os.urandom(1000 + 97 * index), 0o644)
    for index in range(3):
        write_file(root / part / f"medium-{index}.bin", os.urandom(96 << 10), 0o644)
    for index in range(large):
        write_file(root / part / f"large-{index}.bin", os.urandom(3 * MiB // 2), 0o600)


def back_up_twice(run: SpareRunner, env: dict[str, str], source: Path) -> None:
    """Two nightly runs, the tree growing in between: the second run's index object names its
    own packs, and the prune writes another for the first run's packs that stay, so the bucket
    holds two index objects (one run of a tree this small writes one)."""
    grow_tree(source, "etc", small=24, large=2)
    assert_ok(run("create", "--path", source, "--pack-size", PACK_MIB, env=env))
    grow_tree(source, "home", small=12, large=1)
    assert_ok(run("create", "--path", source, "--pack-size", PACK_MIB, env=env))


def pack_key(pack: str) -> str:
    return f"packs/{pack[:2]}/{pack}"


@dataclass(frozen=True)
class Blob:
    pack: str
    offset: int
    length: int
    #: The files that need this blob's chunk.
    files: frozenset[str]


@dataclass(frozen=True)
class Layout:
    """Where a healthy backup keeps what: the oracle that says which files a damage costs."""

    #: Regular files with content, relative to the backed-up directory.
    files: frozenset[str]
    #: Data pack -> the files with a chunk in it.
    data_packs: dict[str, frozenset[str]]
    #: The packs that hold the file list (both copies of each of its chunks).
    manifest_packs: tuple[str, ...]
    #: The blobs of the file list (``files`` empty) and of the files.
    manifest_blobs: tuple[Blob, ...]
    blobs: tuple[Blob, ...]
    #: Index object -> the packs it lists.
    indexes: dict[str, frozenset[str]]
    snapshot: str

    def data_pack_keys(self) -> list[str]:
        """The data packs' keys, the pack holding most files first."""
        packs = sorted(self.data_packs, key=lambda pack: (-len(self.data_packs[pack]), pack))
        return [pack_key(pack) for pack in packs]

    def files_in(self, *keys: str) -> frozenset[str]:
        return frozenset().union(*(self.data_packs[key.rsplit("/", 1)[1]] for key in keys))


def read_layout(env: dict[str, str], scratch: Path) -> Layout:
    """Read the healthy backup with its key, through a cache of the test's own.

    Which pack holds the file list, and which files each data pack serves, can only be told
    with the key: the file list is inside the encrypted snapshot root and manifest, and pack
    sizes say nothing robust (the last data pack of a run is as small as a manifest pack). So the
    test asks spare's own reading code, once, while the bucket is whole; the damage is then done
    and judged behind spare's back.
    """
    with opened(env, scratch) as repo:
        sync_index(repo)
        snapshot = latest_snapshot(repo)
        assert snapshot is not None
        cache = repo.cache
        manifest_blobs = tuple(
            Blob(where.pack, where.offset, where.length, frozenset())
            for chunk in snapshot.manifest_ids
            for where in cache.locations(chunk)
        )
        manifest_packs = {blob.pack for blob in manifest_blobs}
        users: defaultdict[tuple[str, int, int], set[str]] = defaultdict(set)
        files = set()
        for entry in read_manifest(snapshot.manifest_ids, repo.read_chunk):
            if entry.type != "f" or entry.link is not None or not entry.chunks:
                continue
            files.add(os.fsdecode(entry.path))
            for chunk in entry.chunks:
                for where in cache.locations(chunk):
                    users[(where.pack, where.offset, where.length)].add(os.fsdecode(entry.path))
        blobs = tuple(Blob(*place, frozenset(names)) for place, names in sorted(users.items()))
        data_packs: defaultdict[str, set[str]] = defaultdict(set)
        for blob in blobs:
            data_packs[blob.pack] |= blob.files
        indexes = {name: frozenset(cache.packs_indexed_in(name)) for name in cache.index_names()}
    assert not manifest_packs & set(data_packs), "the file list shares a pack with file data"
    assert len(manifest_packs) == 2, f"the file list is not in two packs: {manifest_packs}"
    assert len(data_packs) >= 4, f"too few data packs for the cases: {dict(data_packs)}"
    assert len(indexes) == 2, f"expected two index objects: {indexes}"
    return Layout(
        frozenset(files),
        {pack: frozenset(names) for pack, names in data_packs.items()},
        tuple(sorted(manifest_packs)),
        manifest_blobs,
        blobs,
        indexes,
        snapshot.name,
    )


@dataclass(frozen=True)
class Template:
    """The module's backup: the source tree, and the bucket and the host's cache right after
    the backup, kept aside to be copied into place by each case."""

    source: Path
    password: str
    store: FileBackend
    pristine_bucket: Path
    pristine_cache: Path
    layout: Layout

    @property
    def env(self) -> dict[str, str]:
        return {**self.store.env, "SPARE_PASSWORD": self.password}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    root = tmp_path_factory.mktemp("corruption")
    source = root / "source"
    # Every case uses this bucket's location: the host's cache remembers the config by location.
    store = FileBackend(root / "store", new_bucket_name())
    password = "pw-" + os.urandom(9).hex()
    env = {**store.env, "SPARE_PASSWORD": password}
    runner = SpareRunner(root / "cache" / "spare")
    back_up_twice(runner, env, source)
    layout = read_layout(env, root / "oracle-cache")
    shutil.copytree(store.path, root / "pristine-bucket")
    shutil.copytree(runner.cache_dir, root / "pristine-cache")
    try:
        yield Template(
            source, password, store, root / "pristine-bucket", root / "pristine-cache", layout
        )
    finally:
        store.cleanup()


@pytest.fixture
def backed_up(template: Template, run_spare: SpareRunner) -> Template:
    """The module's backup, as the host that made it left it, for this case to damage."""
    shutil.rmtree(template.store.path, ignore_errors=True)
    shutil.copytree(template.pristine_bucket, template.store.path)
    shutil.copytree(template.pristine_cache, run_spare.cache_dir)
    return template


# --------------------------------------------------------------------------------------------
# Damage, and what it must cost
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What verify and restore must report after a damage."""

    verify: int
    restore: int
    #: The files that cannot be restored whole.
    damaged: frozenset[str] = frozenset()


HARMLESS = Expected(EXIT_OK, EXIT_OK)
#: Something was found wrong, but every file can be restored.
REDUNDANT = Expected(EXIT_WARNINGS, EXIT_OK)


def flip(store: Backend, key: str, at: int) -> None:
    data = bytearray(store.objects()[key])
    data[at] ^= 0x01
    store.put(key, bytes(data))


def flip_middle(store: Backend, key: str) -> None:
    flip(store, key, len(store.objects()[key]) // 2)


def truncate(store: Backend, key: str) -> None:
    data = store.objects()[key]
    store.put(key, data[: len(data) // 2])


def swap(store: Backend, first: str, second: str) -> None:
    objects = store.objects()
    store.put(first, objects[second])
    store.put(second, objects[first])


def change_master_key(store: Backend, key: str) -> None:
    """Change one hex digit of the wrapped master key into another hex digit: the config still
    parses, but the key no longer unwraps."""
    text = store.objects()[key].decode()
    start = text.index('"master_key": "') + len('"master_key": "') + 10
    digit = "0" if text[start] != "0" else "1"
    store.put(key, (text[:start] + digit + text[start + 1 :]).encode())


def flip_blob(store: Backend, layout: Layout) -> Expected:
    """A flipped byte inside one blob, in a pack that serves other files too: the files of that
    blob alone are lost (one file's, or those of the small files that share it)."""
    blob = next(blob for blob in layout.blobs if blob.files < layout.data_packs[blob.pack])
    flip(store, pack_key(blob.pack), blob.offset + blob.length // 2)
    return Expected(EXIT_VERIFY_FAILED, EXIT_VERIFY_FAILED, blob.files)


def flip_trailer(store: Backend, layout: Layout) -> Expected:
    """A flipped byte in a data pack's trailer (the blob list at its end): every blob is still
    whole and the index still locates them, but the pack is damaged."""
    key = layout.data_pack_keys()[0]
    flip(store, key, len(store.objects()[key]) - 8)
    return REDUNDANT


def lose_pack(
    damage: Callable[[Backend, str], None], rank: int
) -> Callable[[Backend, Layout], Expected]:
    """Damage that costs a whole data pack: the ``rank``-th by the number of files it serves."""

    def case(store: Backend, layout: Layout) -> Expected:
        key = layout.data_pack_keys()[rank]
        damage(store, key)
        return Expected(EXIT_VERIFY_FAILED, EXIT_VERIFY_FAILED, layout.files_in(key))

    return case


def swap_data_packs(store: Backend, layout: Layout) -> Expected:
    first, second = layout.data_pack_keys()[:2]
    swap(store, first, second)
    return Expected(EXIT_VERIFY_FAILED, EXIT_VERIFY_FAILED, layout.files_in(first, second))


def manifest_copy(damage: Callable[[Backend, str], None]) -> Callable[[Backend, Layout], Expected]:
    def case(store: Backend, layout: Layout) -> Expected:
        damage(store, pack_key(layout.manifest_packs[0]))
        return REDUNDANT

    return case


def flip_manifest_blob(store: Backend, layout: Layout) -> Expected:
    """A flipped byte in one copy of the file list (a manifest pack is mostly its trailer's
    padding: the byte is put inside the blob)."""
    blob = layout.manifest_blobs[0]
    flip(store, pack_key(blob.pack), blob.offset + blob.length // 2)
    return REDUNDANT


def swap_manifest_packs(store: Backend, layout: Layout) -> Expected:
    """The two packs of the file list hold the same blobs at the same offsets, and a blob is
    bound to its chunk, not to its pack: swapped, both trailers are wrong but each blob still
    checks, so the file list can still be read."""
    swap(store, *map(pack_key, layout.manifest_packs))
    return REDUNDANT


def index_object(damage: Callable[[Backend, str], None]) -> Callable[[Backend, Layout], Expected]:
    def case(store: Backend, layout: Layout) -> Expected:
        name = max(layout.indexes, key=lambda name: (len(layout.indexes[name]), name))
        damage(store, f"index/{name}")
        return REDUNDANT

    return case


def delete_index(store: Backend, layout: Layout) -> Expected:
    """A deleted index object: its packs are read from their trailers, as an interrupted run's
    packs are. Nothing tells a verify that they were ever indexed, so nothing is wrong for it."""
    index_object(lambda store, key: store.delete(key))(store, layout)
    return HARMLESS


def swap_indexes(store: Backend, layout: Layout) -> Expected:
    swap(store, *(f"index/{name}" for name in sorted(layout.indexes)))
    return REDUNDANT


def root(
    damage: Callable[[Backend, str], None], copy: bool = False, expected: Expected = REDUNDANT
) -> Callable[[Backend, Layout], Expected]:
    def case(store: Backend, layout: Layout) -> Expected:
        damage(store, f"snapshots/{layout.snapshot}" + (".copy" if copy else ""))
        return expected

    return case


def delete(store: Backend, key: str) -> None:
    store.delete(key)


#: One of two copies missing: a create killed between storing them leaves that too, so verify
#: only notes it (the next create stores both); one damaged copy is a problem (exit 3).
NOTED = HARMLESS


def swap_roots(store: Backend, layout: Layout) -> Expected:
    """The root and its copy hold the same bytes: swapping them changes nothing."""
    swap(store, f"snapshots/{layout.snapshot}", f"snapshots/{layout.snapshot}.copy")
    return HARMLESS


def config(
    damage: Callable[[Backend, str], None], expected: Expected = REDUNDANT
) -> Callable[[Backend, Layout], Expected]:
    def case(store: Backend, layout: Layout) -> Expected:
        damage(store, "config")
        return expected

    return case


def swap_configs(store: Backend, layout: Layout) -> Expected:
    """The two copies of the config are equal: swapping them changes nothing."""
    swap(store, "config", "config.copy")
    return HARMLESS


CASES: dict[str, Callable[[Backend, Layout], Expected]] = {
    "config-flip-json": config(lambda store, key: flip(store, key, 0)),
    "config-flip-master-key": config(change_master_key),
    "config-truncate": config(truncate),
    "config-delete": config(delete, NOTED),
    "config-swap-copies": swap_configs,
    "pack-flip-blob": flip_blob,
    "pack-flip-trailer": flip_trailer,
    "pack-truncate": lose_pack(truncate, rank=1),
    "pack-delete": lose_pack(lambda store, key: store.delete(key), rank=0),
    "pack-swap-two": swap_data_packs,
    "manifest-pack-flip": flip_manifest_blob,
    "manifest-pack-truncate": manifest_copy(truncate),
    "manifest-pack-delete": manifest_copy(lambda store, key: store.delete(key)),
    "manifest-pack-swap-two": swap_manifest_packs,
    "index-flip": index_object(flip_middle),
    "index-truncate": index_object(truncate),
    "index-delete": delete_index,
    "index-swap-two": swap_indexes,
    "root-flip": root(flip_middle),
    "root-copy-truncate": root(truncate, copy=True),
    "root-delete": root(delete, expected=NOTED),
    "root-swap-with-copy": swap_roots,
}


# --------------------------------------------------------------------------------------------
# What must be seen
# --------------------------------------------------------------------------------------------


def named(result: SpareResult) -> list[str]:
    """The paths a run named as damaged, in the order it named them."""
    return [line[len(DAMAGED) :] for line in result.stderr.splitlines() if line.startswith(DAMAGED)]


def assert_exit(result: SpareResult, code: int) -> None:
    assert result.returncode == code, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)


def check_verify(run: SpareRunner, env: dict[str, str], expected: Expected) -> None:
    result = run("verify", env=env)
    assert_exit(result, expected.verify)
    assert sorted(named(result)) == sorted(expected.damaged), describe(result)


def check_restore(
    run: SpareRunner, env: dict[str, str], expected: Expected, source: Path, target: Path
) -> None:
    result = run("restore", "--path", target, env=env)
    assert_exit(result, expected.restore)
    assert sorted(named(result)) == sorted(str(target / path) for path in expected.damaged), (
        describe(result)
    )
    if expected.restore == EXIT_OK:
        assert_same_tree(source, target)
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and relative not in expected.damaged:
            assert (target / relative).read_bytes() == path.read_bytes(), relative


def assert_same_tree(source: Path, target: Path) -> None:
    owners = os.geteuid() == 0
    assert_trees_equal(snapshot_tree(source, owners=owners), snapshot_tree(target, owners=owners))


def assert_whole_bucket(store: Backend) -> None:
    """Both copies of the config and of the one snapshot root are there, and equal."""
    objects = store.objects()
    assert objects.get("config") is not None, sorted(objects)
    assert objects["config"] == objects.get("config.copy"), "the config's copies differ"
    roots = sorted(key for key in objects if key.startswith("snapshots/"))
    assert len(roots) == 2 and roots[1] == roots[0] + ".copy", roots
    assert objects[roots[0]] == objects[roots[1]], "the snapshot root's copies differ"


def check_healed(
    run: SpareRunner, env: dict[str, str], store: Backend, source: Path, tmp_path: Path
) -> None:
    """One create of the unchanged tree repairs everything: verify finds nothing, and a new
    host restores the tree whole."""
    assert_ok(run("create", "--path", source, "--pack-size", PACK_MIB, env=env))
    verify = run("verify", env=env)
    assert_ok(verify)
    assert named(verify) == [], describe(verify)
    assert_whole_bucket(store)
    new_host = SpareRunner(tmp_path / "new-host" / "spare")
    target = tmp_path / "restored-on-a-new-host"
    assert_ok(new_host("restore", "--path", target, env=env))
    assert_same_tree(source, target)


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_reported_and_healed(
    case: str, backed_up: Template, run_spare: SpareRunner, tmp_path: Path
) -> None:
    env, source = backed_up.env, backed_up.source
    expected = CASES[case](backed_up.store, backed_up.layout)
    check_verify(run_spare, env, expected)
    check_restore(run_spare, env, expected, source, tmp_path / "restored")
    check_healed(run_spare, env, backed_up.store, source, tmp_path)


def test_config_gone(backed_up: Template, run_spare: SpareRunner, tmp_path: Path) -> None:
    """Both copies of the config deleted: a new host cannot read the backup and is told, in one
    line, where the config can be found; the host that backed up still remembers it, restores,
    and its next create stores the config again."""
    env, source, store = backed_up.env, backed_up.source, backed_up.store
    store.delete("config")
    store.delete("config.copy")
    new_host = SpareRunner(tmp_path / "new-host" / "spare")
    for args in (["verify"], ["restore", "--path", tmp_path / "not-restored"]):
        line = assert_error(new_host(*args, env=env), EXIT_DAMAGED)
        assert "config" in line and "gone" in line and "SPARE_CACHE_DIR" in line, line

    verify = run_spare("verify", env=env)
    assert_exit(verify, EXIT_WARNINGS)
    assert named(verify) == [], describe(verify)
    for key in ("config", "config.copy"):
        assert f"the bucket's {key} is missing" in verify.stderr, describe(verify)
    check_restore(run_spare, env, HARMLESS, source, tmp_path / "restored")
    check_healed(run_spare, env, store, source, tmp_path)


def dead_pid() -> int:
    """A pid that no process has any more (its process ran and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def leave_dead_lock(template: Template, scratch: Path) -> bytes:
    """Store the lock a create of this host left when it was killed; returns its bytes."""
    lock = crafted_lock(template.env, scratch, pid=dead_pid())
    template.store.put("lock", lock)
    return lock


def test_stale_lock_is_cleared(backed_up: Template, run_spare: SpareRunner, tmp_path: Path) -> None:
    """The lock of a create of this host that was killed: its holder is certainly gone, so the
    next run clears it, says so in one line and needs nobody."""
    env = backed_up.env
    leave_dead_lock(backed_up, tmp_path / "crafting")
    verify = run_spare("verify", env=env)
    assert_ok(verify)
    assert "cleared the stale lock" in verify.stderr, describe(verify)
    assert not backed_up.store.keys("lock"), "the stale lock was not cleared"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_lock_needs_unlock(
    damage: str, backed_up: Template, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A lock that does not decode names no holder, so nothing proves its holder dead: every
    command refuses in one line that says to run 'spare unlock' (the threat model: an unreadable
    lock is never cleared as stale). After 'spare unlock', one create and all is well."""
    env, source, store = backed_up.env, backed_up.source, backed_up.store
    lock = leave_dead_lock(backed_up, tmp_path / "crafting")
    if damage == "flip":
        flip_middle(store, "lock")
    else:
        store.put("lock", lock[: len(lock) // 2])
    for args in (
        ["verify"],
        ["restore", "--path", tmp_path / "not-restored"],
        ["create", "--path", source, "--pack-size", PACK_MIB],
    ):
        line = assert_error(run_spare(*args, env=env), EXIT_LOCKED)
        assert "spare unlock" in line and "lock cannot be read" in line, line
    assert_ok(run_spare("unlock", env=env))
    check_healed(run_spare, env, store, source, tmp_path)


# --------------------------------------------------------------------------------------------
# The same on S3
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["pack-flip-blob", "manifest-pack-delete", "index-flip"])
def test_damage_on_s3(
    case: str, s3_server: S3Server, run_spare: SpareRunner, password: str, tmp_path: Path
) -> None:
    store = S3Backend(s3_server, new_bucket_name())
    try:
        env = {**store.env, "SPARE_PASSWORD": password}
        source = tmp_path / "source"
        back_up_twice(run_spare, env, source)
        expected = CASES[case](store, read_layout(env, tmp_path / "oracle-cache"))
        check_verify(run_spare, env, expected)
        check_restore(run_spare, env, expected, source, tmp_path / "restored")
        check_healed(run_spare, env, store, source, tmp_path)
    finally:
        store.cleanup()
