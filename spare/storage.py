"""The storage contract the core sees, the wrappers that retry and pace it, and endpoint parsing.

A storage object is bound to one bucket and stores opaque byte strings under ``/``-separated keys.
Keys are ASCII: the core never names an object after user data.
"""

from __future__ import annotations

import abc
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from spare.errors import StorageError, UsageError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StorageLocation:
    """Where a bucket lives: what a storage factory gets.

    ``scheme`` picks the backend (``s3``, ``file``, ``memory``, any other fsspec protocol);
    ``url`` is the endpoint (``https://host:port`` for S3, ``/var/backups`` for ``file``).
    """

    scheme: str
    url: str
    bucket: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    #: The S3 region (AWS buckets outside us-east-1); None for the endpoint's default.
    region: str | None = None

    def describe(self) -> str:
        return (
            f"bucket {self.bucket!r} at {self.scheme}:{self.url}"
            if self.url
            else (f"bucket {self.bucket!r} at {self.scheme}:")
        )


#: What a backend that writes an object under another name first (and renames it) adds to the
#: object's key: ``<key>.tmp-<random hex>``. A killed put leaves such a name; the prune deletes
#: it as spare's own.
TEMPORARY_MARK = ".tmp-"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Storage(abc.ABC):
    """One bucket. Implementations translate their own errors into :mod:`spare.errors`.

    Every method MUST raise :class:`~spare.errors.StorageUnreachable`,
    :class:`~spare.errors.BadEndpoint`, :class:`~spare.errors.AccessDenied` or
    :class:`~spare.errors.StorageTransient` for the failures those names describe, raised
    ``from`` the original; the core retries those whose ``retried`` is true.
    """

    #: True when :meth:`create` is atomic across processes and hosts (a conditional write).
    atomic_create: bool = False

    @abc.abstractmethod
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist; MUST succeed when it exists already."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there.

        MUST be all or nothing: a reader sees the old object, no object, or all of ``data``; an
        interrupted put never leaves a partial object under ``key``.
        """

    def put_file(self, key: str, path: str) -> None:
        """Store the contents of the local file ``path`` under ``key``, like :meth:`put`.

        The default reads the file into memory; backends that can stream SHOULD override it, as
        spare uploads every pack this way and its memory budget is small.
        """
        with open(path, "rb") as file:
            self.put(key, file.read())

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` only if no object is there.

        MUST raise :class:`~spare.errors.ObjectExists` when ``key`` exists. When
        :attr:`atomic_create` is true, of several concurrent creators exactly one MUST succeed.
        """

    @abc.abstractmethod
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """Return the object's bytes, or those in ``[start, end)``.

        MUST raise :class:`~spare.errors.ObjectNotFound` when ``key`` does not exist. A range past
        the end is cut at the end.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix`` (empty, or ending in ``/``).

        MUST reflect writes made by other processes before the call (no listing caches), and MUST
        page through listings of any length.
        """

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete the objects, in any order; keys that do not exist MUST be ignored."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release connections; the storage is not used afterwards."""


