"""The layers of docs/design.rst hold: a module imports only from layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

from support.harness import REPO_ROOT

#: Each package, and the packages it must never import.
FORBIDDEN = {
    "spare/repository": ("spare.commands", "spare.cli", "spare_plugins"),
    "spare/commands": ("spare.cli", "spare_plugins"),
    "spare/testing": ("spare.commands", "spare.cli", "spare_plugins"),
    "spare_plugins": ("spare.commands", "spare.cli", "spare.repository"),
}
CORE_MODULES = (
    "storage",
    "transform",
    "lock",
    "keys",
    "errors",
    "registry",
    "hookspecs",
    "fstree",
    "xattrs",
    "plugins",
    "console",
    "owners",
    "processes",
    "signals",
    "sparse",
)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in files
        for name in sorted(imports(path))
        if name.startswith(forbidden)
    ]


def test_packages_import_only_downwards() -> None:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        problems += offenders(sorted((REPO_ROOT / package).rglob("*.py")), forbidden)
    assert problems == []


def test_core_modules_import_no_commands_repository_or_plugins() -> None:
    files = [REPO_ROOT / "spare" / f"{name}.py" for name in CORE_MODULES]
    assert (
        offenders(files, ("spare.commands", "spare.cli", "spare.repository", "spare_plugins")) == []
    )
