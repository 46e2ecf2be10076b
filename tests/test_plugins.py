"""Third-party plugins load through the ``spare`` entry point and take part for real.

The plugin here is an installed distribution as far as Python can tell: a module and a
``.dist-info`` directory with an ``entry_points.txt`` on the path, found by importlib.metadata.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import REPO_ROOT, SpareRunner, assert_error, assert_ok

from spare.hookspecs import hookimpl
from spare.plugins import Plugins, make_plugin_manager
from spare.testing.trees import assert_trees_equal, build_rich_tree, snapshot_tree

PLUGIN = '''
import json, os
from spare.hookspecs import hookimpl
from spare.transform import IntegrityError, Transform

MARK = b"rev1"

class Reverse(Transform):
    """Reverses the bytes: useless, but unmistakable in the stored objects."""
    name = "reverse"

    def encode(self, data, context):
        return MARK + bytes(data)[::-1]

    def decode(self, data, context):
        if not data.startswith(MARK):
            raise IntegrityError("not reversed")
        return data[len(MARK):][::-1]

@hookimpl
def spare_register_transforms(registry):
    registry.add_transform("reverse", lambda keys: Reverse())

@hookimpl
def spare_snapshot_committed(snapshot):
    with open(os.environ["SPARE_TEST_HOOK_LOG"], "a") as log:
        log.write(json.dumps(snapshot) + "\\n")
'''


def install_fake_distribution(site: Path) -> None:
    """What ``pip install spare-reverse`` would leave behind, minus pip."""
    (site / "spare_reverse.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "spare_reverse-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spare-reverse\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[spare]\nreverse = spare_reverse\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site)
    return site


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


def test_plugin_manager_loads_entry_points(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    plugins = Plugins(make_plugin_manager())
    assert "reverse" in plugins.transforms
    assert {"lzma", "aes-siv"} <= set(plugins.transforms.names())
    assert plugins.pm.get_plugin("reverse") is not None


def test_duplicate_registration_is_an_error() -> None:
    class Duplicate:
        @hookimpl
        def spare_register_transforms(self, registry: object) -> None:
            registry.add_transform("lzma", lambda keys: None)  # type: ignore[attr-defined]

    pm = make_plugin_manager(entry_points=False)
    pm.register(Duplicate())
    with pytest.raises(ValueError, match="registered twice"):
        Plugins(pm).transforms  # noqa: B018 - the property fills the registry


def test_plugins_are_not_loaded_at_import() -> None:
    """Importing spare must not import plugins (no side effects at import time)."""
    import subprocess
    import sys

    code = "import sys, spare.cli, spare.plugins; print('spare_plugins' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.stdout.strip() == "False"
