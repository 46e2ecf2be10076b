"""The command line: option parsing and error reporting only; the work is in spare.commands."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spare import __version__
from spare.console import say
from spare.errors import CompletedWithWarnings, LocalSystemError, SpareError, UsageError

if TYPE_CHECKING:
    from spare.commands.context import Context

#: What the host may refuse whatever spare does: reported in one line, exit code 16.
LOCAL_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EMFILE,
    errno.ENFILE,
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Every option: --help names the variable it is also read from.
option = functools.partial(click.option, show_envvar=True)


def cache_root() -> Path:
    """The local cache's directory, created if needed; one that cannot be used is an error."""
    if explicit := os.environ.get("SPARE_CACHE_DIR"):
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "spare"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as exc:
        raise LocalSystemError(
            f"cannot use the cache directory {root} ({exc.strerror}); set SPARE_CACHE_DIR to a "
            "writable directory"
        ) from None
    return root


def read_secret_file(path: str, what: str) -> str:
    """The first line of the file ``path`` holding a secret; a note if others may read it."""
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            secret = file.readline().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not UTF-8 text") from None
    if mode & 0o077:
        say(
            f"note: the {what} file {path} can be read by other users (mode {mode & 0o777:o}): "
            f"chmod 600 {path}"
        )
    return secret


def read_secret(value: str | None, path: str | None, what: str) -> str | None:
    """A secret given as ``--<what>`` or as ``--<what>-file``, not both; None if neither."""
    option = "--" + what.replace(" ", "-")
    if value and path:
        raise UsageError(f"give either {option} or {option}-file, not both")
    if path:
        return read_secret_file(path, what) or None
    return value or None


def read_password(password: str | None, password_file: str | None) -> str:
    password = read_secret(password, password_file, "password")
    if not password:
        raise UsageError("no password given: use SPARE_PASSWORD, --password-file or --password")
    return password


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes, each also read from its SPARE_* variable."""
    options = [
        option(
            "--endpoint",
            envvar="SPARE_ENDPOINT",
            help="S3 host[:port], http(s)://host[:port], or file:///directory.",
        ),
        option(
            "--access-key",
            envvar="SPARE_ACCESS_KEY",
            help="S3 access key (default: AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/credentials).",
        ),
        option(
            "--secret-key",
            envvar="SPARE_SECRET_KEY",
            help="S3 secret key (prefer SPARE_SECRET_KEY or --secret-key-file).",
        ),
        option(
            "--secret-key-file",
            envvar="SPARE_SECRET_KEY_FILE",
            type=click.Path(),
            help="A file whose first line is the S3 secret key.",
        ),
        option(
            "--password",
            envvar="SPARE_PASSWORD",
            help="The backup's password (prefer SPARE_PASSWORD or --password-file).",
        ),
        option(
            "--password-file",
            envvar="SPARE_PASSWORD_FILE",
            type=click.Path(),
            help="A file whose first line is the password.",
        ),
        option("--bucket", envvar="SPARE_BUCKET", help="The bucket (one per host and path)."),
        option(
            "--verbose", "-v", is_flag=True, envvar="SPARE_VERBOSE", help="Say what is being done."
        ),
    ]
    for decorate in reversed(options):
        command = decorate(command)
    return command


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the connection options into a :class:`spare.commands.context.Context` argument."""

    @functools.wraps(command)
    def wrapper(
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        secret_key_file: str | None,
        password: str | None,
        password_file: str | None,
        bucket: str | None,
        verbose: bool,
        **kwargs: Any,
    ) -> Any:
        from spare.commands.context import Context
        from spare.memory import keep_heap_small
        from spare.signals import interruptible
        from spare.storage import parse_endpoint

        keep_heap_small()

        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="spare: %(message)s",
            stream=sys.stderr,
        )
        location = parse_endpoint(
            endpoint, bucket, access_key, read_secret(secret_key, secret_key_file, "secret key")
        )
        ctx = Context(
            location, read_password(password, password_file), cache_root(), verbose=verbose
        )
        with interruptible():
            return command(ctx, **kwargs)

    return connection_options(wrapper)


