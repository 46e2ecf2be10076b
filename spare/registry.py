"""Small registry objects that the ``spare_register_*`` hooks fill in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from spare.errors import MissingPlugin
from spare.transform import TransformChain

if TYPE_CHECKING:
    from spare.keys import KeyRing
    from spare.lock import Lock
    from spare.storage import Storage, StorageLocation
    from spare.transform import Transform

F = TypeVar("F")


class _Registry(Generic[F]):
    kind = "plugin"

    def __init__(self) -> None:
        self._factories: dict[str, F] = {}
        self._fallbacks: set[str] = set()

    def _add(self, name: str, factory: F, *, fallback: bool = False) -> None:
        if name in self._factories and name not in self._fallbacks:
            if fallback:
                return
            raise ValueError(f"the {self.kind} {name!r} is registered twice")
        self._factories[name] = factory
        if fallback:
            self._fallbacks.add(name)
        else:
            self._fallbacks.discard(name)

    def get(self, name: str) -> F:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(set(self._factories) - self._fallbacks)) or "none"
            raise MissingPlugin(
                f"no {self.kind} named {name!r} is installed (installed: {known}); "
                f"install the plugin that provides it"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


class StorageRegistry(_Registry["Callable[[StorageLocation], Storage]"]):
    kind = "storage backend"

    def add_storage(
        self,
        scheme: str,
        factory: Callable[[StorageLocation], Storage],
        *,
        fallback: bool = False,
    ) -> None:
        """Serve URLs of ``scheme`` with ``factory``; a ``fallback`` yields to a later one."""
        self._add(scheme, factory, fallback=fallback)


class TransformRegistry(_Registry["Callable[[KeyRing], Transform]"]):
    kind = "transform"

    def add_transform(self, name: str, factory: Callable[[KeyRing], Transform]) -> None:
        """Make the transform ``name`` available; ``factory`` gets the repository's key ring."""
        self._add(name, factory)

    def chain(self, names: Sequence[str], keys: KeyRing) -> TransformChain:
        """The transforms ``names``, in order, made with the repository's key ring."""
        return TransformChain([self.get(name)(keys) for name in names])


class LockRegistry(_Registry["Callable[[Storage], Lock]"]):
    kind = "lock"

    def add_lock(self, name: str, factory: Callable[[Storage], Lock]) -> None:
        """Make the lock ``name`` available; ``factory`` gets the bucket's storage."""
        self._add(name, factory)
