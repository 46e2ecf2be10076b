"""The zstd transform: spare's conformance suite, its format, and what a hostile bucket may hold.

Encryption runs after compression, so in a real bucket only the key's holder can hand this
transform a frame; these tests hand it frames directly, as a bug or a stolen key could.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import zstandard

import spare_zstd
from spare.errors import IntegrityError
from spare.keys import KeyRing
from spare.plugins import Plugins, make_plugin_manager
from spare.repository.objects import MAX_BYTES
from spare.repository.opening import CHUNKER_BOUNDS
from spare.repository.packs import BLOB_CONTEXT
from spare.testing.transform import TransformContract
from spare.testing.trees import compressible_text
from spare_zstd import CHUNK_LIMIT, OBJECT_LIMIT, RAW, ZSTD, ZstdTransform

CHUNK = BLOB_CONTEXT
TEXT = compressible_text(100_000)


class TestZstdContract(TransformContract):
    @pytest.fixture
    def transform(self) -> ZstdTransform:
        return ZstdTransform()


@pytest.fixture
def zstd() -> ZstdTransform:
    return ZstdTransform()


def frame_of(data: bytes, *, checksum: bool = True, content_size: bool = True) -> bytes:
    """A zstd frame as spare-zstd writes it, unless told to leave something out."""
    compressor = zstandard.ZstdCompressor(
        level=1, write_checksum=checksum, write_content_size=content_size
    )
    return bytes((ZSTD,)) + compressor.compress(data)


def zeros_frame(size: int) -> bytes:
    """A frame of ``size`` zero bytes that states its size, made without holding the zeros."""
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=True).compressobj(size=size)
    piece = bytes(1 << 20)
    out = [compressor.compress(piece) for _ in range(size // len(piece))]
    out.append(compressor.compress(piece[: size % len(piece)]))
    out.append(compressor.flush())
    return bytes((ZSTD,)) + b"".join(out)


def restate_size(blob: bytes, size: int) -> bytes:
    """``blob`` with its frame header stating ``size`` (RFC 8878, 3.1.1.1): the header must hold
    the content size in a 4-byte field, as it does for frames of 64 KiB to 4 GiB."""
    frame = blob[1:]
    descriptor = frame[4]
    assert descriptor >> 6 == 2 and descriptor & 0b11 == 0, "a 4-byte size, no dictionary id"
    start = 5 if descriptor & 0b100000 else 6  # a window descriptor unless single segment
    restated = frame[:start] + size.to_bytes(4, "little") + frame[start + 4 :]
    return blob[:1] + restated


def decode_peak(zstd: ZstdTransform, blob: bytes, context: bytes) -> int:
    """Decode ``blob``, which must be refused, and return the most memory that took."""
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            zstd.decode(blob, context)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- registration ----------------------------------------------------------------------------


def test_installed_plugin_provides_zstd() -> None:
    """The distribution's entry point is what spare finds: no other way to load it is needed."""
    plugins = Plugins(make_plugin_manager())
    assert "zstd" in plugins.transforms
    chain = plugins.transforms.chain(["zstd", "aes-siv"], KeyRing.generate())
    assert isinstance(chain.transforms[0], ZstdTransform)
    assert chain.decode(chain.encode(TEXT, CHUNK), CHUNK) == TEXT


def test_hook_registers_zstd() -> None:
    pm = make_plugin_manager(entry_points=False)
    assert "zstd" not in Plugins(pm).transforms
    pm.register(spare_zstd)
    assert Plugins(pm).transforms.names() == ["aes-siv", "lzma", "zstd"]


# -- format ----------------------------------------------------------------------------------


def test_compressible_data_is_one_frame(zstd: ZstdTransform) -> None:
    encoded = zstd.encode(TEXT, CHUNK)
    assert encoded[0] == ZSTD and len(encoded) < len(TEXT) // 2
    frame = zstandard.get_frame_parameters(encoded[1:])
    assert frame.content_size == len(TEXT) and frame.has_checksum
    assert zstandard.ZstdDecompressor().decompress(encoded[1:]) == TEXT


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(70_000)], ids=["empty", "byte", "random"])
def test_data_that_does_not_shrink_is_stored_as_it_is(zstd: ZstdTransform, data: bytes) -> None:
    assert zstd.encode(data, CHUNK) == bytes((RAW,)) + data
    assert zstd.decode(bytes((RAW,)) + data, CHUNK) == data


def test_limits_hold_every_blob_spare_writes() -> None:
    """If spare grows its chunks or objects past these, the limits must grow first (and a
    release of this plugin must ship before such buckets are written)."""
    assert CHUNKER_BOUNDS["max"][1] <= CHUNK_LIMIT
    assert CHUNK.startswith(spare_zstd.CHUNK_CONTEXT)
    largest = max(MAX_BYTES[kind] for kind in ("config", "lock", "snapshot", "index object"))
    assert 2 * largest <= OBJECT_LIMIT


