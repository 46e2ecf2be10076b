"""The S3 storage: s3fs for every S3-compatible endpoint, each object checked on the way in and
on the way out (see :class:`S3Storage`); errors are translated as for any fsspec storage.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

import fsspec.asyn

from spare.errors import BadEndpoint, StorageError, StorageTransient
from spare.hookspecs import hookimpl
from spare.registry import StorageRegistry
from spare.storage import ObjectInfo, Storage, StorageLocation
from spare_plugins.fsspec_storage import FsspecStorage, s3_code

# botocore tries each request twice at most, and s3fs once (see make_s3): the core's retry
# wrapper is the one that waits, for --retry-for seconds.
S3_CONFIG = {
    "connect_timeout": 10,
    "read_timeout": 120,
    "retries": {"max_attempts": 1},
    # Checksum headers only where the API demands them: Ceph RGW rejects trailing checksums, and
    # packs are named by their SHA-256, which verify checks anyway.
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


class S3Storage(FsspecStorage):
    """S3 through s3fs, every object checked on the way in and on the way out.

    A PUT carries its Content-MD5, and a HEAD then checks the size the server kept. A GET checks
    the length of what came back against the range asked for and the size the server states, so
    a reply cut short is retried, never taken for the object's end.

    ``endpoint`` is the URL the user gave, named when it does not answer as an S3 server.
    """

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        *,
        endpoint: str,
        make_root: Callable[[], None],
    ) -> None:
        super().__init__(fs, root, atomic_create=True, make_root=make_root)
        self.endpoint = endpoint

    def _translate(self, exc: BaseException, what: str) -> StorageError:
        status = not_s3_reply(exc)
        if status is not None:
            return BadEndpoint(
                f"{what}: {self.endpoint} does not answer as an S3 server (HTTP {status} "
                "without an S3 error code): check --endpoint"
            )
        return super()._translate(exc, what)

    def put(self, key: str, data: bytes) -> None:
        self._call(f"storing {key}", lambda: self._put_object(key, data, _md5(data)))

    def put_file(self, key: str, path: str) -> None:
        # Streamed from the file, as aiohttp reads it: held whole in memory, a pack would also
        # be copied whole into the socket's send buffer.
        with open(path, "rb") as body:  # the host's own file: its errors are the host's
            digest = hashlib.md5(usedforsecurity=False)
            while chunk := body.read(1 << 20):
                digest.update(chunk)
            md5 = base64.b64encode(digest.digest()).decode()
            self._call(f"storing {key}", lambda: self._put_object(key, body, md5))

    def create(self, key: str, data: bytes) -> None:
        # One PUT with If-None-Match: *, never a multipart upload (whose completion Ceph RGW
        # does not make conditional); the refusal is recognised by its S3 code (see S3_CODES).
        self._call(
            f"creating {key}", lambda: self._put_object(key, data, _md5(data), IfNoneMatch="*")
        )

    def _put_object(self, key: str, body: bytes | BinaryIO, md5: str, **condition: str) -> None:
        if isinstance(body, bytes):
            size = len(body)
        else:
            size = body.seek(0, os.SEEK_END)
            body.seek(0)
        # Straight to botocore, not through s3fs's call_s3: s3fs's retry sends the same request
        # again, and a file the first attempt read to its end then goes as an empty object
        # (botocore's own retries rewind it; aiohttp's refuse a consumed one). What botocore
        # gives up on, spare's retry wrapper sends again from a file opened anew.
        fsspec.asyn.sync(
            self.fs.loop,
            self.fs.s3.put_object,
            Bucket=self.root,
            Key=key,
            Body=body,
            ContentMD5=md5,
            **condition,
        )
        try:
            stored = self.fs.call_s3("head_object", Bucket=self.root, Key=key)["ContentLength"]
        except FileNotFoundError:
            stored = None
        if stored == size:
            return
        if condition:
            # The conditional PUT succeeded, so the object is this call's own: it goes, so that
            # the retry can create it whole.
            self.fs.call_s3("delete_object", Bucket=self.root, Key=key)
        raise StorageTransient(
            f"storing {key}: the server kept {'nothing' if stored is None else stored} "
            f"of {size} bytes"
        )

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        first = max(0, start or 0)
        if end is not None and end <= first:
            self._call(
                f"reading {key}",
                lambda: self.fs.call_s3("head_object", Bucket=self.root, Key=key),
            )
            return b""
        ranged = first > 0 or end is not None
        try:
            return self._call(f"reading {key}", lambda: self._get_object(key, first, end, ranged))
        except StorageError as exc:
            # S3 refuses a range that starts at or past the end (any range of an empty
            # object); the contract cuts it at the end instead.
            if ranged and s3_code(exc) == "InvalidRange":
                return b""
            raise

    def _get_object(self, key: str, first: int, end: int | None, ranged: bool) -> bytes:
        extra = {"Range": f"bytes={first}-{'' if end is None else end - 1}"} if ranged else {}
        reply = self.fs.call_s3("get_object", Bucket=self.root, Key=key, **extra)
        body = reply["Body"]
        try:
            # The body is read on s3fs's event loop, like s3fs's own cat_file does.
            data: bytes = fsspec.asyn.sync(self.fs.loop, body.read)
        finally:
            body.close()
        header = reply.get("ContentRange")
        if not header:  # the whole object: aiohttp checked it against its Content-Length
            return data[first:end] if ranged else data
        served = _CONTENT_RANGE.fullmatch(header.strip())
        if served is None or int(served[1]) != first:
            raise StorageTransient(
                f"reading {key}: the server sent {header!r}, not byte {first} on"
            )
        # The server states the object's size (``*``: it does not know, so it is taken at its
        # word); "fewer bytes than asked" is the object's end only where that size says so.
        if served[3] == "*":
            want = int(served[2]) + 1 - first
        else:
            want = (int(served[3]) if end is None else min(end, int(served[3]))) - first
        if len(data) < want:
            raise StorageTransient(
                f"reading {key}: the reply was cut short ({len(data)} of {want} bytes)"
            )
        return data[:want]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Page by page, keeping only key and size: s3fs's find() builds a dict per object.
        def listing() -> Iterator[ObjectInfo]:
            token: dict[str, str] = {}
            while True:
                try:
                    page = self.fs.call_s3(
                        "list_objects_v2", Bucket=self.root, Prefix=prefix, **token
                    )
                except FileNotFoundError as exc:  # no bucket: nothing in it
                    if not_s3_reply(exc) is not None:
                        raise  # a web server's 404 page: no bucket says nothing
                    return
                if "Name" not in page:
                    # A 200 reply that is no listing (a captive portal's or a proxy's login
                    # page): botocore parses it as an empty one, which would mean no backup.
                    raise BadEndpoint(
                        f"listing {self.root}: {self.endpoint} does not answer as an S3 server "
                        "(HTTP 200 without a listing, as a captive portal's or a proxy's login "
                        "page): check --endpoint"
                    )
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"], int(item["Size"]))
                if not page.get("IsTruncated"):
                    return
                token = {"ContinuationToken": page["NextContinuationToken"]}

        return self._call_iter(f"listing {self.root}", listing())


def _md5(data: bytes) -> str:
    """The Content-MD5 header of ``data``."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


