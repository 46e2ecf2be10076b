"""The s3 storage (spare_plugins.s3_storage) meeting a failing network: what each fault becomes.

A real s3fs client talks to the suite's S3 server through :mod:`support.faultproxy`, with
botocore's and s3fs's own retries off, so that each fault reaches spare's translation as it does
once those retries have given up. Every fault of the network must come out as
:class:`StorageTransient` (which the core retries) and never as data: a short object stored, or a
cut reply taken for the object's end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.buckets import S3Server, new_bucket_name
from support.faultproxy import FaultProxy, Request
from support.harness import free_port

from spare.errors import StorageTransient, StorageUnreachable
from spare.storage import RetryingStorage
from spare_plugins.s3_storage import S3_CONFIG, S3Storage

DATA = os.urandom(300_000)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    if not s3_server.url.startswith("http://"):
        pytest.skip("the fault proxy speaks plain HTTP only")
    proxy = FaultProxy(s3_server.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def s3_storage(server: S3Server, url: str, bucket: str) -> S3Storage:
    """An s3 storage at ``url`` that tries each request once."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key=server.access_key,
        secret=server.secret_key,
        endpoint_url=url,
        skip_instance_cache=True,
        use_listings_cache=False,
        config_kwargs={
            **S3_CONFIG,
            "retries": {"max_attempts": 0},
            "s3": {"addressing_style": "path"},
        },
    )
    fs.retries = 1  # s3fs's own retry loop: one attempt
    return S3Storage(fs, bucket, endpoint=url, make_root=lambda: fs.mkdir(bucket))


@pytest.fixture
def storage(s3_server: S3Server, proxy: FaultProxy) -> Iterator[S3Storage]:
    """A fresh bucket, reached through the proxy, holding ``packs/00/whole`` (DATA)."""
    bucket = new_bucket_name()
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="packs/00/whole", Body=DATA)
    try:
        yield s3_storage(s3_server, proxy.url, bucket)
    finally:
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


def any_request(request: Request) -> bool:
    return bool(request.key)


CALLS: dict[str, Callable[[S3Storage], Any]] = {
    "put": lambda storage: storage.put("packs/00/new", DATA),
    "create": lambda storage: storage.create("lock", DATA),
    "get": lambda storage: storage.get("packs/00/whole"),
    "ranged get": lambda storage: storage.get("packs/00/whole", 1000, 200_000),
}


@pytest.mark.parametrize(
    ("fault", "call"),
    [
        ("reset-before", "put"),
        ("reset-after", "put"),
        ("reset-after", "create"),
        ("500", "put"),
        ("503", "put"),
        ("503", "get"),
        ("reset-before", "get"),
        ("truncate", "get"),
        ("truncate", "ranged get"),
        ("short", "ranged get"),
        ("cut-request", "put"),
        ("cut-request", "create"),
    ],
)
def test_a_network_fault_is_transient(
    storage: S3Storage, proxy: FaultProxy, fault: str, call: str
) -> None:
    # Twice: aiohttp sends an idempotent request (PUT, GET) again once when the connection breaks.
    proxy.aim(any_request, fault, count=2)
    with pytest.raises(StorageTransient):
        CALLS[call](storage)
    assert proxy.injected(fault), "the fault was not injected"


def test_a_short_object_is_never_left_by_a_create(storage: S3Storage, proxy: FaultProxy) -> None:
    """The server kept half of a conditional PUT (moto): the half goes, so that a retry creates
    it. A server that checks the payload's hash (Ceph RGW) refuses the half instead."""
    proxy.aim(any_request, "cut-request")
    with pytest.raises(
        StorageTransient, match=r"kept 150000 of 300000 bytes|XAmzContentSHA256Mismatch|BadDigest"
    ):
        storage.create("lock", DATA)
    storage.create("lock", DATA)
    assert storage.get("lock") == DATA


@pytest.mark.parametrize("fault", ["cut-request", "reset-after", "503", "truncate", "short"])
def test_retried_faults_end_in_whole_objects(
    storage: S3Storage, proxy: FaultProxy, fault: str
) -> None:
    """Through the core's retry, each call is done whole: the object stored, the range read."""
    proxy.aim(any_request, fault, count=2)
    retrying = RetryingStorage(storage, 30, first_wait=0)
    retrying.put("packs/00/new", DATA)
    assert retrying.get("packs/00/new", 1000, 200_000) == DATA[1000:200_000]
    assert retrying.get("packs/00/new") == DATA
    assert len(proxy.injected(fault)) == 2


def test_a_range_past_the_end_is_cut_not_refused(storage: S3Storage) -> None:
    """What the server says the object's size is ends a read: fewer bytes than asked, no error."""
    assert storage.get("packs/00/whole", 299_990, 400_000) == DATA[299_990:]
    assert storage.get("packs/00/whole", 300_000, 400_000) == b""
    assert storage.get("packs/00/whole", 10, 10) == b""


def test_every_put_carries_its_content_md5(storage: S3Storage, proxy: FaultProxy) -> None:
    """Servers that check Content-MD5 (AWS, Ceph RGW, MinIO) refuse a body cut on the way."""
    storage.put("packs/00/new", DATA)
    storage.create("lock", b"holder")
    puts = [entry for entry in proxy.log if entry.method == "PUT"]
    assert [entry.checksum for entry in puts] == [True, True]


def test_nothing_listening_is_unreachable(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server, f"http://127.0.0.1:{free_port()}", new_bucket_name())
    with pytest.raises(StorageUnreachable, match="cannot reach the endpoint"):
        storage.get("config")
