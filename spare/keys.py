"""Key derivation: a password-derived key wraps a random master key; HKDF gives the subkeys."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from spare.errors import LocalSystemError, RepositoryDamaged, WrongPassword

MASTER_KEY_BYTES = 64
WRAP_CONTEXT = b"spare master key v2"

#: The Argon2id parameters spare accepts from a bucket's config, checked before any is used: a
#: hostile config must not make spare allocate gigabytes or hash for hours, nor weaken the key
#: below RFC 9106's second recommendation, the floor.
KDF_MEMORY_KIB = (64 * 1024, 256 * 1024)
KDF_ITERATIONS = (3, 16)
KDF_LANES = (1, 8)
KDF_SALT_BYTES = (16, 64)


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters, stored in the bucket's config (they are public).

    The defaults are RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes): about 0.2 s
    once per command. The key is derived in a short-lived child process, whose memory goes back
    to the host as soon as the key is known and never adds to that of a ``create`` (which keeps
    under 100 MiB with s3fs loaded).
    """

    salt: bytes
    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4
    name: str = "argon2id"

    @classmethod
    def generate(cls) -> KdfParams:
        return cls(salt=os.urandom(16))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["salt"] = self.salt.hex()
        return data

    @classmethod
    def from_json(cls, data: Any) -> KdfParams:
        """The parameters a config holds, each checked against the bounds above."""
        try:
            params = cls(**{**data, "salt": bytes.fromhex(data["salt"])})
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise RepositoryDamaged(f"the bucket's config has bad KDF parameters ({exc})") from exc
        if params.name != "argon2id":
            raise RepositoryDamaged(f"the bucket's config names an unknown KDF {params.name!r}")
        for field, value, (low, high) in (
            ("memory_kib", params.memory_kib, KDF_MEMORY_KIB),
            ("iterations", params.iterations, KDF_ITERATIONS),
            ("lanes", params.lanes, KDF_LANES),
            ("salt bytes", len(params.salt), KDF_SALT_BYTES),
        ):
            if type(value) is not int or not low <= value <= high:
                raise RepositoryDamaged(
                    f"the bucket's config has a KDF {field} of {value!r}, outside {low}..{high}: "
                    "it was tampered with or made by a newer spare"
                )
        return params

    def derive(self, password: str) -> bytes:
        """The 64-byte key-encryption key for ``password``, computed in a child process.

        The password and the parameters reach the child on its standard input, never in its
        arguments or environment (which other users may read).
        """
        request = json.dumps({"kdf": self.to_json(), "password": password}).encode()
        try:
            child = subprocess.run(
                [sys.executable, "-c", "from spare.keys import derive_child; derive_child()"],
                input=request,
                capture_output=True,
                check=False,
                timeout=600,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalSystemError(f"cannot derive the key from the password ({exc})") from exc
        key = child.stdout.strip()
        if child.returncode != 0 or len(key) != 128:
            reason = (child.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            raise LocalSystemError(
                f"cannot derive the key from the password ({reason}); Argon2id needs "
                f"{self.memory_kib // 1024} MiB of memory"
            )
        return bytes.fromhex(key.decode())

    def derive_here(self, password: str) -> bytes:
        """The key, derived in this process (what the child runs)."""
        kdf = Argon2id(
            salt=self.salt,
            length=64,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        )
        return kdf.derive(password.encode())


def derive_child() -> None:
    """The child of :meth:`KdfParams.derive`: a request on stdin, the key in hex on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    params = KdfParams.from_json(request["kdf"])
    sys.stdout.write(params.derive_here(request["password"]).hex() + "\n")


def wrap_master_key(master: bytes, kek: bytes, bound: bytes) -> bytes:
    """``master`` encrypted with ``kek``; ``bound`` (the rest of the config) is authenticated
    with it, so that no field of the config can change without the unwrap failing."""
    return AESSIV(kek).encrypt(master, [WRAP_CONTEXT, bound])


def unwrap_master_key(wrapped: bytes, kek: bytes, bound: bytes) -> bytes:
    try:
        return AESSIV(kek).decrypt(wrapped, [WRAP_CONTEXT, bound])
    except InvalidTag:
        raise WrongPassword(
            "wrong password, or the bucket's config was changed: the password does not open "
            "this bucket's key (nothing was changed)"
        ) from None


class KeyRing:
    """The subkeys of one repository, each derived from the master key for one purpose."""

    def __init__(self, master: bytes) -> None:
        if len(master) != MASTER_KEY_BYTES:
            raise RepositoryDamaged("the bucket's master key has the wrong length")
        self._master = master
        self.encryption_key = self._derive(b"spare aes-siv encryption", 64)
        self.id_key = self._derive(b"spare chunk id", 32)
        # pyfastcdc takes a 63-bit seed for its gear table.
        self.chunker_seed = int.from_bytes(self._derive(b"spare chunker seed", 8), "big") >> 1

    @classmethod
    def generate(cls) -> KeyRing:
        return cls(os.urandom(MASTER_KEY_BYTES))

    @property
    def master(self) -> bytes:
        return self._master

    def subkey(self, purpose: str, length: int = 32) -> bytes:
        """A key of a plugin's own for ``purpose`` (name it after the plugin).

        Plugins' keys are derived in a namespace of their own: no purpose gives a plugin one of
        the core's keys.
        """
        return self._derive(b"spare plugin " + purpose.encode(), length)

    def _derive(self, info: bytes, length: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
            self._master
        )

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """The keyed BLAKE2b id of a chunk's plaintext: equal content, equal id, no leak."""
        return hashlib.blake2b(data, key=self.id_key, digest_size=32).digest()
