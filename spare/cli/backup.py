"""``spare create``, ``restore`` and ``verify``: the commands that move the backup's data."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from spare.cli.options import option, pass_context
from spare.console import size_text
from spare.errors import UsageError

if TYPE_CHECKING:
    from spare.commands.context import Context


@click.command()
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
    "--skip-from",
    envvar="SPARE_SKIP_FROM",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="A file of --skip patterns, one per line ('#' starts a comment). Repeatable.",
)
@option(
    "--one-file-system",
    "-x",
    is_flag=True,
    envvar="SPARE_ONE_FILE_SYSTEM",
    help="Stay on the file system of --path: file systems mounted below it are left out (their "
    "mount points are stored, empty).",
)
@option(
    "--no-cachedir-tag",
    is_flag=True,
    envvar="SPARE_NO_CACHEDIR_TAG",
    help="Back up cache directories whole: by default a directory holding a valid CACHEDIR.TAG "
    "is stored with its tag only (bford.info/cachedir).",
)
@option(
    "--dry-run",
    "-n",
    is_flag=True,
    help="Say what would be stored (new, changed and deleted files), writing nothing.",
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
    skip_from: tuple[str, ...],
    one_file_system: bool,
    no_cachedir_tag: bool,
    dry_run: bool,
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
    for file in skip_from:
        skips += read_patterns(file)
    options = BackupOptions(
        path,
        skips,
        force,
        compression,
        pack_size << 20,
        limit_upload * 1024 if limit_upload else None,
        check_share,
        jobs,
        dry_run=dry_run,
        one_file_system=one_file_system,
        cachedir_tags=not no_cachedir_tag,
    )
    stats = run(ctx, options)
    figures = stats.figures()
    if dry_run:
        # Unknown (None) when no cache of the last snapshot tells: a new host, an empty bucket.
        deleted = stats.deleted_files
        dropped = "" if deleted is None else f", and drop {deleted:,} deleted files"
        lines = [
            f"would store {stats.new_files:,} new and {stats.changed_files:,} changed files "
            f"({size_text(stats.new_bytes)} to read){dropped}; {stats.files:,} files, "
            f"{size_text(stats.bytes)} in all; nothing was written"
        ]
    else:
        lines = [
            f"backed up {stats.files:,} files, {size_text(stats.bytes)} "
            f"({stats.new_files + stats.changed_files:,} new or changed files, "
            f"{size_text(stats.new_bytes)} of new data, {size_text(stats.stored_bytes)} stored "
            "after compression)",
            f"wrote {stats.objects_written:,} objects ({size_text(stats.bytes_uploaded)}), "
            f"deleted {stats.deleted_objects:,}, in {stats.seconds:.1f} s",
        ]
    ctx.console.result(lines, **figures)


def read_patterns(path: str) -> list[str]:
    """The --skip patterns in the file ``path``: one per line; blank lines and '#' comments
    are ignored."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the --skip-from file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the --skip-from file {path} is not UTF-8 text") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@click.command()
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
    help="Restore only this path and what lies below it: relative to the backed-up directory, "
    "or absolute as it was on the backed-up host; globs allowed. Repeatable.",
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
    ctx.console.result(
        [
            f"restored {stats.files:,} files, {size_text(stats.bytes)}, in {stats.seconds:.1f} s "
            f"({size_text(stats.bytes_downloaded)} downloaded)"
        ],
        **stats.figures(),
    )


@click.command()
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
    ctx.console.result(
        [
            f"the backup is intact: {stats.checked:,} of {stats.packs:,} packs checked "
            f"({size_text(stats.bytes_downloaded)} downloaded), {stats.files:,} files "
            f"listed, in {stats.seconds:.1f} s"
        ],
        **stats.figures(),
    )


COMMANDS = [create, restore, verify]
