"""Encoding blobs (one chunk, or several small ones): in the caller's thread, or in worker
threads with ``--jobs``.

Compression is most of a backup's CPU time, and liblzma, zlib and the other compressors release
the GIL while they work, so threads run them on several cores without copying chunks between
processes. Blobs are delivered in the order their chunks were submitted, so that packs are
filled the same way whatever the number of workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from spare.repository.packs import BLOB_CONTEXT
from spare.transform import TransformChain

#: The chunks of one blob, in order: (id, length).
Members = list[tuple[bytes, int]]

#: What ``deliver`` receives: the chunks of a blob and the blob.
Deliver = Callable[[Members, bytes], None]

#: Bytes of chunks waiting for or being encoded, per worker: enough to keep each busy while
#: the caller reads and hashes the next chunks, small enough for create's memory promise.
QUEUED_PER_JOB = 4 << 20


class Encoder:
    """Encodes blobs with ``chain`` and hands each to ``deliver``, in submission order."""

    def __init__(self, chain: TransformChain, jobs: int, deliver: Deliver) -> None:
        self.chain = chain
        self.deliver = deliver
        self._pool = ThreadPoolExecutor(jobs, "spare-encoder") if jobs > 1 else None
        self._limit = jobs * QUEUED_PER_JOB
        self._queued: deque[tuple[Members, int, Future[bytes]]] = deque()
        self._queued_ids: set[bytes] = set()
        self._queued_bytes = 0

    def __contains__(self, chunk_id: bytes) -> bool:
        """Whether the chunk was submitted and not yet delivered."""
        return chunk_id in self._queued_ids

    def submit(self, members: Members, data: bytes | memoryview) -> None:
        """Encode ``data``, the chunks ``members`` one after the other; with workers, ``data``
        is copied first, as its buffer may be reused."""
        if self._pool is None:
            self.deliver(members, self._encode(data))
            return
        while self._queued and self._queued_bytes + len(data) > self._limit:
            self._deliver_oldest()
        future = self._pool.submit(self._encode, bytes(data))
        self._queued.append((members, len(data), future))
        self._queued_ids.update(chunk_id for chunk_id, _ in members)
        self._queued_bytes += len(data)

    def drain(self) -> None:
        """Deliver every chunk submitted so far."""
        while self._queued:
            self._deliver_oldest()

    def close(self) -> None:
        """Stop the workers; chunks not yet delivered are dropped (the run is failing)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._queued.clear()
        self._queued_ids.clear()
        self._queued_bytes = 0

    def _encode(self, data: bytes | memoryview) -> bytes:
        return self.chain.encode(data, BLOB_CONTEXT)

    def _deliver_oldest(self) -> None:
        members, size, future = self._queued[0]
        blob = future.result()  # an encoder's error is raised here, in the caller's thread
        self._queued.popleft()
        self._queued_ids.difference_update(chunk_id for chunk_id, _ in members)
        self._queued_bytes -= size
        self.deliver(members, blob)
