"""Comparing two scans of a tree entry by entry and field by field, by category of difference."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spare.testing.trees.scan import scan_tree

#: The category of each compared field (benchmarks/fidelity.py counts differences by category).
FIELDS: dict[str, str] = {
    "type": "content",
    "size": "content",
    "sha256": "content",
    "target": "content",
    "rdev": "content",
    "error": "content",
    "mode": "mode",
    "uid": "owner",
    "gid": "owner",
    "mtime_ns": "mtime",
    "xattrs": "xattr",
    "capability": "xattr",
    "acl": "acl",
    "hardlinks": "hardlinks",
    "sparse": "sparse",
}
CATEGORIES = (
    "content",
    "mode",
    "owner",
    "mtime",
    "xattr",
    "acl",
    "hardlinks",
    "sparse",
    "missing",
    "extra",
)


def show(path: bytes, limit: int = 160) -> str:
    """A relative path as one printable line (control characters and bad UTF-8 escaped)."""
    text = repr(path)[2:-1]
    # Runs of one character (the deep part's long names) are shortened: "x{90}".
    text = re.sub(r"(.)\1{15,}", lambda run: f"{run.group(1)}{{{len(run.group(0))}}}", text)
    if len(text) > limit:
        text = text[: limit // 2] + "..." + text[-limit // 2 :]
    return text


@dataclass(frozen=True)
class Difference:
    category: str
    path: bytes
    detail: str

    def __str__(self) -> str:
        return f"{show(self.path)}: {self.detail}"


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_scans(
    a: Mapping[bytes, Mapping[str, Any]],
    b: Mapping[bytes, Mapping[str, Any]],
    *,
    ignore: Iterable[str] = (),
    labels: tuple[str, str] = ("source", "restored"),
) -> list[Difference]:
    """Every difference between two scans; ``ignore`` names fields (or categories) to skip."""
    skip = set(ignore)
    first, second = labels
    diffs: list[Difference] = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            if "missing" not in skip:
                diffs.append(Difference("missing", path, f"missing ({a[path]['type']})"))
            continue
        if path not in a:
            if "extra" not in skip:
                diffs.append(Difference("extra", path, f"extra ({b[path]['type']})"))
            continue
        want, got = a[path], b[path]
        if want["type"] != got["type"]:
            diffs.append(
                Difference("content", path, f"type: {want['type']} in {first}, {got['type']}")
            )
            continue
        for name, category in FIELDS.items():
            if name in skip or category in skip:
                continue
            old, new = want.get(name), got.get(name)
            if name in ("xattrs", "acl"):
                old, new = old or {}, new or {}
                for key in sorted(old.keys() | new.keys()):
                    if old.get(key) != new.get(key):
                        diffs.append(
                            Difference(
                                category,
                                path,
                                f"{key}: {_short(old.get(key))} in {first}, "
                                f"{_short(new.get(key))} {second}",
                            )
                        )
                continue
            if name == "hardlinks":
                old = sorted(set(old or (path,)) - {path})
                new = sorted(set(new or (path,)) - {path})
                if old != new:
                    diffs.append(
                        Difference(
                            category,
                            path,
                            f"hardlinked with {[show(p, 60) for p in old]} in {first}, "
                            f"with {[show(p, 60) for p in new]} {second}",
                        )
                    )
                continue
            if old != new:
                extra = ""
                if name == "sparse":
                    extra = f" ({want.get('allocated')} vs {got.get('allocated')} bytes allocated)"
                diffs.append(
                    Difference(
                        category,
                        path,
                        f"{name}: {_short(old)} in {first}, {_short(new)} {second}{extra}",
                    )
                )
    return diffs


def compare_trees(
    a: Path | str | bytes, b: Path | str | bytes, *, ignore: Iterable[str] = ()
) -> list[str]:
    """One line per difference between the trees at ``a`` (source) and ``b`` (restored)."""
    return [str(diff) for diff in compare_scans(scan_tree(a), scan_tree(b), ignore=ignore)]


def count_by_category(diffs: Iterable[Difference]) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for diff in diffs:
        counts[diff.category] = counts.get(diff.category, 0) + 1
    return counts
