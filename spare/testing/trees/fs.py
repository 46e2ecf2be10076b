"""What building and scanning trees share: descriptor flags, attribute names, directory listing.

Trees are reached through directory descriptors (``dir_fd`` and ``/proc/self/fd/N/name``), never
through full paths: the richest tree holds a path longer than ``PATH_MAX``.
"""

from __future__ import annotations

import os
import struct

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
CAPABILITY_XATTR = "security.capability"

# A version 2 file capability: cap_net_raw in the permitted set, effective flag set
# (what ``setcap cap_net_raw+ep`` writes).
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def sorted_names(dir_fd: int) -> list[bytes]:
    """The names in the directory open at ``dir_fd``, as bytes, sorted."""
    with os.scandir(dir_fd) as entries:
        return sorted(os.fsencode(entry.name) for entry in entries)
