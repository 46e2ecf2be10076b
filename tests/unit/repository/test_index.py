"""The index objects' codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import SETTINGS

from spare.errors import RepositoryDamaged
from spare.repository.index import decode_index, encode_index
from spare.repository.objects import BlobRecord
from spare.repository.packs import PackInfo

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
