"""Transform chains (spare.transform): a blob only decodes in its own context."""

from __future__ import annotations

import pytest
from support.formats import chain

from spare.errors import IntegrityError
from spare.repository.packs import BLOB_CONTEXT


def test_a_blob_is_not_taken_for_another_kind_of_object() -> None:
    """A blob of chunks passed off as an index object or a snapshot root is refused (a blob
    swapped for another blob is caught by the chunk id check: see test_repo)."""
    encode = chain(["lzma", "aes-siv"])
    one = encode.encode(b"first", BLOB_CONTEXT)
    for context in (b"index", b"snapshot"):
        with pytest.raises(IntegrityError):
            encode.decode(one, context)