class StorageWrapper(Storage):
    """A storage that forwards every call to ``inner``; subclasses override what they change."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.atomic_create = inner.atomic_create

    def ensure_bucket(self) -> None:
        self.inner.ensure_bucket()

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def put_file(self, key: str, path: str) -> None:
        self.inner.put_file(key, path)

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        self.inner.delete(keys)

    def close(self) -> None:
        self.inner.close()


#: The first wait before an operation is tried again, and the longest: an endpoint that is back
#: is found within a minute.
FIRST_WAIT = 1.0
MAX_WAIT = 60.0


class RetryingStorage(StorageWrapper):
    """Tries again what failed in a way that may pass (:attr:`StorageError.retried`: resets,
    timeouts, 5xx, throttling, an endpoint that refuses connections), until the operation has
    failed for ``retry_for`` seconds; then its last error is raised, saying so.

    The waits grow exponentially from :data:`FIRST_WAIT` to :data:`MAX_WAIT`, with full jitter
    (each a random share of that), so that the hosts whose runs one outage broke do not all come
    back at the same instant. Once an operation has given up, the run is failing: each later one
    (the lock's release on the way out) is tried once, not for another ``retry_for``, until one
    succeeds.
    """

    def __init__(
        self,
        inner: Storage,
        retry_for: float = 600.0,
        *,
        first_wait: float | None = None,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.retry_for = retry_for
        # The module's values are read here, not bound at import: the test plugin shortens them.
        self.first_wait = FIRST_WAIT if first_wait is None else first_wait
        self.max_wait = MAX_WAIT if max_wait is None else max_wait
        self._clock = clock
        self._sleep = sleep
        self._gave_up = False

    def _retry(self, call: Callable[[], T]) -> T:
        started = self._clock()
        for attempt in itertools.count(1):
            try:
                done = call()
            except StorageError as exc:
                if not exc.retried:
                    raise
                spent = self._clock() - started
                left = 0.0 if self._gave_up else self.retry_for - spent
                if left <= 0:
                    self._gave_up = True
                    if attempt == 1:
                        raise
                    raise type(exc)(f"{exc}; retried for {spent:.0f} s") from exc
                wait = min(
                    left,
                    random.uniform(0, min(self.max_wait, self.first_wait * 2 ** (attempt - 1))),
                )
                # The error's message starts with what failed ("storing packs/..: HTTP 503").
                log.info(
                    "%s; trying again in %.1f s (attempt %d; giving up in %.0f s)",
                    exc,
                    wait,
                    attempt + 1,
                    left,
                )
            else:
                self._gave_up = False  # the storage is back
                return done
            self._sleep(wait)
        raise AssertionError("unreachable")

    def ensure_bucket(self) -> None:
        self._retry(self.inner.ensure_bucket)

    def put(self, key: str, data: bytes) -> None:
        self._retry(lambda: self.inner.put(key, data))

    def put_file(self, key: str, path: str) -> None:
        self._retry(lambda: self.inner.put_file(key, path))

    def create(self, key: str, data: bytes) -> None:
        self._retry(lambda: self.inner.create(key, data))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._retry(lambda: self.inner.get(key, start, end))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # A listing is retried whole: half a listing must never pass for a whole one.
        return iter(self._retry(lambda: [*self.inner.list(prefix)]))

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._retry(lambda: self.inner.delete(keys))


@dataclass
class Traffic:
    """What a command did to the bucket: objects written and deleted, bytes moved."""

    objects_written: int = 0
    bytes_uploaded: int = 0
    objects_read: int = 0
    bytes_downloaded: int = 0
    objects_deleted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def figures(self) -> dict[str, int]:
        return {
            "objects_written": self.objects_written,
            "bytes_uploaded": self.bytes_uploaded,
            "objects_read": self.objects_read,
            "bytes_downloaded": self.bytes_downloaded,
            "objects_deleted": self.objects_deleted,
        }


class CountingStorage(StorageWrapper):
    """Counts what passes through into a :class:`Traffic` (the command's summary)."""

    def __init__(self, inner: Storage, traffic: Traffic) -> None:
        super().__init__(inner)
        self.traffic = traffic

    def _wrote(self, size: int) -> None:
        with self.traffic._lock:
            self.traffic.objects_written += 1
            self.traffic.bytes_uploaded += size

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        self._wrote(len(data))

    def put_file(self, key: str, path: str) -> None:
        self.inner.put_file(key, path)
        self._wrote(os.stat(path).st_size)

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)
        self._wrote(len(data))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        data = self.inner.get(key, start, end)
        with self.traffic._lock:
            self.traffic.objects_read += 1
            self.traffic.bytes_downloaded += len(data)
        return data

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.inner.delete(keys)
        with self.traffic._lock:
            self.traffic.objects_deleted += len(keys)


#: Writes smaller than this are not held back by the upload limit (they still count towards it).
SMALL_WRITE = 16 << 10


class RateLimitedStorage(StorageWrapper):
    """Keeps the average upload rate under ``bytes_per_second``.

    Each write waits until the bytes written before it have had their time at that rate, so a
    nightly backup never takes more of the host's uplink than it was given. Reads are not
    limited: restore is urgent.
    """

    def __init__(
        self,
        inner: Storage,
        bytes_per_second: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bytes_per_second <= 0:
            raise ValueError("the upload limit must be positive")
        super().__init__(inner)
        self.rate = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._free_at = clock()
        self._slots = threading.Lock()

    def _paced(self, size: int) -> None:
        # The uploader and the lock's refresh write from two threads: each reserves its slot
        # under the lock, then waits for it outside. A small write (the lock, an index, a
        # snapshot root) counts towards the average but never waits behind the packs: the
        # lock's refresh must not be held back until the upload is done.
        with self._slots:
            now = self._clock()
            start = max(now, self._free_at)
            self._free_at = start + size / self.rate
        if start > now and size >= SMALL_WRITE:
            self._sleep(start - now)

    def put(self, key: str, data: bytes) -> None:
        self._paced(len(data))
        self.inner.put(key, data)

    def put_file(self, key: str, path: str) -> None:
        self._paced(os.path.getsize(path))
        self.inner.put_file(key, path)

    def create(self, key: str, data: bytes) -> None:
        self._paced(len(data))
        self.inner.create(key, data)


def parse_endpoint(
    endpoint: str | None,
    bucket: str | None,
    access_key: str | None,
    secret_key: str | None,
    *,
    region: str | None = None,
) -> StorageLocation:
    """Turn the user's ``--endpoint`` and ``--bucket`` into a :class:`StorageLocation`.

    ``host``, ``host:port`` and ``http(s)://host[:port]`` mean S3 (plain hosts use https);
    ``file:///dir`` is a local directory; any other ``scheme://rest`` names a storage plugin.
    """
    if not endpoint:
        raise UsageError(
            "no endpoint given: use --endpoint or SPARE_ENDPOINT "
            "(e.g. file:///var/backups or s3.example.org)"
        )
    if not bucket:
        raise UsageError("no bucket given: use --bucket or SPARE_BUCKET")
    if "/" in bucket or bucket in (".", "..") or not bucket.isprintable():
        raise UsageError(f"bad bucket name {bucket!r}: use letters, digits, dots and dashes")
    if "://" in endpoint:
        scheme, _, rest = endpoint.partition("://")
        scheme = scheme.lower()
        if scheme in ("http", "https"):
            return StorageLocation(
                "s3", f"{scheme}://{rest.rstrip('/')}", bucket, access_key, secret_key, region
            )
        if scheme == "file":
            if not rest.startswith("/"):
                raise UsageError(
                    f"bad endpoint {endpoint!r}: a local directory is given as "
                    "file:///absolute/path"
                )
            return StorageLocation("file", rest.rstrip("/") or "/", bucket)
        return StorageLocation(scheme, rest, bucket, access_key, secret_key, region)
    if "/" in endpoint or not endpoint.strip():
        raise UsageError(
            f"bad endpoint {endpoint!r}: give host, host:port, https://host:port or file:///path"
        )
    return StorageLocation("s3", f"https://{endpoint}", bucket, access_key, secret_key, region)
