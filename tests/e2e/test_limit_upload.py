"""``--limit-upload`` and SPARE_LIMIT_UPLOAD pace a real backup, which still restores whole."""

from __future__ import annotations

import secrets
from pathlib import Path

from support.buckets import Backend
from support.harness import SpareRunner, assert_ok

from spare.testing.trees import assert_trees_equal, snapshot_tree, write_file


def test_limit_upload_option_backs_up_and_restores(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    write_file(source / "a.bin", secrets.token_bytes(300_000), 0o644)
    env = {**file_backend.env, "SPARE_PASSWORD": password, "SPARE_LIMIT_UPLOAD": "100000"}
    assert_ok(run_spare("create", "--path", source, env=env))
    assert_ok(run_spare("create", "--path", source, "--limit-upload", "50000", env=env))
    assert_ok(run_spare("restore", "--path", tmp_path / "restored", env=env))
    assert_trees_equal(snapshot_tree(source), snapshot_tree(tmp_path / "restored"))
