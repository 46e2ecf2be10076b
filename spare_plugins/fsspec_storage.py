"""Storage through fsspec: S3 (s3fs) for every S3-compatible endpoint, memory, other protocols.

fsspec's large API stays in this module; the core sees :class:`spare.storage.Storage` only. Which
backends can create an object atomically is known here, per protocol, because fsspec's generic
``mode="create"`` is a check-then-write.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import fsspec

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
}


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code of the botocore ClientError behind ``exc``, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return str(response["Error"].get("Code"))
        seen = seen.__cause__ or seen.__context__
    return None


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
    if (module.startswith("botocore") and "Connect" in name) or isinstance(
        exc, ConnectionRefusedError
    ):
        return StorageUnreachable(f"{what}: cannot reach the endpoint ({text})")
    if isinstance(exc, TimeoutError | ConnectionError) or name in (
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ServerDisconnectedError",
        "ClientOSError",
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
    """S3 through s3fs; packs are streamed from their file, never held in memory whole."""

    def create(self, key: str, data: bytes) -> None:
        # One PUT with If-None-Match: *, never a multipart upload (whose completion Ceph RGW
        # does not make conditional); the refusal is recognised by its S3 code (see S3_CODES).
        self._call(
            f"creating {key}",
            lambda: self.fs.call_s3(
                "put_object", Bucket=self.root, Key=key, Body=data, IfNoneMatch="*"
            ),
        )

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        try:
            return super().get(key, start, end)
        except StorageError as exc:
            # S3 refuses a range that starts at or past the end (any range of an empty
            # object); the contract cuts it at the end instead.
            if (start is not None or end is not None) and _s3_code(exc) == "InvalidRange":
                return b""
            raise

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

    def put_file(self, key: str, path: str) -> None:
        def put() -> None:
            with open(path, "rb") as body:
                self.fs.call_s3("put_object", Bucket=self.root, Key=key, Body=body)

        self._call(f"storing {key}", put)


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
