"""What spare tells the person running it: one line each on standard error, after ``spare:``.

Every message, note, warning and error goes through :func:`say`, so that how spare speaks is
decided in one place; what a command reports as its result goes to standard output through
:func:`report`. Standard error's ``backslashreplace`` keeps file names of any bytes printable.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    print(f"spare: {message}", file=sys.stderr, flush=True)


def report(message: str) -> None:
    """What a command hands its user as its result, on standard output."""
    print(message, flush=True)


class Warnings:
    """Counts what went wrong without stopping the run, saying each as it happens."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        say(f"warning: {message}")

    def note(self, message: str) -> None:
        """Say something worth knowing that is no fault: the exit code stays 0."""
        say(f"note: {message}")
