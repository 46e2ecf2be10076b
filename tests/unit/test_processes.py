"""Who this process is and whether a recorded process still runs: what judges a stale lock."""

from __future__ import annotations

import os
import subprocess
import sys

from spare.processes import (
    is_running,
    process_tag,
    start_time,
    tagged_process_gone,
    this_host,
)


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


def child_tag() -> str:
    """The process tag of a child python that has exited (and was reaped) since."""
    done = subprocess.run(
        [sys.executable, "-c", "from spare.processes import process_tag; print(process_tag())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_tag_tells_a_running_process_from_a_gone_one() -> None:
    assert not tagged_process_gone(process_tag())
    assert tagged_process_gone(child_tag())


def test_a_tag_of_another_boot_or_pid_namespace() -> None:
    """Every process of an earlier boot is gone; one of another pid namespace may still run."""
    pid, started, boot, namespace = process_tag().split(".")
    other_boot = "0" * 8 if boot != "0" * 8 else "1" * 8
    assert tagged_process_gone(".".join((pid, started, other_boot, namespace)))
    assert not tagged_process_gone(".".join((pid, started, boot, namespace + "0")))


def test_what_is_no_tag_names_no_process() -> None:
    assert tagged_process_gone("abc123_x")
    assert tagged_process_gone("1.2.3")
