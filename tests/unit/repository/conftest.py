"""Fixtures of the repository's unit tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from spare.plugins import Plugins
from spare.repository.opening import open_repository
from spare.repository.repo import Repository
from spare.storage import StorageLocation


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    """A new repository in a bucket of the memory storage, with its cache in ``tmp_path``."""
    plugins = Plugins()
    location = StorageLocation("memory", secrets.token_hex(6), "bucket")
    storage = plugins.storages.get("memory")(location)
    repo = open_repository(
        lambda: storage, "password", plugins, tmp_path, location="memory-test", create=True
    )
    try:
        yield repo
    finally:
        repo.close()
