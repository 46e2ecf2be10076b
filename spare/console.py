"""What spare tells the person or the program running it.

Messages, notes, warnings and errors are one line each on standard error, after ``spare:``; with
``--verbose`` and a standard error that is no terminal (cron mail, journald) each line starts
with its time. Every message goes through :class:`Console`, so that how spare speaks is decided
in one place:

- ``--quiet`` keeps only warnings and errors;
- on a terminal, a :class:`Progress` line shows how far a long command is, and the command ends
  with a short summary (also with ``--verbose``);
- ``--json`` prints JSON lines on standard output instead: progress events at most twice a
  second, then one ``summary`` object (docs/json.rst has the schema).

Standard error's ``backslashreplace`` keeps file names of any bytes printable.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO

#: Seconds between two progress events or redraws of the progress line.
PROGRESS_INTERVAL = 0.5

#: The version of the JSON lines' schema (docs/json.rst); a field never changes meaning.
JSON_SCHEMA = 1


class Console:
    """How this run speaks; :meth:`start` makes the one the whole process uses."""

    _current: ClassVar[Console | None] = None

    def __init__(
        self,
        command: str = "spare",
        *,
        verbose: bool = False,
        quiet: bool = False,
        json: bool = False,
        stderr: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.command = command
        self.verbose = verbose and not quiet
        self.quiet = quiet
        self.json = json
        self._stderr = stderr
        self._stdout = stdout
        self.warnings: list[str] = []
        self.figures: dict[str, Any] = {}
        self.summary_lines: list[str] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._progress_shown = False  # a progress line is on the terminal, to be cleared first

    @classmethod
    def start(
        cls, command: str, *, verbose: bool = False, quiet: bool = False, json: bool = False
    ) -> Console:
        """Make the console of this process, and send spare's log records through it."""
        console = cls(command, verbose=verbose, quiet=quiet, json=json)
        cls._current = console
        handler = _ConsoleHandler(console)
        # Only spare's own loggers: the libraries' (botocore's "Found credentials in
        # environment variables.") are not spare's output.
        for name in ("spare", "spare_plugins"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [handler]
            logger.setLevel(logging.INFO if console.verbose else logging.WARNING)
            logger.propagate = False
        return console

    @classmethod
    def current(cls) -> Console:
        """The process's console; a default one where no command started one (library use)."""
        if cls._current is None:
            cls._current = cls()
        return cls._current

    # The streams are looked up when used: a test may have replaced them meanwhile.
    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def tty(self) -> bool:
        return self.stderr.isatty()

    @property
    def shows_progress(self) -> bool:
        """Whether progress is shown: as a line on a terminal, or as JSON events."""
        return self.json or (self.tty and not self.quiet)

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return round(time.monotonic() - self.started, 3)

    def _line(self, message: str) -> str:
        if self.verbose and not self.tty:
            return f"{time.strftime('%Y-%m-%dT%H:%M:%S')} spare: {message}"
        return f"spare: {message}"

    def say(self, message: str) -> None:
        """One line on standard error, whatever the options."""
        with self._lock:
            self._clear_progress()
            print(self._line(message), file=self.stderr, flush=True)

    def note(self, message: str) -> None:
        """Something worth knowing that is no fault; silenced by ``--quiet``."""
        if not self.quiet:
            self.say(f"note: {message}")

    def info(self, message: str) -> None:
        """What is being done, said with ``--verbose``."""
        if self.verbose:
            self.say(message)

    def warning(self, message: str) -> None:
        """Something went wrong without stopping the run; listed in the JSON summary."""
        self.warnings.append(message)
        self.say(f"warning: {message}")

    def report(self, message: str) -> None:
        """A line of a command's result on standard output (none with ``--json``)."""
        if not self.json:
            print(message, file=self.stdout, flush=True)

    def emit(self, kind: str, /, **fields: Any) -> None:
        """One JSON line on standard output (with ``--json``)."""
        if self.json:
            line = json.dumps({"type": kind, "command": self.command, **fields})
            with self._lock:
                print(line, file=self.stdout, flush=True)

    def result(self, lines: list[str], **figures: Any) -> None:
        """What the command did: ``figures`` go into the JSON summary, ``lines`` are the summary
        a person reads on a terminal or with ``--verbose``."""
        self.figures.update(figures)
        self.summary_lines = lines

    def finish(self, exit_code: int, error: str | None = None) -> None:
        """End the run: the JSON summary, or the human one on a terminal or with -v."""
        seconds = self.elapsed()
        if self.json:
            self.emit(
                "summary",
                schema=JSON_SCHEMA,
                exit_code=exit_code,
                error=error,
                warnings=self.warnings,
                seconds=seconds,
                **self.figures,
            )
        elif (self.tty or self.verbose) and not self.quiet and exit_code in (0, 3):
            for line in self.summary_lines:
                self.say(line)

    @contextmanager
    def progress(
        self,
        what: str,
        *,
        unit: str = "files",
        total: int | None = None,
        bytes_total: int | None = None,
    ) -> Iterator[Progress]:
        """A :class:`Progress` the command advances; shown while the block runs."""
        progress = Progress(what, unit, total=total, bytes_total=bytes_total)
        if not self.shows_progress:
            yield progress
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=self._show_progress, args=(progress, stop), name="progress", daemon=True
        )
        thread.start()
        try:
            yield progress
        finally:
            stop.set()
            thread.join()
            with self._lock:
                self._clear_progress()

    def _show_progress(self, progress: Progress, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_INTERVAL):
            if self.json:
                self.emit("progress", **progress.figures())
            else:
                with self._lock:
                    line = progress.line()[: _width() - 1]
                    self.stderr.write(f"\r\x1b[K{line}")
                    self.stderr.flush()
                    self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stderr.write("\r\x1b[K")
            self._progress_shown = False


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


