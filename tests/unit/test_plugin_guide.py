"""The plugin guide's examples are real: each passes the conformance suite of its kind.

The code blocks of docs/plugins.rst are run as they are written, so a guide that no longer
matches the API fails here rather than in a plugin author's hands.
"""

from __future__ import annotations

import textwrap
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import REPO_ROOT

from spare.lock import Lock
from spare.registry import LockRegistry, StorageRegistry
from spare.storage import Storage, StorageLocation
from spare.testing.lock import LockContract
from spare.testing.storage import StorageContract


def example(title: str) -> types.ModuleType:
    """The first code block below the section ``title`` of docs/plugins.rst, run as a module."""
    text = (REPO_ROOT / "docs" / "plugins.rst").read_text()
    section = text.split(f"\n{title}\n", 1)[1]
    lines = section.split(".. code-block:: python\n", 1)[1].splitlines()
    block = []
    for line in lines[1:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    module = types.ModuleType(f"plugin_guide_{title.split()[-2]}")
    exec(
        compile(textwrap.dedent("\n".join(block)), f"docs/plugins.rst: {title}", "exec"),
        vars(module),
    )
    return module


STORAGE = example("A minimal storage plugin")
LOCK = example("A minimal lock plugin")


def test_the_storage_example_registers_its_scheme(tmp_path: Path) -> None:
    registry = StorageRegistry()
    STORAGE.spare_register_storages(registry)
    factory = registry.get("localdir")
    storage = factory(StorageLocation("localdir", str(tmp_path), "bucket"))
    storage.ensure_bucket()
    storage.put("packs/ab/cd", b"data")
    assert (tmp_path / "bucket" / "packs" / "ab" / "cd").read_bytes() == b"data"


def test_the_lock_example_registers_itself() -> None:
    registry = LockRegistry()
    LOCK.spare_register_locks(registry)
    assert registry.names() == ["keylock"]
    assert LOCK.KeyLock.keys == ("lock",)


class TestGuideStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        storage: Storage = STORAGE.DirectoryStorage(tmp_path / "bucket")
        return storage


class TestGuideLock(LockContract):
    @pytest.fixture
    def make_lock(self, tmp_path: Path) -> Callable[[], Lock]:
        storage = STORAGE.DirectoryStorage(tmp_path / "bucket")
        storage.ensure_bucket()
        return lambda: LOCK.KeyLock(storage)
