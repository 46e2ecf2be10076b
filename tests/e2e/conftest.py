"""Fixtures of the end-to-end tests: a fresh bucket of each storage kind, a way to run spare.

Spare runs as a real process (``python -m spare``) with a clean environment and a cache of the
test's own; buckets are looked into behind its back (:mod:`support.buckets`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.buckets import Backend, FileBackend, S3Backend, S3Server, new_bucket_name
from support.faultproxy import FaultProxy
from support.harness import SpareRunner

from spare.testing.trees import write_file


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, not yet existing bucket on each storage kind spare supports out of the box."""
    bucket = new_bucket_name()
    store: Backend
    if request.param == "file":
        store = FileBackend(tmp_path / "store", bucket)
    else:
        store = S3Backend(request.getfixturevalue("s3_server"), bucket)
    try:
        yield store
    finally:
        store.cleanup()


@pytest.fixture
def file_backend(tmp_path: Path) -> Iterator[Backend]:
    """A file:// bucket, for tests whose point does not depend on the storage kind."""
    store = FileBackend(tmp_path / "store", new_bucket_name())
    try:
        yield store
    finally:
        store.cleanup()


@pytest.fixture
def s3_backend(s3_server: S3Server) -> Iterator[Backend]:
    """An S3 bucket, for tests that only make sense against an S3 endpoint."""
    store = S3Backend(s3_server, new_bucket_name())
    try:
        yield store
    finally:
        store.cleanup()


@pytest.fixture
def password() -> str:
    """A random password per test: nothing may depend on a well-known one."""
    return "pw-" + secrets.token_urlsafe(12)


@pytest.fixture
def env(backend: Backend, password: str) -> dict[str, str]:
    """What a sysadmin exports before running spare: connection, bucket and password."""
    return {**backend.env, "SPARE_PASSWORD": password}


@pytest.fixture
def run_spare(tmp_path: Path) -> SpareRunner:
    """Runs ``python -m spare`` with a clean environment and a cache of this test's own."""
    cache = tmp_path / "cache" / "spare"
    cache.parent.mkdir(parents=True, exist_ok=True)
    return SpareRunner(cache)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The smallest tree worth backing up: one file (modules that need more define their own)."""
    tree = tmp_path / "source"
    write_file(tree / "a.txt", b"a\n", 0o644)
    return tree


@pytest.fixture
def plain_http(s3_server: S3Server) -> S3Server:
    """The S3 server, if it speaks plain HTTP (what the fault proxy can stand in front of)."""
    if not s3_server.url.startswith("http://"):
        pytest.skip("the fault proxy speaks plain HTTP only")
    return s3_server


@pytest.fixture
def proxy(plain_http: S3Server) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the S3 server."""
    # Stalls shorter than spare's read timeout (120 s, no knob): they slow a run, nothing more.
    proxy = FaultProxy(plain_http.url, stall_seconds=1.0).start()
    try:
        yield proxy
    finally:
        proxy.stop()
