"""Plugins (spare.plugins): entry points are loaded, names registered once, nothing at import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.harness import REPO_ROOT

from spare.hookspecs import hookimpl
from spare.plugins import Plugins, make_plugin_manager


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
