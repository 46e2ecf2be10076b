"""``spare passwd`` and ``spare key export`` / ``--key-file``.

passwd wraps the master key anew, uploading nothing but the config: the old password no longer
opens the bucket, the new one restores. A passwd killed between its two writes leaves one copy of
the config under each password: both open the bucket, a run with the old password leaves the
newer copy alone, and the first create with the new one completes the change. A key exported
before the bucket's config was lost restores the backup with ``--key-file``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import (
    EXIT_DAMAGED,
    EXIT_USAGE,
    EXIT_WARNINGS,
    EXIT_WRONG_PASSWORD,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
)
from support.jsonout import summary
from support.terminal import run_on_terminal

from spare.testing.trees import snapshot_tree, write_file

pytestmark = pytest.mark.timeout(180)

CONFIGS = ("config", "config.copy")


def _secret_file(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    write_file(source / "etc" / "app.conf", b"setting = 1\n", 0o644)
    write_file(source / "data.bin", os.urandom(50_000), 0o600)
    return source


def _data_objects(backend: Backend) -> dict[str, bytes]:
    """Every object but the config's two copies."""
    return {key: data for key, data in backend.objects().items() if key not in CONFIGS}


def test_passwd_rewraps_the_key_only(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = _source(tmp_path)
    old_env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=old_env))
    before = file_backend.objects()
    new_password = password + "-new"
    new_file = _secret_file(tmp_path / "new-password", new_password)

    line = assert_error(run_spare("passwd", env=old_env), EXIT_USAGE)  # no terminal, no file
    assert "--new-password-file" in line, line
    assert_ok(run_spare("passwd", "--new-password-file", new_file, env=old_env))

    after = file_backend.objects()
    assert _data_objects(file_backend) == {k: v for k, v in before.items() if k not in CONFIGS}
    assert after["config"] == after["config.copy"] != before["config"]
    old_config, new_config = json.loads(before["config"]), json.loads(after["config"])
    assert new_config["kdf"]["salt"] != old_config["kdf"]["salt"]  # a fresh salt
    assert new_config["master_key"] != old_config["master_key"]
    assert new_config["generation"] == 1 and new_config["id"] == old_config["id"]

    line = assert_error(run_spare("restore", "--path", tmp_path / "r1", env=old_env), 4)
    assert "wrong password" in line
    new_env = {**file_backend.env, "SPARE_PASSWORD": new_password}
    assert_ok(run_spare("restore", "--path", tmp_path / "r2", env=new_env))
    assert snapshot_tree(tmp_path / "r2") == snapshot_tree(source)

    # Again, from the variable a unit file would set; this host still opens it at once.
    third = _secret_file(tmp_path / "third", password + "-third")
    changed = run_spare("passwd", "--json", env={**new_env, "SPARE_NEW_PASSWORD_FILE": str(third)})
    assert_ok(changed)
    assert (
        summary(changed.stdout)["repository"] == json.loads(file_backend.objects()["config"])["id"]
    )
    assert json.loads(file_backend.objects()["config"])["generation"] == 2
    assert_ok(run_spare("verify", "--password-file", third, env=new_env))
    assert_error(run_spare("verify", env=new_env), EXIT_WRONG_PASSWORD)

    # This host remembers the config under the new password, for when the bucket loses both.
    for key in CONFIGS:
        file_backend.delete(key)
    remembered = run_spare("verify", "--password-file", third, env=new_env)
    assert remembered.returncode == EXIT_WARNINGS, describe(remembered)  # both copies lost
    assert "using the copy this host remembers" in remembered.stderr, describe(remembered)


