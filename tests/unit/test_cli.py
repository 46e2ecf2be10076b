"""The README's table of options names every option of every command, and every variable."""

from __future__ import annotations

import click
from support.harness import REPO_ROOT

from spare.cli import cli


def test_the_readme_names_every_option_and_variable() -> None:
    readme = (REPO_ROOT / "README.rst").read_text()
    # The table: from the section's title to its third rule (top, under the heading, bottom).
    lines = readme.split("Options\n~~~~~~~\n", 1)[1].splitlines()
    rules = [index for index, line in enumerate(lines) if line.startswith("=====")]
    table = "\n".join(lines[: rules[2]])
    missing = set()
    for name, command in cli.commands.items():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            flag = max(param.opts, key=len)
            if f"``{flag}``" not in table:
                missing.add(f"{name} {flag}")
            envvars = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
            missing.update(f"{name} {var}" for var in envvars if f"``{var}``" not in table)
    assert not missing, f"README.rst's options table lacks {sorted(missing)}"
