"""The options every command shares, and how they become a :class:`Context`.

Each option is also read from a ``SPARE_*`` variable; an option given on the command line wins
over its own variable and over the variables of the other ways to give the same secret (a
``--password-file`` on the command line beats an exported ``SPARE_PASSWORD``).
"""

from __future__ import annotations

import errno
import functools
import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from spare.console import Console
from spare.errors import LocalSystemError, UsageError

#: Every option: --help names the variable it is also read from.
option = functools.partial(click.option, show_envvar=True)

#: How long a command that runs the password command waits for it.
PASSWORD_COMMAND_TIMEOUT = 60


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
        Console.current().note(
            f"the {what} file {path} can be read by other users (mode {mode & 0o777:o}): "
            f"chmod 600 {path}"
        )
    return secret


def run_secret_command(command: str, what: str) -> str:
    """The first line a command prints (a secret store's client), run without a shell."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse the {what} command ({exc})") from None
    if not argv:
        raise UsageError(f"the {what} command is empty")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            check=False,
            timeout=PASSWORD_COMMAND_TIMEOUT,
        )
    except OSError as exc:
        raise UsageError(f"cannot run the {what} command {argv[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"the {what} command {argv[0]} printed nothing within {PASSWORD_COMMAND_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        raise UsageError(
            f"the {what} command {argv[0]} failed (exit {done.returncode}); run it by hand to "
            "see why"
        )
    try:
        return done.stdout.decode("utf-8").partition("\n")[0].rstrip("\r")
    except UnicodeDecodeError:
        raise UsageError(f"the {what} command {argv[0]} printed no UTF-8 text") from None


def read_secret(what: str, ways: dict[str, str | None]) -> str | None:
    """The secret ``what`` given one of several ways (``value``, ``file``, ``command``).

    Of the ways given on the command line, only one may be used; one given on the command line
    wins over those read from the environment; of several in the environment, only one may be
    set. None if none is given.
    """
    given = {way: value for way, value in ways.items() if value}
    source = click.get_current_context(silent=True)
    if source is not None and len(given) > 1:
        typed = {
            way: value
            for way, value in given.items()
            if source.get_parameter_source(_param(what, way)) == ParameterSource.COMMANDLINE
        }
        given = typed or given
    if len(given) > 1:
        names = " and ".join(_flag(what, way) for way in given)
        raise UsageError(f"give only one of {names} (on the command line or in the environment)")
    if not given:
        return None
    [(way, value)] = given.items()
    assert value is not None
    if way == "file":
        secret = read_secret_file(value, what)
        if not secret:
            raise UsageError(f"the {what} file {value} is empty: its first line is the {what}")
        return secret
    if way == "command":
        secret = run_secret_command(value, what)
        if not secret:
            raise UsageError(
                f"the {what} command {shlex.split(value)[0]} printed nothing: its first line of "
                f"output is the {what}"
            )
        return secret
    return value


def _param(what: str, way: str) -> str:
    return what.replace(" ", "_") + ("" if way == "value" else f"_{way}")


def _flag(what: str, way: str) -> str:
    return "--" + _param(what, way).replace("_", "-")


def read_password(ways: dict[str, str | None]) -> str:
    password = read_secret("password", ways)
    if not password:
        raise UsageError(
            "no password given: use SPARE_PASSWORD, --password-file or --password-command"
        )
    return password


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes, each also read from its SPARE_* variable."""
    options = [
        option(
            "--endpoint",
            envvar="SPARE_ENDPOINT",
            help="S3 host[:port], http(s)://host[:port], file:///directory, or another fsspec "
            "URL (sftp://user@host/directory).",
        ),
        option(
            "--region",
            envvar=["SPARE_REGION", "AWS_REGION"],
            help="The S3 region of the bucket (AWS outside us-east-1).",
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
            help="The backup's password (prefer SPARE_PASSWORD, --password-file or "
            "--password-command).",
        ),
        option(
            "--password-file",
            envvar="SPARE_PASSWORD_FILE",
            type=click.Path(),
            help="A file whose first line is the password.",
        ),
        option(
            "--password-command",
            envvar="SPARE_PASSWORD_COMMAND",
            help="A command (run without a shell) whose first line of output is the password.",
        ),
        option(
            "--key-file",
            envvar="SPARE_KEY_FILE",
            type=click.Path(),
            help="The key exported by 'spare key export': used when the bucket's config is lost.",
        ),
        option("--bucket", envvar="SPARE_BUCKET", help="The bucket (one per host and path)."),
        option(
            "--retry-for",
            envvar="SPARE_RETRY_FOR",
            type=click.FloatRange(0),
            default=600.0,
            show_default=True,
            help="Seconds to go on retrying a storage that fails or cannot be reached.",
        ),
        option(
            "--lock-wait",
            envvar="SPARE_LOCK_WAIT",
            type=click.FloatRange(0),
            default=0.0,
            show_default=True,
            help="Seconds to wait for a bucket locked by another run before giving up.",
        ),
        option(
            "--verbose", "-v", is_flag=True, envvar="SPARE_VERBOSE", help="Say what is being done."
        ),
        option(
            "--quiet", "-q", is_flag=True, envvar="SPARE_QUIET", help="Say only what went wrong."
        ),
        option(
            "--json",
            "json_output",
            is_flag=True,
            envvar="SPARE_JSON",
            help="Print progress and the result as JSON lines on standard output.",
        ),
    ]
    for decorate in reversed(options):
        command = decorate(command)
    return command


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the shared options into a :class:`spare.commands.context.Context` argument."""

    @functools.wraps(command)
    def wrapper(
        endpoint: str | None,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
        secret_key_file: str | None,
        password: str | None,
        password_file: str | None,
        password_command: str | None,
        key_file: str | None,
        bucket: str | None,
        retry_for: float,
        lock_wait: float,
        verbose: bool,
        quiet: bool,
        json_output: bool,
        **kwargs: Any,
    ) -> Any:
        from spare.commands.context import Context
        from spare.memory import keep_heap_small
        from spare.signals import interruptible
        from spare.storage import parse_endpoint

        keep_heap_small()
        console = Console.start(
            click.get_current_context().info_name or "spare",
            verbose=verbose,
            quiet=quiet,
            json=json_output,
        )
        location = parse_endpoint(
            endpoint,
            bucket,
            access_key,
            read_secret("secret key", {"value": secret_key, "file": secret_key_file}),
            region=region,
        )
        ctx = Context(
            location,
            read_password({"value": password, "file": password_file, "command": password_command}),
            cache_root(),
            console=console,
            retry_for=retry_for,
            lock_wait=lock_wait,
            key_file=Path(key_file) if key_file else None,
        )
        with interruptible():
            return command(ctx, **kwargs)

    return connection_options(wrapper)
