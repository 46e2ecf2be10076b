"""A socket in the tree is no fault: it is skipped with a note, and the exit code stays 0."""

from __future__ import annotations

import socket
from pathlib import Path

from support.buckets import Backend
from support.harness import SpareRunner, assert_ok

from spare.testing.trees import write_file


def test_socket_is_skipped_with_a_note(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = tmp_path / "s"  # short: a socket path must fit in 108 bytes
    write_file(source / "data.txt", b"kept\n", 0o644)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(source / "app.sock"))
    try:
        env = {**file_backend.env, "SPARE_PASSWORD": password}
        result = run_spare("create", "--path", source, env=env)
        assert_ok(result)
        assert "app.sock" in result.stderr and "socket" in result.stderr
        assert_ok(run_spare("restore", "--path", tmp_path / "r", env=env))
        assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["data.txt"]
    finally:
        listener.close()
