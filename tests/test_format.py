"""Property tests of the repository format: chunker, transforms, packs, index and manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pyfastcdc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spare.errors import IntegrityError, RepositoryDamaged
from spare.keys import KdfParams, KeyRing, unwrap_master_key, wrap_master_key
from spare.plugins import Plugins
from spare.repository.index import decode_index, encode_index
from spare.repository.manifest import Entry, read_manifest
from spare.repository.objects import BlobRecord
from spare.repository.opening import CHUNKER
from spare.repository.packs import FinishedPack, PackInfo, PackWriter, blob_context, read_pack
from spare.transform import TransformChain

KEYS = KeyRing.generate()
PLUGINS = Plugins()
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def chain(names: list[str]) -> TransformChain:
    return PLUGINS.transforms.chain(names, KEYS)


def chunker(keys: KeyRing, small: bool = True) -> pyfastcdc.FastCDC:
    if small:  # small chunks so that examples of a few hundred KiB cut into several
        return pyfastcdc.FastCDC(4096, min_size=1024, max_size=16384, seed=keys.chunker_seed)
    return pyfastcdc.FastCDC(
        CHUNKER["avg"], min_size=CHUNKER["min"], max_size=CHUNKER["max"], seed=keys.chunker_seed
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


def test_a_swapped_blob_is_refused() -> None:
    encode = chain(["lzma", "aes-siv"])
    one = encode.encode(b"first", blob_context(b"1" * 32))
    with pytest.raises(IntegrityError):
        encode.decode(one, blob_context(b"2" * 32))


def test_pack_with_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    finished: list[FinishedPack] = []
    writer = PackWriter(chain(["aes-siv"]), 1 << 20, str(tmp_path), finished.append)
    writer.add(b"i" * 32, chain(["aes-siv"]).encode(b"data", blob_context(b"i" * 32)), 4)
    writer.flush()
    stored = bytearray(Path(finished[0].path).read_bytes())
    stored[len(stored) // 2] ^= 1
    with pytest.raises(RepositoryDamaged):
        read_pack(bytes(stored), finished[0].info.name, chain)


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


names = st.binary(min_size=1, max_size=255).filter(lambda n: b"/" not in n and b"\0" not in n)
entries = st.builds(
    Entry,
    path=st.lists(names, min_size=1, max_size=4).map(b"/".join),
    type=st.sampled_from(["f", "d", "l", "p", "c", "b"]),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    mtime_ns=st.integers(-(2**62), 2**62),
    user=st.one_of(st.none(), st.text(max_size=20)),
    group=st.one_of(st.none(), st.text(max_size=20)),
    size=st.integers(0, 2**50),
    chunks=st.lists(st.binary(min_size=32, max_size=32), max_size=5),
    target=st.one_of(st.none(), st.binary(max_size=300)),
    link=st.one_of(st.none(), names),
    rdev=st.integers(0, 2**32),
)


@given(st.lists(entries, max_size=30), st.integers(1, 500))
@SETTINGS
def test_manifest_round_trip_across_chunk_cuts(items: list[Entry], cut: int) -> None:
    """Any bytes in names survive, whatever the chunk boundaries in the manifest stream."""
    stream = b"".join(entry.to_line() for entry in items)
    pieces = (
        {bytes([i]) * 32: stream[at : at + cut] for i, at in enumerate(range(0, len(stream), cut))}
        if len(stream) // cut < 256
        else None
    )
    if pieces is None:
        pieces = {os.urandom(32): stream}
    assert list(read_manifest(list(pieces), pieces.__getitem__)) == items


def test_password_wraps_the_master_key() -> None:
    params = KdfParams.generate()
    wrapped = wrap_master_key(KEYS.master, params.derive("right"))
    assert unwrap_master_key(wrapped, params.derive("right")) == KEYS.master
    from spare.errors import WrongPassword

    with pytest.raises(WrongPassword):
        unwrap_master_key(wrapped, params.derive("wrong"))
