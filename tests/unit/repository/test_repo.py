"""The pack index and the chunker settings of spare.repository.repo."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import KEYS, SETTINGS, chunker

from spare.errors import RepositoryDamaged
from spare.keys import KeyRing
from spare.repository.cache import PackInfo
from spare.repository.objects import BlobRecord
from spare.repository.repo import CHUNKER, decode_index, encode_index


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


records = st.builds(
    BlobRecord,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
packs = st.builds(
    PackInfo,
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.sampled_from([("lzma", "aes-siv"), ("aes-siv",), ("zstd", "aes-siv")]),
    st.integers(0, 2**40),
    st.lists(records, max_size=20).map(tuple),
)


@given(st.lists(packs, max_size=10))
@SETTINGS
def test_index_round_trip(infos: list[PackInfo]) -> None:
    assert list(decode_index(encode_index(infos))) == infos


def test_truncated_index_is_damage() -> None:
    body = encode_index([PackInfo("ab" * 32, ("aes-siv",), 10, ())])
    with pytest.raises(RepositoryDamaged):
        list(decode_index(body[:-3]))
