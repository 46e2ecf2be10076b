"""Who this process is on this host, and whether a process recorded earlier still runs.

The bucket lock records its holder this way, so that a later run on the same host can tell a
holder that was killed (``kill -9``, the OOM killer) from one that still runs. Everything is read
from ``/proc`` and ``/etc``; where they say nothing (another system, a hidden ``/proc``), the
answer is the one that never breaks a live holder's lock: "still running".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class HostIdentity:
    """The host, this boot of it, and the pid namespace: where a pid means one process."""

    #: The machine id (``/etc/machine-id``), or ``hostname:<name>`` when there is none.
    host_id: str
    #: The kernel's random id of this boot; empty when unknown.
    boot_id: str
    #: The pid namespace (``pid:[4026531836]``); empty when unknown.
    pid_namespace: str

    @property
    def known(self) -> bool:
        """True when a pid recorded under this identity can be looked up here and now."""
        return bool(self.host_id and self.boot_id and self.pid_namespace)


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.readline().strip()
    except OSError:
        return ""


def this_host() -> HostIdentity:
    machine_id = next(filter(None, map(_read_first_line, MACHINE_ID_FILES)), "")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return HostIdentity(
        host_id=machine_id or f"hostname:{socket.gethostname()}",
        boot_id=_read_first_line(BOOT_ID_FILE),
        pid_namespace=namespace,
    )


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None if unreadable.

    The name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
    fields are split after its last closing one: the state (field 3) is the first.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            line = file.read()
    except OSError:
        return None
    _, closing, rest = line.rpartition(b")")
    if not closing:
        return None
    return rest.decode("ascii", "replace").split()


def _started(fields: list[str]) -> int | None:
    try:
        return int(fields[19])  # field 22, counted from the state, which is field 3
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (field 22 of ``/proc/<pid>/stat``)."""
    fields = _stat_fields(pid)
    return _started(fields) if fields else None


def is_running(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` (None: unknown) still runs here.

    False only when that is certain: no process has the pid, it is a zombie (it holds nothing any
    more), or the pid now belongs to a process that started at another time (a reused pid).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's process
    fields = _stat_fields(pid)
    if not fields:
        return True  # it exists, but /proc hides it (hidepid): nothing proves it is another
    if fields[0] in ("Z", "X"):
        return False
    return started is None or _started(fields) == started


def process_tag() -> str:
    """This process, as part of a file name: ``<pid>.<start time>.<boot>.<pid namespace>``.

    The boot is the first 8 hex digits of the boot id, the pid namespace its inode number; an
    unknown part is empty. :func:`tagged_process_gone` tells later whether the process still runs.
    """
    here = this_host()
    started = start_time(os.getpid())
    return ".".join(
        (
            str(os.getpid()),
            "" if started is None else str(started),
            _boot_key(here.boot_id),
            _namespace_key(here.pid_namespace),
        )
    )


def tagged_process_gone(tag: str) -> bool:
    """Whether the process that :func:`process_tag` described as ``tag`` certainly no longer runs.

    A process of an earlier boot is gone. One of another pid namespace of this boot, or recorded
    where this host cannot tell (no ``/proc``), may still run. A tag that is not one names no
    process at all: nothing runs that it could belong to.
    """
    try:
        pid_text, started_text, boot, namespace = tag.split(".")
        pid = int(pid_text)
        started = int(started_text) if started_text else None
    except ValueError:
        return True
    here = this_host()
    if not here.known or not boot:
        return False
    if boot != _boot_key(here.boot_id):
        return True
    if namespace != _namespace_key(here.pid_namespace):
        return False
    return not is_running(pid, started)


def _boot_key(boot_id: str) -> str:
    return boot_id.replace("-", "")[:8]


def _namespace_key(namespace: str) -> str:
    """``pid:[4026531836]`` -> ``4026531836``."""
    return "".join(filter(str.isdigit, namespace))
