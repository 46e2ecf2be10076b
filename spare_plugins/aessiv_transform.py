"""AES-256-SIV encryption of every stored blob, authenticated with its context and a nonce."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from spare.errors import IntegrityError
from spare.hookspecs import hookimpl
from spare.keys import KeyRing
from spare.registry import TransformRegistry
from spare.transform import Transform

NONCE_BYTES = 16


class AesSivTransform(Transform):
    """Output: a random 16-byte nonce, then AES-SIV(plaintext, ad=[context, nonce]).

    SIV stays safe if a nonce ever repeats; the nonce keeps equal plaintexts from giving equal
    ciphertexts, so the store cannot even tell that two blobs are alike.
    """

    name = "aes-siv"

    def __init__(self, keys: KeyRing) -> None:
        self._aead = AESSIV(keys.encryption_key)

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(data, [context, nonce])

    def decode(self, data: bytes, context: bytes) -> bytes:
        nonce, sealed = data[:NONCE_BYTES], data[NONCE_BYTES:]
        try:
            return self._aead.decrypt(sealed, [context, nonce])
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                "a stored blob fails authentication (damaged or tampered)"
            ) from exc


@hookimpl
def spare_register_transforms(registry: TransformRegistry) -> None:
    registry.add_transform("aes-siv", AesSivTransform)
