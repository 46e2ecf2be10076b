"""What the unit tests of the repository format share: a key ring, the built-in plugins,
hypothesis settings, transform chains and chunkers."""

from __future__ import annotations

import pyfastcdc
from hypothesis import HealthCheck, settings

from spare.keys import KeyRing
from spare.plugins import Plugins
from spare.repository.opening import CHUNKER
from spare.transform import TransformChain

KEYS = KeyRing.generate()
PLUGINS = Plugins()
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def chain(names: list[str]) -> TransformChain:
    return PLUGINS.transforms.chain(names, KEYS)


def chunker(keys: KeyRing, small: bool = True) -> pyfastcdc.FastCDC:
    if small:  # small chunks so that examples of a few hundred KiB cut into several
        return pyfastcdc.FastCDC(4096, min_size=1024, max_size=16384, seed=keys.chunker_seed)
    return pyfastcdc.FastCDC(
        CHUNKER["avg"], min_size=CHUNKER["min"], max_size=CHUNKER["max"], seed=keys.chunker_seed
    )
