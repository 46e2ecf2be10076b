"""Fixtures of the whole suite: the S3 server, and plugins installed as pip does.

The S3 server is moto's standalone server in a child process on a free loopback port, so spare
talks real HTTP to it, as it will to Ceph RGW or AWS. Set SPARE_TEST_S3_URL (with
SPARE_TEST_S3_ACCESS_KEY and SPARE_TEST_S3_SECRET_KEY) to run the same tests against a real
endpoint instead; then no moto is started. The end-to-end tests' own fixtures (buckets, running
spare) are in ``e2e/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.buckets import MotoProcess, S3Server
from support.plugin import install_fake_distribution, install_storage_quirks
from support.sshd import SSHD, SshServer, start_sshd


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The S3 endpoint for the whole session (one moto process: it takes a second to start)."""
    url = os.environ.get("SPARE_TEST_S3_URL")
    if url:
        yield S3Server(
            url,
            os.environ.get("SPARE_TEST_S3_ACCESS_KEY", ""),
            os.environ.get("SPARE_TEST_S3_SECRET_KEY", ""),
        )
        return
    moto = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield moto.start()
    finally:
        moto.stop()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH server on loopback, key-only, for the sftp:// storage (skipped, saying
    so, where openssh-server is not installed; CI installs it)."""
    if SSHD is None:
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


def plugin_site(tmp_path: Path, name: str, install: Callable[[Path], None]) -> Path:
    site = tmp_path / name
    site.mkdir()
    install(site)
    return site


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding a third-party plugin as pip installs it (see ``support/plugin.py``)."""
    return plugin_site(tmp_path, "site", install_fake_distribution)


@pytest.fixture
def quirks(tmp_path: Path) -> Path:
    """A site directory holding the ``spare-quirks`` plugin (see ``support/plugin.py``)."""
    return plugin_site(tmp_path, "quirks-site", install_storage_quirks)
