"""Storage through fsspec: S3 (s3fs) for every S3-compatible endpoint, memory, other protocols.

fsspec's large API stays in this module; the core sees :class:`spare.storage.Storage` only. Which
backends can create an object atomically is known here, per protocol, because fsspec's generic
``mode="create"`` is a check-then-write.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO, TypeVar

import fsspec
import fsspec.asyn

from spare.errors import (
    AccessDenied,
    MissingPlugin,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageTransient,
    StorageUnreachable,
    UsageError,
)
from spare.hookspecs import hookimpl
from spare.registry import StorageRegistry
from spare.storage import ObjectInfo, Storage, StorageLocation

T = TypeVar("T")

# botocore gives up on a dead endpoint after these; the core's retry wrapper retries transient ones.
S3_CONFIG = {
    "connect_timeout": 10,
    "read_timeout": 120,
    "retries": {"max_attempts": 3},
    # Checksum headers only where the API demands them: Ceph RGW rejects trailing checksums, and
    # packs are named by their SHA-256, which verify checks anyway.
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


#: S3 error codes whose meaning s3fs loses on some servers (Ceph RGW's refused conditional
#: write reaches us as a bare EINVAL): looked up on the botocore error behind s3fs's.
S3_CODES: dict[str, type[StorageError]] = {
    "PreconditionFailed": ObjectExists,
    "NoSuchKey": ObjectNotFound,
    "NoSuchBucket": ObjectNotFound,
    "AccessDenied": AccessDenied,
    "InvalidAccessKeyId": AccessDenied,
    "SignatureDoesNotMatch": AccessDenied,
    "ConditionalRequestConflict": StorageTransient,  # a concurrent conditional write: retry
    "SlowDown": StorageTransient,
    "RequestTimeout": StorageTransient,
    "InternalError": StorageTransient,
    "ServiceUnavailable": StorageTransient,
    # The body the server got is not the one sent (Content-MD5 or signed hash differ, or it is
    # shorter than its Content-Length): sent again whole, it may arrive whole.
    "BadDigest": StorageTransient,
    "IncompleteBody": StorageTransient,
    "XAmzContentSHA256Mismatch": StorageTransient,
}

#: Exceptions (by class name, from aiohttp, botocore, http.client, s3fs) that mean the connection
#: broke or the reply was cut short after the endpoint was reached: worth another attempt.
TRANSIENT_NAMES = frozenset(
    {
        "ReadTimeoutError",
        "ConnectionClosedError",  # reset or closed by the server, before or during the reply
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientPayloadError",  # a body shorter than its Content-Length (aiohttp)
        "ContentLengthError",
        "TransferEncodingError",
        "ResponseStreamingError",  # the connection broke while the body was read (botocore)
        "IncompleteReadError",
        "IncompleteRead",
        "ResponseParserError",  # half an XML reply
        "HTTPClientError",
    }
)


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code of the botocore ClientError behind ``exc``, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return str(response["Error"].get("Code"))
        seen = seen.__cause__ or seen.__context__
    return None


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of the botocore ClientError behind ``exc``, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and "ResponseMetadata" in response:
            status = response["ResponseMetadata"].get("HTTPStatusCode")
            return status if isinstance(status, int) else None
        seen = seen.__cause__ or seen.__context__
    return None


def _cannot_connect(exc: BaseException) -> bool:
    """True when no connection to the endpoint could be made at all (refused, no route, no such
    host, connect timeout): retrying at once is futile. A connection that broke after it was made
    is not this: aiohttp's reset shows as botocore's EndpointConnectionError as well."""
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ClientConnectorError" in names or "ConnectTimeoutError" in names:
        return True
    if "EndpointConnectionError" in names:
        cause = getattr(exc, "kwargs", {}).get("error")
        return cause is None or _cannot_connect(cause)
    return False


def _translate(exc: BaseException, what: str) -> StorageError:
    """Map an fsspec/s3fs/botocore exception to spare's storage errors."""
    code = _s3_code(exc)
    if code in S3_CODES:
        error = S3_CODES[code]
        if error is AccessDenied:
            return AccessDenied(f"{what}: access denied ({code}); check the access and secret key")
        if error is ObjectExists:
            return ObjectExists(f"{what}: already exists")
        return error(f"{what}: {code}")
    status = _http_status(exc)
    if status is not None and (status >= 500 or status == 429):  # the server's trouble, or busy
        return StorageTransient(f"{what}: HTTP {status} ({code})")
    name = type(exc).__name__
    module = type(exc).__module__
    text = str(exc) or name
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFound(f"{what}: not found ({text})")
    if isinstance(exc, FileExistsError):
        return ObjectExists(f"{what}: already exists")
    if name == "ProfileNotFound":  # AWS_PROFILE names a profile in neither AWS file
        return AccessDenied(
            f"{what}: {text}; set AWS_PROFILE to a profile of ~/.aws/credentials or "
            "~/.aws/config, or give --access-key and --secret-key"
        )
    if isinstance(exc, PermissionError) or name in (
        "NoCredentialsError",
        "PartialCredentialsError",
    ):
        return AccessDenied(f"{what}: access denied ({text}); check the access and secret key")
    if _cannot_connect(exc):
        return StorageUnreachable(f"{what}: cannot reach the endpoint ({text})")
    if name == "EndpointConnectionError":  # botocore's text says it could not connect: it did
        return StorageTransient(
            f"{what}: the connection broke ({getattr(exc, 'kwargs', {}).get('error')})"
        )
    if (
        isinstance(exc, TimeoutError | ConnectionError)
        or name in TRANSIENT_NAMES
        or (module.startswith("botocore") and "Connection" in name)
    ):
        return StorageTransient(f"{what}: {text}")
    if isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EBUSY, errno.EAGAIN):
        return StorageTransient(f"{what}: {text}")
    return StorageError(f"{what}: {text}")


