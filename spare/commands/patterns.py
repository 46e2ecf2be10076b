"""Which entries of a snapshot a command's patterns name (``restore --include``, ``ls``).

A pattern is a path relative to the backed-up directory (``etc/nginx``, ``./etc/nginx/``), or
absolute as it was on the backed-up host (``/srv/www/index.html`` of a backup of ``/srv``);
globs are allowed (``*`` matches across ``/`` too). An entry is selected when a pattern names
it or one of the directories above it.
"""

from __future__ import annotations

import fnmatch
import os

from spare.errors import UsageError
from spare.fstree import normalise_skip

_GLOB = frozenset(b"*?[")


class Patterns:
    """The patterns of one command, against the snapshot of the directory ``root``."""

    def __init__(self, patterns: list[str], root: str) -> None:
        self.root = os.fsencode(root).rstrip(b"/") or b"/"
        #: Patterns relative to the root; globs over the root's own path, matched whole.
        self.patterns: list[bytes] = []
        self.host_globs: list[bytes] = []
        for pattern in patterns:
            relative = self._relative(os.fsencode(pattern))
            (self.host_globs if relative.startswith(b"/") else self.patterns).append(relative)

    def __bool__(self) -> bool:
        return bool(self.patterns or self.host_globs)

    @property
    def literal(self) -> bool:
        """Whether every pattern is one path, with no glob in it."""
        return not self.host_globs and not any(_GLOB & set(p) for p in self.patterns)

    def names(self, path: bytes) -> bool:
        """Whether a pattern names ``path`` itself (relative to the root, ``.`` for the root)."""
        if any(path == pattern or fnmatch.fnmatchcase(path, pattern) for pattern in self.patterns):
            return True
        if self.host_globs:
            host = self.host_path(path)
            return any(fnmatch.fnmatchcase(host, glob) for glob in self.host_globs)
        return False

    def selects(self, path: bytes) -> bool:
        """Whether ``path`` is named, or lies below a named directory (empty: everything)."""
        if not self:
            return True
        while True:
            if self.names(path):
                return True
            if path == b".":
                return False
            path = os.path.dirname(path) or b"."

    def host_path(self, path: bytes) -> bytes:
        """Where ``path`` (relative to the root) was on the backed-up host."""
        if path == b".":
            return self.root
        return self.root.rstrip(b"/") + b"/" + path

    def _relative(self, pattern: bytes) -> bytes:
        if not pattern.startswith(b"/"):
            return normalise_skip(os.fsdecode(pattern))
        absolute = os.path.normpath(pattern)
        if absolute.startswith(b"//"):  # normpath keeps a leading '//'
            absolute = b"/" + absolute.lstrip(b"/")
        if absolute == self.root:
            return b"."
        prefix = self.root.rstrip(b"/") + b"/"
        if absolute.startswith(prefix):
            return absolute[len(prefix) :]
        literal = absolute[: next((i for i, c in enumerate(absolute) if c in _GLOB), None)]
        if literal != absolute and self.root.startswith(literal):
            # A glob over the root's own path (/srv/*/index.html): matched as a whole path.
            return absolute
        raise UsageError(
            f"{os.fsdecode(pattern)} is not below {os.fsdecode(self.root)}, the directory this "
            "backup is of: give a path below it, or one relative to it"
        )
