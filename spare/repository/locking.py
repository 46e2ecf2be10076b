"""The bucket lock as the core uses it: who holds it (encrypted), whose it is, what to say.

The lock itself is a plugin's (:class:`spare.lock.Lock`, the one named ``object``), which stores
and compares opaque payloads. The payload is the core's, encrypted like every other object, so
only the core can tell whose a lock is. Besides the holder's command, host, pid, the time it took
the lock and the time it last refreshed it, the payload carries:

* a random **token**: the lock is this run's when it holds this run's token, whatever its bytes
  (a refresh encrypts them anew). A create whose reply was lost, retried and refused, finds its own
  token and holds the lock; release deletes only a lock with this run's token.
* the **host id**, **boot id**, **pid namespace** and the process's **start time**: a lock that a
  spare command of this host left behind when it was killed (its pid no longer runs, or runs
  another process) is stale, and the next run clears it with a warning. A lock set by
  ``spare lock``, or by another host, is never cleared but by ``spare unlock``.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from spare.console import Console
from spare.errors import Locked, LockHeld, RepositoryDamaged, SpareError
from spare.lock import Lock
from spare.processes import HostIdentity, is_running, start_time, this_host
from spare.repository import objects
from spare.repository.repo import Repository
from spare.repository.snapshots import now

log = logging.getLogger(__name__)

#: The lock plugin the core uses.
LOCK_NAME = "object"

#: Seconds between two refreshes of a held lock: its payload's ``refreshed`` time shows another
#: host that the holder still runs. Read at each wait, so tests may shorten it.
REFRESH_INTERVAL = 300.0

#: How often taking the lock starts over when the lock changes hands meanwhile.
ATTEMPTS = 3

#: With ``--lock-wait``, the first and the longest pause between two looks at a held lock.
FIRST_POLL = 1.0
LONGEST_POLL = 10.0


@dataclass
class LockInfo:
    """Who holds the lock, as its payload says. Fields after ``time`` are empty in old locks."""

    command: str
    host: str
    pid: int
    #: When the lock was taken and last refreshed, ISO 8601 in UTC, to the second.
    time: str
    token: str = ""
    host_id: str = ""
    boot_id: str = ""
    pid_namespace: str = ""
    #: The holder's start time, in clock ticks after boot; None when unknown.
    started: int | None = None
    refreshed: str = ""

    @classmethod
    def for_this_process(cls, command: str, here: HostIdentity) -> LockInfo:
        pid, taken = os.getpid(), now()
        return cls(
            command=command,
            host=socket.gethostname(),
            pid=pid,
            time=taken,
            token=secrets.token_hex(16),
            host_id=here.host_id,
            boot_id=here.boot_id,
            pid_namespace=here.pid_namespace,
            started=start_time(pid),
            refreshed=taken,
        )

    def describe(self) -> str:
        """``'spare create' on host web1 (pid 4242) since <time>, 3 h ago, refreshed 2 min ago``."""
        return f"'spare {self.command}' on host {self.host} (pid {self.pid}) {self.age()}"

    def age(self) -> str:
        text = f"since {self.time}"
        taken = _seconds_since(self.time)
        if taken is not None:
            text += f", {_ago(taken)}"
        refreshed = _seconds_since(self.refreshed)
        if refreshed is not None and self.refreshed != self.time:
            text += f", refreshed {_ago(refreshed)}"
        return text


def _seconds_since(iso_time: str) -> float | None:
    try:
        then = datetime.datetime.fromisoformat(iso_time)
    except ValueError:
        return None
    if then.tzinfo is None:
        return None
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


def _ago(seconds: float) -> str:
    """``42 s ago``, ``7 min ago``, ``3 h ago``, ``2 d ago``; a clock ahead of ours gives 0 s."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def bucket_lock(repo: Repository) -> Lock:
    return repo.plugins.locks.get(LOCK_NAME)(repo.storage)


