"""Reversible byte transforms (compression, encryption) and the chain that applies them in order."""

from __future__ import annotations

import abc
from collections.abc import Sequence


class Transform(abc.ABC):
    """A reversible transform of one stored blob.

    ``context`` names what the bytes are (a chunk id, "snapshot", ...); encrypting transforms MUST
    authenticate it, so that a blob cannot be passed off as another. :meth:`decode` MUST raise
    :class:`~spare.errors.IntegrityError` for input that :meth:`encode` did not produce with the
    same key and context.
    """

    #: Written into every object; frozen once released.
    name: str

    @abc.abstractmethod
    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        """``data`` may be a memoryview into a buffer that is reused: do not keep it."""

    @abc.abstractmethod
    def decode(self, data: bytes, context: bytes) -> bytes: ...


class TransformChain:
    """Transforms applied in order on the way in, in reverse order on the way out."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    @property
    def names(self) -> list[str]:
        return [transform.name for transform in self.transforms]

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        for transform in self.transforms:
            data = transform.encode(data, context)
        return bytes(data)  # no copy when the last transform returned bytes

    def decode(self, data: bytes, context: bytes) -> bytes:
        for transform in reversed(self.transforms):
            data = transform.decode(data, context)
        return data
