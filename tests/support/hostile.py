"""A hostile local user, for real, and a way to catch a running spare between two of its steps.

The attacks on a restore run as root are made by a second, unprivileged user: a child process
that drops to ``nobody`` (uid 65534, which Debian and most distributions have) with
``setgroups``/``setgid``/``setuid`` and then does what that user may do, no more.

To act at a given moment of a run, the test holds back spare's reading of a file of the bucket
(``file://`` storage) with a write lease (``fcntl(F_SETLEASE)``): the kernel makes spare's
``open`` of that file wait until the lease is released, and tells the lease holder, through
``F_GETLEASE``, that someone is waiting. Which file spare is reading says where it is: the
manifest's pack is read before the first entry is created, the packs of file contents only after
every entry is created. Nothing in spare knows about it: this is a slow disk, played by the test.
The kernel breaks a lease by itself after ``/proc/sys/fs/lease-break-time`` (45 s by default).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from support.harness import wait_until

NOBODY = 65534


def why_no_other_user() -> str | None:
    """Why the attacks cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "needs root: the attacks are on a restore run as root, by another user"
    try:
        pwd.getpwuid(NOBODY)
    except KeyError:
        return f"there is no user {NOBODY} (nobody) to attack with"
    return None


def as_nobody(action: Callable[[], None]) -> None:
    """Run ``action`` in a child process as user and group ``nobody``, without supplementary
    groups; fail if it raises. The child inherits the test's descriptors (the test's temporary
    directories are private to root, so it reaches what it attacks through them)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert os.geteuid() == NOBODY and os.getegid() == NOBODY
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the attack as nobody failed (see stderr)"


class HeldFile:
    """A file of the test's whose opening by another process waits until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)

    def waited_on(self) -> bool:
        """Someone is waiting to open the file (the lease is being broken)."""
        assert self.fd is not None
        return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK

    def release(self) -> None:
        if self.fd is not None:
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def files_held(paths: list[Path]) -> Iterator[list[HeldFile]]:
    """Hold back every opening of ``paths`` by other processes while the block runs (or until
    each is released). The lease holder is sent SIGIO when someone waits: ignored meanwhile."""
    assert paths
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
    held: list[HeldFile] = []
    try:
        for path in paths:
            held.append(HeldFile(path))
        yield held
    finally:
        for each in held:
            each.release()
        signal.signal(signal.SIGIO, previous)


def wait_for_reader(held: list[HeldFile], timeout: float = 30.0) -> None:
    """Wait until another process is held back opening one of ``held``."""
    assert wait_until(lambda: any(each.waited_on() for each in held), timeout), (
        f"nothing opened {[str(each.path) for each in held]} within {timeout} s"
    )


def pack_files(bucket: Path) -> dict[str, Path]:
    """The pack objects of a ``file://`` bucket, by name."""
    return {path.name: path for path in (bucket / "packs").glob("*/*") if path.is_file()}
