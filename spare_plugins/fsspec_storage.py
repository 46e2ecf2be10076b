"""Storage through fsspec: memory, other protocols, and the base of the S3 storage
(:mod:`spare_plugins.s3_storage`), with the translation of their errors.

fsspec's large API stays in these modules; the core sees :class:`spare.storage.Storage` only.
Which backends can create an object atomically is known here, per protocol, because fsspec's
generic ``mode="create"`` is a check-then-write.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import fsspec
import fsspec.asyn

from spare.errors import (
    AccessDenied,
    BadEndpoint,
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


def s3_code(exc: BaseException) -> str | None:
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


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from, or while handling, down to the first cause; botocore
    keeps the cause of its connection errors in ``kwargs["error"]``."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        kept = getattr(seen, "kwargs", None)
        wrapped = kept.get("error") if isinstance(kept, dict) else None
        seen = (
            seen.__cause__
            or seen.__context__
            or (wrapped if isinstance(wrapped, BaseException) else None)
        )


def _no_such_host(exc: BaseException) -> bool:
    """True when the endpoint's host name does not exist (the DNS answered so): a typo, which
    trying again cannot mend. A DNS server that cannot be reached is EAI_AGAIN, not this."""
    return any(
        isinstance(seen, socket.gaierror) and seen.errno == socket.EAI_NONAME
        for seen in _causes(exc)
    )


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
    code = s3_code(exc)
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
    if _no_such_host(exc):
        return BadEndpoint(
            f"{what}: the endpoint's host name does not exist ({text}); check --endpoint"
        )
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
            raise self._translate(exc, what) from exc

    def _call_iter(self, what: str, items: Iterator[T]) -> Iterator[T]:
        """Like :meth:`_call`, for a generator that talks to the backend as it is consumed."""
        try:
            yield from items
        except StorageError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: BaseException, what: str) -> StorageError:
        """The storage error ``exc`` means; backends with errors of their own extend it."""
        return _translate(exc, what)

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
    registry.add_storage("memory", make_memory)
    # ``file`` (and its alias ``local``) is spare_plugins.local_storage's, which trusts nothing
    # below the bucket directory; fsspec's local filesystem follows symlinks.
    for protocol in fsspec.available_protocols():
        if protocol not in ("s3", "s3a", "file", "local", "memory"):
            registry.add_storage(protocol, make_generic, fallback=True)