class FsspecStorage(Storage):
    """One bucket as the directory ``root`` of an fsspec filesystem."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        *,
        atomic_create: bool,
        make_root: Callable[[], None],
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.atomic_create = atomic_create
        self._make_root = make_root
        self._create_lock = threading.Lock()

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, what) from exc

    def _call_iter(self, what: str, items: Iterator[T]) -> Iterator[T]:
        """Like :meth:`_call`, for a generator that talks to the backend as it is consumed."""
        try:
            yield from items
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, what) from exc

    def ensure_bucket(self) -> None:
        self._call(f"creating {self.root}", self._make_root)

    def put(self, key: str, data: bytes) -> None:
        self._call(f"storing {key}", lambda: self.fs.pipe_file(self._path(key), data))

    def create(self, key: str, data: bytes) -> None:
        def create() -> None:
            with self._create_lock:  # makes the memory backend atomic within its one process
                self.fs.pipe_file(self._path(key), data, mode="create")

        self._call(f"creating {key}", create)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._call(
            f"reading {key}", lambda: self.fs.cat_file(self._path(key), start=start, end=end)
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        def listing() -> list[ObjectInfo]:
            try:
                found = self.fs.find(self._path(prefix).rstrip("/"), detail=True)
            except FileNotFoundError:
                return []
            return [
                ObjectInfo(_relative(name, self.root), int(info.get("size") or 0))
                for name, info in found.items()
                if info.get("type") != "directory"
            ]

        return iter(self._call(f"listing {self.root}", listing))

    def delete(self, keys: Iterable[str]) -> None:
        paths = [self._path(key) for key in keys]
        if not paths:
            return
        self._call("deleting objects", lambda: self._delete(paths))

    def _delete(self, paths: Sequence[str]) -> None:
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            for path in paths:  # some backends refuse the whole batch for one missing key
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)


def _relative(name: str, root: str) -> str:
    name = name.lstrip("/")
    root = root.lstrip("/")
    return name[len(root) + 1 :] if name.startswith(root + "/") else name


class S3Storage(FsspecStorage):
    """S3 through s3fs, every object checked on the way in and on the way out.

    A PUT carries its Content-MD5, and a HEAD then checks the size the server kept. A GET checks
    the length of what came back against the range asked for and the size the server states, so
    a reply cut short is retried, never taken for the object's end.
    """

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
            if ranged and _s3_code(exc) == "InvalidRange":
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
                except FileNotFoundError:  # no bucket: nothing in it
                    return
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


def make_s3(location: StorageLocation) -> Storage:
    # Imported only when an S3 endpoint is used: it adds ~21 MiB of RSS, its first request ~16 more.
    import s3fs

    fs = s3fs.S3FileSystem(
        key=location.access_key,
        secret=location.secret_key,
        endpoint_url=location.url,
        skip_instance_cache=True,
        use_listings_cache=False,
        config_kwargs={**S3_CONFIG, "s3": {"addressing_style": "path"}},
    )
    bucket = location.bucket

    def make_bucket() -> None:
        if fs.exists(bucket):
            return
        with contextlib.suppress(FileExistsError):  # created meanwhile
            fs.mkdir(bucket)  # no region: custom endpoints refuse a LocationConstraint

    return S3Storage(fs, bucket, atomic_create=True, make_root=make_bucket)


def make_memory(location: StorageLocation) -> Storage:
    fs = fsspec.filesystem("memory")
    root = f"/{location.url.strip('/')}/{location.bucket}".replace("//", "/")
    return FsspecStorage(
        fs, root, atomic_create=True, make_root=lambda: fs.makedirs(root, exist_ok=True)
    )


def make_generic(location: StorageLocation) -> Storage:
    """Any other fsspec protocol: works, but without an atomic create (the lock refuses it)."""
    url = f"{location.scheme}://{location.url}"
    try:
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError as exc:
        raise MissingPlugin(
            f"the {location.scheme}:// storage needs a package that is not installed ({exc})"
        ) from exc
    except OSError as exc:
        raise StorageUnreachable(f"cannot reach the endpoint {url}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot use the endpoint {url}: {exc}") from exc
    root = f"{root.rstrip('/')}/{location.bucket}"
    return FsspecStorage(
        fs, root, atomic_create=False, make_root=lambda: fs.makedirs(root, exist_ok=True)
    )


@hookimpl(trylast=True)
def spare_register_storages(registry: StorageRegistry) -> None:
    registry.add_storage("s3", make_s3)
    registry.add_storage("memory", make_memory)
    # ``file`` (and its alias ``local``) is spare_plugins.local_storage's, which trusts nothing
    # below the bucket directory; fsspec's local filesystem follows symlinks.
    for protocol in fsspec.available_protocols():
        if protocol not in ("s3", "s3a", "file", "local", "memory"):
            registry.add_storage(protocol, make_generic, fallback=True)
