"""Building a tree: a plan of entries whose metadata is applied at the end, in the one order
that keeps it all, and what the current user and file system can build.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spare.testing.trees.content import odd_mtime_ns
from spare.testing.trees.fs import CAPABILITY, CAPABILITY_XATTR, DIR_FLAGS, sorted_names


@dataclass
class TreePlan:
    """A tree being built: what to apply at the end, in the one order that keeps it all.

    Owners first (chown clears setuid, setgid and file capabilities), then modes, then
    capabilities, then mtimes from the leaves up (adding an entry changes its directory's).
    """

    root: Path
    built: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    owners: list[tuple[bytes, int, int]] = field(default_factory=list)
    modes: list[tuple[bytes, int]] = field(default_factory=list)
    capabilities: list[bytes] = field(default_factory=list)
    mtimes: dict[bytes, int] = field(default_factory=dict)
    _probes: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_root(self) -> bool:
        return os.geteuid() == 0

    def path(self, relative: bytes) -> bytes:
        return os.path.join(os.fsencode(self.root), relative)

    def file(self, relative: bytes, data: bytes = b"", mode: int = 0o644) -> bytes:
        full = self.path(relative)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data)
        self.modes.append((relative, mode))
        return relative

    def dir(self, relative: bytes, mode: int | None = 0o755) -> bytes:
        """Make a directory (and its parents); ``mode`` None leaves it as the umask makes it."""
        os.makedirs(self.path(relative), exist_ok=True)
        if mode is not None:
            self.modes.append((relative, mode))
        return relative

    def symlink(self, target: bytes, relative: bytes) -> bytes:
        os.makedirs(os.path.dirname(self.path(relative)), exist_ok=True)
        os.symlink(target, self.path(relative))
        return relative

    def skip(self, feature: str, reason: str) -> None:
        self.skipped[feature] = reason

    # -- what this user and file system can do -----------------------------------------------
    def missing(self, what: str) -> str | None:
        """None if ``what`` can be built here, else the reason it cannot (probed once)."""
        if what not in self._probes:
            self._probes[what] = _PROBES[what](self)
        return self._probes[what]

    def finish(self, *, include_root: bool = True) -> dict[str, Any]:
        """Apply owners, modes, capabilities and mtimes (the root's too unless
        ``include_root`` is false); return what was built and what was skipped, and why."""
        for relative, uid, gid in self.owners:
            os.chown(self.path(relative), uid, gid, follow_symlinks=False)
        for relative, mode in self.modes:
            os.chmod(self.path(relative), mode)
        for relative in self.capabilities:
            os.setxattr(self.path(relative), CAPABILITY_XATTR, CAPABILITY)
        set_mtimes(self.root, self.mtimes, include_root=include_root)
        return {"built": list(self.built), "skipped": dict(self.skipped)}


def _probe_root(plan: TreePlan) -> str | None:
    return None if plan.is_root else "needs root"


def _probe_mknod(plan: TreePlan) -> str | None:
    if not plan.is_root:
        return "device nodes can only be made by root"
    probe = plan.path(b".probe-mknod")
    try:
        os.mknod(probe, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as exc:
        return f"mknod is refused here ({exc.strerror})"
    os.unlink(probe)
    return None


def _probe_xattr(plan: TreePlan, name: str = "user.probe", value: bytes = b"x") -> str | None:
    probe = plan.path(b".probe-xattr")
    with open(probe, "wb"):
        pass
    try:
        os.setxattr(probe, name, value)
    except OSError as exc:
        return f"the file system refuses {name.split('.')[0]} attributes ({exc.strerror})"
    finally:
        os.unlink(probe)
    return None


def _probe_capability(plan: TreePlan) -> str | None:
    if not plan.is_root:
        return "file capabilities can only be set by root"
    return _probe_xattr(plan, CAPABILITY_XATTR, CAPABILITY)


def _probe_acl(plan: TreePlan) -> str | None:
    setfacl = shutil.which("setfacl")
    if setfacl is None:
        return "setfacl is not installed (Debian package 'acl')"
    probe = plan.path(b".probe-acl")
    with open(probe, "wb"):
        pass
    try:
        result = subprocess.run(
            [setfacl, "-m", f"u:{os.geteuid()}:rw", probe],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return f"the file system refuses POSIX ACLs ({result.stderr.strip()})"
    finally:
        os.unlink(probe)
    return None


_PROBES: dict[str, Callable[[TreePlan], str | None]] = {
    "root": _probe_root,
    "mknod": _probe_mknod,
    "xattr": _probe_xattr,
    "capability": _probe_capability,
    "acl": _probe_acl,
}


def unnamed_id(start: int = 12345) -> int:
    """An id that is neither a user's nor a group's on this host."""
    candidate = start
    while True:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            try:
                grp.getgrgid(candidate)
            except KeyError:
                return candidate
        candidate += 1


def named_ids() -> tuple[int, int] | None:
    """A user and a group with names, neither root's nor ours (``daemon``, ``nobody``...)."""
    users = [u for u in pwd.getpwall() if u.pw_uid not in (0, os.geteuid())]
    groups = [g for g in grp.getgrall() if g.gr_gid not in (0, os.getegid())]
    if not users or not groups:
        return None
    prefer = ("daemon", "bin", "nobody", "nogroup", "sys")
    users.sort(key=lambda u: (u.pw_name not in prefer, u.pw_uid))
    groups.sort(key=lambda g: (g.gr_name not in prefer, g.gr_gid))
    return users[0].pw_uid, groups[0].gr_gid


def set_mtimes(
    root: Path | str,
    overrides: Mapping[bytes, int] | None = None,
    *,
    include_root: bool = True,
) -> None:
    """Give every entry an odd mtime (or its override), children before their directory.

    The root gets one last, unless ``include_root`` is false.
    """
    overrides = overrides or {}
    counter = [0]

    def mtime(relative: bytes) -> int:
        counter[0] += 1
        return overrides.get(relative, odd_mtime_ns(counter[0]))

    def visit(dir_fd: int, prefix: bytes) -> None:
        for name in sorted_names(dir_fd):
            relative = prefix + name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                try:
                    visit(sub, relative + b"/")
                finally:
                    os.close(sub)
            ns = mtime(relative)
            os.utime(name, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)

    fd = os.open(root, DIR_FLAGS)
    try:
        visit(fd, b"")
        if include_root:
            ns = mtime(b".")
            os.utime(fd, ns=(ns, ns))
    finally:
        os.close(fd)
