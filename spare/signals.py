"""SIGTERM and SIGINT as exceptions, so that locks are released and scratch files removed, and
deferred across a commit point, so that a signal never splits one."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from spare.errors import Interrupted


class _Signals:
    """Whether SIGTERM and SIGINT are being deferred, and which one arrived meanwhile."""

    deferring = False
    pending: int | None = None


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted`, so that ``finally`` blocks run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _Signals.deferring:
            _Signals.pending = signum
            return
        # Ignore further signals while cleaning up: the lock must be released.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Defer SIGTERM and SIGINT until the block (a commit) is done, then raise them."""
    _Signals.deferring = True
    try:
        yield
    finally:
        _Signals.deferring = False
        signum, _Signals.pending = _Signals.pending, None
        if signum is not None:
            raise Interrupted(signum, after_commit=True)
