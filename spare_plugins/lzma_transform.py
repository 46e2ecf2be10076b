"""LZMA2 compression, which stores a chunk as it is when it would not shrink."""

from __future__ import annotations

import lzma
import zlib

from spare.hookspecs import hookimpl
from spare.registry import TransformRegistry
from spare.transform import IntegrityError, Transform

RAW = 0
LZMA2 = 1

#: Chosen by measurement (benchmarks/): preset 1 keeps create near 25 MB/s on one core with a
#: ratio close to preset 6, which runs ten times slower and needs ~90 MiB to compress.
DEFAULT_PRESET = 1

#: A chunk is first probed on this many bytes with zlib at level 1 (~100 MB/s on random data,
#: ten times LZMA's speed), so that random or compressed data is not pushed through LZMA.
PROBE_BYTES = 64 * 1024
#: What the probe must shrink to for the chunk to be compressed.
PROBE_RATIO = 0.97


def _filters(preset: int) -> list[dict[str, int]]:
    return [{"id": lzma.FILTER_LZMA2, "preset": preset}]


class LzmaTransform(Transform):
    """Output: one byte of method, then either the data (RAW) or a preset byte and raw LZMA2."""

    name = "lzma"

    def __init__(self, preset: int = DEFAULT_PRESET) -> None:
        self.preset = preset

    def _worth_compressing(self, data: bytes | memoryview) -> bool:
        sample = data[:PROBE_BYTES]
        return len(zlib.compress(sample, 1)) < len(sample) * PROBE_RATIO

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        if self._worth_compressing(data):
            packed = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_filters(self.preset))
            if len(packed) + 2 < len(data) + 1:
                return bytes((LZMA2, self.preset)) + packed
        return bytes((RAW,)) + data

    def decode(self, data: bytes, context: bytes) -> bytes:
        if not data:
            raise IntegrityError("an lzma blob is empty")
        if data[0] == RAW:
            return data[1:]
        if data[0] == LZMA2 and len(data) >= 2:
            try:
                return lzma.decompress(data[2:], format=lzma.FORMAT_RAW, filters=_filters(data[1]))
            except lzma.LZMAError as exc:
                raise IntegrityError(f"an lzma blob does not decompress ({exc})") from exc
        raise IntegrityError(f"an lzma blob has an unknown method {data[0]}")


@hookimpl
def spare_register_transforms(registry: TransformRegistry) -> None:
    registry.add_transform("lzma", lambda keys: LzmaTransform())
