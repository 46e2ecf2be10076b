"""The ``sftp://`` storage's connection, against the suite's real OpenSSH server (the storage's
contract runs in ``test_contracts.py``, its use by spare in ``e2e/test_sftp.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sshd import SshServer

from spare.errors import StorageTransient
from spare.storage import StorageLocation
from spare_plugins.sftp_storage import make_sftp


def test_a_channel_that_ends_before_its_connection_is_a_broken_connection(
    ssh_server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SFTP channel ends while the SSH transport still looks alive (its thread has not yet
    seen the connection go: what a loaded machine showed, as an EOFError that was not retried).
    The call fails as transient, so the retry wrapper tries it again, and that connects anew."""
    monkeypatch.setenv("HOME", str(ssh_server.home))  # the client key and known_hosts
    (tmp_path / "sftp").mkdir()
    url = ssh_server.url(tmp_path / "sftp").removeprefix("sftp://")
    storage = make_sftp(StorageLocation("sftp", url, "bucket"))
    try:
        storage.ensure_bucket()
        storage.put("a", b"first")
        first = storage.fs
        first.ftp.close()
        assert first.client.get_transport().is_active()

        with pytest.raises(StorageTransient, match="the SSH connection broke"):
            storage.put("b", b"second")
        storage.put("b", b"second")
        assert storage.fs is not first
        assert (storage.get("a"), storage.get("b")) == (b"first", b"second")
    finally:
        storage.close()
