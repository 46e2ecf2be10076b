"""The one exception hierarchy of spare.

Every error a user can cause or meet carries the exit code the command ends with and a message a
system administrator can act on. The CLI prints a :class:`SpareError` as one line, without a
traceback; anything else is a bug and crashes loudly.

Exit codes (also documented in README.rst; scripts rely on them, so they never change meaning):

==  =====================================================================
0   success
1   an unexpected error (a bug: please report it with the traceback)
2   bad usage: an unknown option, a missing or malformed argument
3   completed, with warnings (files that vanished or could not be read)
4   wrong password
5   the bucket holds objects that are not spare's (nothing was changed)
6   the bucket's backup belongs to another host or path (use --force)
7   the bucket is locked by another spare run (or by ``spare lock``)
8   the path to back up is missing or unreadable
9   the restore target is not empty
10  the storage endpoint cannot be reached
11  the storage refused the credentials or the access
12  damaged or missing data: found by verify, or by a restore that restored all the rest
13  a plugin the backup needs is not installed
14  the repository is damaged or of an unknown format
15  there is no backup in the bucket
16  this host refused: no space left, a read-only file system, or no permission on the cache
    directory or the restore target
130 interrupted by SIGINT; 143 interrupted by SIGTERM
==  =====================================================================
"""

from __future__ import annotations


class SpareError(Exception):
    """Base of every error spare reports to the user; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SpareError):
    exit_code = 2


class CompletedWithWarnings(SpareError):
    """Raised at the very end of a run that finished but skipped something."""

    exit_code = 3


class WrongPassword(SpareError):
    exit_code = 4


class ForeignBucket(SpareError):
    exit_code = 5


class IdentityMismatch(SpareError):
    exit_code = 6


class Locked(SpareError):
    exit_code = 7


class SourceUnavailable(SpareError):
    exit_code = 8


class TargetNotEmpty(SpareError):
    exit_code = 9


class StorageError(SpareError):
    """A storage operation failed; plugins raise the subclasses below from their own errors."""

    exit_code = 10


class StorageUnreachable(StorageError):
    exit_code = 10


class StorageTransient(StorageError):
    """A failure worth retrying (timeouts, throttling, 5xx). Retried by the storage wrapper."""

    exit_code = 10


class AccessDenied(StorageError):
    exit_code = 11


class ObjectNotFound(StorageError):
    exit_code = 14


class ObjectExists(StorageError):
    """An atomic create found the object already there."""

    exit_code = 7


class VerifyFailed(SpareError):
    exit_code = 12


class MissingPlugin(SpareError):
    exit_code = 13


class RepositoryDamaged(SpareError):
    exit_code = 14


class NoSnapshot(SpareError):
    exit_code = 15


class LocalSystemError(SpareError):
    """The host itself refused (disk full, read-only, permissions): nothing spare can fix."""

    exit_code = 16


class Interrupted(SpareError):
    """SIGINT or SIGTERM arrived; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, *, after_commit: bool = False) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} after the new snapshot was stored; the next run finishes "
            "deleting what it replaced"
            if after_commit
            else f"interrupted by {name}; no new snapshot was written"
        )
        self.signum = signum
        self.exit_code = 128 + signum
