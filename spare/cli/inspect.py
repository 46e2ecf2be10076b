"""``spare info``, ``ls`` and ``dump``: what is in the backup, without restoring it."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

import click

from spare.cli.options import pass_context
from spare.console import duration_text, size_text
from spare.errors import NoSnapshot

if TYPE_CHECKING:
    from spare.commands.context import Context


@click.command()
@pass_context
def info(ctx: Context) -> None:
    """The backup's snapshot, size and lock: what a monitoring check reads (with --json)."""
    from spare.commands.inspect import age_seconds
    from spare.commands.inspect import info as run

    found = run(ctx)
    figures = found.figures()
    lock = f"locked by {found.holder.describe()}" if found.holder else "not locked"
    snapshot = found.snapshot
    if snapshot is None:
        ctx.console.result([], **figures)
        raise NoSnapshot(f"there is no backup in this bucket yet ({lock})")
    ratio = f"{found.ratio:.2f}" if found.ratio else "unknown"
    lines = [
        f"snapshot {snapshot.seq} of {snapshot.host}:{snapshot.path}",
        f"taken {snapshot.time} ({duration_text(age_seconds(snapshot.time))} ago)",
        f"{snapshot.stats.get('files', 0):,} files, {size_text(snapshot.stats.get('bytes', 0))}",
        f"stored: {size_text(found.stored_bytes)} in {found.objects:,} objects "
        f"({found.packs:,} packs); {ratio} bytes backed up per byte stored",
        f"the bucket is {lock}",
    ]
    for line in lines:
        ctx.console.report(line)
    ctx.console.result([], **figures)


@click.command()
@pass_context
@click.argument("patterns", nargs=-1)
def ls(ctx: Context, patterns: tuple[str, ...]) -> None:
    """List the files in the backup, like 'ls -l': all of them, or those PATTERNS name (paths
    relative to the backed-up directory or absolute, globs allowed, as 'restore --include')."""
    from spare.commands.inspect import listing, ls_line, ls_record

    out = sys.stdout.buffer
    shown = 0
    try:
        for _, selection, entry in listing(ctx, list(patterns)):
            host_path = selection.host_path(entry.path)
            if ctx.console.json:
                ctx.console.emit("entry", **ls_record(entry, host_path))
            else:
                out.write(ls_line(entry, host_path))
            shown += 1
        out.flush()
    except BrokenPipeError:  # 'spare ls | head': the reader has seen enough
        _quiet_stdout()
        return
    ctx.console.result([], entries=shown)


@click.command()
@pass_context
@click.argument("path")
def dump(ctx: Context, path: str) -> None:
    """Write one file of the backup to standard output (PATH relative to the backed-up
    directory, or absolute as it was on the backed-up host)."""
    from spare.commands.inspect import dump as run

    if ctx.console.json:
        raise click.UsageError("dump writes the file to standard output: it takes no --json")
    try:
        size = run(ctx, path, sys.stdout.buffer)
    except BrokenPipeError:
        _quiet_stdout()
        return
    ctx.console.result([], bytes=size)


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of a closed
    pipe raises nothing."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


COMMANDS = [info, ls, dump]
