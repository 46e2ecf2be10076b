"""Scanning a tree: every entry and every piece of metadata a faithful restore brings back.

``scan_tree`` records, per relative path (as bytes): type, size, SHA-256 of the content, permission
bits, owner, nanosecond mtime (of symlinks and directories too), symlink target as bytes, the
names sharing an inode, device numbers, user extended attributes, POSIX ACLs, the file capability
and sparseness. Entries are reached through directory descriptors, never full paths, so a path
longer than ``PATH_MAX`` is scanned like any other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections import defaultdict
from pathlib import Path
from typing import Any

from spare.testing.trees.content import MiB
from spare.testing.trees.fs import ACL_XATTRS, CAPABILITY_XATTR, DIR_FLAGS, sorted_names


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


def _record(
    dir_fd: int, name: bytes | None, st: os.stat_result, strict: bool = False
) -> dict[str, Any]:
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
        if strict:
            raise
        record["error"] = f"cannot read: {exc.strerror}"
        return record
    record["xattrs"] = {k: v for k, v in xattrs.items() if k.startswith("user.")}
    record["acl"] = {k: v for k, v in xattrs.items() if k in ACL_XATTRS}
    record["capability"] = xattrs.get(CAPABILITY_XATTR)
    return record


def scan_tree(root: Path | str | bytes, *, strict: bool = False) -> dict[bytes, dict[str, Any]]:
    """Every entry under ``root`` (``.`` for ``root`` itself, followed if it is a symlink),
    by relative path as bytes. ``root`` may also be a single file.

    An entry that cannot be read or listed gets an ``error`` field (a difference of its own), or
    with ``strict`` the OSError is raised.
    """
    records: dict[bytes, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    root_bytes = os.fsencode(root)
    top = os.stat(root_bytes)
    if not stat.S_ISDIR(top.st_mode):
        parent, name = os.path.split(os.path.realpath(root_bytes))
        parent_fd = os.open(parent, DIR_FLAGS)
        try:
            records[b"."] = _record(parent_fd, name, os.stat(name, dir_fd=parent_fd), strict)
        finally:
            os.close(parent_fd)
        return records

    def visit(dir_fd: int, prefix: bytes) -> None:
        for name in sorted_names(dir_fd):
            relative = prefix + name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            record = records[relative] = _record(dir_fd, name, st, strict)
            if not stat.S_ISDIR(st.st_mode):
                if st.st_nlink > 1:
                    inodes[(st.st_dev, st.st_ino)].append(relative)
                continue
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if strict:
                    raise
                record["error"] = f"cannot open: {exc.strerror}"
                continue
            try:
                visit(sub, relative + b"/")
            except OSError as exc:
                if strict:
                    raise
                record["error"] = f"cannot list: {exc.strerror}"
            finally:
                os.close(sub)

    fd = os.open(root_bytes, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        records[b"."] = _record(fd, None, os.fstat(fd), strict)
        visit(fd, b"")
    finally:
        os.close(fd)
    for group in inodes.values():
        if len(group) > 1:
            for relative in group:
                records[relative]["hardlinks"] = tuple(sorted(group))
    return records
