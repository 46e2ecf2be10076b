"""What the end-to-end suite needs to drive spare like a sysadmin does.

Spare is always run as a real process (``python -m spare``): exit codes, signal handling, stderr
and locking are part of the contract and only a real process shows them. The buckets it writes
are looked into with :mod:`support.buckets`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spare import errors

REPO_ROOT = Path(__file__).resolve().parents[2]

# The exit codes, named after the errors that carry them: spare.errors keeps the table, and
# tests/unit/test_errors.py checks that the README shows the same.
EXIT_OK = 0
EXIT_USAGE = errors.UsageError.exit_code
EXIT_WARNINGS = errors.CompletedWithWarnings.exit_code
EXIT_WRONG_PASSWORD = errors.WrongPassword.exit_code
EXIT_FOREIGN_BUCKET = errors.ForeignBucket.exit_code
EXIT_IDENTITY = errors.IdentityMismatch.exit_code
EXIT_LOCKED = errors.Locked.exit_code
EXIT_SOURCE = errors.SourceUnavailable.exit_code
EXIT_TARGET_NOT_EMPTY = errors.TargetNotEmpty.exit_code
EXIT_UNREACHABLE = errors.StorageUnreachable.exit_code
EXIT_ACCESS_DENIED = errors.AccessDenied.exit_code
EXIT_VERIFY_FAILED = errors.VerifyFailed.exit_code
EXIT_DAMAGED = errors.RepositoryDamaged.exit_code
EXIT_NO_SNAPSHOT = errors.NoSnapshot.exit_code
EXIT_LOCAL = errors.LocalSystemError.exit_code
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it: no fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_tempdir(prefix: str = "rt-") -> str:
    """A directory with a short path (a socket's path must fit in 108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; say whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------------------------
# Running spare
# --------------------------------------------------------------------------------------------


class SpareResult(subprocess.CompletedProcess[str]):
    """A finished spare run; ``pid`` is kept because a lock must name the process holding it."""

    def __init__(
        self, args: Sequence[str], returncode: int, stdout: str, stderr: str, pid: int
    ) -> None:
        super().__init__(list(args), returncode, stdout, stderr)
        self.pid = pid


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Everything needed to understand a failed assertion about a run, in one message."""
    return (
        f"command: {' '.join(map(str, result.args))}\n"
        f"exit code: {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def clean_env(extra: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    """The environment of a spare run: ours minus every SPARE_* and AWS_* variable, plus ``extra``.

    Inherited SPARE_* or AWS_* variables (a developer's real credentials, say) would make runs
    depend on who runs the suite. The cache goes to a per-test directory so that no test sees
    another's cache. The checkout goes first on PYTHONPATH so the suite also runs uninstalled.
    botocore never asks the EC2 instance metadata address for credentials: the suite talks to
    loopback only.
    """
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("SPARE_", "AWS_"))
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    pythonpath = [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env["SPARE_CACHE_DIR"] = str(cache_dir)
    env["XDG_CACHE_HOME"] = str(cache_dir.parent / "xdg-cache")
    env.update(extra)
    return env


@dataclass
class SpareRunner:
    """Runs ``python -m spare`` as a child process with a clean environment and its own cache."""

    cache_dir: Path
    default_timeout: float = 120.0

    def command(self, args: Iterable[str], prefix: Sequence[str] = ()) -> list[str]:
        return [*prefix, sys.executable, "-m", "spare", *map(str, args)]

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str],
        input: str | None = None,
        timeout: float | None = None,
        prefix: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> SpareResult:
        """Run spare to completion; ``prefix`` wraps the command (``unshare`` for a host name)."""
        proc = self.popen(*args, env=env, prefix=prefix, stdin_data=input is not None, cwd=cwd)
        return finish(proc, timeout or self.default_timeout, input)

    def popen(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str],
        prefix: Sequence[str] = (),
        stdin_data: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start spare and return at once (signal and concurrency tests need the live process).

        stdin is /dev/null unless data is to be sent, so that spare can never sit waiting for a
        password typed on a terminal.
        """
        return subprocess.Popen(
            self.command(map(str, args), prefix),
            env=clean_env(env, self.cache_dir),
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )


def finish(
    proc: subprocess.Popen[str], timeout: float = 120.0, input: str | None = None
) -> SpareResult:
    """Collect a process started with :meth:`SpareRunner.popen`; a hung one fails the test."""
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(
            f"{' '.join(map(str, proc.args))} did not finish in {timeout} s\n"
            f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ) from None
    return SpareResult(proc.args, proc.returncode, stdout, stderr, proc.pid)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    """The run succeeded, and did not print a traceback on the way."""
    assert result.returncode == EXIT_OK, describe(result)
    assert "Traceback" not in result.stderr, describe(result)


def assert_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The run failed the documented way: ``code``, one line on stderr, no traceback.

    Notes said before the failure (the first create's "initialised a new backup") are lines of
    their own, not part of the error. Returns the error's line so callers can check it.
    """
    assert result.returncode == code, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    lines = [
        line
        for line in result.stderr.strip("\n").splitlines()
        if not line.startswith("spare: note: ")
    ]
    assert len(lines) == 1 and lines[0].strip(), (
        f"expected exactly one line on stderr\n{describe(result)}"
    )
    return lines[0]


def hostname_prefix(name: str) -> list[str] | None:
    """A command prefix that runs spare with host name ``name``, or None where that is impossible.

    ``unshare --uts`` gives the child its own host name without touching the machine's; it needs
    CAP_SYS_ADMIN (root in most CI containers). The prefix execs, so the pid stays spare's.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]
    probe = subprocess.run(
        [*prefix, "hostname"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0 or probe.stdout.strip() != name:
        return None
    return prefix


# Runs spare as its only child and reports the peak RSS of the largest process it waited for
# (spare, or a child of spare's such as the key derivation): ru_maxrss is in KiB on Linux.
_MEASURE = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.exit(code)
"""


def run_measured(
    runner: SpareRunner, args: Sequence[str], env: Mapping[str, str], timeout: float = 200
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run spare with ``args``; the finished run and its peak memory in MiB."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *runner.command(args)],
        env=clean_env(env, runner.cache_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, describe(result)
    return result, int(result.stdout.strip().splitlines()[-1])
