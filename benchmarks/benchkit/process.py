"""Running a measured child: wall time, CPU time and peak RSS, with a timeout and a log."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .common import note


@dataclass
class Proc:
    rc: int
    wall: float
    cpu: float
    rss_mib: float
    tail: str
    #: The tool's own process's peak RSS, sampled (None if it ended before the first sample).
    own_rss_mib: float | None = None
    timed_out: bool = False


def _kill_group(pid: int, flag: list[bool]) -> None:
    flag.append(True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def log_tail(log: Path, start: int, lines: int = 6) -> str:
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


# Linux keeps a process's peak RSS across execve, and a child starts from its parent's at fork:
# measured directly, every tool would inherit this script's own size (tens of MiB once a large
# data set was generated). A small interpreter forks the tool instead and reports its rusage.
# ru_maxrss is the largest of the tool's process and the children it waited for (spare derives
# its key in a child with Argon2id's 64 MiB), so a thread also samples the tool's own peak,
# VmHWM (which execve resets), every 10 ms; the last sample before it exits is its own peak but
# for growth in those last milliseconds.
TRAMPOLINE = """
import json, os, sys, threading, time
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
own = [None]
def sample():
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        own[0] = int(line.split()[1])
        except (OSError, ValueError):
            return
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump([usage.ru_maxrss, usage.ru_utime + usage.ru_stime, own[0]], out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> Proc:
    """Run argv and return wall time, user+sys CPU and peak RSS (of argv's process only).

    The child runs in its own session with output appended to log; see TRAMPOLINE for why it is
    started through a small forking interpreter.
    """
    usage_file = log.with_suffix(".usage")
    with open(log, "ab") as out:
        out.write(f"\n$ (cd {shlex.quote(str(cwd))} && {shlex.join(argv)})\n".encode())
        out.flush()
        start_offset = out.tell()
        timed_out: list[bool] = []
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", TRAMPOLINE, str(usage_file), *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, (proc.pid, timed_out))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid, timed_out)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
    try:
        maxrss_kib, cpu, own_kib = json.loads(usage_file.read_text())
    except (OSError, ValueError):  # killed before it could report: fall back to its own figures
        maxrss_kib, cpu, own_kib = usage.ru_maxrss, usage.ru_utime + usage.ru_stime, None
    return Proc(
        rc=rc,
        wall=wall,
        cpu=cpu,
        rss_mib=maxrss_kib / 1024,
        tail=log_tail(log, start_offset),
        timed_out=bool(timed_out),
        own_rss_mib=None if own_kib is None else own_kib / 1024,
    )


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        note(f"--drop-caches: cannot drop the page cache ({exc}); continuing with a warm cache")
