"""Every way a sysadmin tells spare what to do works: options or variables, a password file, a
relative path, ``--skip`` and SPARE_SKIP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, assert_ok

from spare.testing.trees import snapshot_tree, write_file

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("by_variable", [False, True], ids=["options", "variable"])
def test_skip_leaves_paths_out(
    by_variable: bool,
    file_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    """``--skip ./cache`` (repeatable) or SPARE_SKIP (``:``-separated) leave those paths out."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    skips = ["./cache", "logs/old"]
    if by_variable:
        env["SPARE_SKIP"] = ":".join(skips)
        options = []
    else:
        options = [item for skip in skips for item in ("--skip", skip)]
    source = tmp_path / "source"
    write_file(source / "keep.txt", b"keep\n", 0o644)
    write_file(source / "cache" / "big.bin", b"cache\n", 0o644)
    write_file(source / "logs" / "old" / "a.log", b"old\n", 0o644)
    write_file(source / "logs" / "new.log", b"new\n", 0o644)
    write_file(source / "logs" / "older" / "b.log", b"a prefix of a skip is no skip\n", 0o644)

    assert_ok(run_spare("create", "--path", source, *options, env=env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    restored = set(snapshot_tree(target))
    assert {"keep.txt", "logs", "logs/new.log", "logs/older/b.log"} <= restored, sorted(restored)
    assert not {"cache/big.bin", "logs/old/a.log"} & restored, sorted(restored)


def test_password_file_and_option(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The three ways to give the password open the same backup; only the first line counts."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", source, "--password", password, env=file_backend.env))

    password_file = tmp_path / "password"
    password_file.write_text(f"{password}\nsecond line is not part of it\n")
    password_file.chmod(0o600)
    target = tmp_path / "restored"
    assert_ok(
        run_spare(
            "restore", "--path", target, "--password-file", password_file, env=file_backend.env
        )
    )
    assert (target / "a.txt").read_bytes() == b"a\n"

    env = {**file_backend.env, "SPARE_PASSWORD_FILE": str(password_file)}
    verified = run_spare("verify", "--path", source, env=env)
    assert_ok(verified)
    assert "note" not in verified.stderr

    password_file.chmod(0o644)  # readable by every user: still used, with a note to fix it
    verified = run_spare("verify", "--path", source, env=env)
    assert_ok(verified)
    assert f"the password file {password_file} can be read by other users" in verified.stderr
    assert f"chmod 600 {password_file}" in verified.stderr


def test_options_instead_of_variables(
    s3_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Every connection setting works as an option as well as a variable."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    options = [
        "--endpoint", s3_backend.env["SPARE_ENDPOINT"],
        "--access-key", s3_backend.env["SPARE_ACCESS_KEY"],
        "--secret-key", s3_backend.env["SPARE_SECRET_KEY"],
        "--bucket", s3_backend.bucket,
        "--password", password,
    ]  # fmt: skip
    assert_ok(run_spare("create", *options, "--path", source, env={}))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", *options, "--path", target, env={}))
    assert (target / "a.txt").read_bytes() == b"a\n"


def test_relative_path_and_variable(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """``--path ./dir`` as in the quick start, and SPARE_PATH: the nightly re-run from the same
    working directory is the same path (no identity error), and restore takes them too.
    """
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    write_file(tmp_path / "source" / "a.txt", b"a\n", 0o644)
    assert_ok(run_spare("create", "--path", "./source", env=env, cwd=tmp_path))
    write_file(tmp_path / "source" / "b.txt", b"b\n", 0o644)
    assert_ok(run_spare("create", env={**env, "SPARE_PATH": "source"}, cwd=tmp_path))
    assert_ok(run_spare("restore", env={**env, "SPARE_PATH": "restored"}, cwd=tmp_path))
    assert snapshot_tree(tmp_path / "restored") == snapshot_tree(tmp_path / "source")
