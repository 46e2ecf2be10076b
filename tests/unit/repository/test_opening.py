"""The settings a new repository is made with."""

from __future__ import annotations

import os

from support.formats import KEYS, chunker

from spare.keys import KeyRing
from spare.repository.opening import CHUNKER


def test_chunk_boundaries_depend_on_the_key() -> None:
    """The gear table is seeded from the key: cut points do not reveal content across repos."""
    data = os.urandom(8 << 20)
    cuts = [
        [c.offset for c in chunker(keys, small=False).cut_buf(data)]
        for keys in (KEYS, KeyRing.generate())
    ]
    assert cuts[0] != cuts[1]
    sizes = [c.length for c in chunker(KEYS, small=False).cut_buf(data)]
    assert max(sizes) <= CHUNKER["max"] and 512 << 10 < sum(sizes) / len(sizes) < 2 << 20
