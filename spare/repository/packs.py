"""Pack objects: many encoded chunks in one object, with an encrypted list of them at the end.

Layout::

    preamble (kind pack, the transforms of every blob)
    blob 0 | blob 1 | ... | blob n-1
    trailer: the number of blob records (u32, big endian), the records, and zeros up to the
             pack size's next multiple of 64 KiB, encrypted with the pack's last transform
             (context b"pack trailer " + the pack's name)
    trailer length (u32, big endian)

A pack is named by 32 random bytes, in hex, chosen when it is written. The name is authenticated
with the trailer, so a pack copied under another name is refused instead of taken for a new
one, and the records tile the body exactly, so every byte of a pack is authenticated by the
trailer or by the blob it belongs to. Pack sizes are multiples of 64 KiB, so a pack's size
tells little of its blobs, and the trailer's length nothing of their number. The index can always
be rebuilt from the packs alone.
"""

from __future__ import annotations

import os
import queue
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from spare.errors import RepositoryDamaged
from spare.repository.objects import (
    BLOB_RECORD,
    KIND_PACK,
    BlobRecord,
    pack_key,
    parse_preamble,
    preamble,
)
from spare.storage import Storage
from spare.transform import TransformChain

TRAILER_CONTEXT = b"pack trailer "
TRAILER_LENGTH = struct.Struct(">I")
_RECORD_COUNT = struct.Struct(">I")

#: Every pack's size is a multiple of this: the padding hides sizes and blob counts (at most
#: 0.8 % of an 8 MiB pack on average).
PACK_ALIGN = 64 << 10


#: What every blob is bound to. A blob may hold several chunks, so it is not bound to one id:
#: each chunk read from it is checked against its keyed id, which no one without the key can
#: forge, so a blob moved or swapped by whoever holds the bucket is caught as damage all the same.
BLOB_CONTEXT = b"blob "


def trailer_context(name: str) -> bytes:
    """What a pack's trailer is bound to: the pack's name."""
    return TRAILER_CONTEXT + name.encode("ascii")


def encode_records(records: list[BlobRecord], padding: int = 0) -> bytes:
    """The trailer's plaintext: the record count, the records, ``padding`` zeros."""
    body = b"".join(record.pack() for record in records)
    return _RECORD_COUNT.pack(len(records)) + body + bytes(padding)


def decode_records(data: bytes) -> list[BlobRecord]:
    if len(data) < _RECORD_COUNT.size:
        raise RepositoryDamaged("a pack trailer is truncated")
    (count,) = _RECORD_COUNT.unpack_from(data)
    end = _RECORD_COUNT.size + count * BLOB_RECORD.size
    if end > len(data) or any(data[end:]):
        raise RepositoryDamaged("a pack trailer has a bad length")
    body = data[_RECORD_COUNT.size : end]
    return [BlobRecord(*fields) for fields in BLOB_RECORD.iter_unpack(body)]


def trailer_chain(chain: TransformChain) -> TransformChain:
    """The transforms of a pack's trailer: the encryption alone, so the padding stays its size."""
    return TransformChain(chain.transforms[-1:])


@dataclass(frozen=True)
class PackInfo:
    """What the index knows of a pack: its name, transforms, size and blob records."""

    name: str
    transforms: tuple[str, ...]
    size: int
    blobs: tuple[BlobRecord, ...]


@dataclass
class FinishedPack:
    info: PackInfo
    path: str


class PackWriter:
    """Collects encoded blobs into a temporary file; hands each full pack to ``on_full``."""

    def __init__(
        self,
        chain: TransformChain,
        target_size: int,
        tmpdir: str,
        on_full: Callable[[FinishedPack], None],
    ) -> None:
        self.chain = chain
        self.target_size = target_size
        self.tmpdir = tmpdir
        self.on_full = on_full
        self._file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._records: list[BlobRecord] = []
        self._pending: set[bytes] = set()

    def __contains__(self, chunk_id: bytes) -> bool:
        """Whether the chunk sits in the pack being filled (not yet in the cache)."""
        return chunk_id in self._pending

    def add(self, members: Sequence[tuple[bytes, int]], blob: bytes) -> None:
        """Add a blob holding the chunks ``members`` (id, length), one after the other."""
        if self._file is None:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed on when full
                dir=self.tmpdir, prefix="pack-", delete=False
            )
            self._name = os.urandom(32).hex()
            self._offset = 0
            self._write(preamble(KIND_PACK, self.chain.names))
        start = 0
        for chunk_id, size in members:
            self._records.append(BlobRecord(chunk_id, self._offset, len(blob), size, start))
            self._pending.add(chunk_id)
            start += size
        self._write(blob)
        if self._offset >= self.target_size:
            self.flush()

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._offset += len(data)

    def flush(self) -> None:
        """Finish the pack being filled, if any."""
        if self._file is None:
            return
        encrypt, context = trailer_chain(self.chain), trailer_context(self._name)
        plain = encode_records(self._records)
        overhead = len(encrypt.encode(plain, context)) - len(plain)
        end = self._offset + len(plain) + overhead + TRAILER_LENGTH.size
        trailer = encrypt.encode(encode_records(self._records, -end % PACK_ALIGN), context)
        self._write(trailer + TRAILER_LENGTH.pack(len(trailer)))
        self._file.close()
        info = PackInfo(self._name, tuple(self.chain.names), self._offset, tuple(self._records))
        finished = FinishedPack(info, self._file.name)
        self._file = None
        self._records = []
        self._pending = set()
        self.on_full(finished)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            os.unlink(self._file.name)
            self._file = None