def encode_lock(repo: Repository, info: LockInfo) -> bytes:
    return repo.encode_object(objects.KIND_LOCK, json.dumps(asdict(info)).encode(), b"lock")


#: The command a lock that cannot be decoded is taken to hold.
UNREADABLE = "(unreadable lock)"


def describe_lock(repo: Repository, payload: bytes | None) -> LockInfo | None:
    """The holder a lock payload names; None for a free lock."""
    if payload is None:
        return None
    try:
        stored = json.loads(repo.decode_object(payload, objects.KIND_LOCK, b"lock"))
        known = {field.name for field in fields(LockInfo)}
        return LockInfo(**{key: value for key, value in stored.items() if key in known})
    except (RepositoryDamaged, ValueError, TypeError, AttributeError):
        return LockInfo(UNREADABLE, "unknown", 0, "unknown")


def stale_reason(holder: LockInfo, here: HostIdentity) -> str | None:
    """Why ``holder``'s lock may be cleared without asking, or None when it must not be.

    Only a lock of a spare command (never of ``spare lock``) of this very host, boot and pid
    namespace is judged, and only a holder that certainly no longer runs makes it stale.
    """
    if not _judged_here(holder, here) or is_running(holder.pid, holder.started):
        return None
    return "its process is no longer running on this host"


def runs_here(holder: LockInfo, here: HostIdentity) -> bool:
    """Whether ``holder`` is a spare command of this very host, boot and pid namespace that still
    runs (or may still run: /proc hides it). ``spare unlock`` refuses such a lock without
    ``--force``."""
    return _judged_here(holder, here) and is_running(holder.pid, holder.started)


def _judged_here(holder: LockInfo, here: HostIdentity) -> bool:
    """Whether this host can tell if ``holder`` runs: a spare command's lock (not ``spare lock``'s)
    taken on this host, in this boot and pid namespace, where a pid means one process."""
    if holder.command == "lock" or not holder.token or not here.known:
        return False
    return (holder.host_id, holder.boot_id, holder.pid_namespace) == (
        here.host_id,
        here.boot_id,
        here.pid_namespace,
    )


class HeldLock:
    """The lock while this run holds it: known by its token, refreshed, released once."""

    def __init__(self, repo: Repository, lock: Lock, info: LockInfo) -> None:
        self.repo = repo
        self.lock = lock
        self.info = info
        # A refresh and the release never overlap: a refresh must not store the lock again
        # after the release deleted it.
        self._mutex = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def _ours(self, payload: bytes | None) -> bool:
        holder = describe_lock(self.repo, payload)
        return holder is not None and holder.token == self.info.token

    def refresh(self) -> bool:
        """Store the lock anew with the refresh time set to now, if it still holds our token.

        False (and nothing written) when the lock is no longer ours, or is being released.
        """
        with self._mutex:
            if self._stopped.is_set():
                return False
            current = self.lock.read()
            if not self._ours(current):
                return False
            assert current is not None
            info = replace(self.info, refreshed=now())
            if not self.lock.replace(current, encode_lock(self.repo, info)):
                return False
            self.info = info
            return True

    def start_refreshing(self) -> None:
        """Refresh every :data:`REFRESH_INTERVAL` seconds from a daemon thread until released."""
        self._thread = threading.Thread(
            target=self._refresh_until_released, name="spare-lock-refresh", daemon=True
        )
        self._thread.start()

    def _refresh_until_released(self) -> None:
        while not self._stopped.wait(REFRESH_INTERVAL):
            try:
                if self.refresh() or self._stopped.is_set():
                    continue
            except (SpareError, OSError) as exc:
                log.warning("could not refresh the bucket lock (%s); will try again", exc)
                continue
            log.warning(
                "the bucket lock is no longer this run's; the run stops before its next change "
                "to the bucket"
            )
            return

    def ensure_held(self, consequence: str) -> None:
        """Raise :class:`Locked` unless the lock (read afresh) still holds this run's token.

        Called before each step that changes what the bucket's backup is (the commit, the prune),
        so that a run whose lock was removed or taken over never makes that step.
        """
        current = self.lock.read()
        if self._ours(current):
            return
        holder = describe_lock(self.repo, current)
        what = "removed (by 'spare unlock'?)" if holder is None else f"taken by {holder.describe()}"
        raise Locked(f"this run's lock on the bucket was {what} while it ran; {consequence}")

    def release(self) -> None:
        """Stop refreshing, then delete the lock if it still holds this run's token."""
        self._stopped.set()
        with self._mutex:
            current = self.lock.read()
            if self._ours(current):
                assert current is not None
                self.lock.release(current)
        if self._thread is not None:
            self._thread.join(timeout=1)  # a daemon: it never keeps the process alive anyway


