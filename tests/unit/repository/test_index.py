"""The index objects' codec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import SETTINGS

from spare.errors import RepositoryDamaged
from spare.repository.cache import Cache
from spare.repository.chunks import ChunkStore
from spare.repository.index import decode_index, encode_index, sync_index, write_index
from spare.repository.objects import BlobRecord
from spare.repository.packs import PackInfo
from spare.repository.repo import Repository

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


def test_an_index_object_overlapping_a_later_one_is_replaced(
    repo: Repository, tmp_path: Path
) -> None:
    """A create killed between writing a new index object and deleting the one it replaces
    leaves two that name the same pack. The cache keeps one index object per pack, so the
    other is forgotten: its packs are indexed again by the next create, and the prune (which
    keeps only the index objects the cache knows) deletes it; none survives naming a pack the
    prune deletes."""
    store = ChunkStore(repo, pack_size=1 << 16)
    for _ in range(3):
        store.store(os.urandom(40_000))
        store.flush()
    store.finish()
    first, second, third = sorted(repo.cache.unindexed_packs())
    [old] = write_index(repo, [first, second])
    [new] = write_index(repo, [second, third])  # the killed prune's: it moved ``second``

    cold = Cache(tmp_path / "cold.sqlite")
    try:
        assert sync_index(repo, cold).damaged_indexes == []
        [kept] = cold.index_names()
        dropped = ({old, new} - {kept}).pop()
        assert cold.pack_names() == {first, second, third}
        only_in_dropped = {first} if dropped == old else {third}
        assert set(cold.unindexed_packs()) == only_in_dropped
        assert set(cold.packs_indexed_in(kept)) == {first, second, third} - only_in_dropped
    finally:
        cold.close()
