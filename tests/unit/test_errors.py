"""The exit codes are kept once, in spare.errors, and the README shows exactly that table."""

from __future__ import annotations

import re

from support.harness import REPO_ROOT

import spare.errors
from spare.errors import EXIT_CODES, SpareError


def readme_table() -> dict[int, str]:
    """The README's exit code table: code -> meaning, continuation lines joined."""
    lines = (REPO_ROOT / "README.rst").read_text().split("Exit codes\n----------\n", 1)[1]
    borders = [i for i, line in enumerate(lines.splitlines()) if line.startswith("===  ")]
    body = lines.splitlines()[borders[0] + 1 : borders[1]]
    table: dict[int, str] = {}
    code = None
    for line in body:
        match = re.match(r"^(\d+)\s+(.*)$", line)
        if match:
            code = int(match.group(1))
            table[code] = match.group(2).strip()
        elif line.strip() and code is not None:
            table[code] += " " + line.strip()
    return table


def test_the_readme_shows_the_table_of_spare_errors() -> None:
    assert readme_table() == EXIT_CODES


def test_every_error_exits_with_a_documented_code() -> None:
    errors = [
        value
        for value in vars(spare.errors).values()
        if isinstance(value, type) and issubclass(value, SpareError)
    ]
    assert len(errors) > 15
    for error in errors:
        assert error.exit_code in EXIT_CODES, error