def test_data_over_the_limit_is_stored_as_it_is(zstd: ZstdTransform) -> None:
    data = bytes(CHUNK_LIMIT + 1)
    assert zstd.decode(zstd.encode(data, CHUNK), CHUNK) == data
    assert zstd.encode(data, CHUNK)[0] == RAW
    assert zstd.encode(data, b"index")[0] == ZSTD  # other objects may be larger


def test_compression_is_level_one(zstd: ZstdTransform) -> None:
    assert zstd.encode(TEXT, CHUNK) == frame_of(TEXT)


# -- what a hostile or damaged bucket may hold -----------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [b"", bytes((ZSTD,)), bytes((2,)) + TEXT, bytes((255,))],
    ids=["empty", "method only", "method 2", "method 255"],
)
def test_malformed_blob_is_refused(zstd: ZstdTransform, blob: bytes) -> None:
    with pytest.raises(IntegrityError):
        zstd.decode(blob, CHUNK)


def test_every_truncation_is_refused(zstd: ZstdTransform) -> None:
    encoded = zstd.encode(compressible_text(3000), CHUNK)
    for length in range(1, len(encoded)):
        with pytest.raises(IntegrityError):
            zstd.decode(encoded[:length], CHUNK)


def test_flipped_bytes_never_give_other_data(zstd: ZstdTransform) -> None:
    """A flip is refused, or falls where libzstd does not look (padding bits) and the original
    comes back: never other data. The checksum is what refuses most."""
    data = compressible_text(3000)
    encoded = zstd.encode(data, CHUNK)
    refused = tried = 0
    for position in range(1, len(encoded)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(encoded)
            damaged[position] ^= mask
            tried += 1
            try:
                assert zstd.decode(bytes(damaged), CHUNK) == data, (position, mask)
            except IntegrityError:
                refused += 1
    assert refused >= tried * 0.99


@pytest.mark.parametrize(
    "blob",
    [
        frame_of(TEXT) + b"\0",
        frame_of(TEXT) + frame_of(TEXT)[1:],
        frame_of(TEXT, checksum=False),
        frame_of(TEXT, content_size=False),
        frame_of(b""),
        # A skippable frame (RFC 8878, 3.1.2) of four bytes.
        bytes((ZSTD,)) + (0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"abcd",
    ],
    ids=["trailing byte", "two frames", "no checksum", "no size", "empty frame", "skippable"],
)
def test_frames_that_encode_does_not_write_are_refused(zstd: ZstdTransform, blob: bytes) -> None:
    with pytest.raises(IntegrityError):
        zstd.decode(blob, CHUNK)


@pytest.mark.parametrize(
    ("context", "limit"), [(CHUNK, CHUNK_LIMIT), (b"index", OBJECT_LIMIT)], ids=["chunk", "object"]
)
def test_zip_bomb_is_refused_without_inflating_it(
    zstd: ZstdTransform, context: bytes, limit: int
) -> None:
    bomb = zeros_frame(limit + 1)
    assert len(bomb) < limit // 1000
    assert decode_peak(zstd, bomb, context) < 1 << 20


def test_frame_that_understates_its_size_fails_in_that_size(zstd: ZstdTransform) -> None:
    """What the header states is all that is allocated: more data than that is refused."""
    liar = restate_size(zeros_frame(2 * CHUNK_LIMIT), 70_000)
    assert decode_peak(zstd, liar, CHUNK) < 1 << 20


def test_frame_that_overstates_its_size_is_refused(zstd: ZstdTransform) -> None:
    with pytest.raises(IntegrityError):
        zstd.decode(restate_size(frame_of(TEXT), len(TEXT) + 1), CHUNK)


def test_decoding_goes_on_after_a_refused_frame(zstd: ZstdTransform) -> None:
    encoded = zstd.encode(TEXT, CHUNK)
    with pytest.raises(IntegrityError):
        zstd.decode(encoded[: len(encoded) // 2], CHUNK)
    assert zstd.decode(encoded, CHUNK) == TEXT


def test_threads_share_one_transform() -> None:
    """Restore decodes in several threads with one transform; zstandard's objects crash the
    process when two threads use one at once, so this runs in a child process."""
    code = textwrap.dedent(
        """
        import threading
        from spare.testing.trees import compressible_text
        from spare_zstd import ZstdTransform

        zstd = ZstdTransform()
        failures = []

        def work(size):
            data = compressible_text(size)
            for _ in range(50):
                if zstd.decode(zstd.encode(data, b"c"), b"c") != data:
                    failures.append(size)

        threads = [threading.Thread(target=work, args=(200_000 + i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