class Uploader:
    """Uploads finished packs in one background thread, so network time overlaps compression.

    At most one pack waits while one is in flight, which bounds memory. An upload error is raised
    in the caller's thread at its next call.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._queue: queue.Queue[FinishedPack | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self.uploaded_bytes = 0
        self._thread = threading.Thread(target=self._run, name="spare-uploader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (pack := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self.storage.put_file(pack_key(pack.info.name), pack.path)
                    self.uploaded_bytes += pack.info.size
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                os.unlink(pack.path)

    def submit(self, pack: FinishedPack) -> None:
        self.raise_if_failed()
        self._queue.put(pack)

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self, timeout: float | None = None) -> None:
        """Wait for the uploads in flight (the one being sent finishes whole)."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.raise_if_failed()


def read_pack(
    data: bytes, name: str, registry_chain: Callable[[list[str]], TransformChain]
) -> tuple[TransformChain, list[BlobRecord]]:
    """Parse a whole pack: its transform chain and blob records.

    Raises unless the trailer is the one written for the pack ``name`` and its records tile the
    pack's body, from the end of the preamble to the start of the trailer.
    """
    names, start = parse_preamble(data, KIND_PACK)
    chain = registry_chain(names)
    records = parse_trailer(data, chain, name)
    for offset, length, members in blobs_of(records):
        if offset != start or not _follow_each_other(members):
            raise RepositoryDamaged(f"pack {name} has bytes that no blob record covers")
        start += length
    if start != len(data) - trailer_size(data):
        raise RepositoryDamaged(f"pack {name} has bytes that no blob record covers")
    return chain, records


def _follow_each_other(members: list[BlobRecord]) -> bool:
    """Whether the chunks of one blob follow each other from the start of its plaintext."""
    start = 0
    for member in members:
        if member.start != start:
            return False
        start += member.size
    return True


def blobs_of(records: Iterable[BlobRecord]) -> Iterator[tuple[int, int, list[BlobRecord]]]:
    """The blobs of ``records`` sorted by offset: (offset, length, the chunks it holds)."""
    members: list[BlobRecord] = []
    for record in records:
        if members and (record.offset, record.length) != (members[0].offset, members[0].length):
            yield members[0].offset, members[0].length, members
            members = []
        members.append(record)
    if members:
        yield members[0].offset, members[0].length, members


def parse_trailer(tail: bytes, chain: TransformChain, name: str) -> list[BlobRecord]:
    """The blob records from the end of the pack ``name`` (``tail``: a suffix holding the
    trailer); raises unless the trailer was written for that pack."""
    if len(tail) < TRAILER_LENGTH.size:
        raise RepositoryDamaged("a pack is truncated")
    (length,) = TRAILER_LENGTH.unpack(tail[-TRAILER_LENGTH.size :])
    if length + TRAILER_LENGTH.size > len(tail):
        raise RepositoryDamaged("a pack trailer is truncated")
    trailer = tail[-TRAILER_LENGTH.size - length : -TRAILER_LENGTH.size]
    try:
        return decode_records(trailer_chain(chain).decode(trailer, trailer_context(name)))
    except RepositoryDamaged as exc:
        raise RepositoryDamaged(f"pack {name} has a trailer that is not its own ({exc})") from exc


def trailer_size(tail: bytes) -> int:
    """How many bytes from the end of a pack hold its trailer and its length."""
    (length,) = TRAILER_LENGTH.unpack(tail[-TRAILER_LENGTH.size :])
    return length + TRAILER_LENGTH.size
