"""Transform chains (spare.transform): a blob only decodes in its own context."""

from __future__ import annotations

import pytest
from support.formats import chain

from spare.errors import IntegrityError
from spare.repository.packs import blob_context


def test_a_swapped_blob_is_refused() -> None:
    encode = chain(["lzma", "aes-siv"])
    one = encode.encode(b"first", blob_context(b"1" * 32))
    with pytest.raises(IntegrityError):
        encode.decode(one, blob_context(b"2" * 32))
