"""The fidelity tests run against a file:// bucket: they are about the tree, not the storage."""

from __future__ import annotations

import pytest
from support.buckets import Backend


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    """A file:// bucket: most of these tests are about the tree, not the storage."""
    return {**file_backend.env, "SPARE_PASSWORD": password}
