"""Zstandard compression for spare: the transform ``zstd``, which stores a blob as it is when it
would not shrink.

Output: one method byte, then the data as it is (:data:`RAW`) or one zstd frame (:data:`ZSTD`)
that records its content size and a checksum of the content. The name ``zstd`` and this format
are written into every object the transform touches: they never change meaning.
"""

from __future__ import annotations

import threading

import zstandard

from spare.errors import IntegrityError
from spare.hookspecs import hookimpl
from spare.registry import TransformRegistry
from spare.transform import Transform

RAW = 0
ZSTD = 1

#: Chosen by measurement on 30 MiB of CPython 3.11's standard library sources in 1 MiB chunks,
#: one core, zstandard 0.25 (libzstd 1.5.7): level 1 gives a ratio of 0.228 at 418 MB/s, level 2
#: 0.222 at 366 MB/s, level 3 0.212 at 295 MB/s (level -1: 0.268 at 456 MB/s); spare's LZMA
#: (preset 0) gives 0.203 at 36 MB/s. The point of this plugin is speed: a create on one core as
#: fast as restic's (zstd at its fastest level). Level 3 would save 7 % of the bytes for 40 %
#: more time compressing; level 1 it is.
LEVEL = 1

# No compressibility probe, unlike lzma: level 1 gets through a MiB of random data in ~0.26 ms
# (4 GB/s, libzstd gives up on blocks that do not compress), while a zlib probe of its first
# 64 KiB alone takes ~0.9 ms. The content checksum (XXH64) costs ~3 % at level 1 and makes this
# transform refuse a damaged frame by itself, before the chunk id check does.

#: The context spare gives a blob of chunks (``spare.repository.packs.BLOB_CONTEXT``): ``b"blob "``.
#: Other contexts are objects spare reads whole (index objects, snapshot
#: roots, locks). The plugin's tests check that spare still names chunks so.
CHUNK_CONTEXT = b"blob "
#: The most a chunk's frame may decompress to. Chunks are at most the chunker's maximum: 2 MiB
#: in new repositories, 8 MiB at most in any config spare accepts
#: (``spare.repository.opening.CHUNKER_BOUNDS``); twice that leaves room for spare to raise it.
CHUNK_LIMIT = 16 << 20
#: The most any other frame may decompress to. Spare reads an index object of up to 64 MiB and a
#: snapshot root of up to 16 MiB (``spare.repository.objects.MAX_BYTES``); an index is mostly
#: random chunk ids, which do not compress, so twice the largest is a wide margin.
OBJECT_LIMIT = 128 << 20


def size_limit(context: bytes) -> int:
    """The most a blob with ``context`` may decompress to; encode stores larger data as is."""
    return CHUNK_LIMIT if context.startswith(CHUNK_CONTEXT) else OBJECT_LIMIT


class ZstdTransform(Transform):
    """Zstandard at :data:`LEVEL`; decoding refuses any frame that encode would not write.

    A frame must state its content size, at most :func:`size_limit`, and carry a checksum: the
    output buffer is allocated from the stated size, so a frame that would inflate past the
    limit (a "zip bomb") is refused before anything is allocated, and one that lies about its
    size fails inside that buffer.

    zstandard's compressors and decompressors must not be used by two threads at once (sharing
    one crashed the interpreter in a test), and making one per call takes two to four times as
    long on a small file's 4 KiB chunk, so each thread gets its own and keeps it.
    """

    name = "zstd"

    def __init__(self, level: int = LEVEL) -> None:
        self.level = level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
            self._local.compressor = compressor
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        if len(data) <= size_limit(context):
            packed = self._compressor().compress(data)
            if len(packed) < len(data):
                return bytes((ZSTD,)) + packed
        return bytes((RAW,)) + data

    def decode(self, data: bytes, context: bytes) -> bytes:
        if not data:
            raise IntegrityError("a zstd blob is empty")
        if data[0] == RAW:
            return data[1:]
        if data[0] != ZSTD:
            raise IntegrityError(f"a zstd blob has an unknown method {data[0]}")
        frame = memoryview(data)[1:]
        try:
            _check_frame(zstandard.get_frame_parameters(frame), size_limit(context))
            return self._decompressor().decompress(frame, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"a zstd blob does not decompress ({exc})") from exc


def _check_frame(frame: zstandard.FrameParameters, limit: int) -> None:
    """Refuse a frame header that encode does not write, before anything is allocated."""
    if frame.content_size == zstandard.CONTENTSIZE_UNKNOWN:
        raise IntegrityError("a zstd blob does not state its size")
    if frame.content_size > limit:
        raise IntegrityError(
            f"a zstd blob claims to decompress to {frame.content_size} bytes, more than the "
            f"{limit} a blob can hold"
        )
    # Encode stores empty data as is; libzstd would also return an empty frame's content
    # without reading the rest of the input.
    if frame.content_size == 0 or not frame.has_checksum or frame.dict_id:
        raise IntegrityError("a zstd blob has a frame header that spare-zstd does not write")


@hookimpl
def spare_register_transforms(registry: TransformRegistry) -> None:
    registry.add_transform("zstd", lambda keys: ZstdTransform())
