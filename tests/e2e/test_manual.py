"""The manual pages, made by click-man from the CLI's definitions, and shell completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from support.harness import clean_env

from spare.cli import cli

pytestmark = pytest.mark.timeout(120)


def test_man_pages_cover_every_command_and_option(tmp_path: Path) -> None:
    """``click-man spare`` (the README's command) writes a page per command that names every
    option and the variable it is read from."""
    click_man = shutil.which("click-man", path=os.path.dirname(sys.executable))
    assert click_man, "click-man is in the test extra"
    subprocess.run([click_man, "spare", "--target", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "spare.1").is_file()
    for name, command in cli.commands.items():
        page = (tmp_path / f"spare-{name}.1").read_text()
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                flag = max(param.opts, key=len).replace("-", "\\-")
                assert flag in page, f"spare-{name}.1 lacks {flag}"
                if isinstance(param.envvar, str):
                    assert param.envvar in page, f"spare-{name}.1 lacks {param.envvar}"


def test_shell_completion(tmp_path: Path) -> None:
    """The README's completion set-up: the shell's script, then commands and options complete."""

    def complete(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "spare"],
            env=clean_env(env, tmp_path / "cache"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "_spare_completion()" in complete(_SPARE_COMPLETE="bash_source")
    commands = complete(_SPARE_COMPLETE="bash_complete", COMP_WORDS="spare re", COMP_CWORD="1")
    assert commands.split() == ["plain,restore"]
    options = complete(
        _SPARE_COMPLETE="bash_complete", COMP_WORDS="spare create --dry", COMP_CWORD="2"
    )
    assert options.split() == ["plain,--dry-run"]
