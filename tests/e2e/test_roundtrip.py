"""Back up and restore like a sysadmin: the restored tree must be the backed-up one, entry by entry.

Also checks the storage promises of the README that only show across runs: a nightly run over an
unchanged tree uploads nothing new, exactly one snapshot is kept, duplicated content is stored once.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
from support.buckets import (
    PACKS,
    SNAPSHOTS,
    Backend,
    complete_packs,
    snapshot_roots,
    stored_bytes,
    stray_keys,
)
from support.harness import SpareRunner, assert_ok, describe, finish, wait_until

from spare.testing.trees import (
    MiB,
    assert_trees_equal,
    build_rich_tree,
    set_odd_mtimes,
    snapshot_tree,
    write_file,
)

# Objects a run may write even when no data changed (snapshot root, index, marker...): well under
# this. A pack of real data is several MiB.
SMALL_METADATA = 64 * 1024

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    build_rich_tree(tree)
    return tree


def test_restore_gives_back_the_tree(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """Every entry comes back with its content, type, mode, owner, mtime, target and links."""
    expected = snapshot_tree(source)
    assert_ok(run_spare("create", "--path", source, env=env))

    target = tmp_path / "restored"
    target.mkdir()
    assert_ok(run_spare("restore", "--path", target, env=env))

    assert_trees_equal(expected, snapshot_tree(target))
    # The source is only read.
    assert_trees_equal(expected, snapshot_tree(source))


def test_restore_into_a_new_directory(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """The README allows a target that does not exist yet (the usual case on a rebuilt host)."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    expected = snapshot_tree(source)
    assert_ok(run_spare("create", "--path", source, env=env))

    target = tmp_path / "not" / "there" / "yet"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_restore_with_a_fresh_cache(
    file_backend: Backend, password: str, source: Path, tmp_path: Path
) -> None:
    """The cache is rebuildable: a restore on a new host (no cache at all) must work."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    expected = snapshot_tree(source)
    assert_ok(SpareRunner(tmp_path / "cache-of-old-host")("create", "--path", source, env=env))

    target = tmp_path / "restored"
    assert_ok(SpareRunner(tmp_path / "cache-of-new-host")("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_unchanged_tree_uploads_nothing_new(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """The nightly run over an unchanged tree: only a new snapshot root is written.

    Packs, index and config stay byte for byte; the one snapshot object is replaced by another
    (it records the time of the run), and nothing else is added.
    """
    assert_ok(run_spare("create", "--path", source, env=env))
    before = backend.objects()
    assert [key for key in before if key.startswith(PACKS)], sorted(before)

    assert_ok(run_spare("create", "--path", source, env=env))
    after = backend.objects()

    def data_objects(objects: dict[str, bytes]) -> dict[str, bytes]:
        return {key: data for key, data in objects.items() if not key.startswith(SNAPSHOTS)}

    changed = sorted(
        key
        for key in data_objects(before).keys() | data_objects(after).keys()
        if before.get(key) != after.get(key)
    )
    assert not changed, f"objects other than the snapshot changed on an unchanged tree: {changed}"
    snapshots = {key: data for key, data in after.items() if key.startswith(SNAPSHOTS)}
    assert len(snapshot_roots(snapshots)) == 1, sorted(snapshots)
    assert stored_bytes(snapshots) < SMALL_METADATA, {k: len(v) for k, v in snapshots.items()}


def test_changed_tree_restores_the_new_one_and_keeps_one_snapshot(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """After a change, restore gives the new tree, and the old snapshot is gone from the bucket."""
    assert_ok(run_spare("create", "--path", source, env=env))
    assert len(snapshot_roots(backend.keys(SNAPSHOTS))) == 1, sorted(backend.keys())

    (source / "data" / "random.bin").unlink()
    shutil.rmtree(source / "docs" / "nested")
    write_file(source / "tiny.txt", b"changed\n", 0o600)
    write_file(source / "new-dir" / "new-file.bin", os.urandom(MiB), 0o644)
    os.symlink("new-dir/new-file.bin", source / "new-link")
    os.chmod(source / "bin" / "tool.sh", 0o700)
    set_odd_mtimes(source)
    expected = snapshot_tree(source)

    assert_ok(run_spare("create", "--path", source, env=env))
    snapshots = backend.keys(SNAPSHOTS)
    assert len(snapshot_roots(snapshots)) == 1, f"expected one snapshot, found {sorted(snapshots)}"
    assert not stray_keys(backend.objects()), stray_keys(backend.objects())

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_foreign_objects_in_a_spare_bucket_are_deleted(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The bucket is spare's alone: what someone else adds to it goes at the next create, each
    named in a warning (escaped); what a killed upload of spare's left goes without one."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    foreign = ["hello.txt", "packs/not-a-pack", "notes/\u00e9t\u00e9.txt"]
    for key in foreign:
        backend.put(key, b"dropped here by hand\n")
    # A killed put of a pack, and of the lock (its key named by the lock plugin, not the core).
    leftovers = [f"packs/ab/ab{'0' * 62}.tmp-{'1' * 32}", f"lock.tmp-{'2' * 32}"]
    for key in leftovers:
        backend.put(key, b"half an object")

    result = run_spare("create", "--path", source, env=env)
    assert_ok(result)
    warned = [line for line in result.stderr.splitlines() if "which is not spare's" in line]
    assert warned == [
        f"spare: warning: deleted {key!a}, which is not spare's: the bucket is for spare's "
        "backup only"
        for key in sorted(foreign)
    ], result.stderr
    assert "\\xe9" in result.stderr and "\u00e9" not in result.stderr
    objects = backend.objects()
    assert not {*foreign, *leftovers} & set(objects), sorted(objects)
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "a.txt").read_bytes() == b"a\n"


def test_removed_data_is_pruned(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Spare keeps exactly one copy: data only the old snapshot needed leaves the bucket."""
    source = tmp_path / "source"
    write_file(source / "keep.bin", os.urandom(MiB), 0o644)
    write_file(source / "drop.bin", os.urandom(4 * MiB), 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    full = stored_bytes(backend.objects())

    (source / "drop.bin").unlink()
    assert_ok(run_spare("create", "--path", source, env=env))
    after = stored_bytes(backend.objects())
    assert after < full - 3 * MiB, f"stored {after} bytes after dropping 4 MiB of {full}"


def test_duplicated_content_is_stored_once(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Two identical 4 MiB random files cost about one file in the bucket, not two."""
    source = tmp_path / "source"
    payload = os.urandom(4 * MiB)
    write_file(source / "one" / "copy.bin", payload, 0o644)
    write_file(source / "two" / "copy-again.bin", payload, 0o644)

    assert_ok(run_spare("create", "--path", source, env=env))
    total = stored_bytes(backend.objects())
    assert total < 1.5 * len(payload), f"{total} bytes stored for one 4 MiB content twice"
    # Random data cannot shrink: the content was stored at all.
    assert total >= len(payload)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "one" / "copy.bin").read_bytes() == payload
    assert (target / "two" / "copy-again.bin").read_bytes() == payload


def test_verify_passes_on_a_good_backup(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("verify", "--path", source, env=env))


def test_empty_tree(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """An empty directory is a valid (if dull) backup: restore gives an empty directory."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    source.mkdir()
    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert target.is_dir() and not any(target.iterdir())


def test_unusual_names(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Linux file names are bytes: spaces, newlines, non-ASCII and non-UTF-8 names come back."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    source.mkdir()
    names = [b"with space.txt", b"new\nline", "caf\u00e9 \u2615.txt".encode(), b"latin1-\xe9.bin"]
    names.append(b"-starts-with-dash")
    names.append(b"x" * 255)
    for index, name in enumerate(names):
        with open(os.path.join(os.fsencode(source), name), "wb") as handle:
            handle.write(b"content %d\n" % index)
    set_odd_mtimes(source)
    expected = snapshot_tree(source)

    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to other owners")
def test_ownership_is_restored_by_root(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Run as root (as on a server), spare restores uid and gid, including unknown ids."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    write_file(source / "owned" / "by-someone.txt", b"mine\n", 0o640)
    os.chown(source / "owned" / "by-someone.txt", 12345, 54321)
    os.chown(source / "owned", 4242, 2424)
    os.symlink("by-someone.txt", source / "owned" / "link")
    os.chown(source / "owned" / "link", 777, 888, follow_symlinks=False)
    set_odd_mtimes(source)
    expected = snapshot_tree(source)

    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_precreated_empty_bucket(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """An administrator who creates the bucket first (usual on AWS) gets it initialised."""
    backend.create_bucket()
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "a.txt").read_bytes() == b"a\n"


def test_a_bucket_emptied_by_its_holder_starts_a_new_backup(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Every object deleted (the sysadmin starts over, a lifecycle rule): the host that backed up
    there before makes a new repository in it, without --force."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    for key in backend.objects():
        backend.delete(key)
    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "a.txt").read_bytes() == b"a\n"


def test_special_files(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A FIFO is recreated, never opened (reading it would hang the nightly run forever); device
    nodes come back when root restores them.
    """
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    write_file(source / "regular.txt", b"regular\n", 0o644)
    os.mkfifo(source / "fifo", 0o620)
    if os.geteuid() == 0:
        os.mknod(source / "null-device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    set_odd_mtimes(source)
    expected = snapshot_tree(source)

    assert_ok(run_spare("create", "--path", source, env=env, timeout=60))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_small_files_share_packs(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Small files must not cost one object (one PUT) each: 600 of them fit in a pack or two."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    for index in range(600):
        write_file(source / f"dir-{index % 20}" / f"file-{index}.txt", os.urandom(1024), 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = file_backend.objects()
    assert len(objects) < 10, sorted(objects)
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert snapshot_tree(target) == snapshot_tree(source)


def test_files_vanishing_during_create(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Files deleted while create runs (log rotation, temp files) are reported, never a crash.

    The run is frozen (SIGSTOP) once a pack is stored, files not yet read are deleted, and it
    goes on (SIGCONT). It ends with 0 or 3 (files that vanished); with 3 it names only files
    that did vanish. Whatever it stored restores, each file whole and as it was.
    """
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    contents = {f"data/part-{index}.bin": os.urandom(6 * MiB) for index in range(8)}
    for rel, data in contents.items():
        write_file(source / rel, data, 0o644)
    doomed = [f"data/part-{index}.bin" for index in range(4, 8)]

    proc = run_spare.popen("create", "--path", source, env=env)
    try:
        uploading = wait_until(
            lambda: bool(complete_packs(file_backend.objects())) or proc.poll() is not None, 120
        )
        assert uploading and proc.poll() is None, "create ended before files could vanish"
        proc.send_signal(signal.SIGSTOP)
        for rel in doomed:
            (source / rel).unlink()
    finally:
        proc.send_signal(signal.SIGCONT)
        result = finish(proc)
    assert result.returncode in {0, 3}, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    if result.returncode == 3:
        named = [rel for rel in contents if rel in result.stderr]
        assert named and set(named) <= set(doomed), describe(result)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    restored = {path.relative_to(target).as_posix() for path in (target / "data").iterdir()}
    assert set(contents) - set(doomed) <= restored, sorted(restored)
    for rel in restored:
        assert (target / rel).read_bytes() == contents[rel], f"{rel} restored damaged"


def test_change_behind_an_unchanged_mtime_is_backed_up(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The files cache must not trust size and mtime alone: tools that rewrite a file and put
    its mtime back (rsync --times, package managers, tar -x) change the ctime or the inode.
    """
    source = tmp_path / "source"
    write_file(source / "in-place.bin", os.urandom(64 * 1024), 0o644)
    write_file(source / "replaced.bin", os.urandom(64 * 1024), 0o644)
    set_odd_mtimes(source)
    assert_ok(run_spare("create", "--path", source, env=env))

    old = (source / "in-place.bin").stat()
    with open(source / "in-place.bin", "r+b") as handle:  # same inode, same size
        handle.write(os.urandom(64 * 1024))
    os.utime(source / "in-place.bin", ns=(old.st_atime_ns, old.st_mtime_ns))
    old = (source / "replaced.bin").stat()
    write_file(source / "replacement.tmp", os.urandom(64 * 1024), 0o644)  # new inode
    os.utime(source / "replacement.tmp", ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(source / "replacement.tmp", source / "replaced.bin")
    expected = snapshot_tree(source)

    assert_ok(run_spare("create", "--path", source, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))


def test_jobs_store_what_one_core_stores(
    file_backend: Backend, password: str, source: Path, tmp_path: Path
) -> None:
    """``--jobs 3`` compresses in threads: the backup restores the same on a new host, and an
    unchanged tree then uploads nothing new with one core."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    write_file(source / "big" / "text.log", b"a line of a log file\n" * 400_000, 0o644)
    write_file(source / "big" / "random.bin", os.urandom(5 * MiB), 0o644)
    expected = snapshot_tree(source)
    runner = SpareRunner(tmp_path / "cache")
    assert_ok(runner("create", "--jobs", "3", "--path", source, env=env))
    packs = complete_packs(file_backend.objects())

    assert_ok(runner("create", "--path", source, env=env))
    assert complete_packs(file_backend.objects()) == packs
    target = tmp_path / "restored"
    assert_ok(SpareRunner(tmp_path / "new-host")("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))