@dataclass
class Progress:
    """How far a command is: items (files, or packs for verify) and bytes done, of their
    totals (None while unknown).

    The command adds to ``done`` and ``bytes`` as it goes, from one thread or with
    :meth:`add_locked`; a total may be set late, when a scan finds it.
    """

    what: str
    unit: str = "files"
    done: int = 0
    bytes: int = 0
    total: int | None = None
    bytes_total: int | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, items: int = 0, nbytes: int = 0) -> None:
        self.done += items
        self.bytes += nbytes

    def add_locked(self, items: int = 0, nbytes: int = 0) -> None:
        """:meth:`add`, from one of several threads."""
        with self._lock:
            self.done += items
            self.bytes += nbytes

    def figures(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "phase": self.what,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "bytes_done": self.bytes,
            "bytes_total": self.bytes_total,
            "bytes_per_second": round(self.bytes / elapsed) if elapsed > 0 else 0,
            "seconds": round(elapsed, 1),
            "eta_seconds": self.eta(elapsed),
        }

    def eta(self, elapsed: float) -> int | None:
        """Seconds left at the rate so far: by bytes where their total is known, else by
        items; None while neither can tell."""
        for done, total in ((self.bytes, self.bytes_total), (self.done, self.total)):
            if total and 0 < done <= total and elapsed > 0:
                return round((total - done) * elapsed / done)
        return None

    def line(self) -> str:
        figures = self.figures()
        items = f"{self.done:,}" + (f" of {self.total:,}" if self.total else "")
        size = size_text(self.bytes) + (
            f" of {size_text(self.bytes_total)}" if self.bytes_total else ""
        )
        eta = figures["eta_seconds"]
        return (
            f"spare {self.what}: {items} {self.unit}, {size}, "
            f"{size_text(figures['bytes_per_second'])}/s"
            + (f", {duration_text(eta)} left" if eta is not None else "")
        )


def size_text(size: float) -> str:
    """``size`` bytes for a person: 512 B, 1.5 KiB, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """``seconds`` as 42 s, 3 min 05 s or 2 h 10 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.console.warning(message)
        else:
            self.console.say(message)


def say(message: str) -> None:
    Console.current().say(message)


class Warnings:
    """Counts what went wrong without stopping the run, saying each as it happens."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        Console.current().warning(message)

    def note(self, message: str) -> None:
        """Say something worth knowing that is no fault: the exit code stays 0."""
        Console.current().note(message)
