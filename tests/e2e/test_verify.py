"""``verify`` downloads everything and names each damaged file: the storage is not trusted.

Bit rot, a truncated upload or a pack deleted by a careless lifecycle rule must be found before
the day of the restore, and the report must say which files are affected.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from support.buckets import PACKS, SNAPSHOTS, Backend, largest
from support.crafted import opened
from support.harness import (
    EXIT_DAMAGED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
)

from spare.repository.index import sync_index
from spare.repository.objects import pack_key
from spare.repository.snapshots import latest_snapshot
from spare.testing.trees import MiB, regular_files, write_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Files with distinctive names spread over several packs.

    20 MiB of data fill a few packs of a few MiB; the snapshot's own file list is written last,
    into the last (tail) pack, so the largest pack holds file data only and losing it must cost
    some files, not the whole listing.
    """
    tree = tmp_path / "source"
    for index in range(5):
        name = f"payload-{index:02d}-{os.urandom(4).hex()}.bin"
        write_file(tree / name, os.urandom(4 * MiB), 0o644)
    write_file(tree / "notes" / f"text-{os.urandom(4).hex()}.txt", b"hello\n" * 1000, 0o644)
    return tree


def flip_byte(backend: Backend, key: str, at: int | None = None) -> None:
    """Flip one bit of the object ``key``, at ``at`` (by default, in its middle)."""
    data = bytearray(backend.objects()[key])
    data[len(data) // 2 if at is None else at] ^= 0x01
    backend.put(key, bytes(data))


def assert_names_a_file(output: str, source: Path) -> None:
    """Some files of the tree are named (relative or absolute path both count), not all of them:
    one damaged pack of several leaves files that verify must not report.
    """
    files = regular_files(source)
    named = [rel for rel in files if rel in output]
    assert named, f"no damaged file named; files: {files}\noutput:\n{output}"
    assert len(named) < len(files), f"every file named for one damaged pack:\n{output}"


def test_flipped_byte_is_found(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    assert_ok(run_spare("create", "--path", source, env=env))
    flip_byte(backend, largest(backend.objects(), PACKS))

    result = run_spare("verify", "--path", source, env=env)
    assert result.returncode == EXIT_VERIFY_FAILED, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    assert_names_a_file(result.stdout + result.stderr, source)


def test_missing_pack_is_found(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    assert_ok(run_spare("create", "--path", source, env=env))
    backend.delete(largest(backend.objects(), PACKS))

    result = run_spare("verify", "--path", source, env=env)
    assert result.returncode == EXIT_VERIFY_FAILED, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    assert_names_a_file(result.stdout + result.stderr, source)


def test_truncated_pack_is_found(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """A pack cut short (an interrupted copy between buckets) is damage, not a crash."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = file_backend.objects()
    key = largest(objects, PACKS)
    file_backend.put(key, objects[key][: len(objects[key]) // 3])

    result = run_spare("verify", "--path", source, env=env)
    assert result.returncode == EXIT_VERIFY_FAILED, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    assert_names_a_file(result.stdout + result.stderr, source)


def test_restore_of_a_damaged_backup_saves_the_rest(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """With one pack lost, restore still brings back every intact file, byte for byte, and does
    not pretend success: the exit code is not 0 and the damaged files are named.
    """
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    file_backend.delete(largest(file_backend.objects(), PACKS))

    target = tmp_path / "restored"
    result = run_spare("restore", "--path", target, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in output, describe(result)
    assert_names_a_file(output, source)
    intact = [rel for rel in regular_files(source) if rel not in output]
    for rel in intact:
        assert (target / rel).read_bytes() == (source / rel).read_bytes(), rel


def test_damaged_snapshot_root(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """A damaged snapshot root is damage (14, or 12 from verify), not "there is no backup" (15):
    a sysadmin told "no backup" looks for a configuration mistake, not for bit rot. The root is
    stored twice: both copies are damaged (one alone costs nothing: see test_corruption.py).
    """
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = backend.objects()
    keys = [key for key in objects if key.startswith(SNAPSHOTS)]
    assert len(keys) == 2, keys
    for key in keys:
        flip_byte(backend, key)

    assert_error(run_spare("restore", "--path", tmp_path / "restored", env=env), EXIT_DAMAGED)
    result = run_spare("verify", "--path", source, env=env)
    assert result.returncode in {EXIT_VERIFY_FAILED, EXIT_DAMAGED}, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)


def test_create_finds_and_heals_damage_by_itself(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """Bit rot in a pack that nobody verifies: the nightly create's rotating check finds it (here
    the whole bucket, ``--check-share 100``), stores the chunks anew from the files and deletes
    the damaged pack, so that verify passes again without a human."""
    assert_ok(run_spare("create", "--path", source, env=env))
    key = largest(backend.objects(), PACKS)
    flip_byte(backend, key)

    healing = run_spare("create", "--path", source, "--check-share", "100", env=env)
    assert_ok(healing)
    assert "damaged" in healing.stderr, describe(healing)
    assert key not in backend.keys(PACKS), "the damaged pack was kept"
    assert_ok(run_spare("verify", env=env))
    target = tmp_path / "restored"
    new_host = SpareRunner(tmp_path / "new-host")
    assert_ok(new_host("restore", "--path", target, env=env))
    for rel in regular_files(source):
        assert (target / rel).read_bytes() == (source / rel).read_bytes(), rel


def test_create_replaces_a_damaged_index_object_by_itself(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """An index object rots on a host whose cache read it long ago: the rotating check finds
    it, and the run writes what it listed anew and deletes it; a new host then restores."""
    assert_ok(run_spare("create", "--path", source, env=env))
    (index,) = backend.keys("index/")
    flip_byte(backend, index)
    healing = run_spare("create", "--path", source, "--check-share", "100", env=env)
    assert_ok(healing)
    assert "index object" in healing.stderr, describe(healing)
    assert index not in backend.keys("index/") and backend.keys("index/")
    new_host = SpareRunner(tmp_path / "new-host")
    assert_ok(new_host("verify", env=env))
    target = tmp_path / "restored"
    assert_ok(new_host("restore", "--path", target, env=env))
    for rel in regular_files(source):
        assert (target / rel).read_bytes() == (source / rel).read_bytes(), rel


def test_the_rotating_check_reads_a_share_of_the_bucket_each_run(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """With ``--check-share 10`` each run checks a tenth of the packs, the next ones by name:
    damage in the last pack by name is found by the run that reaches it, not before."""
    assert_ok(run_spare("create", "--path", source, "--pack-size", "1", env=env))
    packs = sorted(backend.keys(PACKS))
    per_run = math.ceil(len(packs) / 10)
    last = packs[-1]
    flip_byte(backend, last)
    runs = 0
    while last in backend.keys(PACKS):
        assert_ok(run_spare("create", "--path", source, "--check-share", "10", env=env))
        runs += 1
        assert runs <= len(packs), "the rotating check never reached the damaged pack"
    assert runs == math.ceil(len(packs) / per_run)
    assert_ok(run_spare("verify", env=env))


def test_verify_checks_a_share_of_the_packs(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    """``verify --share 50`` downloads half of the packs, chosen at random; over enough runs
    a damaged pack is found."""
    assert_ok(run_spare("create", "--path", source, "--pack-size", "1", env=env))
    packs = sorted(backend.keys(PACKS))
    half = run_spare("verify", "--share", "50", "--verbose", env=env)
    assert_ok(half)
    checked = f": {(len(packs) + 1) // 2:,} of {len(packs):,} packs checked"
    assert checked in half.stderr, describe(half)

    flip_byte(backend, largest(backend.objects(), PACKS))
    codes = []
    while EXIT_VERIFY_FAILED not in codes and len(codes) < 12:
        codes.append(run_spare("verify", "--share", "50", env=env).returncode)
    assert EXIT_VERIFY_FAILED in codes, codes  # missed 12 times in a row: 1 in 4096
    assert set(codes) <= {0, EXIT_VERIFY_FAILED}, codes
    assert_error(run_spare("verify", "--share", "0", env=env), EXIT_USAGE)


def test_a_lost_part_of_the_file_list_costs_only_its_entries(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Both copies of one part of the file list damaged (beyond what two copies protect from):
    restore restores every entry of the other parts, names the stretch it lost, and exits 12;
    verify names it too; the next create stores the list anew."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    for index in range(1500):  # ~4 KiB per entry: a file list of several chunks
        target = f"{index:05d}-" + "t" * 4000
        (source / f"d{index // 500}").mkdir(parents=True, exist_ok=True)
        os.symlink(target, source / f"d{index // 500}" / f"link-{index:05d}")
    write_file(source / "d2" / "zz-data.txt", b"kept\n", 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))

    scratch = tmp_path / "key-holder"
    with opened(env, scratch) as repo:
        sync_index(repo)
        snapshot = latest_snapshot(repo)
        assert snapshot is not None and len(snapshot.manifest_ids) >= 3
        copies = repo.cache.locations(snapshot.manifest_ids[1])
    assert len(copies) == 2 and copies[0].pack != copies[1].pack
    for where in copies:
        flip_byte(file_backend, pack_key(where.pack), where.offset + where.length // 2)

    verify = run_spare("verify", env=env)
    assert verify.returncode == EXIT_VERIFY_FAILED, describe(verify)
    assert "part of the file list is lost: the entries after d" in verify.stderr, describe(verify)
    target = tmp_path / "restored"
    restore = run_spare("restore", "--path", target, env=env)
    assert restore.returncode == EXIT_VERIFY_FAILED, describe(restore)
    assert "Traceback" not in restore.stderr
    assert "part of the file list is lost" in restore.stderr, describe(restore)
    restored = {path.relative_to(target) for path in target.rglob("*")}
    expected = {path.relative_to(source) for path in source.rglob("*")}
    assert restored <= expected
    assert 500 < len(restored) < len(expected)  # the parts that were read, and only those
    assert (target / "d2" / "zz-data.txt").read_bytes() == b"kept\n"

    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("verify", env=env))
