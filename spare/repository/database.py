"""The boundary between spare and SQLite: every database spare keeps is opened through
:func:`connect`, where the SQLite errors that the host causes (a full disk, a directory spare may
not write, another process holding the database, a damaged file) become spare's errors, one line
and an exit code; any other SQLite error is a bug and stays one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spare.errors import LocalSystemError, Locked, SpareError

#: Seconds a statement waits for another process's write to the same database to end. Commands
#: that share a cache also share a bucket, whose lock they take first, so only a spare still
#: closing its cache, or a run whose lock was removed by ``spare unlock --force``, makes one wait.
BUSY_TIMEOUT = 30.0

#: Bytes free under which a file system counts as full when SQLite reports an I/O error.
NEARLY_FULL = 1 << 20

#: SQLite's primary result codes that mean the host refused.
_REFUSED = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM)
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def host_error(exc: sqlite3.Error, path: Path) -> SpareError | None:
    """What ``exc``, raised by the database ``path``, means to the user; None for a bug."""
    code = getattr(exc, "sqlite_errorcode", None) or 0
    primary = code & 0xFF  # an extended code's primary code
    where = f"the local cache {path} ({exc}, {getattr(exc, 'sqlite_errorname', code)})"
    # Out of space, SQLite may say "disk I/O error" (its shared memory file could not grow).
    if primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and _full(path.parent)):
        return LocalSystemError(
            f"no space left for {where}: free space in {path.parent}, or set SPARE_CACHE_DIR to a "
            "directory with room"
        )
    if primary in _REFUSED:
        return LocalSystemError(
            f"cannot write {where}: make {path.parent} writable (mode, owner, 'lsattr -d', a "
            "read-only mount), or set SPARE_CACHE_DIR to a writable directory"
        )
    if primary == sqlite3.SQLITE_IOERR:
        return LocalSystemError(
            f"the file system failed while writing {where}: check it (dmesg), or set "
            "SPARE_CACHE_DIR to a directory on another one"
        )
    if primary in _BUSY:
        return Locked(
            f"another spare run is using {where}; try again once it has finished (a run whose "
            "lock was removed with 'spare unlock --force' may still be running)"
        )
    return None


def _full(directory: Path) -> bool:
    """Whether the file system of ``directory`` has (almost) no room left for this user."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


#: SQLite's primary result codes that mean the database file is damaged.
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class CacheDamaged(LocalSystemError):
    """The database file is damaged (a disk fault, a crash of the file system): it is removed,
    and rebuilt from the bucket by the next run."""


def _damaged(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _DAMAGED


def remove_database(path: Path) -> None:
    """Remove the database ``path`` with its journal files."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        with contextlib.suppress(FileNotFoundError):
            (path.parent / name).unlink()


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        error = host_error(exc, path)
        if error is None:
            raise
        raise error from exc
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        remove_database(path)
        raise CacheDamaged(
            f"the local cache {path} is damaged ({exc}); it was removed, and the next run "
            "rebuilds it from the bucket: check the disk it was on (dmesg)"
        ) from exc


class _Connection(sqlite3.Connection):
    """A connection whose statements fail with :func:`host_error`'s errors where the host
    refused. A statement does its work in ``execute`` (a query up to its first row, sorting
    included), so the rows fetched afterwards only read what is there."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        self.path = Path(database)
        super().__init__(database, *args, **kwargs)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with _translated(self.path):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        with _translated(self.path):
            return super().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        # sqlite3 commits the open transaction before a script: a crash after it would keep
        # half of what the transaction was to make whole (a pack known that was never stored).
        if self.in_transaction:
            raise RuntimeError("a script would commit the open transaction: use execute")
        with _translated(self.path):
            return super().executescript(sql_script)

    def commit(self) -> None:
        with _translated(self.path):
            super().commit()


def connect(path: Path, **options: Any) -> sqlite3.Connection:
    """Open the database ``path`` (see :class:`_Connection`); ``options`` go to sqlite3."""
    with _translated(path):
        return sqlite3.connect(path, factory=_Connection, timeout=BUSY_TIMEOUT, **options)
