"""``restore --include``, ``ls`` and ``dump``: which entries a pattern names."""

from __future__ import annotations

import pytest

from spare.commands.patterns import Patterns
from spare.errors import UsageError


def test_no_pattern_selects_nothing_by_name_and_is_false() -> None:
    patterns = Patterns([], "/srv")
    assert not patterns
    assert not patterns.names(b"etc")
    assert patterns.selects(b"etc/anything")  # no patterns: everything is listed


def test_an_exact_path_in_any_spelling() -> None:
    patterns = Patterns(["./etc/", "var/log"], "/srv")
    assert patterns
    assert patterns.names(b"etc") and patterns.names(b"var/log")
    assert not patterns.names(b"etc2") and not patterns.names(b"var")
    assert patterns.selects(b"etc/nginx/nginx.conf") and not patterns.selects(b"var/lib")


def test_globs_match_the_whole_path_across_slashes() -> None:
    patterns = Patterns(["*.conf"], "/srv")
    assert patterns.names(b"app.conf") and patterns.names(b"etc/deep/app.conf")
    assert not patterns.names(b"app.conf.bak")


def test_absolute_paths_of_the_backed_up_host() -> None:
    """``/srv/etc`` of a backup of ``/srv`` is ``etc``; ``/srv`` itself is the root; a glob
    over the root's own path is matched against whole host paths."""
    patterns = Patterns(["/srv/etc/", "//srv/www/./index.html", "/srv"], "/srv/")
    assert patterns.patterns == [b"etc", b"www/index.html", b"."]
    assert patterns.host_path(b"etc/a") == b"/srv/etc/a" and patterns.host_path(b".") == b"/srv"
    globbed = Patterns(["/s*/www/*.html"], "/srv")
    assert globbed.names(b"www/index.html") and not globbed.names(b"etc/index.html")
    of_root = Patterns(["/etc/hosts"], "/")
    assert of_root.patterns == [b"etc/hosts"] and of_root.host_path(b"etc") == b"/etc"


@pytest.mark.parametrize("outside", ["/etc/passwd", "/srv2/x", "/sr"])
def test_a_path_outside_the_backup_is_a_usage_error(outside: str) -> None:
    with pytest.raises(UsageError, match="not below /srv"):
        Patterns([outside], "/srv")
