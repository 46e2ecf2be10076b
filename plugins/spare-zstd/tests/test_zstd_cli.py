"""``spare create --compression zstd`` and ``spare restore`` as real processes, with the plugin
installed as a distribution, and then on a host where spare runs without it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from spare.errors import MissingPlugin
from spare.testing.trees import assert_trees_equal, build_rich_tree, snapshot_tree

#: spare's own entry point, with the plugin manager built without the installed plugins (its
#: ``entry_points=False``): what spare does on a host where spare-zstd is not installed.
WITHOUT_PLUGINS = """
import functools, spare.plugins
spare.plugins.make_plugin_manager = functools.partial(
    spare.plugins.make_plugin_manager, entry_points=False
)
from spare.cli import main
main()
"""

#: The preamble of every object but the config: b"SPARE", the format version, the kind, then
#: the transforms, each as its length and its name.
ZSTD_CHAIN = b"\x02\x04zstd\x07aes-siv"


class Spare:
    """Runs spare against one ``file://`` bucket, with the plugin or without it."""

    def __init__(self, root: Path) -> None:
        self.bucket = root / "store" / "bucket"
        self.bucket.parent.mkdir()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SPARE_", "AWS_"))
        }
        self.env.update(
            SPARE_ENDPOINT=f"file://{self.bucket.parent}",
            SPARE_BUCKET=self.bucket.name,
            SPARE_PASSWORD="pw-" + secrets.token_urlsafe(12),
            XDG_CACHE_HOME=str(root / "xdg-cache"),
        )

    def __call__(
        self, *args: str | Path, cache: Path, plugins: bool = True
    ) -> subprocess.CompletedProcess[str]:
        entry = ["-m", "spare"] if plugins else ["-c", WITHOUT_PLUGINS]
        return subprocess.run(
            [sys.executable, *entry, *map(str, args)],
            env={**self.env, "SPARE_CACHE_DIR": str(cache)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stored_objects(self) -> dict[str, bytes]:
        return {
            path.relative_to(self.bucket).as_posix(): path.read_bytes()
            for path in self.bucket.rglob("*")
            if path.is_file()
        }


def succeeded(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0 and "Traceback" not in result.stderr


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed as documented: exit code 13, one line on stderr, no traceback."""
    assert result.returncode == MissingPlugin.exit_code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    build_rich_tree(source, random_mib=1, text_mib=1)
    return source


def test_create_with_zstd_and_restore(tmp_path: Path, source: Path) -> None:
    spare = Spare(tmp_path)
    created = spare(
        "create", "--compression", "zstd", "--json", "--path", source, cache=tmp_path / "c"
    )
    assert succeeded(created), created.stderr
    # The text compresses; the random MiB and the one stored once for two files do not.
    summary = json.loads(created.stdout.splitlines()[-1])
    new, stored_bytes = summary["new_bytes"], summary["stored_bytes"]
    assert new > 3 << 20 and stored_bytes < 0.8 * new

    stored = spare.stored_objects()
    named = {key: data for key, data in stored.items() if not key.startswith("config")}
    assert {key.split("/")[0] for key in named} == {"packs", "index", "snapshots"}
    assert all(data[7 : 7 + len(ZSTD_CHAIN)] == ZSTD_CHAIN for data in named.values())

    # A new host (an empty cache) restores from the bucket alone.
    restored = spare("restore", "--path", tmp_path / "restored", cache=tmp_path / "new-host")
    assert succeeded(restored), restored.stderr
    assert_trees_equal(snapshot_tree(source), snapshot_tree(tmp_path / "restored"))


def test_bucket_written_with_zstd_needs_the_plugin(tmp_path: Path, source: Path) -> None:
    spare = Spare(tmp_path)
    created = spare("create", "--compression", "zstd", "--path", source, cache=tmp_path / "c")
    assert succeeded(created), created.stderr

    commands = {
        "restore": ("restore", "--path", tmp_path / "restored"),
        "verify": ("verify",),
        "create": ("create", "--path", source),  # the default compression, lzma
    }
    for name, args in commands.items():
        line = one_line_error(spare(*args, cache=tmp_path / name, plugins=False))
        assert "'zstd'" in line and "install" in line, line
    assert not (tmp_path / "restored").exists() or not any((tmp_path / "restored").iterdir())

    # The same host's create also stops: it cannot read the bucket's index or snapshot.
    line = one_line_error(spare("create", "--path", source, cache=tmp_path / "c", plugins=False))
    assert "'zstd'" in line

    # Nothing was changed: with the plugin back, the backup restores whole.
    restored = spare("restore", "--path", tmp_path / "later", cache=tmp_path / "c")
    assert succeeded(restored), restored.stderr
    assert_trees_equal(snapshot_tree(source), snapshot_tree(tmp_path / "later"))


def test_create_with_zstd_without_the_plugin(tmp_path: Path, source: Path) -> None:
    spare = Spare(tmp_path)
    result = spare(
        "create", "--compression", "zstd", "--path", source, cache=tmp_path / "c", plugins=False
    )
    line = one_line_error(result)
    assert "'zstd'" in line and "install" in line, line
    assert not any(key.startswith(("packs/", "snapshots/")) for key in spare.stored_objects())
