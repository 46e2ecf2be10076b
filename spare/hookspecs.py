"""The hooks a spare plugin can implement.

A plugin is a module or object with functions named like the specs below, marked with
:data:`hookimpl`. Built-in plugins live in ``spare_plugins`` and are registered exactly like
third-party ones, which are found through the ``spare`` entry-point group::

    [project.entry-points.spare]
    zstd = "spare_zstd"

Hooks only *register* things or *announce* events. Bytes never flow through a hook call: the core
asks each registry once for a factory and then talks to the objects the factory made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from spare.registry import LockRegistry, StorageRegistry, TransformRegistry

PROJECT = "spare"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class CommittedSnapshot:
    """What :func:`spare_snapshot_committed` announces: the snapshot just stored."""

    #: When the snapshot was taken, ISO 8601 in UTC (``2026-11-26T02:00:00Z``).
    time: str
    host: str
    #: The backed-up path, absolute.
    path: str
    #: 1 for a bucket's first snapshot, one more for each after it.
    seq: int
    #: Entries of every type in the snapshot; ``files`` of them regular files.
    entries: int
    files: int
    #: Total size of the files.
    bytes: int
    #: Plaintext bytes of the chunks this run stored anew.
    new_bytes: int
    #: Bytes those chunks took once compressed and encrypted.
    stored_bytes: int


@hookspec
def spare_register_storages(registry: StorageRegistry) -> None:
    """Register storage backends by URL scheme.

    Called once, the first time the core needs a storage backend. Implementations call
    ``registry.add_storage(scheme, factory)`` for each scheme they serve, where ``factory`` takes a
    :class:`spare.storage.StorageLocation` and returns a :class:`spare.storage.Storage`.
    Registering a scheme twice is an error, unless the first registration was made with
    ``fallback=True`` (the built-in fsspec plugin registers its generic protocols that way).

    :param registry: the storage registry to add to.
    """


@hookspec
def spare_register_transforms(registry: TransformRegistry) -> None:
    """Register reversible byte transforms (compression, encryption) by name.

    Called once, the first time the core needs a transform. Implementations call
    ``registry.add_transform(name, factory)``; ``factory`` takes a :class:`spare.keys.KeyRing` and
    returns a :class:`spare.transform.Transform`. The name is written into every object the
    transform touches and is needed again to read it back, so once released it must never change
    meaning. Registering a name twice is an error.

    :param registry: the transform registry to add to.
    """


@hookspec
def spare_register_locks(registry: LockRegistry) -> None:
    """Register bucket lock implementations by name.

    Called once, the first time the core takes or inspects a lock. Implementations call
    ``registry.add_lock(name, factory)``; ``factory`` takes a :class:`spare.storage.Storage` and
    returns a :class:`spare.lock.Lock`. The core uses the lock named ``object`` unless told
    otherwise. Registering a name twice is an error.

    :param registry: the lock registry to add to.
    """


@hookspec
def spare_snapshot_committed(snapshot: CommittedSnapshot) -> None:
    """Announce that ``create`` has stored a new snapshot (its commit point has passed).

    Called once per successful ``create``, after the snapshot root is stored and before older
    objects are pruned. The return value is ignored; an exception aborts the run before the prune
    (the new snapshot stays stored). Use it for monitoring or notifications.

    :param snapshot: a :class:`CommittedSnapshot`: ``time`` (ISO 8601), ``host``, ``path``,
        ``seq``, ``entries``, ``files``, ``bytes`` (total size of the files), ``new_bytes``
        (plain bytes of new chunks) and ``stored_bytes`` (bytes uploaded for them).
    """
