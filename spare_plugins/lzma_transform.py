"""LZMA2 compression, which stores a chunk as it is when it would not shrink."""

from __future__ import annotations

import lzma
import struct
import zlib

from spare.errors import IntegrityError
from spare.hookspecs import hookimpl
from spare.registry import TransformRegistry
from spare.transform import Transform

RAW = 0
LZMA2 = 1
DICT_SIZE = struct.Struct(">I")

#: Chosen by measurement on 30 MiB of Python sources in 1 MiB chunks, one core: preset 0 gives a
#: ratio of 0.225 at 35 MB/s, preset 1 0.209 at 29 MB/s, preset 6 0.181 at 4.5 MB/s. Preset 0
#: also needs ~5 MiB less memory than preset 1, which create's 100 MiB budget (with s3fs taking
#: ~37 MiB once it has made a request) can ill spare; preset 6 would need ~90 MiB on its own.
DEFAULT_PRESET = 0

#: A chunk is first probed with zlib at level 1 (~100 MB/s on random data, ten times LZMA's
#: speed), so that random or compressed data is not pushed through LZMA. The probe reads pieces
#: of this size spread over the chunk, one per PROBE_SPACING bytes, at least two: on the Python
#: 3.11 library plus random files it decides as a 64 KiB prefix did for all but 6 of 8,458 files,
#: in half the time.
PROBE_PIECE = 4096
PROBE_SPACING = 128 * 1024
#: What the probe must shrink to for the chunk to be compressed.
PROBE_RATIO = 0.97

#: LZMA2's smallest dictionary. The dictionary never needs to exceed the data: a small file
#: compresses the same with a dictionary of its size, and setting up a 1 MiB one costs 40 times
#: more than compressing a few KiB.
MIN_DICT = 4096


#: The dictionary size of each preset (xz(1), "Custom compressor filter chains").
PRESET_DICT = (
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
)


def _dict_size(preset: int, length: int) -> int:
    size = MIN_DICT
    while size < length and size < PRESET_DICT[preset]:
        size *= 2
    return min(size, PRESET_DICT[preset])


def _sample(data: bytes | memoryview) -> bytes | memoryview:
    """Pieces of ``data`` spread from its start to its end, or all of it when it is small."""
    pieces = max(2, len(data) // PROBE_SPACING)
    if len(data) <= pieces * PROBE_PIECE:
        return data
    step = (len(data) - PROBE_PIECE) // (pieces - 1)
    return b"".join(data[i * step : i * step + PROBE_PIECE] for i in range(pieces))


class LzmaTransform(Transform):
    """Output: one byte of method, then the data (RAW), or the dictionary size and raw LZMA2."""

    name = "lzma"

    def __init__(self, preset: int = DEFAULT_PRESET) -> None:
        self.preset = preset

    def _worth_compressing(self, data: bytes | memoryview) -> bool:
        sample = _sample(data)
        return len(zlib.compress(sample, 1)) < len(sample) * PROBE_RATIO

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        if self._worth_compressing(data):
            dict_size = _dict_size(self.preset, len(data))
            packed = lzma.compress(
                data,
                format=lzma.FORMAT_RAW,
                filters=[{"id": lzma.FILTER_LZMA2, "preset": self.preset, "dict_size": dict_size}],
            )
            if len(packed) + 1 + DICT_SIZE.size < len(data) + 1:
                return bytes((LZMA2,)) + DICT_SIZE.pack(dict_size) + packed
        return bytes((RAW,)) + data

    def decode(self, data: bytes, context: bytes) -> bytes:
        if not data:
            raise IntegrityError("an lzma blob is empty")
        if data[0] == RAW:
            return data[1:]
        if data[0] == LZMA2 and len(data) > DICT_SIZE.size:
            (dict_size,) = DICT_SIZE.unpack_from(data, 1)
            try:
                return lzma.decompress(
                    data[1 + DICT_SIZE.size :],
                    format=lzma.FORMAT_RAW,
                    filters=[{"id": lzma.FILTER_LZMA2, "dict_size": dict_size}],
                )
            except lzma.LZMAError as exc:
                raise IntegrityError(f"an lzma blob does not decompress ({exc})") from exc
        raise IntegrityError(f"an lzma blob has an unknown method {data[0]}")


@hookimpl
def spare_register_transforms(registry: TransformRegistry) -> None:
    registry.add_transform("lzma", lambda keys: LzmaTransform())
