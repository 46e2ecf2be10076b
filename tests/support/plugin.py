"""A third-party plugin, installed as pip would leave it: a module and its ``.dist-info``."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from support.buckets import FileBackend
from support.harness import REPO_ROOT

PLUGIN = '''
import dataclasses, json, os
from spare.hookspecs import hookimpl
from spare.errors import IntegrityError
from spare.transform import Transform

MARK = b"rev1"

class Reverse(Transform):
    """Reverses the bytes: useless, but unmistakable in the stored objects."""
    name = "reverse"

    def encode(self, data, context):
        return MARK + bytes(data)[::-1]

    def decode(self, data, context):
        if not data.startswith(MARK):
            raise IntegrityError("not reversed")
        return data[len(MARK):][::-1]

@hookimpl
def spare_register_transforms(registry):
    registry.add_transform("reverse", lambda keys: Reverse())

@hookimpl
def spare_snapshot_committed(snapshot):
    with open(os.environ["SPARE_TEST_HOOK_LOG"], "a") as log:
        log.write(json.dumps(dataclasses.asdict(snapshot)) + "\\n")
'''


def install_fake_distribution(site: Path) -> None:
    """What ``pip install spare-reverse`` would leave behind, minus pip."""
    (site / "spare_reverse.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "spare_reverse-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spare-reverse\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[spare]\nreverse = spare_reverse\n")


QUIRKS = '''
import os, signal, threading
from spare.errors import StorageTransient
from spare.hookspecs import hookimpl
from spare.storage import StorageLocation, StorageWrapper
from spare_plugins.local_storage import make_local

def _set(module, name, value):  # a knob that moved elsewhere must fail, not be ignored
    if not hasattr(module, name):
        raise AttributeError(f"{module.__name__} has no {name}: update tests/support/plugin.py")
    setattr(module, name, value)

refresh = os.environ.get("SPARE_TEST_LOCK_REFRESH")
if refresh:  # what a long run would do in hours, done in seconds
    import spare.repository.locking
    _set(spare.repository.locking, "REFRESH_INTERVAL", float(refresh))
first_wait = os.environ.get("SPARE_TEST_FIRST_WAIT")
if first_wait:  # retries of a fault test come within a second, as a real outage's would not
    import spare.storage
    _set(spare.storage, "FIRST_WAIT", float(first_wait))
busy = os.environ.get("SPARE_TEST_CACHE_BUSY")
if busy:  # a run that waits for another's cache gives up in a second instead of thirty
    import spare.repository.database
    _set(spare.repository.database, "BUSY_TIMEOUT", float(busy))

class LostReply(StorageWrapper):
    """Creates the lock, then fails as if the reply had been lost on the way back."""
    def create(self, key, data):
        self.inner.create(key, data)
        if key == "lock":
            raise StorageTransient(f"creating {key}: the reply was lost")

class NoCondition(StorageWrapper):
    """A server that ignores If-None-Match: a create overwrites, and so never fails."""
    def create(self, key, data):
        self.inner.put(key, data)

class KillAt(StorageWrapper):
    """SIGKILLs the process right before its Nth write (SPARE_TEST_KILL_AT; none if unset), and
    appends each write (its kind and keys) to the file SPARE_TEST_WRITES, if set."""
    count = 0
    counting = threading.Lock()  # packs are uploaded from a thread of their own

    def _writing(self, kind, keys):
        with KillAt.counting:
            KillAt.count += 1
            if os.environ.get("SPARE_TEST_WRITES"):
                with open(os.environ["SPARE_TEST_WRITES"], "a") as log:
                    log.write(f"{kind} {' '.join(keys)}\\n")
            if KillAt.count == int(os.environ.get("SPARE_TEST_KILL_AT", "0")):
                os.kill(os.getpid(), signal.SIGKILL)

    def put(self, key, data):
        self._writing("put", [key])
        self.inner.put(key, data)

    def put_file(self, key, path):
        self._writing("put", [key])
        self.inner.put_file(key, path)

    def create(self, key, data):
        self._writing("create", [key])
        self.inner.create(key, data)

    def delete(self, keys):
        keys = sorted(keys)
        self._writing("delete", keys)
        self.inner.delete(keys)

def local(location):
    return make_local(StorageLocation("file", location.url, location.bucket))

@hookimpl
def spare_register_storages(registry):
    registry.add_storage("lostreply", lambda location: LostReply(local(location)))
    registry.add_storage("nocond", lambda location: NoCondition(local(location)))
    registry.add_storage("killat", lambda location: KillAt(local(location)))
'''


def install_storage_quirks(site: Path) -> None:
    """``spare-quirks``: local directories behind a storage that misbehaves as some servers do.

    ``lostreply:///dir`` creates the lock and then reports a transient failure, as when the reply
    to a conditional PUT is lost; ``nocond:///dir`` overwrites on create, as a server that ignores
    ``If-None-Match``; ``killat:///dir`` kills the process before its write number
    ``SPARE_TEST_KILL_AT``, and logs each write to the file ``SPARE_TEST_WRITES``.
    ``SPARE_TEST_LOCK_REFRESH`` shortens the lock's refresh interval,
    ``SPARE_TEST_CACHE_BUSY`` how long a run waits for another's write to the local cache,
    ``SPARE_TEST_FIRST_WAIT`` the first wait before a failed request is sent again.
    """
    (site / "spare_quirks.py").write_text(textwrap.dedent(QUIRKS))
    info = site / "spare_quirks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spare-quirks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[spare]\nquirks = spare_quirks\n")


def through(scheme: str, store: FileBackend, password: str, site: Path) -> dict[str, str]:
    """The environment of a run on ``store`` through the quirky storage ``scheme`` of the
    ``spare-quirks`` plugin installed in ``site``."""
    return {
        **store.env,
        "SPARE_ENDPOINT": f"{scheme}://{store.root}",
        "SPARE_PASSWORD": password,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)]),
    }
