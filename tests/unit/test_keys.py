"""The master key (spare.keys): the password wraps it with the config, bounds on the KDF."""

from __future__ import annotations

import time

import pytest
from support.formats import KEYS

from spare.errors import RepositoryDamaged, WrongPassword
from spare.keys import KdfParams, unwrap_master_key, wrap_master_key

BOUND = b'{"id":"0123456789abcdef0123456789abcdef","version":2}'


def test_password_wraps_the_master_key() -> None:
    params = KdfParams.generate()
    wrapped = wrap_master_key(KEYS.master, params.derive("right"), BOUND)
    assert unwrap_master_key(wrapped, params.derive("right"), BOUND) == KEYS.master
    with pytest.raises(WrongPassword):
        unwrap_master_key(wrapped, params.derive("wrong"), BOUND)


def test_the_rest_of_the_config_is_bound_to_the_key() -> None:
    params = KdfParams.generate()
    wrapped = wrap_master_key(KEYS.master, params.derive("right"), BOUND)
    with pytest.raises(WrongPassword, match="config was changed"):
        unwrap_master_key(wrapped, params.derive("right"), BOUND.replace(b"01234", b"43210"))


@pytest.mark.parametrize(
    "change",
    [
        {"memory_kib": 2**32 - 1},
        {"memory_kib": 4 * 1024 * 1024},
        {"memory_kib": 8},
        {"memory_kib": 19 * 1024},  # OWASP's minimum: below RFC 9106's, the floor
        {"iterations": 2},
        {"iterations": 10**9},
        {"iterations": 0},
        {"lanes": 0},
        {"lanes": "1"},
        {"memory_kib": 19456.5},
        {"memory_kib": True},
        {"salt": "00"},
        {"salt": "zz" * 16},
        {"name": "scrypt"},
        {"unknown": 1},
    ],
)
def test_hostile_kdf_parameters_are_refused_before_use(change: dict[str, object]) -> None:
    """A config's KDF values are checked before Argon2id runs: no hang, no huge allocation."""
    data = {**KdfParams.generate().to_json(), **change}
    started = time.monotonic()
    with pytest.raises(RepositoryDamaged):
        KdfParams.from_json(data)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("data", [None, [], "argon2id", {"salt": 5}])
def test_malformed_kdf_sections_are_damage(data: object) -> None:
    with pytest.raises(RepositoryDamaged):
        KdfParams.from_json(data)


def test_plugins_cannot_ask_for_the_cores_keys() -> None:
    """A plugin's subkey lives in a namespace of its own, whatever purpose it names."""
    for purpose in ("aes-siv encryption", "chunk id", "chunker seed"):
        plugin_key = KEYS.subkey(purpose, 64)
        assert KEYS.encryption_key not in (plugin_key, plugin_key[:32])
        assert KEYS.id_key not in (plugin_key, plugin_key[:32])
    assert KEYS.subkey("zstd dictionary") == KEYS.subkey("zstd dictionary")
    assert KEYS.subkey("zstd dictionary") != KEYS.subkey("other plugin")


def test_the_key_is_derived_in_a_child_process_the_same_way() -> None:
    """The child computes what this process would, from the request on its standard input."""
    params = KdfParams.generate()
    assert (params.memory_kib, params.iterations, params.lanes) == (64 * 1024, 3, 4)
    assert params.derive("päss wörd") == params.derive_here("päss wörd")
    assert params.derive("a") != params.derive("b")
