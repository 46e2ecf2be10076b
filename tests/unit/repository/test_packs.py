"""Packs (spare.repository.packs): chunks packed and encoded read back whole; damage is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import KEYS, SETTINGS, chain, chunker

from spare.errors import RepositoryDamaged
from spare.repository.packs import FinishedPack, PackWriter, blob_context, read_pack

contents = st.one_of(
    st.binary(max_size=200_000),
    st.builds(
        lambda text, n: (text * n)[:300_000],
        st.binary(min_size=1, max_size=64),
        st.integers(1, 10_000),
    ),
)


@given(data=contents, names=st.sampled_from([["lzma", "aes-siv"], ["aes-siv"]]))
@SETTINGS
def test_chunks_packed_and_read_back(tmp_path: Path, data: bytes, names: list[str]) -> None:
    """Content cut into chunks, encoded into a pack, reads back whole from the pack alone."""
    encode = chain(names)
    finished: list[FinishedPack] = []
    writer = PackWriter(encode, 50_000, str(tmp_path), finished.append)
    ids = []
    for chunk in chunker(KEYS).cut_buf(data):
        chunk_id = KEYS.chunk_id(chunk.data)
        ids.append(chunk_id)
        if chunk_id not in writer and all(
            chunk_id not in {b.chunk_id for b in p.info.blobs} for p in finished
        ):
            writer.add(chunk_id, encode.encode(chunk.data, blob_context(chunk_id)), chunk.length)
    writer.flush()
    plain: dict[bytes, bytes] = {}
    for pack in finished:
        stored = Path(pack.path).read_bytes()
        os.unlink(pack.path)
        decode, records = read_pack(stored, pack.info.name, lambda n: chain(n))
        assert records == list(pack.info.blobs)
        for record in records:
            blob = stored[record.offset : record.offset + record.length]
            plain[record.chunk_id] = decode.decode(blob, blob_context(record.chunk_id))
            assert len(plain[record.chunk_id]) == record.size
    assert b"".join(plain[chunk_id] for chunk_id in ids) == data


def test_pack_with_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    finished: list[FinishedPack] = []
    writer = PackWriter(chain(["aes-siv"]), 1 << 20, str(tmp_path), finished.append)
    writer.add(b"i" * 32, chain(["aes-siv"]).encode(b"data", blob_context(b"i" * 32)), 4)
    writer.flush()
    stored = bytearray(Path(finished[0].path).read_bytes())
    stored[len(stored) // 2] ^= 1
    with pytest.raises(RepositoryDamaged):
        read_pack(bytes(stored), finished[0].info.name, chain)
