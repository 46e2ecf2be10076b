"""One damaged blob costs one file on restore, never the files stored after it in the pack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.buckets import PACKS, Backend, largest
from support.harness import EXIT_VERIFY_FAILED, SpareRunner, assert_ok, describe

from spare.repository.chunks import SHARED_BLOB, SMALL_CHUNK
from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(180)


def damaged_files(stderr: str) -> list[str]:
    prefix = "spare: damaged: "
    return [line[len(prefix) :] for line in stderr.splitlines() if line.startswith(prefix)]


def flip_in_data_pack(backend: Backend) -> None:
    objects = backend.objects()
    key = largest(objects, PACKS)  # the data pack; the file list has packs of its own
    damaged = bytearray(objects[key])
    damaged[len(damaged) // 3] ^= 0x01  # inside some blob, far from the listing
    backend.put(key, bytes(damaged))


def check_damage_costs_only(
    named: list[str], run_spare: SpareRunner, env: dict[str, str], source: Path, target: Path
) -> None:
    """restore names the files verify ``named`` and gives every other file back whole."""
    restore = run_spare("restore", "--path", target, env=env)
    assert restore.returncode == EXIT_VERIFY_FAILED, describe(restore)
    assert "Traceback" not in restore.stderr
    # restore names the files where they now lie, verify names them inside the backup
    assert damaged_files(restore.stderr) == [str(target / name) for name in named]
    for path in sorted(source.iterdir()):
        if path.name not in named:
            assert (target / path.name).read_bytes() == path.read_bytes(), path.name


def test_one_flipped_byte_damages_one_file(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Files of 64 KiB and more have blobs of their own: a flipped byte costs one file."""
    source = tmp_path / "source"
    for index in range(40):  # random, so that each file is one blob of its own size
        write_file(source / f"f{index:03d}.bin", os.urandom(SMALL_CHUNK + index), 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    flip_in_data_pack(file_backend)

    verify = run_spare("verify", env=env)
    assert verify.returncode == EXIT_VERIFY_FAILED, describe(verify)
    [named] = damaged_files(verify.stderr)
    check_damage_costs_only([named], run_spare, env, source, tmp_path / "restored")


def test_one_flipped_byte_damages_the_small_files_of_one_blob(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Small files share blobs of at most SHARED_BLOB bytes: a flipped byte costs those, never
    the files of the other blobs of the pack."""
    source = tmp_path / "source"
    for index in range(400):
        write_file(source / f"f{index:03d}.bin", os.urandom(2000 + index), 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    flip_in_data_pack(file_backend)

    verify = run_spare("verify", env=env)
    assert verify.returncode == EXIT_VERIFY_FAILED, describe(verify)
    named = damaged_files(verify.stderr)
    lost = sum((source / name).stat().st_size for name in named)
    assert 0 < lost <= SHARED_BLOB + SMALL_CHUNK, named
    check_damage_costs_only(named, run_spare, env, source, tmp_path / "restored")


def test_create_heals_a_lost_pack(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A pack lost from the bucket is stored anew by the next create, even though the local
    cache remembers the unchanged files as already stored."""
    source = tmp_path / "source"
    for index in range(4):
        write_file(source / f"f{index}.bin", os.urandom(3 << 20), 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = file_backend.objects()
    file_backend.delete(largest(objects, PACKS))
    assert run_spare("verify", env=env).returncode == EXIT_VERIFY_FAILED

    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("verify", env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    for path in source.iterdir():
        assert (target / path.name).read_bytes() == path.read_bytes()
