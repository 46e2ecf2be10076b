"""Bad input gets its documented exit code and one line on stderr, and nothing stored is lost.

Scripts (cron, Ansible) branch on the exit code and mail stderr to a human: both are contract.
Lock errors (exit 7) are in test_lock.py.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import Backend, MotoProcess, S3Server
from support.harness import (
    EXIT_ACCESS_DENIED,
    EXIT_FOREIGN_BUCKET,
    EXIT_IDENTITY,
    EXIT_NO_SNAPSHOT,
    EXIT_SOURCE,
    EXIT_TARGET_NOT_EMPTY,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_WRONG_PASSWORD,
    REPO_ROOT,
    SpareRunner,
    assert_error,
    assert_ok,
    free_port,
    hostname_prefix,
)

from spare.testing.trees import snapshot_tree, write_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    write_file(tree / "etc" / "app.conf", b"setting = 1\n", 0o644)
    write_file(tree / "data.bin", os.urandom(64 * 1024), 0o600)
    return tree


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, source: Path) -> Path:
    """A bucket holding one good backup of ``source``."""
    assert_ok(run_spare("create", "--path", source, env=env))
    return source


def test_wrong_password(
    backend: Backend,
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
) -> None:
    """Every command refuses a wrong password with 4, and changes nothing in the bucket."""
    before = backend.objects()
    wrong = {**env, "SPARE_PASSWORD": env["SPARE_PASSWORD"] + "-not"}
    target = tmp_path / "restored"

    assert_error(run_spare("create", "--path", backed_up, env=wrong), EXIT_WRONG_PASSWORD)
    assert_error(run_spare("restore", "--path", target, env=wrong), EXIT_WRONG_PASSWORD)
    assert_error(run_spare("verify", "--path", backed_up, env=wrong), EXIT_WRONG_PASSWORD)

    assert backend.objects() == before
    assert not target.exists() or not any(target.iterdir())
    # And the right password still opens it.
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert snapshot_tree(target) == snapshot_tree(backed_up)


def test_foreign_bucket_is_refused(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """A bucket holding objects that are not spare's is left alone (exit 5), by every command:
    a mistyped bucket name must not cost someone else's data.
    """
    backend.put("hello.txt", b"someone else's data\n")
    before = backend.objects()

    assert_error(run_spare("create", "--path", source, env=env), EXIT_FOREIGN_BUCKET)
    assert_error(run_spare("lock", env=env), EXIT_FOREIGN_BUCKET)
    assert_error(run_spare("unlock", env=env), EXIT_FOREIGN_BUCKET)
    assert_error(run_spare("verify", "--path", source, env=env), EXIT_FOREIGN_BUCKET)
    target = tmp_path / "restored"
    assert_error(run_spare("restore", "--path", target, env=env), EXIT_FOREIGN_BUCKET)
    assert backend.objects() == before
    assert not target.exists() or not any(target.iterdir())


def test_other_path_needs_force(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, backed_up: Path, tmp_path: Path
) -> None:
    """One bucket per host and path: another path is refused (6) unless --force is given."""
    other = tmp_path / "other-source"
    write_file(other / "other.txt", b"other\n", 0o644)
    before = backend.objects()

    line = assert_error(run_spare("create", "--path", other, env=env), EXIT_IDENTITY)
    assert "--force" in line, "the message should tell the way out"
    assert backend.objects() == before

    assert_ok(run_spare("create", "--path", other, "--force", env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert snapshot_tree(target) == snapshot_tree(other)


def test_other_host_needs_force(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """The same path backed up from another host into the bucket is refused (6)."""
    first = hostname_prefix("spare-host-one")
    second = hostname_prefix("spare-host-two")
    if first is None or second is None:
        pytest.skip("cannot give spare another host name here (unshare --uts not permitted)")
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env, prefix=first))
    before = file_backend.objects()

    assert_error(run_spare("create", "--path", source, env=env, prefix=second), EXIT_IDENTITY)
    assert file_backend.objects() == before
    assert_ok(run_spare("create", "--path", source, "--force", env=env, prefix=second))


def test_replaced_directory_needs_force(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """Same host, same path, but another directory (a file system that failed to mount leaves
    an empty mount point): backing it up would prune the real backup, so it is refused (6).
    """
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    before = file_backend.objects()
    source.rename(tmp_path / "moved-away")
    source.mkdir()

    assert_error(run_spare("create", "--path", source, env=env), EXIT_IDENTITY)
    assert file_backend.objects() == before
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert snapshot_tree(target) == snapshot_tree(tmp_path / "moved-away")


def test_missing_path(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> None:
    assert_error(run_spare("create", "--path", tmp_path / "does-not-exist", env=env), EXIT_SOURCE)


def test_no_path_given(file_backend: Backend, password: str, run_spare: SpareRunner) -> None:
    """Forgetting --path is bad usage (2), not a missing directory."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_error(run_spare("create", env=env), EXIT_USAGE)


