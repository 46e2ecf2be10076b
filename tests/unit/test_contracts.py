"""The built-in storage, transform and lock plugins pass the suites shipped for third parties."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.buckets import S3Server
from support.sshd import SshServer

from spare.keys import KeyRing
from spare.lock import Lock
from spare.plugins import Plugins
from spare.storage import RetryingStorage, Storage, StorageLocation
from spare.testing.lock import LockContract
from spare.testing.storage import StorageContract
from spare.testing.transform import TransformContract
from spare.transform import Transform


def make_storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    bucket = f"spare-contract-{secrets.token_hex(6)}"
    if kind == "sftp":
        ssh: SshServer = request.getfixturevalue("ssh_server")
        request.getfixturevalue("monkeypatch").setenv("HOME", str(ssh.home))  # keys, known_hosts
        (tmp_path / "sftp").mkdir(exist_ok=True)
        url = ssh.url(tmp_path / "sftp").removeprefix("sftp://")
        location = StorageLocation("sftp", url, bucket)
    elif kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        location = StorageLocation("s3", server.url, bucket, server.access_key, server.secret_key)
    elif kind == "file":
        (tmp_path / "store").mkdir(exist_ok=True)
        location = StorageLocation("file", str(tmp_path / "store"), bucket)
    else:
        location = StorageLocation("memory", secrets.token_hex(6), bucket)
    return RetryingStorage(Plugins().storages.get(location.scheme)(location))


@pytest.fixture(params=["memory", "file", "s3", "sftp"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return request.param


class TestBuiltinStorages(StorageContract):
    @pytest.fixture
    def storage(
        self, storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> Iterator[Storage]:
        storage = make_storage(storage_kind, tmp_path, request)
        yield storage
        storage.close()


class TestObjectLock(LockContract):
    @pytest.fixture
    def make_lock(
        self, storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> Callable[[], Lock]:
        storage = make_storage(storage_kind, tmp_path, request)
        storage.ensure_bucket()
        factory = Plugins().locks.get("object")
        return lambda: factory(storage)


@pytest.fixture(scope="module")
def keys() -> KeyRing:
    return KeyRing.generate()


class TestLzma(TransformContract):
    @pytest.fixture
    def transform(self, keys: KeyRing) -> Transform:
        return Plugins().transforms.get("lzma")(keys)


class TestAesSiv(TransformContract):
    authenticates = True

    @pytest.fixture
    def transform(self, keys: KeyRing) -> Transform:
        return Plugins().transforms.get("aes-siv")(keys)
