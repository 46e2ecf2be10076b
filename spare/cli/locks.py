"""``spare lock`` and ``spare unlock``: freeze the bucket, and clear a lock by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from spare.cli.options import pass_context

if TYPE_CHECKING:
    from spare.commands.context import Context


@click.command()
@pass_context
def lock(ctx: Context) -> None:
    """Lock the bucket so that no spare run changes it."""
    from spare.commands.locking import lock as run

    message = run(ctx)
    ctx.console.result([message], locked=True)


@click.command()
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

    message = run(ctx, force=force)
    ctx.console.result([message], locked=False)


COMMANDS = [lock, unlock]
