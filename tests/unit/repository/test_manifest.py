"""Manifests (spare.repository.manifest): any entry survives, however the stream is cut."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from support.formats import SETTINGS

from spare.repository.manifest import Entry, read_manifest

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
