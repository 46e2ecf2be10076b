"""The settings a new repository is made with; the config that ``spare passwd`` stores."""

from __future__ import annotations

import os
from typing import Any

import pytest
from support.formats import KEYS, chunker

from spare.errors import RepositoryDamaged, WrongPassword
from spare.keys import KdfParams, KeyRing, wrap_master_key
from spare.repository.objects import FORMAT_VERSION
from spare.repository.opening import (
    CHUNKER,
    CONFIG_FORMAT,
    _bound,
    _check_config,
    _unlock,
    generation,
    rewrapped,
)


def test_chunk_boundaries_depend_on_the_key() -> None:
    """The gear table is seeded from the key: cut points do not reveal content across repos."""
    data = os.urandom(8 << 20)
    cuts = [
        [c.offset for c in chunker(keys, small=False).cut_buf(data)]
        for keys in (KEYS, KeyRing.generate())
    ]
    assert cuts[0] != cuts[1]
    sizes = [c.length for c in chunker(KEYS, small=False).cut_buf(data)]
    assert max(sizes) <= CHUNKER["max"] and 512 << 10 < sum(sizes) / len(sizes) < 2 << 20


def _config(keys: KeyRing, password: str) -> dict[str, Any]:
    """A config as a new repository's, the key wrapped under ``password``."""
    kdf = KdfParams.generate()
    config: dict[str, Any] = {
        "format": CONFIG_FORMAT,
        "version": FORMAT_VERSION,
        "id": os.urandom(16).hex(),
        "created": "2026-01-01T00:00:00Z",
        "kdf": kdf.to_json(),
        "chunker": CHUNKER,
    }
    config["master_key"] = wrap_master_key(keys.master, kdf.derive(password), _bound(config)).hex()
    return config


def test_rewrapping_changes_the_wrap_only() -> None:
    """passwd's config: the same master key under the new password, a fresh salt, the next
    generation; every other field as it was; the old password opens it no more."""
    keys = KeyRing.generate()
    old = _config(keys, "old")
    new = rewrapped(old, keys, "new", 1)
    assert {k: v for k, v in new.items() if k not in ("kdf", "master_key", "generation")} == {
        k: v for k, v in old.items() if k not in ("kdf", "master_key")
    }
    assert new["kdf"]["salt"] != old["kdf"]["salt"] and generation(new) == 1
    assert _unlock(new, "new").master == keys.master
    with pytest.raises(WrongPassword):
        _unlock(new, "old")


@pytest.mark.parametrize("value", [-1, "2", 1.5, True, None])
def test_a_malformed_generation_is_damage(value: object) -> None:
    config = {**_config(KeyRing.generate(), "pw"), "generation": value}
    with pytest.raises(RepositoryDamaged, match="generation"):
        _check_config(config)
