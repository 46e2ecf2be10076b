"""Where spare finds its S3 keys: --access-key/SPARE_*, else botocore's own chain.

A sysadmin whose host already has AWS keys (variables, a profile in ~/.aws, an instance role)
need not repeat them for spare. These tests run against an endpoint that checks every signature:
moto with IAM authentication switched on and a user of its own, or the real endpoint named by
SPARE_TEST_S3_URL (Ceph RGW in CI), so a key that was not really used cannot pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import MotoProcess, S3Backend, S3Server, new_bucket_name
from support.harness import EXIT_ACCESS_DENIED, SpareRunner, assert_error, assert_ok

from spare.testing.trees import assert_trees_equal, snapshot_tree, write_file

pytestmark = pytest.mark.timeout(180)

#: Requests moto serves before it checks signatures: its readiness probe, then the three that
#: make the IAM user below.
UNCHECKED_REQUESTS = 4


def _iam_user(url: str) -> tuple[str, str]:
    """Make a moto IAM user allowed every S3 action; its access key and secret key."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="backup")
    key = iam.create_access_key(UserName="backup")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def checking_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3 endpoint that refuses a wrong key (checked here, so no test passes vacuously)."""
    url = os.environ.get("SPARE_TEST_S3_URL")
    if url:
        server = S3Server(
            url,
            os.environ.get("SPARE_TEST_S3_ACCESS_KEY", ""),
            os.environ.get("SPARE_TEST_S3_SECRET_KEY", ""),
        )
        _assert_checks_keys(server)
        yield server
        return
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    moto = MotoProcess(log, {"INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED_REQUESTS)})
    try:
        started = moto.start()
        server = S3Server(started.url, *_iam_user(started.url))
        _assert_checks_keys(server)
        yield server
    finally:
        moto.stop()


def _assert_checks_keys(server: S3Server) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        server.client(secret_key="not-" + server.secret_key).list_buckets()
    server.client().list_buckets()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory: the developer's own ~/.aws must not take part."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    write_file(tree / "etc" / "app.conf", b"setting = 1\n", 0o644)
    write_file(tree / "var" / "data.bin", os.urandom(32 * 1024), 0o600)
    return tree


def base_env(server: S3Server, home: Path, password: str, bucket: str) -> dict[str, str]:
    """Endpoint, bucket and password, but no key: each test says where the keys come from."""
    return {
        "SPARE_ENDPOINT": server.url,
        "SPARE_BUCKET": bucket,
        "SPARE_PASSWORD": password,
        "HOME": str(home),
    }


@pytest.fixture
def bucket(checking_s3: S3Server) -> Iterator[str]:
    store = S3Backend(checking_s3, new_bucket_name())
    try:
        yield store.bucket
    finally:
        store.cleanup()


def round_trip(run_spare: SpareRunner, env: dict[str, str], source: Path, target: Path) -> None:
    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert_trees_equal(snapshot_tree(source), snapshot_tree(target))


def test_s3_keys_from_aws_variables(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    env = {
        **base_env(checking_s3, home, password, bucket),
        "AWS_ACCESS_KEY_ID": checking_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": checking_s3.secret_key,
    }
    round_trip(run_spare, env, source, tmp_path / "target")


@pytest.mark.parametrize(
    "where", ["credentials", "config", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"]
)
def test_s3_keys_from_aws_profile(
    where: str,
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """AWS_PROFILE picks a profile; the default one holds a wrong key and must not be used."""
    section = "profile backup" if where in ("config", "AWS_CONFIG_FILE") else "backup"
    keys = (
        f"aws_access_key_id = {checking_s3.access_key}\n"
        f"aws_secret_access_key = {checking_s3.secret_key}\n"
    )
    wrong = f"aws_access_key_id = {checking_s3.access_key}\naws_secret_access_key = wrong\n"
    text = f"[default]\n{wrong}\n[{section}]\n{keys}"
    env = {**base_env(checking_s3, home, password, bucket), "AWS_PROFILE": "backup"}
    if where.startswith("AWS_"):
        path = tmp_path / "etc" / "spare" / "aws"
        env[where] = str(path)
    else:
        path = home / ".aws" / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    round_trip(run_spare, env, source, tmp_path / "target")


def test_s3_spare_keys_win_over_aws_variables(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    env = {
        **base_env(checking_s3, home, password, bucket),
        "SPARE_ACCESS_KEY": checking_s3.access_key,
        "SPARE_SECRET_KEY": checking_s3.secret_key,
        "AWS_ACCESS_KEY_ID": checking_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": "wrong",
    }
    round_trip(run_spare, env, source, tmp_path / "target")


def test_s3_wrong_aws_key_is_refused(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    env = {
        **base_env(checking_s3, home, password, bucket),
        "AWS_ACCESS_KEY_ID": checking_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": "wrong",
    }
    message = assert_error(run_spare("create", "--path", source, env=env), EXIT_ACCESS_DENIED)
    assert "access" in message


def test_s3_no_keys_anywhere(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    env = base_env(checking_s3, home, password, bucket)
    message = assert_error(run_spare("create", "--path", source, env=env), EXIT_ACCESS_DENIED)
    assert "credentials" in message and "access and secret key" in message


def test_s3_unknown_aws_profile(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    env = {**base_env(checking_s3, home, password, bucket), "AWS_PROFILE": "no-such-profile"}
    message = assert_error(run_spare("create", "--path", source, env=env), EXIT_ACCESS_DENIED)
    assert "no-such-profile" in message and "AWS_PROFILE" in message


def test_s3_secret_key_from_a_file(
    checking_s3: S3Server,
    bucket: str,
    home: Path,
    password: str,
    run_spare: SpareRunner,
    source: Path,
    tmp_path: Path,
) -> None:
    """--secret-key-file keeps the key out of ``ps``; a world-readable file gets a note."""
    key_file = tmp_path / "s3-secret"
    key_file.write_text(checking_s3.secret_key + "\n")
    key_file.chmod(0o600)
    env = {
        **base_env(checking_s3, home, password, bucket),
        "SPARE_ACCESS_KEY": checking_s3.access_key,
        "SPARE_SECRET_KEY_FILE": str(key_file),
    }
    result = run_spare("create", "--path", source, env=env)
    assert_ok(result)
    assert "secret key file" not in result.stderr
    key_file.chmod(0o644)
    result = run_spare("verify", env=env)
    assert_ok(result)
    assert f"the secret key file {key_file} can be read by other users" in result.stderr
    key_file.write_text("wrong\n")
    key_file.chmod(0o600)
    message = assert_error(run_spare("verify", env=env), EXIT_ACCESS_DENIED)
    assert "access" in message
