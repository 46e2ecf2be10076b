"""Who this process is and whether a recorded process still runs: what judges a stale lock."""

from __future__ import annotations

import os
import subprocess
import sys

from spare.processes import is_running, start_time, this_host


def test_this_host_is_known_on_linux() -> None:
    here = this_host()
    assert here.known
    assert here == this_host()
    assert here.pid_namespace.startswith("pid:[")


def test_this_process_runs() -> None:
    started = start_time(os.getpid())
    assert started is not None and started > 0
    assert is_running(os.getpid(), started)
    assert is_running(os.getpid(), None)


def test_a_reaped_process_no_longer_runs() -> None:
    proc = subprocess.Popen(["true"])
    started = start_time(proc.pid)
    proc.wait()
    assert not is_running(proc.pid, started)
    assert not is_running(proc.pid, None)


def test_a_zombie_holds_nothing() -> None:
    """A killed process whose parent has not reaped it yet is gone all the same."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = start_time(proc.pid)
        assert is_running(proc.pid, started)
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, and left unreaped
        assert not is_running(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_another_process() -> None:
    started = start_time(os.getpid())
    assert started is not None
    assert not is_running(os.getpid(), started + 1)


def test_pid_zero_or_less_is_no_process() -> None:
    assert not is_running(0, None)
    assert not is_running(-1, None)