def test_passwd_killed_between_its_two_writes(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The state a kill between the writes leaves: ``config.copy`` under the new password,
    ``config`` (written last) and the host's memory of it under the old one."""
    source = _source(tmp_path)
    old_env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=old_env))
    old_config = file_backend.objects()["config"]
    [remembered] = (run_spare.cache_dir / "buckets").glob("*.json")
    old_remembered = remembered.read_bytes()
    new_password = password + "-new"
    new_file = _secret_file(tmp_path / "new-password", new_password)
    assert_ok(run_spare("passwd", "--new-password-file", new_file, env=old_env))
    new_config = file_backend.objects()["config"]
    file_backend.put("config", old_config)
    remembered.write_bytes(old_remembered)

    new_env = {**file_backend.env, "SPARE_PASSWORD": new_password}
    assert_ok(run_spare("restore", "--path", tmp_path / "r1", env=new_env))
    assert snapshot_tree(tmp_path / "r1") == snapshot_tree(source)

    checked = run_spare("verify", env=old_env)  # the old password still opens it: no damage
    assert_ok(checked)
    assert "config.copy holds the key under the new password" in checked.stderr, describe(checked)

    # The nightly create still runs with the old password: it must not undo the change.
    nightly = run_spare("create", "--path", source, env=old_env)
    assert_ok(nightly)
    assert "config.copy holds the key under a newer password" in nightly.stderr, describe(nightly)
    assert file_backend.objects()["config.copy"] == new_config

    completed = run_spare("create", "--path", source, env=new_env)
    assert_ok(completed)
    assert "config held the key under the password used before" in completed.stderr
    stored = file_backend.objects()
    assert stored["config"] == stored["config.copy"] == new_config
    assert_error(run_spare("verify", env=old_env), EXIT_WRONG_PASSWORD)
    assert_ok(run_spare("verify", env=new_env))


def test_passwd_asks_twice_on_a_terminal(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = _source(tmp_path)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    new_password = password + "-typed"
    answers = [(b"New password:", new_password), (b"Repeat for confirmation:", new_password)]
    code, shown = run_on_terminal(run_spare, ["passwd"], env, answers)
    assert code == 0, shown
    assert "New password:" in shown and "Repeat for confirmation:" in shown, shown
    assert new_password not in shown  # never echoed
    assert "changed the password" in shown, shown
    assert_ok(run_spare("verify", env={**env, "SPARE_PASSWORD": new_password}))


def test_key_export_restores_a_bucket_without_config(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = _source(tmp_path)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    key_file = tmp_path / "escrow" / "spare.key"
    key_file.parent.mkdir()
    exporting = run_spare("key", "export", key_file, "--json", env=env)
    assert_ok(exporting)
    assert summary(exporting.stdout)["key_file"] == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, oct(key_file.stat().st_mode)
    exported = key_file.read_bytes()
    assert exported == file_backend.objects()["config"]  # the key still wrapped, nothing more
    line = assert_error(run_spare("key", "export", key_file, env=env), EXIT_USAGE)
    assert "exists already" in line and key_file.read_bytes() == exported

    for key in CONFIGS:
        file_backend.delete(key)
    new_host = SpareRunner(tmp_path / "new-host" / "cache")  # no memory of the bucket
    line = assert_error(new_host("restore", "--path", tmp_path / "r0", env=env), EXIT_DAMAGED)
    assert "--key-file" in line, line
    wrong = {**env, "SPARE_PASSWORD": password + "-wrong"}
    args = ["restore", "--key-file", key_file]
    assert_error(new_host(*args, "--path", tmp_path / "r1", env=wrong), EXIT_WRONG_PASSWORD)
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello\n")
    line = assert_error(
        new_host("restore", "--key-file", not_a_key, "--path", tmp_path / "r1", env=env), EXIT_USAGE
    )
    assert "not a key file" in line, line

    restored = new_host(*args, "--path", tmp_path / "r2", env=env)
    assert_ok(restored)
    assert "using the key file" in restored.stderr, describe(restored)
    assert snapshot_tree(tmp_path / "r2") == snapshot_tree(source)

    # The next create (on the rebuilt host, given the key file) stores the config again.
    assert_ok(new_host("create", "--key-file", key_file, "--path", source, env=env))
    stored = file_backend.objects()
    assert stored["config"] == stored["config.copy"] == exported
