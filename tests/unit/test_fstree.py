"""``--skip``: which relative paths it names, and the walk that never follows a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spare.fstree import Selection, Skipper, normalise_skip, walk


@pytest.mark.parametrize("pattern", ["cache", "./cache", "cache/", "././cache//", " cache "])
def test_spellings_of_one_path_are_the_same(pattern: str) -> None:
    assert normalise_skip(pattern) == b"cache"


def test_dot_is_the_root() -> None:
    assert normalise_skip("./") == b"." and normalise_skip(".") == b"."


def test_an_exact_path_names_that_path_only() -> None:
    skip = Skipper(["var/cache"])
    assert skip(b"var/cache", b"/src/var/cache")
    assert not skip(b"var/cache2", b"/src/var/cache2")
    assert not skip(b"var", b"/src/var")
    assert not skip(b"other/var/cache", b"/src/other/var/cache")


def test_a_glob_matches_the_whole_relative_path_across_slashes() -> None:
    skip = Skipper(["*.log", "tmp/?", "build[0-9]"])
    assert skip(b"a.log", b"/src/a.log")
    assert skip(b"deep/down/b.log", b"/src/deep/down/b.log")  # * also matches /
    assert not skip(b"a.log.gz", b"/src/a.log.gz")
    assert skip(b"tmp/x", b"/src/tmp/x") and not skip(b"tmp/xy", b"/src/tmp/xy")
    assert skip(b"build7", b"/src/build7") and not skip(b"buildx", b"/src/buildx")


def test_absolute_paths_are_skipped_wherever_they_are() -> None:
    skip = Skipper([], absolute=[b"/home/root/.cache/spare"])
    assert skip(b"root/.cache/spare", b"/home/root/.cache/spare")
    assert not skip(b"root/.cache", b"/home/root/.cache")


def test_walk_skips_a_directory_without_entering_it(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "file").write_bytes(b"x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "inside").write_bytes(b"y")
    os.symlink("/etc", tmp_path / "link")
    warnings: list[str] = []
    found = [
        f.relative for f in walk(bytes(tmp_path), Selection(Skipper(["cache"])), warnings.append)
    ]
    assert found == [b".", b"keep", b"keep/file", b"link"]
    assert warnings == []


def _tagged(directory: Path, tag: bytes) -> None:
    directory.mkdir(parents=True)
    (directory / "CACHEDIR.TAG").write_bytes(tag)
    (directory / "junk").write_bytes(b"z")


SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def test_a_cache_directory_keeps_only_its_tag(tmp_path: Path) -> None:
    _tagged(tmp_path / "cache", SIGNATURE + b"\n# made by a test\n")
    _tagged(tmp_path / "exact", SIGNATURE)  # the signature alone is enough
    _tagged(tmp_path / "wrong", b"Signature: 00000000000000000000000000000000\n")
    _tagged(tmp_path / "short", SIGNATURE[:-1])
    told: list[str] = []
    found = [
        f.relative
        for f in walk(bytes(tmp_path), Selection(cachedir_tags=True), told.append, told.append)
    ]
    assert found == [
        b".",
        b"cache",
        b"cache/CACHEDIR.TAG",
        b"exact",
        b"exact/CACHEDIR.TAG",
        b"short",
        b"short/CACHEDIR.TAG",
        b"short/junk",
        b"wrong",
        b"wrong/CACHEDIR.TAG",
        b"wrong/junk",
    ]
    assert len(told) == 2 and all("CACHEDIR.TAG" in line for line in told), told
    everything = [f.relative for f in walk(bytes(tmp_path), Selection(), told.append)]
    assert b"cache/junk" in everything and b"exact/junk" in everything


def test_a_tag_that_is_no_regular_file_marks_nothing(tmp_path: Path) -> None:
    signed = tmp_path / "signed"
    signed.write_bytes(SIGNATURE)
    (tmp_path / "link").mkdir()
    os.symlink(signed, tmp_path / "link" / "CACHEDIR.TAG")  # never followed
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "CACHEDIR.TAG")  # never waited on
    (tmp_path / "link" / "data").write_bytes(b"d")
    (tmp_path / "fifo" / "data").write_bytes(b"d")
    found = {f.relative for f in walk(bytes(tmp_path), Selection(cachedir_tags=True), print)}
    assert {b"link/data", b"fifo/data"} <= found


def test_the_root_can_be_a_cache_directory(tmp_path: Path) -> None:
    _tagged(tmp_path / "root", SIGNATURE)
    found = [
        f.relative for f in walk(bytes(tmp_path / "root"), Selection(cachedir_tags=True), print)
    ]
    assert found == [b".", b"CACHEDIR.TAG"]
