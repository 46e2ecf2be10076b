"""Sparse files read by their data extents (``SEEK_DATA``/``SEEK_HOLE``): holes are never read."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


class Extent:
    """A byte range of an open file, readable as a stream (for the chunker)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.position = start
        self.end = end

    def readinto(self, buffer: memoryview) -> int:
        wanted = min(len(buffer), self.end - self.position)
        if wanted <= 0:
            return 0
        got = os.preadv(self.fd, [buffer[:wanted]], self.position)
        self.position += got
        return got


def extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is data) runs of the first ``size`` bytes of a file."""
    position = 0
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data after position
                raise
            data = size
        data = min(data, size)
        if data > position:
            yield position, data, False
        if data >= size:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        yield data, hole, True
        position = hole
