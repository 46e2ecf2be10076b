"""The one exception hierarchy of spare.

Every error a user can cause or meet carries the exit code the command ends with and a message a
system administrator can act on. The CLI prints a :class:`SpareError` as one line, without a
traceback; anything else is a bug and crashes loudly.

The exit codes are listed once, in :data:`EXIT_CODES`; README.rst shows the same table (a test
compares them). Scripts rely on them, so a code never changes meaning.
"""

from __future__ import annotations

#: Every exit code of spare and what it means: the README's table, which a test keeps equal.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "an unexpected error (a bug: please report it with the traceback)",
    2: "bad usage: an unknown option, a missing or malformed argument",
    3: "completed, with warnings (files that vanished or could not be read; for ``verify``, "
    "damage that costs no file, which the next ``create`` repairs)",
    4: "wrong password",
    5: "the bucket holds objects that are not spare's (nothing was changed)",
    6: "the bucket's backup is not the one this host expects: of another host or path, another "
    "repository, or older than a snapshot this host has seen (use ``--force``)",
    7: "the bucket is locked by another spare run or by ``spare lock``",
    8: "the path to back up is missing or unreadable",
    9: "the restore target cannot be used: it is not empty, is not a directory or is a symlink, "
    "or (as root) it belongs to another user or others may write to it (use ``--force``)",
    10: "the storage endpoint cannot be reached",
    11: "the storage refused the credentials or the access",
    12: "damaged or missing data, found by ``verify`` (or by a ``restore``, which restores all the "
    "rest and names the damaged files)",
    13: "a plugin the backup needs is not installed",
    14: "the repository is damaged or of an unknown format",
    15: "there is no backup in the bucket",
    16: "this host refused: no space left, a read-only file system, or no permission on the cache "
    "directory (``SPARE_CACHE_DIR``) or the restore target",
    130: "interrupted by SIGINT (143: by SIGTERM); no snapshot was written, the lock was released, "
    "and the next run reuses what was uploaded",
}


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


class RolledBack(IdentityMismatch):
    """The bucket's newest snapshot is older than one this host has seen there."""


class Locked(SpareError):
    exit_code = 7


class LockHeld(Locked):
    """Raised by a :class:`spare.lock.Lock` that is taken; ``payload`` is what its holder stored
    (None if the lock vanished meanwhile). The core turns it into a :class:`Locked` message."""

    def __init__(self, payload: bytes | None) -> None:
        super().__init__("the bucket is locked")
        self.payload = payload


class SourceUnavailable(SpareError):
    exit_code = 8


class TargetNotEmpty(SpareError):
    """The restore target holds something already (or is a file): restore never overwrites."""

    exit_code = 9


class UnsafeTarget(SpareError):
    """The restore target is a symlink, or, for root, a directory another user controls: whoever
    controls it could redirect what root restores (setuid binaries included)."""

    exit_code = 9


class StorageError(SpareError):
    """A storage operation failed; plugins raise the subclasses below from their own errors."""

    exit_code = 10
    #: Whether :class:`spare.storage.RetryingStorage` tries the operation again (``--retry-for``).
    retried = False


class StorageUnreachable(StorageError):
    """No connection could be made (refused, no route, connect timeout, DNS down): retried, as
    an endpoint that is down at night is most often back a few minutes later."""

    exit_code = 10
    retried = True


class BadEndpoint(StorageUnreachable):
    """The endpoint answers, but is not the storage it should be (not an S3 server, a host name
    that does not exist, a directory that is missing): trying again cannot help."""

    retried = False


class StorageTransient(StorageError):
    """A failure worth retrying (resets, timeouts, throttling, 5xx). Retried by the storage
    wrapper."""

    exit_code = 10
    retried = True


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


class IntegrityError(RepositoryDamaged):
    """Stored bytes failed to decode: tampered with, truncated or damaged. Raised by transforms."""


class CannotCreate(SpareError):
    """The restore target's file system refused an entry (no hardlinks on FAT, say).

    Restore reports it as a warning and goes on; it never reaches the CLI on its own.
    """

    exit_code = 3


class EntryReplaced(SpareError):
    """Something other than restore replaced or removed an entry restore made (another user who
    can write to the target, say): restore leaves it alone, warns and goes on.

    ``path`` is the entry's path in the backup. It never reaches the CLI on its own.
    """

    exit_code = 3

    def __init__(self, message: str, path: bytes) -> None:
        super().__init__(message)
        self.path = path


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
