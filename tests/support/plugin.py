"""A third-party plugin, installed as pip would leave it: a module and its ``.dist-info``."""

from __future__ import annotations

import textwrap
from pathlib import Path

PLUGIN = '''
import dataclasses, json, os
from spare.hookspecs import hookimpl
from spare.errors import IntegrityError
from spare.transform import Transform

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
        log.write(json.dumps(dataclasses.asdict(snapshot)) + "\\n")
'''


def install_fake_distribution(site: Path) -> None:
    """What ``pip install spare-reverse`` would leave behind, minus pip."""
    (site / "spare_reverse.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "spare_reverse-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spare-reverse\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[spare]\nreverse = spare_reverse\n")
