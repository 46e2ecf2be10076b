"""The bucket lock: ``lock``/``unlock`` by hand, and one ``create`` at a time, really.

A sysadmin who finds a locked bucket needs to know who holds it (host and pid) to decide whether
``spare unlock`` is safe; two cron jobs racing on one bucket must not both write.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from harness import (
    EXIT_LOCKED,
    Backend,
    SpareRunner,
    assert_error,
    assert_ok,
    finish,
    hostname_prefix,
)
from treeutil import MiB, assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    write_file(tree / "a.txt", b"a\n", 0o644)
    return tree


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, source: Path) -> Path:
    assert_ok(run_spare("create", "--path", source, env=env))
    return source


def test_lock_blocks_create_and_names_the_holder(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    holder_host = f"spare-lock-holder-{os.urandom(4).hex()}"
    prefix = hostname_prefix(holder_host)
    if prefix is None:
        holder_host, prefix = socket.gethostname(), []
    locking = run_spare("lock", env=env, prefix=prefix)
    assert_ok(locking)
    before = backend.objects()

    line = assert_error(run_spare("create", "--path", backed_up, env=env), EXIT_LOCKED)
    assert holder_host in line, f"the holder's host {holder_host!r} is not named: {line}"
    assert re.search(rf"\b{locking.pid}\b", line), f"the holder's pid {locking.pid} is not named"
    assert backend.objects() == before

    assert_ok(run_spare("unlock", env=env))
    assert_ok(run_spare("create", "--path", backed_up, env=env))


def test_lock_twice_is_refused(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """A second ``lock`` must not silently take over the first one's lock."""
    assert_ok(run_spare("lock", env=env))
    assert_error(run_spare("lock", env=env), EXIT_LOCKED)
    assert_ok(run_spare("unlock", env=env))


def test_unlock_of_an_unlocked_bucket(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """``unlock`` is idempotent: cleaning up after a crash twice does no harm."""
    assert_ok(run_spare("unlock", env=env))
    assert_ok(run_spare("create", "--path", backed_up, env=env))


def test_lock_needs_the_password(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path
) -> None:
    """Without the password, nobody can lock (and so block) or unlock someone's backups."""
    wrong = {**env, "SPARE_PASSWORD": "not-the-password"}
    before = backend.objects()
    assert_error(run_spare("lock", env=wrong), 4)
    assert backend.objects() == before

    assert_ok(run_spare("lock", env=env))
    locked = backend.objects()
    assert_error(run_spare("unlock", env=wrong), 4)
    assert backend.objects() == locked
    assert_ok(run_spare("unlock", env=env))


def big_tree(root: Path) -> None:
    """Large enough that a create still holds the lock when a second one starts."""
    for index in range(4):
        write_file(root / f"part-{index}.bin", os.urandom(6 * MiB), 0o644)


@pytest.mark.parametrize("initialised", [False, True], ids=["new-bucket", "existing-backup"])
def test_concurrent_creates(
    initialised: bool,
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    """Two creates started together: exactly one succeeds, the other is refused with 7."""
    source = tmp_path / "source"
    if initialised:
        write_file(source / "seed.txt", b"seed\n", 0o644)
        assert_ok(run_spare("create", "--path", source, env=env))
    big_tree(source)
    expected = snapshot_tree(source)

    first = run_spare.popen("create", "--path", source, env=env)
    second = run_spare.popen("create", "--path", source, env=env)
    results = [finish(first), finish(second)]
    codes = sorted(result.returncode for result in results)
    details = "\n".join(f"{r.returncode}: {r.stderr.strip()}" for r in results)
    assert codes == [0, EXIT_LOCKED], details
    loser = next(result for result in results if result.returncode == EXIT_LOCKED)
    assert_error(loser, EXIT_LOCKED)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(expected, snapshot_tree(target))
