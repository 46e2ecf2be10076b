"""``spare passwd`` and ``spare key export``: change the password, keep the key in escrow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spare.cli.options import option, pass_context, read_secret
from spare.errors import UsageError

if TYPE_CHECKING:
    from spare.commands.context import Context


@click.command()
@pass_context
@option(
    "--new-password-file",
    envvar="SPARE_NEW_PASSWORD_FILE",
    type=click.Path(),
    help="A file whose first line is the new password (on a terminal, spare asks for it).",
)
def passwd(ctx: Context, new_password_file: str | None) -> None:
    """Change the password: the master key is wrapped anew, nothing else is uploaded.

    The current password is given as for every command; the old one opens the bucket until
    the new config is stored. Export the key again afterwards if you keep one in escrow.
    """
    from spare.commands.keys import change_password

    new_password = _new_password(new_password_file)
    repository = change_password(ctx, new_password)
    ctx.console.result(
        [
            f"changed the password of repository {repository}; the old one no longer opens it "
            "(a key file exported before still opens with the old password)"
        ],
        repository=repository,
    )


def _new_password(path: str | None) -> str:
    """From ``--new-password-file``, or typed twice on a terminal."""
    if path:
        password = read_secret("new password", {"file": path})
        assert password  # read_secret refuses an empty file
        return password
    if not sys.stdin.isatty():
        raise UsageError(
            "no new password: use --new-password-file or SPARE_NEW_PASSWORD_FILE, or run "
            "'spare passwd' on a terminal to type it"
        )
    return str(click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True))


@click.group(invoke_without_command=True)
@click.pass_context
def key(context: click.Context) -> None:
    """Keep the bucket's key in escrow: 'spare key export FILE', then --key-file FILE restores
    even when the bucket's config is lost."""
    if context.invoked_subcommand is None:  # a bare 'spare key' asks what there is
        click.echo(context.get_help())


@key.command("export")
@pass_context
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export(ctx: Context, file: Path) -> None:
    """Write the key, still wrapped under the password, to FILE (a new file, mode 0600).

    FILE holds what the bucket's config holds: with the password, --key-file FILE opens the
    backup when both copies of the config are gone. Keep it apart from the bucket.
    """
    from spare.commands.keys import export_key

    repository = export_key(ctx, file)
    ctx.console.result(
        [f"exported the key of repository {repository} to {file}; it opens with this password"],
        repository=repository,
        key_file=str(file),
    )


COMMANDS = [passwd, key]
