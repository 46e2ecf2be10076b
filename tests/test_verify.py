"""``verify`` downloads everything and names each damaged file: the storage is not trusted.

Bit rot, a truncated upload or a pack deleted by a careless lifecycle rule must be found before
the day of the restore, and the report must say which files are affected.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import (
    EXIT_VERIFY_FAILED,
    PACKS,
    Backend,
    SpareRunner,
    assert_ok,
    describe,
    largest,
)
from treeutil import MiB, regular_files, write_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Files with distinctive names, big enough to spread over several packs."""
    tree = tmp_path / "source"
    for index in range(6):
        write_file(tree / f"payload-{index:02d}-{os.urandom(4).hex()}.bin", os.urandom(MiB), 0o644)
    write_file(tree / "notes" / f"text-{os.urandom(4).hex()}.txt", b"hello\n" * 1000, 0o644)
    return tree


def assert_names_a_file(output: str, source: Path) -> None:
    """At least one file of the tree is named (relative or absolute path both count)."""
    files = regular_files(source)
    named = [rel for rel in files if rel in output]
    assert named, f"no damaged file named; files: {files}\noutput:\n{output}"


def test_flipped_byte_is_found(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path
) -> None:
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = backend.objects()
    key = largest(objects, PACKS)
    damaged = bytearray(objects[key])
    damaged[len(damaged) // 2] ^= 0x01
    backend.put(key, bytes(damaged))

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
