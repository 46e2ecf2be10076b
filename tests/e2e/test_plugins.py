"""Third-party plugins load through the ``spare`` entry point and take part for real.

The plugin here is an installed distribution as far as Python can tell: a module and a
``.dist-info`` directory with an ``entry_points.txt`` on the path, found by importlib.metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.buckets import Backend
from support.harness import REPO_ROOT, SpareRunner, assert_error, assert_ok

from spare.testing.trees import assert_trees_equal, build_rich_tree, snapshot_tree


def test_entry_point_transform_is_recorded_and_required(
    tmp_path: Path, site: Path, file_backend: Backend, run_spare: SpareRunner, password: str
) -> None:
    source, hook_log = tmp_path / "source", tmp_path / "hook.log"
    build_rich_tree(source, random_mib=1, text_mib=1)
    base = {**file_backend.env, "SPARE_PASSWORD": password}
    with_plugin = {
        **base,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)]),
        "SPARE_TEST_HOOK_LOG": str(hook_log),
    }

    assert_ok(run_spare("create", "--path", source, "--compression", "reverse", env=with_plugin))

    # The lifecycle hook saw the commit, once, with the run's figures.
    (event,) = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert event["path"] == str(source) and event["files"] > 0 and event["bytes"] > 0

    # Every pack names the transform in its preamble, so restore knows it needs the plugin.
    packs = [data for key, data in file_backend.objects().items() if key.startswith("packs/")]
    assert packs and all(b"reverse" in data[:64] for data in packs)

    line = assert_error(run_spare("restore", "--path", tmp_path / "without", env=base), 13)
    assert "reverse" in line and "install" in line

    assert_ok(run_spare("restore", "--path", tmp_path / "with", env=with_plugin))
    assert_trees_equal(snapshot_tree(source), snapshot_tree(tmp_path / "with"))


def test_an_unknown_compression_stops_create_before_the_bucket_is_touched(
    tmp_path: Path, file_backend: Backend, run_spare: SpareRunner, password: str
) -> None:
    """A mistyped --compression (or a plugin not installed) writes nothing: an empty bucket
    stays empty, and a later create with an installed transform starts it as usual."""
    source = tmp_path / "source"
    build_rich_tree(source)
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    line = assert_error(run_spare("create", "--path", source, "--compression", "lzam", env=env), 13)
    assert "'lzam'" in line and "lzma" in line
    assert file_backend.objects() == {}
    assert_ok(run_spare("create", "--path", source, env=env))
