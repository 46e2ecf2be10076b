"""User and group names for numeric ids and back, as the host knows them (cached per run)."""

from __future__ import annotations

import grp
import pwd
from functools import lru_cache


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def user_id(name: str | None, fallback: int) -> int:
    """The id of user ``name`` on this host; ``fallback`` (the stored id) if there is none."""
    if name is None:
        return fallback
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return fallback


@lru_cache(maxsize=4096)
def group_id(name: str | None, fallback: int) -> int:
    """The id of group ``name`` on this host; ``fallback`` (the stored id) if there is none."""
    if name is None:
        return fallback
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return fallback
