"""Buckets of the end-to-end suite, looked into behind spare's back.

An S3 server (the suite's own moto process, or the endpoint named by SPARE_TEST_S3_URL), a fresh
bucket of each storage kind, and what a test needs to tell what spare stored there. Buckets are
read with the file system or boto3, never through spare's own storage code, so a bug there cannot
hide itself.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.harness import free_port

# Where the repository keeps its kinds of objects; the tests look at these prefixes to tell
# data (packs) from the commit point (snapshots).
PACKS = "packs/"
SNAPSHOTS = "snapshots/"
# The keys of a settled repository (docs/design.rst): anything else is in flight (a temporary
# name of an upload) or a leftover that a successful create must have deleted.
PACK_KEY = re.compile(r"^packs/[0-9a-f]{2}/[0-9a-f]{64}$")
REPOSITORY_KEY = re.compile(
    r"^(config(\.copy)?|packs/[0-9a-f]{2}/[0-9a-f]{64}|index/[0-9a-f]{64}"
    r"|snapshots/[0-9a-f]{32}(\.copy)?)$"
)


def snapshot_roots(keys: Iterable[str]) -> set[str]:
    """The snapshots that ``keys`` hold, each stored as a root and its copy: asserts both."""
    roots = {key.removesuffix(".copy") for key in keys if key.startswith(SNAPSHOTS)}
    for root in roots:
        assert {root, root + ".copy"} <= set(keys), f"{root} is not stored twice"
    return roots


def new_bucket_name() -> str:
    """A bucket name no other test (or earlier run against a real endpoint) uses."""
    return f"spare-test-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint: the suite's own moto server or the one named by SPARE_TEST_S3_URL."""

    url: str
    access_key: str
    secret_key: str

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            # A region for signing only; create_bucket never names one (moto refuses it).
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=5,
                read_timeout=30,
            ),
        )


def wait_for_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Block until ``url`` answers HTTP at all (any status will do), or fail loudly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the S3 server at {url} did not answer within {timeout} s")


@dataclass
class MotoProcess:
    """moto's standalone S3 server in a child process: real HTTP, as spare meets in the field."""

    log_path: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    server: S3Server | None = None

    def start(self) -> S3Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.extra_env)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url, self.proc, timeout=60)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(
                f"{exc}; log:\n{self.log_path.read_text(errors='replace')}"
            ) from None
        # moto accepts any key unless IAM authentication is switched on: random ones prove
        # nothing is hard-coded.
        self.server = S3Server(url, "test-" + os.urandom(6).hex(), os.urandom(16).hex())
        return self.server

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class Backend:
    """One fresh bucket of one storage kind, and a view of it that does not go through spare."""

    kind: str
    bucket: str
    env: dict[str, str]

    def objects(self) -> dict[str, bytes]:
        """Every stored object, key -> bytes (an empty dict when the bucket does not exist)."""
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        """Store an object behind spare's back, creating the bucket if needed."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def create_bucket(self) -> None:
        """Make the bucket exist and be empty, as an administrator does before the first run."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove what the test stored (matters on a shared, real S3 endpoint)."""

    def keys(self, prefix: str = "") -> set[str]:
        return {key for key in self.objects() if key.startswith(prefix)}


class FileBackend(Backend):
    """``file:///dir``: each bucket is a subdirectory, each object a file under it."""

    kind = "file"

    def __init__(self, root: Path, bucket: str) -> None:
        self.root = root
        self.bucket = bucket
        self.path = root / bucket
        # The endpoint exists, as a mounted backup disk does: spare never creates it.
        root.mkdir(parents=True, exist_ok=True)
        self.env = {
            "SPARE_ENDPOINT": "file://" + str(root),
            # Keys make no sense for a directory; set anyway, as a sysadmin's profile would.
            "SPARE_ACCESS_KEY": "unused",
            "SPARE_SECRET_KEY": "unused",
            "SPARE_BUCKET": bucket,
        }

    def objects(self) -> dict[str, bytes]:
        if not self.path.is_dir():
            return {}
        found = {}
        for dirpath, _dirnames, filenames in os.walk(self.path):
            for name in filenames:
                full = Path(dirpath, name)
                try:
                    data = full.read_bytes()
                except FileNotFoundError:  # deleted by a running spare since it was listed
                    continue
                found[full.relative_to(self.path).as_posix()] = data
        return found

    def put(self, key: str, data: bytes) -> None:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.path / key).unlink()

    def create_bucket(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class S3Backend(Backend):
    """A bucket on the S3 server, read and written with boto3 (path-style addressing)."""

    kind = "s3"

    def __init__(self, server: S3Server, bucket: str) -> None:
        self.server = server
        self.bucket = bucket
        self.client = server.client()
        self.env = {
            "SPARE_ENDPOINT": server.url,
            "SPARE_ACCESS_KEY": server.access_key,
            "SPARE_SECRET_KEY": server.secret_key,
            "SPARE_BUCKET": bucket,
        }

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket"}:
                return False
            raise
        return True

    def _list_keys(self) -> list[str]:
        if not self._bucket_exists():
            return []
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def objects(self) -> dict[str, bytes]:
        from botocore.exceptions import ClientError

        found = {}
        for key in self._list_keys():
            try:
                found[key] = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                # Deleted by a running spare since it was listed.
                if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                    raise
        return found

    def keys(self, prefix: str = "") -> set[str]:
        return {key for key in self._list_keys() if key.startswith(prefix)}

    def put(self, key: str, data: bytes) -> None:
        self.create_bucket()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def create_bucket(self) -> None:
        if not self._bucket_exists():
            self.client.create_bucket(Bucket=self.bucket)

    def cleanup(self) -> None:
        keys = self._list_keys()
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in chunk]}
            )
        if self._bucket_exists():
            self.client.delete_bucket(Bucket=self.bucket)


def stored_bytes(objects: Mapping[str, bytes], prefix: str = "") -> int:
    """Total size of the objects whose key starts with ``prefix``."""
    return sum(len(data) for key, data in objects.items() if key.startswith(prefix))


def largest(objects: Mapping[str, bytes], prefix: str) -> str:
    """The key of the largest object under ``prefix`` (the one most likely to hold file data)."""
    candidates = {key: data for key, data in objects.items() if key.startswith(prefix)}
    assert candidates, f"no object under {prefix!r}; stored: {sorted(objects)}"
    return max(candidates, key=lambda key: len(candidates[key]))


def complete_packs(objects: Mapping[str, bytes]) -> dict[str, bytes]:
    """The packs stored under their final name (not an upload still under a temporary name)."""
    return {key: data for key, data in objects.items() if PACK_KEY.match(key)}


def stray_keys(objects: Mapping[str, bytes]) -> list[str]:
    """Keys that do not belong in a repository at rest: leftovers a create must clean up."""
    return sorted(key for key in objects if not REPOSITORY_KEY.match(key))