class LockWait:
    """How long :func:`take` waits for a lock that another holds (``--lock-wait``): it looks
    again after pauses that grow from :data:`FIRST_POLL` to :data:`LONGEST_POLL` seconds."""

    def __init__(
        self,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._sleep = sleep
        self._started = clock()
        self._pause = FIRST_POLL

    def pause(self, holder: LockInfo) -> bool:
        """Wait before the next look at the lock ``holder`` holds; False when the time is up."""
        left = self.seconds - self.waited()
        if left <= 0:
            return False
        if self._pause == FIRST_POLL:
            log.info(
                "the bucket is locked by %s; waiting up to %.0f s for it (--lock-wait)",
                holder.describe(),
                left,
            )
        self._sleep(min(self._pause, left))
        self._pause = min(self._pause * 2, LONGEST_POLL)
        return True

    def waited(self) -> float:
        return self._clock() - self._started


def take(
    repo: Repository, command: str, *, under_manual_lock: bool = False, wait: float = 0.0
) -> HeldLock | None:
    """Take the bucket lock for ``command``; raise :class:`Locked` if another holds it.

    With ``under_manual_lock``, a lock set by ``spare lock`` is no obstacle: None is returned
    and nothing is written. A stale lock of this host (:func:`stale_reason`) is cleared first.
    A lock that another holds (a running spare's, or ``spare lock``'s) is waited for up to
    ``wait`` seconds.
    """
    lock = bucket_lock(repo)
    here = this_host()
    info = LockInfo.for_this_process(command, here)
    payload = encode_lock(repo, info)
    cleared: tuple[LockInfo, str] | None = None
    waiting = LockWait(wait)
    changes = 0
    while changes < ATTEMPTS:
        # A lock that is there is never written over, even on a server that would let a
        # conditional create overwrite it (one that ignores If-None-Match).
        current = lock.read()
        if current is None:
            try:
                lock.acquire(payload)
            except LockHeld as held:
                current = held.payload  # our own, if the reply to our create was lost
            else:
                # Read back: where the server ignores the condition, the last writer has it.
                current = lock.read()
        holder = describe_lock(repo, current)
        if holder is None:
            changes += 1
            continue  # freed meanwhile
        if holder.token == info.token:
            if cleared is not None:
                Console.current().warning(
                    f"cleared the stale lock of {cleared[0].describe()}: {cleared[1]}"
                )
            return HeldLock(repo, lock, info)
        if holder.command == "lock" and under_manual_lock:
            return None
        reason = stale_reason(holder, here)
        if reason is None:
            if waiting.pause(holder):
                continue
            error = locked_error(holder)
            if wait:
                error = Locked(f"{error}; waited {waiting.waited():.0f} s for it (--lock-wait)")
            elif holder.command != "lock":
                error = Locked(f"{error}; or give --lock-wait SECONDS to wait until it ends")
            raise error
        assert current is not None
        changes += 1
        if _clear_stale(repo, lock, current):
            cleared = (holder, reason)
    raise Locked("the bucket lock changed hands while this run tried to take it; try again")


def _clear_stale(repo: Repository, lock: Lock, stale: bytes) -> bool:
    """Delete the stale lock ``stale`` if it is still there; True if this run deleted it.

    Runs that found the same stale lock take turns, through a file lock in the cache directory
    (they are all on this host), so that none deletes the lock another took after clearing it.
    """
    with _turn(repo.cache_dir / "lock-clearing"):
        if lock.read() != stale:
            return False
        lock.release(stale)
        return True


@contextmanager
def _turn(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # which releases the flock


@contextmanager
def locked(repo: Repository, command: str, *, wait: float = 0.0) -> Iterator[HeldLock]:
    """Hold the bucket lock while the block runs, refreshing it; released on any exit. A lock
    that another holds is waited for up to ``wait`` seconds."""
    held = take(repo, command, wait=wait)
    assert held is not None
    with _holding(held):
        yield held


@contextmanager
def locked_for_reading(repo: Repository, command: str, *, wait: float = 0.0) -> Iterator[None]:
    """Like :func:`locked`, but a lock set by ``spare lock`` (a frozen backup) is no obstacle.

    The lock of a running command is.
    """
    held = take(repo, command, under_manual_lock=True, wait=wait)
    if held is None:
        yield
        return
    with _holding(held):
        yield


@contextmanager
def _holding(held: HeldLock) -> Iterator[None]:
    """Refresh ``held`` while the block runs, then release it. When the block failed, its error
    is the one the user sees: a release that fails as well is a warning."""
    held.start_refreshing()
    try:
        yield
    except BaseException:
        try:
            held.release()
        except SpareError as exc:
            Console.current().warning(
                f"could not release the bucket lock ({exc}); the next spare run on this host "
                "clears it, another host needs 'spare unlock'"
            )
        raise
    held.release()


def lock_by_hand(repo: Repository, *, wait: float = 0.0) -> None:
    """``spare lock``: take the lock and keep it (it is never refreshed nor cleared as stale);
    a lock that another holds is waited for up to ``wait`` seconds."""
    take(repo, "lock", wait=wait)


def unlock_by_hand(repo: Repository, *, force: bool = False) -> LockInfo | None:
    """``spare unlock``: remove the lock; who held it (None: nobody).

    The lock of a spare command that still runs on this host is refused (:class:`Locked`)
    unless ``force``: removing it would let another run overlap with that one. Any other lock
    (``spare lock``'s, another host's, a dead process's) is removed: whether another host's
    holder runs cannot be known here, and the sysadmin was told to check.
    """
    lock = bucket_lock(repo)
    info = describe_lock(repo, lock.read())
    if info is None:
        return None
    if not force and runs_here(info, this_host()):
        raise Locked(
            f"the bucket is locked by {info.describe()}, which is still running on this host: "
            "let it finish, or stop it; 'spare unlock --force' removes the lock anyway (that "
            "run then stops before its commit)"
        )
    lock.clear()
    return info


def locked_error(info: LockInfo | None) -> Locked:
    if info is None:
        return Locked("the bucket was locked a moment ago; try again")
    if info.command == UNREADABLE:
        return Locked(
            "the bucket's lock cannot be read (it is damaged, or was written with another key), "
            "so nobody can tell whether its holder still runs: if no spare runs on this bucket, "
            "run 'spare unlock'"
        )
    if info.command == "lock":
        return Locked(
            f"the bucket was locked by hand with {info.describe()}; run 'spare unlock' to "
            "allow changes again"
        )
    return Locked(
        f"the bucket is locked by {info.describe()}; a running spare refreshes its lock every "
        f"{REFRESH_INTERVAL / 60:g} min: if no spare runs there any more, run 'spare unlock'"
    )


def lock_holder(repo: Repository) -> LockInfo | None:
    """Who holds the bucket's lock now (None: nobody), as ``spare info`` tells."""
    return describe_lock(repo, bucket_lock(repo).read())
