"""What whoever holds the bucket (write access, no password) can no longer make spare do.

Each test performs the attack on a real backup and runs spare as a process against it: the
bucket holder may destroy data themselves, but never make spare destroy good data, write
outside the bucket, exhaust the host, or restore an older backup in silence.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support.buckets import PACKS, SNAPSHOTS, Backend, complete_packs, largest
from support.harness import (
    EXIT_DAMAGED,
    EXIT_IDENTITY,
    EXIT_WRONG_PASSWORD,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
    run_measured,
)

from spare.repository.objects import CONFIG_KEYS
from spare.testing.trees import assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    for index in range(8):
        write_file(tree / f"data-{index}.bin", os.urandom(300_000), 0o644)
    write_file(tree / "etc" / "app.conf", b"setting = 1\n", 0o640)
    return tree


def restores_whole(run_spare: SpareRunner, env: dict[str, str], source: Path, target: Path) -> None:
    assert_ok(run_spare("verify", env=env))
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(snapshot_tree(source), snapshot_tree(target))


def test_a_copied_pack_cannot_make_create_delete_the_original(
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """A genuine pack, its blobs damaged and its authentic trailer kept, stored under a name of
    its own: it used to take the chunks' locations, and the next create deleted the original."""
    assert_ok(run_spare("create", "--path", source, env=env))
    objects = backend.objects()
    original = largest(objects, PACKS)
    copy = bytearray(objects[original])
    for offset in range(100, len(copy) // 2, 997):  # blobs, not the trailer at the end
        copy[offset] ^= 0xFF
    name = os.urandom(32).hex()
    backend.put(f"packs/{name[:2]}/{name}", bytes(copy))

    restores_whole(run_spare, env, source, tmp_path / "restored-1")
    assert_ok(run_spare("create", "--path", source, env=env))
    after = backend.objects()
    assert after[original] == objects[original], "create deleted or changed the genuine pack"
    assert f"packs/{name[:2]}/{name}" not in after, "the copy was not pruned"
    restores_whole(run_spare, env, source, tmp_path / "restored-2")


def edit_config(backend: Backend, **changes: object) -> None:
    config = json.loads(backend.objects()["config"])
    for name, value in changes.items():
        section, _, field = name.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    for key in CONFIG_KEYS:  # whoever holds the bucket changes both copies
        backend.put(key, json.dumps(config).encode())


def fresh_host(tmp_path: Path, name: str) -> SpareRunner:
    """Another host's runs: a cache (and memory of buckets) of its own."""
    cache = tmp_path / name / "cache"
    cache.mkdir(parents=True)
    return SpareRunner(cache)


@pytest.mark.parametrize("hostile_id", ["/VICTIM", "../../VICTIM", "..", ""])
def test_the_config_id_never_names_a_directory_outside(
    hostile_id: str,
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """The repository id names the cache directory: a path there made create rmtree it."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    victim = tmp_path / "victim"
    write_file(victim / "precious", b"keep me", 0o644)
    write_file(victim / "tmp-packs-x" / "precious", b"keep me too", 0o644)
    edit_config(file_backend, id=hostile_id.replace("VICTIM", str(victim).lstrip("/")))
    before = snapshot_tree(victim)
    # This host knows the bucket's real id; a new host does not, and must refuse it as well.
    assert_error(run_spare("create", "--path", source, env=env), EXIT_DAMAGED)
    stranger = fresh_host(tmp_path, "stranger")
    assert_error(stranger("create", "--path", source, env=env), EXIT_DAMAGED)
    assert snapshot_tree(victim) == before


@pytest.mark.parametrize(
    "change",
    [
        {"kdf__memory_kib": 2**32 - 1},
        {"kdf__memory_kib": 4 * 1024 * 1024},
        {"kdf__iterations": 10**9},
        {"kdf__lanes": 0},
        {"kdf__lanes": "1"},
        {"kdf__salt": "00"},
        {"kdf": "argon2id"},
        {"chunker__min": 1},
        {"chunker__max": 1 << 30},
        {"chunker": {"min": 1, "avg": 2, "max": 4}},
        {"master_key": "zz"},
        {"master_key": None},
    ],
    ids=lambda change: ",".join(f"{k}={v!r}"[:40] for k, v in change.items()),
)
def test_hostile_config_values_are_refused_at_once(
    change: dict[str, object],
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """Values no spare writes: refused before use, quickly, in one line, nothing changed."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    edit_config(file_backend, **change)
    before = file_backend.objects()
    for runner in (run_spare, fresh_host(tmp_path, "stranger")):
        started = time.monotonic()
        assert_error(runner("verify", env=env, timeout=60), EXIT_DAMAGED)
        assert_error(runner("create", "--path", source, env=env, timeout=60), EXIT_DAMAGED)
        assert time.monotonic() - started < 30
    assert file_backend.objects() == before


@pytest.mark.parametrize(
    "change",
    [{"created": "1999-01-01T00:00:00Z"}, {"chunker__min": 128 << 10}, {"kdf__iterations": 4}],
    ids=["created", "chunker", "kdf"],
)
def test_every_config_field_is_bound_to_the_key(
    change: dict[str, object],
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """A plausible value changed in the config no longer opens the key."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    edit_config(file_backend, **change)
    message = assert_error(run_spare("verify", env=env), EXIT_WRONG_PASSWORD)
    assert "config was changed" in message


def test_another_buckets_config_cannot_make_create_delete_everything(
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """The config of another bucket with the same password, and the index deleted: every
    pack of this bucket looked foreign, and create deleted them all."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    other_env = {**env, "SPARE_BUCKET": file_backend.bucket + "-other"}
    assert_ok(run_spare("create", "--path", source, env=env))
    other_source = tmp_path / "other-source"
    write_file(other_source / "x", b"other host's data", 0o644)
    assert_ok(run_spare("create", "--path", other_source, env=other_env))
    other_config = (file_backend.path.parent / other_env["SPARE_BUCKET"] / "config").read_bytes()
    for key in CONFIG_KEYS:
        file_backend.put(key, other_config)
    for key in [key for key in file_backend.objects() if key.startswith("index/")]:
        file_backend.delete(key)
    before = file_backend.objects()
    for runner in (run_spare, fresh_host(tmp_path, "stranger")):
        assert_error(runner("create", "--path", source, env=env), EXIT_IDENTITY)
        assert file_backend.objects() == before


def test_a_rolled_back_bucket_is_refused(
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """An older root and its packs put back in place: restore brought back old files, exit 0."""
    assert_ok(run_spare("create", "--path", source, env=env))
    old = backend.objects()
    write_file(source / "etc" / "app.conf", b"setting = 2\n", 0o640)
    write_file(source / "new.bin", os.urandom(200_000), 0o644)
    assert_ok(run_spare("create", "--path", source, env=env))
    for key in backend.objects():
        if key not in old:
            backend.delete(key)
    for key, data in old.items():
        backend.put(key, data)
    assert set(backend.objects()) == set(old)

    message = assert_error(run_spare("restore", "--path", tmp_path / "r", env=env), EXIT_IDENTITY)
    assert "number 1" in message and "number 2" in message
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    assert_error(run_spare("verify", env=env), EXIT_IDENTITY)
    assert_error(run_spare("create", "--path", source, env=env), EXIT_IDENTITY)
    assert_ok(run_spare("verify", "--force", env=env))
    # Once accepted, the next create continues above the newest number ever seen.
    assert_ok(run_spare("create", "--force", "--path", source, env=env))
    restored = run_spare("restore", "--path", tmp_path / "r2", env=env)
    assert_ok(restored)
    assert "restoring snapshot 3 of" in restored.stdout, describe(restored)
    assert_trees_equal(snapshot_tree(source), snapshot_tree(tmp_path / "r2"))


def test_a_huge_junk_snapshot_root_costs_no_memory(
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    """A 300 MB object named as a snapshot root lifted verify to 347 MB; now it is read no
    further than the largest root spare writes, and reported as damaged."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    assert len(complete_packs(file_backend.objects())) >= 1
    junk = file_backend.path / SNAPSHOTS / ("ab" * 16)
    with open(junk, "wb") as file:
        file.truncate(300 << 20)  # sparse: costs the test no disk
    # The genuine root is still the newest: verify succeeds.
    _, peak_mib = run_measured(run_spare, ["verify"], env)
    assert peak_mib < 150, f"verify peaked at {peak_mib} MiB reading a junk root"