def test_unreadable_path(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any directory whatever its mode: cannot make one unreadable")
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        assert_error(run_spare("create", "--path", locked, env=env), EXIT_SOURCE)
    finally:
        locked.chmod(0o700)


def test_restore_into_non_empty_directory(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path, tmp_path: Path
) -> None:
    """Restore never overwrites: a non-empty target is refused (9) and left as it was."""
    target = tmp_path / "busy"
    write_file(target / "precious.txt", b"do not touch\n", 0o644)
    before = snapshot_tree(target)

    assert_error(run_spare("restore", "--path", target, env=env), EXIT_TARGET_NOT_EMPTY)
    assert snapshot_tree(target) == before


def test_unreachable_endpoint(password: str, run_spare: SpareRunner, source: Path) -> None:
    """Nothing listens on the port: 10 once --retry-for has passed, without a traceback
    (test_network.py shows the retries)."""
    env = {
        "SPARE_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "SPARE_ACCESS_KEY": "key",
        "SPARE_SECRET_KEY": "secret",
        "SPARE_BUCKET": "spare-test-unreachable",
        "SPARE_PASSWORD": password,
        "SPARE_RETRY_FOR": "1",
    }
    assert_error(run_spare("create", "--path", source, env=env, timeout=150), EXIT_UNREACHABLE)


def test_missing_mount_is_never_written_to(
    password: str, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """``file:///mnt/backup`` with nothing mounted there: 10, and no directory made on the way,
    so a backup never fills the root file system under an empty mount point."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {
        "SPARE_ENDPOINT": f"file://{mnt / 'backup'}",
        "SPARE_BUCKET": "host1",
        "SPARE_PASSWORD": password,
    }
    line = assert_error(run_spare("create", "--path", source, env=env), EXIT_UNREACHABLE)
    assert f"{mnt / 'backup'} does not exist: is the disk mounted?" in line
    line = assert_error(
        run_spare("restore", "--path", tmp_path / "target", env=env), EXIT_UNREACHABLE
    )
    assert "is the disk mounted?" in line
    assert list(mnt.iterdir()) == []
    assert not (tmp_path / "target").exists()
    # Mounted (here: made), the same command backs up into the bucket directory it creates.
    (mnt / "backup").mkdir()
    assert_ok(run_spare("create", "--path", source, env=env))
    assert (mnt / "backup" / "host1" / "config").is_file()


@pytest.fixture
def strict_s3(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 endpoint that checks credentials.

    moto accepts any key by default; with INITIAL_NO_AUTH_ACTION_COUNT=0 it checks every request
    against its (empty) IAM, so any key is refused, as a real store refuses a wrong one. Against
    a real endpoint (SPARE_TEST_S3_URL) that endpoint is used with a wrong secret key.
    """
    url = os.environ.get("SPARE_TEST_S3_URL")
    if url:
        yield S3Server(url, os.environ.get("SPARE_TEST_S3_ACCESS_KEY", ""), "wrong-secret-key")
        return
    moto = MotoProcess(tmp_path / "moto-auth.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        yield moto.start()
    finally:
        moto.stop()


def test_bad_credentials(
    strict_s3: S3Server, password: str, run_spare: SpareRunner, source: Path
) -> None:
    env = {
        "SPARE_ENDPOINT": strict_s3.url,
        "SPARE_ACCESS_KEY": strict_s3.access_key,
        "SPARE_SECRET_KEY": strict_s3.secret_key,
        "SPARE_BUCKET": "spare-test-bad-credentials",
        "SPARE_PASSWORD": password,
    }
    assert_error(run_spare("create", "--path", source, env=env), EXIT_ACCESS_DENIED)


def test_restore_from_empty_bucket(
    backend: Backend, env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    backend.create_bucket()
    assert_error(run_spare("restore", "--path", tmp_path / "target", env=env), EXIT_NO_SNAPSHOT)
    assert backend.objects() == {}


def test_verify_empty_bucket(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    file_backend.create_bucket()
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_error(run_spare("verify", "--path", tmp_path, env=env), EXIT_NO_SNAPSHOT)


def test_no_password(
    file_backend: Backend, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """No password anywhere (and no terminal to ask on) is bad usage; nothing is written."""
    assert_error(run_spare("create", "--path", source, env=file_backend.env), EXIT_USAGE)
    assert file_backend.objects() == {}


def test_missing_password_file(
    file_backend: Backend, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    env = {**file_backend.env, "SPARE_PASSWORD_FILE": str(tmp_path / "no-such-file")}
    assert_error(run_spare("create", "--path", source, env=env), EXIT_USAGE)
    assert file_backend.objects() == {}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["create", "--no-such-option"], id="unknown-option"),
        pytest.param(["no-such-command"], id="unknown-command"),
        pytest.param(["create", "--path"], id="option-without-value"),
    ],
)
def test_bad_usage(
    args: list[str], file_backend: Backend, password: str, run_spare: SpareRunner
) -> None:
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_error(run_spare(*args, env=env), EXIT_USAGE)


def test_no_endpoint(password: str, run_spare: SpareRunner, source: Path) -> None:
    env = {"SPARE_BUCKET": "spare-test-no-endpoint", "SPARE_PASSWORD": password}
    assert_error(run_spare("create", "--path", source, env=env), EXIT_USAGE)


def test_version(run_spare: SpareRunner) -> None:
    """``--version`` prints the project's version and needs no configuration at all."""
    result = run_spare("--version", env={})
    assert_ok(result)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert re.search(rf"\b{re.escape(project['version'])}\b", result.stdout), result.stdout
