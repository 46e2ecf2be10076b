"""The ways to give the password: a command (``--password-command``, SPARE_PASSWORD_COMMAND)
for secret stores, and which way wins when several are given.

An option typed on the command line wins over another way of giving the same secret that comes
from the environment (a cron job's exported SPARE_PASSWORD, overridden by hand); two ways on the
command line, or two in the environment, are a usage error. Every mistake is one line, exit 2,
before the bucket is touched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import EXIT_USAGE, SpareRunner, assert_error, assert_ok

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(120)


def _script(path: Path, body: str) -> str:
    """An executable Python script; the command line that runs it (no shell involved)."""
    path.write_text(f"import sys\n{body}\n")
    return f"{sys.executable} {path}"


def test_password_command_by_option_and_variable(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The first line the command prints is the password; the variable works the same."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    command = _script(tmp_path / "vault.py", f"print({password!r}); print('not this line')")
    created = run_spare(
        "create", "--path", source, "--password-command", command, env=file_backend.env
    )
    assert_ok(created)
    env = {**file_backend.env, "SPARE_PASSWORD_COMMAND": command}
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "a.txt").read_bytes() == b"a\n"


def test_password_command_that_fails_or_prints_nothing(
    file_backend: Backend, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    failing = _script(tmp_path / "failing.py", "sys.exit(5)")
    line = assert_error(
        run_spare("create", "--path", source, "--password-command", failing, env=file_backend.env),
        EXIT_USAGE,
    )
    assert "the password command" in line and "failed (exit 5)" in line, line
    silent = _script(tmp_path / "silent.py", "pass")
    env = {**file_backend.env, "SPARE_PASSWORD_COMMAND": silent}
    line = assert_error(run_spare("create", "--path", source, env=env), EXIT_USAGE)
    assert "printed nothing" in line, line
    missing = str(tmp_path / "no-such-command")
    env = {**file_backend.env, "SPARE_PASSWORD_COMMAND": missing}
    line = assert_error(run_spare("create", "--path", source, env=env), EXIT_USAGE)
    assert f"cannot run the password command {missing}" in line, line
    assert not file_backend.objects(), "a refused password reached the bucket"


def test_the_command_line_wins_over_the_environment(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """SPARE_PASSWORD exported (wrong), --password-file given (right): the file is used."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    assert_ok(
        run_spare(
            "create",
            "--path",
            source,
            "--password-file",
            password_file,
            env={**file_backend.env, "SPARE_PASSWORD": password},
        )
    )
    env = {**file_backend.env, "SPARE_PASSWORD": "the cron job's old password"}
    assert_ok(run_spare("verify", "--password-file", password_file, env=env))
    command = _script(tmp_path / "vault.py", f"print({password!r})")
    env = {**file_backend.env, "SPARE_PASSWORD_FILE": str(tmp_path / "no-such-file")}
    assert_ok(run_spare("verify", "--password-command", command, env=env))


@pytest.mark.parametrize(
    ("options", "variables"),
    [
        (["--password", "a", "--password-file", "FILE"], {}),
        (["--password-file", "FILE", "--password-command", "true"], {}),
        ([], {"SPARE_PASSWORD": "a", "SPARE_PASSWORD_FILE": "FILE"}),
    ],
    ids=["two-options", "file-and-command", "two-variables"],
)
def test_two_ways_at_one_level_are_refused(
    options: list[str],
    variables: dict[str, str],
    file_backend: Backend,
    run_spare: SpareRunner,
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("a\n")
    password_file.chmod(0o600)
    options = [str(password_file) if item == "FILE" else item for item in options]
    variables = {k: str(password_file) if v == "FILE" else v for k, v in variables.items()}
    env = {**file_backend.env, **variables}
    line = assert_error(run_spare("verify", *options, env=env), EXIT_USAGE)
    assert "give only one of" in line, line
