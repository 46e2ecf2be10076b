"""spare through a network that fails: resets, stalls, 5xx and SlowDown replies, cut bodies.

spare runs as a real process, with :mod:`support.faultproxy` as its S3 endpoint, between it and
the suite's S3 server. Whatever the proxy does, a run either completes (exit 0, and all it stored
is whole) or fails with one line and exit 10, never a traceback; then the bucket is checked
through a clean connection (straight to the server, another cache): what a run that exited 0
committed verifies and restores, and no run left its lock behind.

The faults are aimed at one request kind (a pack PUT, the lock's PUT, a ranged GET), or drawn
at random for 5, 20 and 50 % of all requests with a seeded RNG; SPARE_FAULT_RUNS=N runs each
rate with N seeds instead of one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from support.buckets import Backend, stray_keys
from support.faultproxy import FaultProxy, lock_put, pack_put, ranged_pack_get
from support.harness import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    REPO_ROOT,
    SpareResult,
    SpareRunner,
    assert_ok,
    describe,
)

from spare.testing.trees import MiB, assert_trees_equal, snapshot_tree, write_file

#: Runs per fault rate of the random test; one by default, to keep the suite short.
FAULT_RUNS = int(os.environ.get("SPARE_FAULT_RUNS", "1"))

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small tree that makes two 1 MiB packs (``--pack-size 1``) and a small one."""
    root = tmp_path / "source"
    write_file(root / "big.bin", secrets.token_bytes(MiB + MiB // 2), 0o644)
    write_file(root / "sub" / "medium.bin", secrets.token_bytes(MiB // 3), 0o600)
    for number in range(5):
        write_file(root / "sub" / f"note-{number}.txt", f"note {number}\n".encode() * 50, 0o644)
    return root


@pytest.fixture
def faulty(s3_backend: Backend, proxy: FaultProxy, password: str) -> dict[str, str]:
    """The environment of a run through the proxy."""
    return {**s3_backend.env, "SPARE_ENDPOINT": proxy.url, "SPARE_PASSWORD": password}


@pytest.fixture
def clean(s3_backend: Backend, password: str) -> dict[str, str]:
    """The environment of a run straight to the server."""
    return {**s3_backend.env, "SPARE_PASSWORD": password}


@pytest.fixture
def run_clean(tmp_path: Path) -> SpareRunner:
    """Runs spare with a cache of its own: it trusts nothing the faulty runs remembered."""
    cache = tmp_path / "clean-cache" / "spare"
    cache.parent.mkdir(parents=True)
    return SpareRunner(cache)


def completed(result: SpareResult) -> bool:
    """True if the run completed; otherwise it must have failed the documented way.

    That is exit 10 (the storage failed, retries exhausted) with one error line, the last, after
    spare's retry warnings: any other code would misreport the bucket (damaged, locked, empty).
    """
    if result.returncode == EXIT_OK:
        assert_ok(result)
        return True
    assert result.returncode == EXIT_UNREACHABLE, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    lines = result.stderr.strip("\n").splitlines()
    errors = [line for line in lines if line.startswith("spare: error: ")]
    assert errors == [lines[-1]], describe(result)
    assert all(line.startswith("spare: ") for line in lines), describe(result)
    return False


def assert_no_lock(backend: Backend) -> None:
    assert "lock" not in backend.keys("lock"), "a run that exited left its lock in the bucket"


def assert_backup_whole(
    backend: Backend, clean: dict[str, str], run_clean: SpareRunner, source: Path
) -> None:
    """Through a clean connection the committed backup verifies: every pack whole, every file's
    data there (verify reads and checks all of it); and no run left its lock."""
    assert_no_lock(backend)
    assert stray_keys(backend.objects()) == []
    assert_ok(run_clean("verify", "--path", source, env=clean))


def create(run: SpareRunner, source: Path, env: dict[str, str]) -> SpareResult:
    return run("create", "--path", source, "--pack-size", "1", env=env)


# -- aimed at one request ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "count"),
    [
        # botocore tries 4 times, then s3fs once more: with the body a file handle the first 4
        # had read to its end, that last PUT stored an empty pack, and create exited 0.
        ("503", 4),
        # The server stored the pack each time; the reset reached spare as "cannot reach the
        # endpoint", which was not retried: create failed with exit 10.
        ("reset-after", 8),
        # A server that does not check Content-MD5 (moto) keeps half a pack and says 200.
        ("cut-request", 2),
    ],
)
def test_a_pack_put_that_fails_is_stored_whole(
    fault: str,
    count: int,
    s3_backend: Backend,
    proxy: FaultProxy,
    faulty: dict[str, str],
    clean: dict[str, str],
    run_spare: SpareRunner,
    run_clean: SpareRunner,
    source: Path,
) -> None:
    aim = proxy.aim(pack_put, fault, count)
    assert_ok(create(run_spare, source, faulty))
    assert aim.hits == count
    assert_backup_whole(s3_backend, clean, run_clean, source)
    puts = [entry for entry in proxy.log if entry.method == "PUT" and entry.key]
    assert puts and all(entry.checksum for entry in puts), "a PUT without its Content-MD5"


@pytest.mark.parametrize("fault", ["reset-after", "cut-request", "stall"])
def test_a_lock_put_that_fails_leaves_no_lock(
    fault: str,
    s3_backend: Backend,
    proxy: FaultProxy,
    faulty: dict[str, str],
    clean: dict[str, str],
    run_spare: SpareRunner,
    run_clean: SpareRunner,
    source: Path,
) -> None:
    """The lock's create stored but unanswered, stored half, or slow: the run takes the lock
    (its own), and releases it, so the next run needs no ``spare unlock``."""
    aim = proxy.aim(lock_put, fault)
    assert_ok(create(run_spare, source, faulty))
    assert aim.hits == 1
    assert_backup_whole(s3_backend, clean, run_clean, source)


def test_cut_replies_to_ranged_gets_are_read_again(
    s3_backend: Backend,
    proxy: FaultProxy,
    faulty: dict[str, str],
    clean: dict[str, str],
    run_spare: SpareRunner,
    run_clean: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """A ranged GET whose reply is shorter than the range (its Content-Range says the object is
    longer) used to pass for the data: restore named files damaged. A body cut before its
    Content-Length was not retried by spare."""
    assert_ok(create(run_clean, source, clean))
    short = proxy.aim(ranged_pack_get, "short")
    cut = proxy.aim(ranged_pack_get, "truncate", 2)
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=faulty))
    assert (short.hits, cut.hits) == (1, 2)
    assert_trees_equal(snapshot_tree(source), snapshot_tree(target))
    assert_no_lock(s3_backend)


# -- at random ---------------------------------------------------------------------------------
# Seed 1 gives the first faults early (at 5 %, to the 10th request): the default run is never
# one without faults.
@pytest.mark.parametrize("seed", range(1, FAULT_RUNS + 1), ids=lambda seed: f"seed-{seed}")
@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5], ids=lambda rate: f"{rate:.0%}")
def test_random_faults_never_lose_data(
    rate: float,
    seed: int,
    s3_backend: Backend,
    proxy: FaultProxy,
    faulty: dict[str, str],
    clean: dict[str, str],
    run_spare: SpareRunner,
    run_clean: SpareRunner,
    source: Path,
    tmp_path: Path,
    quirks: Path,
) -> None:
    proxy.at_random(rate, seed)
    # Retried for 3 s only: at the higher rates a run then also fails for good, and the path
    # of a failed run (no lock left, the next run completes) is tested as well. The first wait
    # is a tenth of a second (the test plugin's knob): the waits are not what is tested here.
    faulty = {
        **faulty,
        "SPARE_RETRY_FOR": "3",
        "SPARE_TEST_FIRST_WAIT": "0.1",
        "PYTHONPATH": os.pathsep.join([str(quirks), str(REPO_ROOT)]),
    }
    if completed(create(run_spare, source, faulty)):
        # What it committed is whole: checked before another run could repair anything.
        assert_backup_whole(s3_backend, clean, run_clean, source)
        target = tmp_path / "restored"
        if completed(run_spare("restore", "--path", target, env=faulty)):
            assert_trees_equal(snapshot_tree(source), snapshot_tree(target))
        completed(run_spare("verify", "--path", source, env=faulty))
        assert_no_lock(s3_backend)
    else:
        assert_no_lock(s3_backend)
        # The next run through a clean connection needs no ``spare unlock``, and may reuse
        # what the failed run uploaded only if it is whole.
        assert_ok(create(run_clean, source, clean))
        assert_backup_whole(s3_backend, clean, run_clean, source)
    faults = proxy.injected()
    assert faults, f"no fault was injected at {rate:.0%} with seed {seed}"
