"""What a command is handed: nothing in it shows a secret when printed or logged."""

from __future__ import annotations

from pathlib import Path

from spare.commands.context import Context
from spare.storage import StorageLocation


def test_repr_shows_no_password_and_no_secret_key(tmp_path: Path) -> None:
    location = StorageLocation("s3", "https://s3.example.org", "b", "AKIDVISIBLE", "s3cr3t-key")
    ctx = Context(location, "pa55w0rd-of-the-backup", tmp_path)
    for text in (repr(ctx), str(ctx), repr(location)):
        assert "pa55w0rd-of-the-backup" not in text
        assert "s3cr3t-key" not in text
    assert "AKIDVISIBLE" in repr(location)  # not a secret, and useful in a bug report