def tell(ctx: Context, message: str) -> None:
    """Say what was done, with ``--verbose``."""
    if ctx.verbose:
        say(message)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="spare")
def cli() -> None:
    """One S3 backup, encrypted on the fly."""


@cli.command()
@pass_context
@option(
    "--path",
    envvar="SPARE_PATH",
    type=click.Path(),
    help="The directory (or single file) to back up.",
)
@option(
    "--skip",
    multiple=True,
    help="Leave out this path, relative to --path (e.g. ./cache); globs allowed. "
    "Repeatable; SPARE_SKIP holds several, separated by ':'.",
)
@option(
    "--force",
    is_flag=True,
    envvar="SPARE_FORCE",
    help="Back up even if the bucket holds the backup of another host or path, of another "
    "repository than this host used there, or older than one this host has seen.",
)
@option(
    "--compression",
    envvar="SPARE_COMPRESSION",
    default="lzma",
    show_default=True,
    help="The compression transform ('none' to store uncompressed).",
)
@option(
    "--limit-upload",
    envvar="SPARE_LIMIT_UPLOAD",
    type=click.IntRange(min=1),
    help="Upload at most this many KiB per second on average.",
)
@option(
    "--pack-size",
    envvar="SPARE_PACK_SIZE",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Size of the pack objects in MiB.",
)
@option(
    "--check-share",
    envvar="SPARE_CHECK_SHARE",
    type=click.FloatRange(0, 100),
    default=2.0,
    show_default=True,
    help="Download and check this percent of the bucket's packs first, the next ones each "
    "run, and store anew what is found damaged (0 to check none).",
)
@option(
    "--jobs",
    envvar="SPARE_JOBS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Compress and encrypt on this many cores (spare uses one unless told); each core "
    "adds up to about 8 MiB of memory.",
)
def create(
    ctx: Context,
    path: str | None,
    skip: tuple[str, ...],
    force: bool,
    compression: str,
    limit_upload: int | None,
    pack_size: int,
    check_share: float,
    jobs: int,
) -> None:
    """Back up --path into the bucket, keeping exactly this one snapshot."""
    from spare.commands.create import BackupOptions
    from spare.commands.create import create as run

    if not path:
        raise UsageError("no path given: use --path or SPARE_PATH")
    skips = list(skip) + [s for s in os.environ.get("SPARE_SKIP", "").split(":") if s]
    options = BackupOptions(
        path,
        skips,
        force,
        compression,
        pack_size << 20,
        limit_upload * 1024 if limit_upload else None,
        check_share,
        jobs,
    )
    stats = run(ctx, options)
    tell(
        ctx,
        f"backed up {stats.files} files, {stats.bytes} bytes "
        f"({stats.new_bytes} new, {stats.stored_bytes} stored)",
    )


@cli.command()
@pass_context
@option(
    "--path",
    envvar="SPARE_PATH",
    type=click.Path(),
    help="Where to restore (an empty or new directory).",
)
@option(
    "--include",
    multiple=True,
    help="Restore only this path (relative to the backed-up directory; globs allowed) and "
    "what lies below it. Repeatable.",
)
@option(
    "--numeric-owner",
    is_flag=True,
    envvar="SPARE_NUMERIC_OWNER",
    help="Restore owners by their numeric ids, ignoring user and group names.",
)
@option(
    "--force",
    is_flag=True,
    envvar="SPARE_FORCE",
    help="As root, restore into a directory that another user owns or that group or others may "
    "write to (they could redirect what is restored); restore a snapshot older than one this "
    "host has seen, or of a repository this host knew as another.",
)
def restore(
    ctx: Context, path: str | None, include: tuple[str, ...], numeric_owner: bool, force: bool
) -> None:
    """Restore the backup into --path, which must be empty or not exist."""
    from spare.commands.restore import RestoreOptions
    from spare.commands.restore import restore as run

    if not path:
        raise UsageError("no path given: use --path or SPARE_PATH")
    stats = run(ctx, RestoreOptions(path, list(include), numeric_owner, force))
    tell(ctx, f"restored {stats.files} files, {stats.bytes} bytes")


