"""Manifests (spare.repository.manifest): any entry survives, however the stream is cut."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.formats import SETTINGS

from spare.errors import RepositoryDamaged
from spare.repository.manifest import Entry, ManifestLines, read_manifest

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


def _entry(path: bytes) -> Entry:
    return Entry(path=path, type="f", mode=0o644, uid=0, gid=0, mtime_ns=0)


@given(st.integers(8, 400), st.data())
@SETTINGS
def test_a_lost_chunk_costs_only_the_entries_it_holds(cut: int, data: st.DataObject) -> None:
    """Read resiliently, a manifest with an unreadable chunk yields every entry that lies wholly
    in readable chunks, in order, and names the stretch it lost by the entries around it."""
    items = [_entry(b"dir/file-%03d" % index) for index in range(40)]
    lines = [entry.to_line() for entry in items]
    stream = b"".join(lines)
    pieces = [stream[at : at + cut] for at in range(0, len(stream), cut)]
    lost = data.draw(st.integers(1, len(pieces) - 1))  # the first chunk holds the root
    ids = [index.to_bytes(32, "big") for index in range(len(pieces))]

    def read_chunk(chunk_id: bytes) -> bytes:
        index = int.from_bytes(chunk_id, "big")
        if index == lost:
            raise RepositoryDamaged("blob damaged")
        return pieces[index]

    reader = ManifestLines(ids, read_chunk, resilient=True)
    got = [Entry.from_line(line) for line in reader]
    start, end = sum(map(len, pieces[:lost])), sum(map(len, pieces[: lost + 1]))
    offsets = [sum(map(len, lines[:i])) for i in range(len(lines) + 1)]
    # Every entry wholly before the lost chunk, and every entry that starts after its end (one
    # that starts right at its end is skipped too: there is no telling that it does).
    kept = [i for i in range(len(items)) if offsets[i + 1] <= start or offsets[i] > end]
    assert got == [items[i] for i in kept]
    (part,) = reader.lost
    before_gap = [i for i in kept if offsets[i + 1] <= start]
    after_gap = [i for i in kept if offsets[i] > end]
    assert part.after == (items[before_gap[-1]].path if before_gap else None)
    assert part.before == (items[after_gap[0]].path if after_gap else None)
    with pytest.raises(RepositoryDamaged):
        list(ManifestLines(ids, read_chunk))
