"""``spare passwd`` and ``spare key export``: the password's wrap of the master key."""

from __future__ import annotations

import os
from pathlib import Path

from spare.commands.context import Context
from spare.errors import LocalSystemError, UsageError
from spare.repository.locking import locked
from spare.repository.opening import (
    encode_config,
    next_generation,
    rewrapped,
    store_rewrapped,
)
from spare.signals import uninterrupted


def change_password(ctx: Context, new_password: str) -> str:
    """Wrap the master key under ``new_password``, holding the lock; returns the repository id.

    Nothing but the config changes: every pack, index and snapshot stays as it is. SIGTERM
    waits for both copies of the config to be stored.
    """
    repo = ctx.open()
    try:
        with locked(repo, "passwd") as held:
            config = rewrapped(repo.config, repo.keys, new_password, next_generation(repo))
            held.ensure_held("the password was not changed")
            with uninterrupted():
                store_rewrapped(repo, config, ctx.cache_root, ctx.location_name)
        return repo.id
    finally:
        repo.close()


def export_key(ctx: Context, path: Path) -> str:
    """Write the bucket's config (the key wrapped under the password) to the new file ``path``,
    readable by its owner only; returns the repository id. The password must open it."""
    repo = ctx.open()
    try:
        data = encode_config(repo.config)
    finally:
        repo.close()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists already: spare never overwrites a key file") from None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise UsageError(f"cannot create the key file {path}: {exc.strerror}") from None
    except OSError as exc:
        raise LocalSystemError(f"cannot create the key file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
        os.fsync(fd)
    except OSError as exc:
        os.unlink(path)
        raise LocalSystemError(f"cannot write the key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return repo.id
