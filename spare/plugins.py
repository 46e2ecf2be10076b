"""The plugin manager and the typed front the core uses instead of calling ``pm.hook`` directly."""

from __future__ import annotations

import importlib
from functools import cached_property

import pluggy

from spare import hookspecs
from spare.errors import MissingPlugin
from spare.hookspecs import CommittedSnapshot
from spare.registry import LockRegistry, StorageRegistry, TransformRegistry

#: Built-in plugins, by module name: the core never imports them otherwise.
DEFAULT_PLUGINS = (
    "spare_plugins.fsspec_storage",
    "spare_plugins.s3_storage",
    "spare_plugins.local_storage",
    "spare_plugins.sftp_storage",
    "spare_plugins.lzma_transform",
    "spare_plugins.aessiv_transform",
    "spare_plugins.object_lock",
)

ENTRY_POINT_GROUP = "spare"


def make_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the built-ins and (unless told not to) the installed plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except (ImportError, AttributeError) as exc:
            raise MissingPlugin(
                f"a spare plugin failed to load: {exc}; fix or uninstall it"
            ) from exc
    return pm


class Plugins:
    """Registries filled on first use, and the lifecycle announcements, with their real types."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self._pm = pm

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = make_plugin_manager()
        return self._pm

    @cached_property
    def storages(self) -> StorageRegistry:
        registry = StorageRegistry()
        self.pm.hook.spare_register_storages(registry=registry)
        return registry

    @cached_property
    def transforms(self) -> TransformRegistry:
        registry = TransformRegistry()
        self.pm.hook.spare_register_transforms(registry=registry)
        return registry

    @cached_property
    def locks(self) -> LockRegistry:
        registry = LockRegistry()
        self.pm.hook.spare_register_locks(registry=registry)
        return registry

    def snapshot_committed(self, snapshot: CommittedSnapshot) -> None:
        self.pm.hook.spare_snapshot_committed(snapshot=snapshot)
