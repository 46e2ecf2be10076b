"""The command line: option parsing, output and error reporting; the work is in spare.commands.

The commands are defined by theme (:mod:`.backup`, :mod:`.locks`, :mod:`.inspect`, :mod:`.keys`)
and put together here; :func:`main` turns every error into one line and its exit code.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from spare import __version__
from spare.cli import backup, inspect, keys, locks
from spare.console import Console
from spare.errors import CompletedWithWarnings, LocalSystemError, SpareError, UsageError

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

LOCAL_HINTS = {
    errno.ENOSPC: "free space in the cache directory or the restore target",
    errno.EDQUOT: "raise the quota, or use another cache directory or restore target",
    errno.EROFS: "use a writable cache directory or restore target",
    errno.EMFILE: "raise the limit of open files (ulimit -n)",
    errno.ENFILE: "the system's table of open files is full",
    errno.EPERM: "check the attributes ('lsattr -d': immutable?) and permissions of the "
    "cache directory and the restore target",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="spare")
def cli() -> None:
    """One S3 backup, encrypted on the fly."""


for module in (backup, inspect, locks, keys):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and their documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args and "_SPARE_COMPLETE" not in os.environ:  # set when a shell asks to complete
        with cli.make_context("spare", ["--help"], resilient_parsing=True) as context:
            click.echo(cli.get_help(context))
        sys.exit(0)
    code, error = _run(args)
    Console.current().finish(code, error)
    sys.exit(code)


def _run(args: list[str]) -> tuple[int, str | None]:
    """The exit code of the command ``args``, and the error it ended with (said already)."""
    try:
        cli.main(args=args, prog_name="spare", standalone_mode=False)
    except CompletedWithWarnings as warning:
        say(f"warning: {warning}")
        return warning.exit_code, None
    except SpareError as error:
        say(f"error: {error}")
        return error.exit_code, str(error)
    except click.UsageError as error:
        hint = (
            f" (see 'spare {error.ctx.command_path.split(' ', 1)[-1]} --help')"
            if (error.ctx and " " in error.ctx.command_path)
            else " (see 'spare --help')"
        )
        message = f"{error.format_message()}{hint}"
        say(f"error: {message}")
        return UsageError.exit_code, message
    except click.ClickException as error:
        say(f"error: {error.format_message()}")
        return error.exit_code, error.format_message()
    except OSError as error:
        if error.errno not in LOCAL_ERRORS:
            raise  # anything else is a bug: crash loudly, with the traceback
        where = f" ({os.fsdecode(error.filename)})" if error.filename else ""
        hint = LOCAL_HINTS.get(
            error.errno or 0, "check the permissions of the cache directory and the target"
        )
        message = f"{error.strerror}{where}: {hint}"
        say(f"error: {message}")
        return LocalSystemError.exit_code, message
    except (click.Abort, KeyboardInterrupt):
        say("error: interrupted")
        return 130, "interrupted"
    return 0, None


def say(message: str) -> None:
    Console.current().say(message)  # the console the command started, once it has
