"""Packs (spare.repository.packs): chunks packed and encoded read back whole; damage is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import KEYS, SETTINGS, chain, chunker

from spare.errors import MissingPlugin, RepositoryDamaged
from spare.repository.packs import (
    BLOB_CONTEXT,
    PACK_ALIGN,
    FinishedPack,
    PackWriter,
    read_pack,
    trailer_size,
)

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
            writer.add([(chunk_id, chunk.length)], encode.encode(chunk.data, BLOB_CONTEXT))
    writer.flush()
    plain: dict[bytes, bytes] = {}
    for pack in finished:
        stored = Path(pack.path).read_bytes()
        os.unlink(pack.path)
        decode, records = read_pack(stored, pack.info.name, lambda n: chain(n))
        assert records == list(pack.info.blobs)
        assert len(stored) % PACK_ALIGN == 0 and len(stored) == pack.info.size
        for record in records:
            blob = stored[record.offset : record.offset + record.length]
            plain[record.chunk_id] = decode.decode(blob, BLOB_CONTEXT)
            assert len(plain[record.chunk_id]) == record.size
    assert b"".join(plain[chunk_id] for chunk_id in ids) == data


def one_blob_pack(tmp_path: Path) -> FinishedPack:
    finished: list[FinishedPack] = []
    writer = PackWriter(chain(["aes-siv"]), 1 << 20, str(tmp_path), finished.append)
    writer.add([(b"i" * 32, 4)], chain(["aes-siv"]).encode(b"data", BLOB_CONTEXT))
    writer.flush()
    return finished[0]


def read_and_decode(stored: bytes, name: str) -> None:
    """Parse the pack and decode its blobs, as verify does; raises on any damage."""
    decode, records = read_pack(stored, name, chain)
    for record in records:
        blob = stored[record.offset : record.offset + record.length]
        decode.decode(blob, BLOB_CONTEXT)


def test_pack_with_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    """Every byte of a pack is authenticated: by its blob, its trailer, or the framing."""
    pack = one_blob_pack(tmp_path)
    original = Path(pack.path).read_bytes()
    read_and_decode(original, pack.info.name)
    for position in range(len(original)):
        stored = bytearray(original)
        stored[position] ^= 1
        # A changed transform name in the preamble names a transform that is not installed.
        with pytest.raises((RepositoryDamaged, MissingPlugin)):
            read_and_decode(bytes(stored), pack.info.name)


def test_pack_under_another_name_is_refused(tmp_path: Path) -> None:
    """A pack copied under a new name is not a new pack: its trailer names the old one."""
    pack = one_blob_pack(tmp_path)
    stored = Path(pack.path).read_bytes()
    with pytest.raises(RepositoryDamaged, match="not its own"):
        read_pack(stored, os.urandom(32).hex(), chain)


def test_bytes_outside_every_blob_are_refused(tmp_path: Path) -> None:
    """Bytes slipped between the blobs and the trailer are refused, not carried along."""
    pack = one_blob_pack(tmp_path)
    stored = Path(pack.path).read_bytes()
    tail = trailer_size(stored)
    padded = stored[:-tail] + b"junk" + stored[-tail:]
    with pytest.raises(RepositoryDamaged, match="no blob record covers"):
        read_pack(padded, pack.info.name, chain)