#: A ranged reply's Content-Range: its first and last byte, and the object's size.
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def not_s3_reply(exc: BaseException) -> int | None:
    """The HTTP status of an error reply that no S3 server gives, behind ``exc``: a 4xx reply to
    a request other than a HEAD without an S3 error code (a web server's or proxy's own page);
    None for any other error."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = str(response["Error"].get("Code") or "")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # A HEAD's reply has no body, so no S3 server gives its error a code.
            head = str(getattr(seen, "operation_name", "")).startswith("Head")
            if head or not isinstance(status, int) or not 400 <= status < 500:
                return None
            return status if not code or code.isdigit() else None
        seen = seen.__cause__ or seen.__context__
    return None


def make_s3(location: StorageLocation) -> Storage:
    # Imported only when an S3 endpoint is used: it adds ~21 MiB of RSS, its first request ~16 more.
    import s3fs

    fs = s3fs.S3FileSystem(
        key=location.access_key,
        secret=location.secret_key,
        endpoint_url=location.url,
        skip_instance_cache=True,
        use_listings_cache=False,
        # The region signs every request; None leaves it to botocore (AWS_DEFAULT_REGION, the
        # profile, else us-east-1).
        client_kwargs={"region_name": location.region} if location.region else {},
        config_kwargs={**S3_CONFIG, "s3": {"addressing_style": "path"}},
    )
    # One attempt per call (s3fs's own retries would wait unseen under spare's): see S3_CONFIG.
    fs.retries = 1
    bucket = location.bucket

    def make_bucket() -> None:
        if fs.exists(bucket):
            return
        # AWS wants the region of a bucket outside us-east-1 named, and refuses us-east-1 named;
        # custom endpoints refuse any LocationConstraint: one is sent only for a region given.
        region = location.region
        where = (
            {"CreateBucketConfiguration": {"LocationConstraint": region}}
            if region and region != "us-east-1"
            else {}
        )
        with contextlib.suppress(FileExistsError):  # created meanwhile
            fs.call_s3("create_bucket", Bucket=bucket, **where)

    return S3Storage(fs, bucket, endpoint=location.url, make_root=make_bucket)


@hookimpl
def spare_register_storages(registry: StorageRegistry) -> None:
    registry.add_storage("s3", make_s3)
