"""The richest tree a Linux file system can hold, built part by part.

``build_richest_tree`` makes every kind of entry and every piece of metadata the current user can
make (as root: device nodes, foreign and unnamed owners, file capabilities, directories of mode
000 with content...), and says what it built and what it had to leave out and why; ``build_tree``
builds the named parts only. Everything is made through directory descriptors where it must be:
the tree holds a path longer than ``PATH_MAX``. :mod:`spare.testing.trees.compare` tells whether
a restore of it lost anything.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spare.testing.trees.content import (
    PRE_1970_NS,
    WEIRD_DIR,
    WEIRD_DIR_FILE,
    WEIRD_NAMES,
    Y2038_NS,
    YEAR_1971_NS,
    YEAR_2099_NS,
    MiB,
    compressible_text,
    pattern_bytes,
)
from spare.testing.trees.fs import DIR_FLAGS
from spare.testing.trees.plan import TreePlan, named_ids, unnamed_id


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
    commands: list[list[str | bytes]] = [
        ["-m", f"u:{uid}:rw,g:{uid}:r,m::rw", plan.path(b"acl/file")],
        ["-m", f"u:{uid}:rx", plan.path(b"acl/dir")],
        ["-d", "-m", f"u::rwx,g::rx,o::-,u:{uid}:rwx,m::rwx", plan.path(b"acl/dir")],
    ]
    for args in commands:
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
