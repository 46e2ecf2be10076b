"""Extended attributes worth a backup: user data, POSIX ACLs and file capabilities.

``user.*`` attributes carry application data; ``system.posix_acl_access`` and
``system.posix_acl_default`` are how Linux stores POSIX ACLs; ``security.capability`` holds file
capabilities (``setcap cap_net_raw+ep /usr/bin/ping``), without which a restored binary breaks.
SELinux labels (``security.selinux``) are left to the policy, which relabels restored files.
"""

from __future__ import annotations

import errno
import os

ACLS = ("system.posix_acl_access", "system.posix_acl_default")
KEPT = ("security.capability", *ACLS)

#: Errors that mean "this file system (or this kind of entry) has no such attributes".
UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENODATA}


def wanted(name: str) -> bool:
    return name.startswith("user.") or name in KEPT


def read(target: int | bytes) -> dict[str, bytes]:
    """The kept attributes of an open file (a descriptor) or of a path (never followed)."""
    follow = isinstance(target, int)
    try:
        names = [name for name in os.listxattr(target, follow_symlinks=follow) if wanted(name)]
    except OSError as exc:
        if exc.errno in UNSUPPORTED:
            return {}
        raise
    found = {}
    for name in names:
        try:
            found[name] = os.getxattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:  # removed meanwhile, or not ours to read
                raise
    return found


def write(target: int | bytes, attributes: dict[str, bytes], *, acls: bool) -> None:
    """Set the attributes on ``target``: ACLs only if ``acls``, others if not.

    ``target`` is a descriptor, or the ``/proc/self/fd/N`` path of one (which the kernel resolves
    to that descriptor's own inode). ACLs go last, after the mode: setting an ACL sets the group
    bits of the mode to its mask.
    """
    for name, value in attributes.items():
        if (name in ACLS) == acls:
            os.setxattr(target, name, value)
