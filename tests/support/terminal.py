"""Running spare on a pseudo-terminal, as a person at a terminal does."""

from __future__ import annotations

import os
import pty
import select
import sys
import termios
import time
from collections.abc import Mapping, Sequence

from support.harness import SpareRunner, clean_env


def run_on_terminal(
    runner: SpareRunner,
    args: Sequence[str],
    env: Mapping[str, str],
    answers: Sequence[tuple[bytes, str]] = (),
    timeout: float = 120,
) -> tuple[int, str]:
    """Run spare with a pseudo-terminal as its controlling terminal and its standard input,
    output and error; type each answer once its prompt is shown and the terminal no longer
    echoes (what a person sees and does). Returns the exit code and all the terminal showed."""
    pending = list(answers)
    pid, leader = pty.fork()
    if pid == 0:  # the child: exec spare at once
        argv = [sys.executable, "-m", "spare", *map(str, args)]
        os.execve(sys.executable, argv, clean_env(env, runner.cache_dir))
    shown = b""
    seen = 0  # where the next prompt is looked for
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            asked = pending and pending[0][0] in shown[seen:]
            if asked and not termios.tcgetattr(leader)[3] & termios.ECHO:
                prompt, answer = pending.pop(0)
                seen = shown.index(prompt, seen) + len(prompt)
                os.write(leader, answer.encode() + b"\n")
            ready, _, _ = select.select([leader], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")