@cli.command()
@pass_context
@option("--path", envvar="SPARE_PATH", help="Accepted for symmetry with create; unused.")
@option(
    "--force",
    is_flag=True,
    envvar="SPARE_FORCE",
    help="Verify even a snapshot older than one this host has seen, or a replaced repository.",
)
@option(
    "--share",
    envvar="SPARE_VERIFY_SHARE",
    type=click.FloatRange(0, 100, min_open=True),
    default=100.0,
    show_default=True,
    help="Download and check only this percent of the packs, chosen at random (a nightly "
    "'--share 5' checks the whole bucket in about a month).",
)
def verify(ctx: Context, path: str | None, force: bool, share: float) -> None:
    """Download and check everything; name every damaged file."""
    from spare.commands.verify import verify as run

    stats = run(ctx, force=force, share=share)
    tell(ctx, f"the backup is intact ({stats.checked} of {stats.packs} packs checked)")


@cli.command()
@pass_context
def lock(ctx: Context) -> None:
    """Lock the bucket so that no spare run changes it."""
    from spare.commands.locking import lock as run

    tell(ctx, run(ctx))


@cli.command()
@pass_context
# Not read from SPARE_FORCE: exported for a create, it must not make unlock break live locks.
@click.option(
    "--force",
    is_flag=True,
    help="Remove the lock even if it is held by a spare command that still runs on this host "
    "(that run then stops before its commit). Never read from SPARE_FORCE.",
)
def unlock(ctx: Context, force: bool) -> None:
    """Remove the lock of 'spare lock', of another host or of a dead run (make sure no spare
    runs there); a spare still running on this host keeps its lock unless --force."""
    from spare.commands.locking import unlock as run

    tell(ctx, run(ctx, force=force))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and their documented exit code."""
    try:
        cli.main(args=argv, prog_name="spare", standalone_mode=False)
    except CompletedWithWarnings as warning:
        say(f"warning: {warning}")
        sys.exit(warning.exit_code)
    except SpareError as error:
        say(f"error: {error}")
        sys.exit(error.exit_code)
    except click.UsageError as error:
        hint = (
            f" (see 'spare {error.ctx.command_path.split(' ', 1)[-1]} --help')"
            if (error.ctx and " " in error.ctx.command_path)
            else " (see 'spare --help')"
        )
        say(f"error: {error.format_message()}{hint}")
        sys.exit(UsageError.exit_code)
    except click.ClickException as error:
        say(f"error: {error.format_message()}")
        sys.exit(error.exit_code)
    except OSError as error:
        if error.errno not in LOCAL_ERRORS:
            raise  # anything else is a bug: crash loudly, with the traceback
        where = f" ({os.fsdecode(error.filename)})" if error.filename else ""
        hint = {
            errno.ENOSPC: "free space in the cache directory or the restore target",
            errno.EDQUOT: "raise the quota, or use another cache directory or restore target",
            errno.EROFS: "use a writable cache directory or restore target",
            errno.EMFILE: "raise the limit of open files (ulimit -n)",
            errno.ENFILE: "the system's table of open files is full",
            errno.EPERM: "check the attributes ('lsattr -d': immutable?) and permissions of the "
            "cache directory and the restore target",
        }.get(error.errno or 0, "check the permissions of the cache directory and the target")
        say(f"error: {error.strerror}{where}: {hint}")
        sys.exit(LocalSystemError.exit_code)
    except (click.Abort, KeyboardInterrupt):
        say("error: interrupted")
        sys.exit(130)
    sys.exit(0)
