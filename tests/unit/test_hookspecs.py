"""Every hook is documented in docs/plugins.rst with its exact signature, and has a docstring."""

from __future__ import annotations

import inspect
import re

from support.harness import REPO_ROOT

from spare import hookspecs


def hooks() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(function)
        for name, function in vars(hookspecs).items()
        if name.startswith("spare_") and callable(function)
    }


def test_there_are_hooks_for_each_stage() -> None:
    assert {
        "spare_register_storages",
        "spare_register_transforms",
        "spare_register_locks",
    } <= set(hooks())


def test_every_hook_is_documented_with_its_signature() -> None:
    text = (REPO_ROOT / "docs" / "plugins.rst").read_text()
    documented = dict(re.findall(r"^\.\. function:: (spare_\w+)\(([^)]*)\)", text, re.M))
    assert set(documented) == set(hooks())
    for name, signature in hooks().items():
        params = [p.strip() for p in documented[name].split(",") if p.strip()]
        assert params == list(signature.parameters), name


def test_every_hook_has_a_real_docstring() -> None:
    for name in hooks():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc.split()) > 20, name
        for parameter in hooks()[name].parameters:
            assert f":param {parameter}:" in doc, (name, parameter)
