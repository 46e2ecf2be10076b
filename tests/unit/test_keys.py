"""The master key (spare.keys): the password wraps it, a wrong password is refused."""

from __future__ import annotations

import pytest
from support.formats import KEYS

from spare.keys import KdfParams, unwrap_master_key, wrap_master_key


def test_password_wraps_the_master_key() -> None:
    params = KdfParams.generate()
    wrapped = wrap_master_key(KEYS.master, params.derive("right"))
    assert unwrap_master_key(wrapped, params.derive("right")) == KEYS.master
    from spare.errors import WrongPassword

    with pytest.raises(WrongPassword):
        unwrap_master_key(wrapped, params.derive("wrong"))
