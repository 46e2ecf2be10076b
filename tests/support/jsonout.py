"""Reading spare's ``--json`` output, and holding it to its documented schema (docs/json.rst)."""

from __future__ import annotations

import json
import re
from typing import Any

from support.harness import REPO_ROOT

_DOCUMENTED = set(re.findall(r"``([a-z_]+)``", (REPO_ROOT / "docs" / "json.rst").read_text()))


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of ``stdout`` as a JSON object, each one's fields documented: anything else
    on standard output is a failure."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        undocumented = _fields(line) - _DOCUMENTED
        assert not undocumented, f"fields missing from docs/json.rst: {sorted(undocumented)}"
    return lines


def summary(stdout: str) -> dict[str, Any]:
    """The summary that ends ``stdout``, the only one."""
    lines = json_lines(stdout)
    assert lines and lines[-1]["type"] == "summary", stdout
    assert all(line["type"] != "summary" for line in lines[:-1]), stdout
    return lines[-1]


def _fields(value: Any) -> set[str]:
    if not isinstance(value, dict):
        return set()
    found = set(value)
    for inner in value.values():
        found |= _fields(inner)
    return found
