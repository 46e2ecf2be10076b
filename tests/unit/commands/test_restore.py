"""``restore --include``: which entries a pattern selects."""

from __future__ import annotations

from spare.commands.restore import Selection


def test_no_pattern_selects_nothing_by_name_and_is_false() -> None:
    selection = Selection([])
    assert not selection
    assert not selection.names(b"etc")


def test_an_exact_path_in_any_spelling() -> None:
    selection = Selection(["./etc/", "var/log"])
    assert selection
    assert selection.names(b"etc") and selection.names(b"var/log")
    assert not selection.names(b"etc2") and not selection.names(b"var")


def test_globs_match_the_whole_path_across_slashes() -> None:
    selection = Selection(["*.conf"])
    assert selection.names(b"app.conf") and selection.names(b"etc/deep/app.conf")
    assert not selection.names(b"app.conf.bak")
