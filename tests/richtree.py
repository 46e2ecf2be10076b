"""The richest tree a Linux file system can hold, and a comparison of trees down to the last bit.

``build_richest_tree`` makes every kind of entry and every piece of metadata the current user can
make (as root: device nodes, foreign and unnamed owners, file capabilities, directories of mode
000 with content...), and says what it built and what it had to leave out and why.
``compare_trees`` (and :func:`scan_tree` + :func:`compare_scans`) compares two trees entry by
entry and field by field: type, size, content, permission bits, owner, nanosecond mtimes (of
symlinks and directories too), symlink targets as bytes, hard-link grouping, device numbers,
extended attributes, POSIX ACLs, file capabilities and sparseness.

Everything here reaches entries through directory descriptors (``dir_fd`` and
``/proc/self/fd/N/name``), never through full paths: the tree holds a path longer than
``PATH_MAX``. Standard library only, so ``benchmarks/fidelity.py`` can import it too.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
CAPABILITY_XATTR = "security.capability"

# mtimes: every digit of the nanoseconds set, so that any truncation shows.
BASE_MTIME_NS = 1_234_567_890_123_456_789  # 2009
PRE_1970_NS = -14_182_940_123_456_789  # 1969-07-20, a negative time_t
YEAR_1971_NS = 45_792_000_987_654_321  # 1971-06-15, before 1972
Y2038_NS = 2_147_483_648_000_000_001  # one second after the signed 32-bit time_t ends
YEAR_2099_NS = 4_102_444_799_987_654_321  # 2099-12-31T23:59:59.987654321

# A version 2 file capability: cap_net_raw in the permitted set, effective flag set
# (what ``setcap cap_net_raw+ep`` writes).
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)

# Names a Linux file name may be: any bytes but "/" and NUL, up to 255 of them.
NFC = unicodedata.normalize("NFC", "café").encode()
NFD = unicodedata.normalize("NFD", "café").encode()
WEIRD_NAMES: tuple[bytes, ...] = (
    b"non-utf8-\xff\xfe\x80",
    b"latin1-caf\xe9",
    b"new\nline",
    b"tab\there",
    b"carriage\rreturn",
    b"back\\slash",
    b"\"double\"-'single'-`back`",
    b"-leading-dash",
    b"--help",
    b" leading space",
    b"trailing space ",
    b"*?[glob]{chars}",
    b"$(echo pwned);|&<>",
    b"~",
    b"...",
    b".hidden",
    b"\x01\x1b[31mcontrol",
    NFC,
    NFD,
    "🦀📦 emoji".encode(),
    "日本語のファイル".encode(),
    b"n" * 255,
    ("é" * 127 + "x").encode(),  # 255 bytes of two-byte characters
)
WEIRD_DIR = b"dir\nwith \xff newline"
WEIRD_DIR_FILE = b"file\twith tab"


def odd_mtime_ns(index: int) -> int:
    """A distinct mtime per entry, none of them a round number of anything."""
    return BASE_MTIME_NS + index * 1_000_003_007


def compressible_text(size: int) -> bytes:
    line = b"2026-11-26T04:00:00 host app[42]: request served in 17 ms, status 200\n"
    return (line * (size // len(line) + 1))[:size]


def pattern_bytes(seed: int, size: int) -> bytes:
    """Deterministic, incompressible bytes (the SHA-256 counter stream of ``seed``)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def show(path: bytes, limit: int = 160) -> str:
    """A relative path as one printable line (control characters and bad UTF-8 escaped)."""
    text = repr(path)[2:-1]
    # Runs of one character (the deep part's long names) are shortened: "x{90}".
    text = re.sub(r"(.)\1{15,}", lambda run: f"{run.group(1)}{{{len(run.group(0))}}}", text)
    if len(text) > limit:
        text = text[: limit // 2] + "..." + text[-limit // 2 :]
    return text


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


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

    def dir(self, relative: bytes, mode: int = 0o755) -> bytes:
        os.makedirs(self.path(relative), exist_ok=True)
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

    def finish(self) -> dict[str, Any]:
        for relative, uid, gid in self.owners:
            os.chown(self.path(relative), uid, gid, follow_symlinks=False)
        for relative, mode in self.modes:
            os.chmod(self.path(relative), mode)
        for relative in self.capabilities:
            os.setxattr(self.path(relative), CAPABILITY_XATTR, CAPABILITY)
        set_mtimes(self.root, self.mtimes)
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


# -- the parts ---------------------------------------------------------------------------------


def add_names(plan: TreePlan) -> None:
    """Every kind of byte string a file name may be (and NFC and NFD as two files)."""
    plan.dir(b"names")
    for name in WEIRD_NAMES:
        plan.file(b"names/" + name, name + b"\n")
    plan.dir(b"names/" + WEIRD_DIR)
    plan.file(b"names/" + WEIRD_DIR + b"/" + WEIRD_DIR_FILE, b"inside a weird directory\n")
    plan.dir(b"names/" + b"d" * 255)
    plan.file(b"names/" + b"d" * 255 + b"/" + b"f" * 255, b"255 + 255\n")
    plan.built.append("names")


def add_deep(plan: TreePlan, levels: int = 64) -> None:
    """A path ``levels`` directories deep and longer than PATH_MAX, built through descriptors."""
    plan.dir(b"deep")
    fd = os.open(plan.path(b"deep"), DIR_FLAGS)
    try:
        for level in range(levels):
            name = b"level-%03d-" % level + b"x" * 90
            os.mkdir(name, 0o755, dir_fd=fd)
            next_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
            if level % 10 == 9:
                leaf = os.open(b"file-at-%d" % level, os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
                os.write(leaf, b"at level %d\n" % level)
                os.close(leaf)
            os.close(fd)
            fd = next_fd
        leaf = os.open(b"leaf-" + b"z" * 200, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(leaf, pattern_bytes(7, 5000))
        os.close(leaf)
        os.symlink(b"../" * 3 + b"target-up-there", b"link-up", dir_fd=fd)
        os.mkfifo(b"fifo-deep", 0o620, dir_fd=fd)
        os.mkdir(b"empty-deep", 0o700, dir_fd=fd)
        if plan.missing("xattr") is None:
            os.setxattr(b"/proc/self/fd/%d/leaf-%s" % (fd, b"z" * 200), "user.deep", b"\x00deep")
        os.chmod(b"empty-deep", 0o3751, dir_fd=fd)
    finally:
        os.close(fd)
    plan.built.append(f"deep ({levels} levels, > PATH_MAX)")


def add_big_dir(plan: TreePlan, count: int) -> None:
    """One directory of ``count`` entries, mostly empty files."""
    plan.dir(b"big")
    base = plan.path(b"big")
    for index in range(count):
        with open(os.path.join(base, b"f%06d" % index), "wb") as handle:
            if index % 100 == 0:
                handle.write(b"%d\n" % index)
    plan.built.append(f"big directory ({count} entries)")


def add_types(plan: TreePlan) -> None:
    """Regular, empty, random and compressible files, (empty) directories, FIFOs, devices."""
    plan.dir(b"types")
    plan.file(b"types/empty.txt", b"", 0o644)
    plan.file(b"types/small.txt", b"x\n", 0o640)
    plan.file(b"types/random.bin", pattern_bytes(1, 300_000), 0o600)
    plan.file(b"types/text.log", compressible_text(400_000), 0o644)
    plan.dir(b"types/empty-dir", 0o755)
    plan.dir(b"types/nested/deeper/empty", 0o700)
    os.mkfifo(plan.path(b"types/fifo"), 0o640)
    plan.modes.append((b"types/fifo", 0o640))
    plan.built.append("files, directories, fifo")
    if reason := plan.missing("mknod"):
        plan.skip("devices", reason)
        return
    devices = {
        b"types/char-null": (stat.S_IFCHR, 1, 3),
        b"types/char-big-numbers": (stat.S_IFCHR, 300, 70000),
        b"types/block-loop": (stat.S_IFBLK, 7, 200),
    }
    for relative, (kind, major, minor) in devices.items():
        os.mknod(plan.path(relative), 0o600 | kind, os.makedev(major, minor))
        plan.modes.append((relative, 0o660))
    plan.built.append("devices")


def add_links(plan: TreePlan) -> None:
    """Symlinks of every kind; none may be followed, every target kept byte for byte."""
    plan.dir(b"links")
    plan.dir(b"links/real-dir")
    plan.file(b"links/real-dir/inside.txt", b"inside\n")
    plan.symlink(b"../types/small.txt", b"links/relative")
    plan.symlink(b"/nonexistent/absolute/target", b"links/absolute-dangling")
    plan.symlink(b"/etc/hostname", b"links/absolute-outside")
    plan.symlink(b"does/not/exist", b"links/dangling")
    plan.symlink(b"real-dir", b"links/to-dir")
    plan.symlink(b"loop-b", b"links/loop-a")
    plan.symlink(b"loop-a", b"links/loop-b")
    plan.symlink(b"self", b"links/self")
    plan.symlink(b".", b"links/dot")
    plan.symlink(b"..", b"links/dotdot")
    plan.symlink(b"tar\nget \xff with \\ bytes", b"links/weird-target")
    plan.symlink(b"x/" * 2000, b"links/long-target")  # 4000 bytes, under PATH_MAX
    plan.symlink(b"../../../../../../../../etc/passwd", b"links/climbing")
    plan.mtimes[b"links/relative"] = YEAR_2099_NS
    plan.mtimes[b"links/dangling"] = PRE_1970_NS
    plan.built.append("symlinks")


def add_hardlinks(plan: TreePlan) -> None:
    """A group of three names across directories, and a group of empty files."""
    plan.file(b"hard/first.dat", pattern_bytes(2, 70_000), 0o640)
    plan.dir(b"hard")
    plan.dir(b"hard/sub")
    plan.dir(b"hard-other")
    os.link(plan.path(b"hard/first.dat"), plan.path(b"hard/sub/second.dat"))
    os.link(plan.path(b"hard/first.dat"), plan.path(b"hard-other/third.dat"))
    plan.file(b"hard/empty-a", b"", 0o600)
    os.link(plan.path(b"hard/empty-a"), plan.path(b"hard-other/empty-b"))
    plan.file(b"hard/single.txt", b"no other name\n", 0o644)
    if plan.missing("xattr") is None:
        os.setxattr(plan.path(b"hard/first.dat"), "user.linked", b"one inode")
    plan.built.append("hardlinks")


def add_special_hardlinks(plan: TreePlan) -> None:
    """Hard links to a FIFO, a symlink and (as root) a device node: Linux allows them all.

    Not part of the richest tree's default parts (see ``EXTRA_PARTS``)."""
    plan.dir(b"special-hard")
    os.mkfifo(plan.path(b"special-hard/fifo-a"), 0o600)
    os.link(plan.path(b"special-hard/fifo-a"), plan.path(b"special-hard/fifo-b"))
    plan.symlink(b"some/target", b"special-hard/link-a")
    os.link(
        plan.path(b"special-hard/link-a"),
        plan.path(b"special-hard/link-b"),
        follow_symlinks=False,
    )
    plan.built.append("hardlinked fifo and symlink")
    if reason := plan.missing("mknod"):
        plan.skip("hardlinked device", reason)
        return
    os.mknod(plan.path(b"special-hard/dev-a"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.link(plan.path(b"special-hard/dev-a"), plan.path(b"special-hard/dev-b"))
    plan.built.append("hardlinked device")


def add_permissions(plan: TreePlan) -> None:
    """setuid, setgid, sticky; read-only directories with content; mode 000 (as root)."""
    plan.dir(b"perms")
    plan.file(b"perms/setuid", b"#!/bin/sh\n", 0o4755)
    plan.file(b"perms/setgid", b"#!/bin/sh\n", 0o2755)
    plan.file(b"perms/all-bits", b"every bit\n", 0o7777)
    plan.file(b"perms/odd-bits", b"odd\n", 0o4501)
    plan.file(b"perms/sticky-dir/inside", b"in /tmp-like dir\n", 0o666)
    plan.dir(b"perms/sticky-dir", 0o1777)
    plan.file(b"perms/setgid-dir/inside", b"group inherits\n", 0o664)
    plan.dir(b"perms/setgid-dir", 0o2775)
    plan.file(b"perms/read-only-dir/inside.txt", b"written before the dir was locked\n", 0o444)
    plan.file(b"perms/read-only-dir/sub/deeper.txt", b"deeper\n", 0o644)
    plan.dir(b"perms/read-only-dir/sub", 0o555)
    plan.dir(b"perms/read-only-dir", 0o555)
    plan.built.append("setuid, setgid, sticky, read-only directories")
    if reason := plan.missing("root"):
        plan.skip("mode 000", f"{reason}: a mode 000 entry is unreadable to its owner")
        return
    plan.file(b"perms/mode-000-file", b"secret content\n", 0o000)
    plan.file(b"perms/mode-000-dir/secret.txt", b"content behind mode 000\n", 0o000)
    plan.file(b"perms/mode-000-dir/sub/more.txt", b"more\n", 0o640)
    plan.dir(b"perms/mode-000-dir/sub", 0o000)
    plan.dir(b"perms/mode-000-dir", 0o000)
    plan.file(b"perms/exec-only-dir/hidden.txt", b"listable by nobody\n", 0o600)
    plan.dir(b"perms/exec-only-dir", 0o111)
    plan.built.append("mode 000 files and directories with content")


def add_owners(plan: TreePlan) -> None:
    """Owners by name, and ids that have no name on this host (as root)."""
    if reason := plan.missing("root"):
        plan.skip("owners", f"{reason}: only root can give files away")
        return
    unnamed = unnamed_id()
    plan.dir(b"owners")
    plan.file(b"owners/unnamed", b"owned by an id without a name\n", 0o640)
    plan.owners.append((b"owners/unnamed", unnamed, unnamed))
    plan.file(b"owners/mixed", b"root user, unnamed group\n", 0o640)
    plan.owners.append((b"owners/mixed", 0, unnamed + 1))
    plan.dir(b"owners/unnamed-dir", 0o750)
    plan.file(b"owners/unnamed-dir/inside", b"x\n", 0o600)
    plan.owners.append((b"owners/unnamed-dir", unnamed + 2, unnamed + 2))
    plan.owners.append((b"owners/unnamed-dir/inside", unnamed + 2, unnamed + 2))
    plan.symlink(b"unnamed", b"owners/link-unnamed")
    plan.owners.append((b"owners/link-unnamed", unnamed, unnamed + 3))
    os.mkfifo(plan.path(b"owners/fifo-unnamed"), 0o600)
    plan.owners.append((b"owners/fifo-unnamed", unnamed + 4, unnamed + 4))
    plan.file(b"owners/setuid-unnamed", b"#!/bin/sh\n", 0o6755)
    plan.owners.append((b"owners/setuid-unnamed", unnamed, unnamed))
    if named := named_ids():
        plan.file(b"owners/named", b"owned by a named user\n", 0o644)
        plan.owners.append((b"owners/named", *named))
    else:
        plan.skip("named owner", "no user and group other than root and ours on this host")
    plan.built.append(f"owners (unnamed id {unnamed})")


def add_times(plan: TreePlan) -> None:
    """mtimes before 1970, before 1972, after 2038 and in 2099, to the nanosecond."""
    plan.dir(b"times")
    for name, mtime in {
        b"times/pre-1970": PRE_1970_NS,
        b"times/year-1971": YEAR_1971_NS,
        b"times/after-2038": Y2038_NS,
        b"times/year-2099": YEAR_2099_NS,
        b"times/one-ns": 1,
        b"times/epoch": 0,
    }.items():
        plan.file(name, name + b"\n")
        plan.mtimes[name] = mtime
    plan.dir(b"times/old-dir")
    plan.file(b"times/old-dir/new-file", b"newer than its directory\n")
    plan.mtimes[b"times/old-dir"] = PRE_1970_NS + 1
    plan.symlink(b"../year-2099", b"times/old-dir/link-1971")
    plan.mtimes[b"times/old-dir/link-1971"] = YEAR_1971_NS + 7
    plan.built.append("extreme mtimes")


def add_xattrs(plan: TreePlan) -> None:
    """User extended attributes: text, binary, empty, many; on files and directories."""
    if reason := plan.missing("xattr"):
        plan.skip("xattrs", reason)
        return
    plan.dir(b"xattrs")
    plan.file(b"xattrs/text", b"with a text attribute\n")
    os.setxattr(plan.path(b"xattrs/text"), "user.comment", b"hello, world")
    plan.file(b"xattrs/binary", b"with a binary attribute\n")
    os.setxattr(plan.path(b"xattrs/binary"), "user.binary", bytes(range(256)))
    plan.file(b"xattrs/empty-value", b"")
    os.setxattr(plan.path(b"xattrs/empty-value"), "user.empty", b"")
    plan.file(b"xattrs/many", b"many attributes\n", 0o400)
    for index in range(12):
        os.setxattr(plan.path(b"xattrs/many"), f"user.attr{index:02d}", b"v%d" % index * 10)
    os.setxattr(plan.path(b"xattrs/many"), "user.ünïcødé.name", "välüe".encode())
    plan.dir(b"xattrs/dir", 0o500)
    os.setxattr(plan.path(b"xattrs/dir"), "user.on-a-dir", b"\x00\xff\x00")
    os.setxattr(plan.path(b"."), "user.on-the-root", b"root attribute")
    plan.built.append("user xattrs")


def add_acls(plan: TreePlan) -> None:
    """POSIX ACLs: an access ACL on a file, access and default ACLs on a directory."""
    if reason := plan.missing("acl"):
        plan.skip("acls", reason)
        return
    setfacl = shutil.which("setfacl")
    assert setfacl is not None
    uid = unnamed_id(23456) if plan.is_root else os.geteuid()
    plan.dir(b"acl")
    plan.file(b"acl/file", b"with an access ACL\n", 0o640)
    plan.file(b"acl/dir/inside", b"inherits nothing: ACLs are set after it was made\n", 0o640)
    plan.dir(b"acl/dir", 0o750)
    # Modes first (an ACL sets the group bits), so set them now and drop them from the plan.
    plan.modes = [(rel, mode) for rel, mode in plan.modes if not rel.startswith(b"acl")]
    for relative, mode in ((b"acl", 0o755), (b"acl/file", 0o640), (b"acl/dir", 0o750)):
        os.chmod(plan.path(relative), mode)
    for args in (
        ["-m", f"u:{uid}:rw,g:{uid}:r,m::rw", plan.path(b"acl/file")],
        ["-m", f"u:{uid}:rx", plan.path(b"acl/dir")],
        ["-d", "-m", f"u::rwx,g::rx,o::-,u:{uid}:rwx,m::rwx", plan.path(b"acl/dir")],
    ):
        subprocess.run([setfacl, *map(os.fsdecode, args)], check=True, capture_output=True)
    plan.built.append("posix acls")


def add_capabilities(plan: TreePlan) -> None:
    """A binary with a file capability (``setcap cap_net_raw+ep``)."""
    if reason := plan.missing("capability"):
        plan.skip("capabilities", reason)
        return
    plan.dir(b"caps")
    plan.file(b"caps/ping-like", b"\x7fELF not really\n", 0o755)
    plan.capabilities.append(b"caps/ping-like")
    plan.built.append("security.capability")


def add_sparse(plan: TreePlan, size_mib: int, name: bytes = b"sparse/sparse.img") -> None:
    """A sparse file of ``size_mib`` MiB with two small written regions."""
    plan.dir(os.path.dirname(name))
    full = plan.path(name)
    size = size_mib * MiB
    with open(full, "wb") as handle:
        handle.truncate(size)
        handle.seek(size // 5)
        handle.write(pattern_bytes(3, 4096))
        handle.seek(size * 3 // 4)
        handle.write(pattern_bytes(4, 4096))
    plan.modes.append((name, 0o644))
    if os.stat(full).st_blocks * 512 >= size:
        plan.skip("sparse", "the file system does not keep holes")
    else:
        plan.built.append(f"sparse file ({size_mib} MiB)")


PARTS: dict[str, Callable[[TreePlan], None]] = {
    "names": add_names,
    "deep": add_deep,
    "types": add_types,
    "links": add_links,
    "hardlinks": add_hardlinks,
    "permissions": add_permissions,
    "owners": add_owners,
    "times": add_times,
    "xattrs": add_xattrs,
    "acls": add_acls,
    "capabilities": add_capabilities,
}


#: Parts left out of ``build_richest_tree`` by default; ``build_tree`` builds them by name.
EXTRA_PARTS: dict[str, Callable[[TreePlan], None]] = {
    "special-hardlinks": add_special_hardlinks,
}


def build_tree(
    root: Path | str, parts: Iterable[str], *, big_dir: int = 0, sparse_mib: int = 0
) -> dict[str, Any]:
    """Build the named parts of the richest tree under ``root`` (created, mode 0750)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan = TreePlan(root)
    plan.modes.append((b".", 0o750))
    for part in parts:
        {**PARTS, **EXTRA_PARTS}[part](plan)
    if big_dir:
        add_big_dir(plan, big_dir)
    if sparse_mib:
        add_sparse(plan, sparse_mib)
    return plan.finish()


def build_richest_tree(
    root: Path | str, *, big_dir: int = 0, sparse_mib: int = 32
) -> dict[str, Any]:
    """Everything the current user can build. Returns ``{"built": [...], "skipped": {what:
    reason}}``. Sockets are left out: no backup tool restores them."""
    return build_tree(root, PARTS, big_dir=big_dir, sparse_mib=sparse_mib)


def set_mtimes(root: Path | str, overrides: Mapping[bytes, int] | None = None) -> None:
    """Give every entry an odd mtime (or its override), children before their directory."""
    overrides = overrides or {}
    counter = [0]

    def mtime(relative: bytes) -> int:
        counter[0] += 1
        return overrides.get(relative, odd_mtime_ns(counter[0]))

    def visit(dir_fd: int, prefix: bytes) -> None:
        for name in _names(dir_fd):
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
        ns = mtime(b".")
        os.utime(fd, ns=(ns, ns))
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Scanning and comparing
# --------------------------------------------------------------------------------------------

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


def _names(dir_fd: int) -> list[bytes]:
    with os.scandir(dir_fd) as entries:
        return sorted(os.fsencode(entry.name) for entry in entries)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "char device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


def _read_xattrs(target: int | bytes) -> dict[str, bytes]:
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
            return {}
        raise
    found = {}
    for name in names:
        if name.startswith("user.") or name in ACL_XATTRS or name == CAPABILITY_XATTR:
            with contextlib.suppress(OSError):
                found[name] = os.getxattr(target, name, follow_symlinks=follow)
    return found


def _sha256(dir_fd: int, name: bytes) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    digest = hashlib.sha256()
    try:
        while block := os.read(fd, MiB):
            digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _record(dir_fd: int, name: bytes | None, st: os.stat_result) -> dict[str, Any]:
    """Everything compared about one entry; ``name`` None: ``dir_fd`` is the entry itself."""
    kind = _kind(st.st_mode)
    record: dict[str, Any] = {
        "type": kind,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }
    if kind != "symlink":
        record["mode"] = oct(stat.S_IMODE(st.st_mode))
    try:
        if kind == "file":
            record["size"] = st.st_size
            record["allocated"] = st.st_blocks * 512
            record["sparse"] = st.st_blocks * 512 < st.st_size
            assert name is not None
            record["sha256"] = _sha256(dir_fd, name)
        elif kind == "symlink":
            assert name is not None
            record["target"] = os.readlink(name, dir_fd=dir_fd)
        elif kind in ("char device", "block device"):
            record["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        xattrs = _read_xattrs(dir_fd if name is None else b"/proc/self/fd/%d/%s" % (dir_fd, name))
    except OSError as exc:
        record["error"] = f"cannot read: {exc.strerror}"
        return record
    record["xattrs"] = {k: v for k, v in xattrs.items() if k.startswith("user.")}
    record["acl"] = {k: v for k, v in xattrs.items() if k in ACL_XATTRS}
    record["capability"] = xattrs.get(CAPABILITY_XATTR)
    return record


def scan_tree(root: Path | str | bytes) -> dict[bytes, dict[str, Any]]:
    """Every entry under ``root`` (``.`` for ``root`` itself, followed if it is a symlink),
    by relative path as bytes. ``root`` may also be a single file."""
    records: dict[bytes, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    root_bytes = os.fsencode(root)
    top = os.stat(root_bytes)
    if not stat.S_ISDIR(top.st_mode):
        parent, name = os.path.split(os.path.realpath(root_bytes))
        parent_fd = os.open(parent, DIR_FLAGS)
        try:
            records[b"."] = _record(parent_fd, name, os.stat(name, dir_fd=parent_fd))
        finally:
            os.close(parent_fd)
        return records

    def visit(dir_fd: int, prefix: bytes) -> None:
        for name in _names(dir_fd):
            relative = prefix + name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            record = records[relative] = _record(dir_fd, name, st)
            if not stat.S_ISDIR(st.st_mode):
                if st.st_nlink > 1:
                    inodes[(st.st_dev, st.st_ino)].append(relative)
                continue
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                record["error"] = f"cannot open: {exc.strerror}"
                continue
            try:
                visit(sub, relative + b"/")
            except OSError as exc:
                record["error"] = f"cannot list: {exc.strerror}"
            finally:
                os.close(sub)

    fd = os.open(root_bytes, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        records[b"."] = _record(fd, None, os.fstat(fd))
        visit(fd, b"")
    finally:
        os.close(fd)
    for group in inodes.values():
        if len(group) > 1:
            for relative in group:
                records[relative]["hardlinks"] = tuple(sorted(group))
    return records


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


def short_tempdir(prefix: str = "rt-") -> str:
    """A directory with a short path (a socket's path must fit in 108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")
