"""``--skip``: which relative paths it names, and the walk that never follows a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spare.fstree import Skipper, normalise_skip, walk


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
    found = [f.relative for f in walk(bytes(tmp_path), Skipper(["cache"]), warnings.append)]
    assert found == [b".", b"keep", b"keep/file", b"link"]
    assert warnings == []
