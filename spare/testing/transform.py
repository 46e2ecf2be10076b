"""The contract of :class:`spare.transform.Transform`, as tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spare.errors import IntegrityError
from spare.transform import Transform


class TransformContract:
    """Subclass and provide a ``transform`` fixture; set ``authenticates`` for encryption."""

    #: True for transforms that MUST detect tampering and a wrong context.
    authenticates = False

    @given(data=st.binary(max_size=70_000), context=st.binary(max_size=40))
    @settings(  # one stateless transform serves every example; each subclass is another one
        max_examples=60,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    def test_round_trip(self, transform: Transform, data: bytes, context: bytes) -> None:
        assert transform.decode(transform.encode(data, context), context) == data

    def test_round_trip_of_a_memoryview(self, transform: Transform) -> None:
        original = os.urandom(5000) + b"a" * 100_000
        data = bytearray(original)
        encoded = transform.encode(memoryview(data), b"ctx")
        data[:] = b"\0" * len(data)  # the transform must not keep the caller's buffer
        assert transform.decode(encoded, b"ctx") == original

    def test_large_round_trip(self, transform: Transform) -> None:
        data = os.urandom(1 << 20) + b"spare " * 200_000
        assert transform.decode(transform.encode(data, b"c"), b"c") == data

    def test_name_is_ascii(self, transform: Transform) -> None:
        assert transform.name and transform.name.isascii() and "," not in transform.name

    def test_wrong_context_is_refused(self, transform: Transform) -> None:
        if not self.authenticates:
            pytest.skip("not an authenticating transform")
        with pytest.raises(IntegrityError):
            transform.decode(transform.encode(b"secret", b"blob 1"), b"blob 2")

    def test_tampering_is_refused(self, transform: Transform) -> None:
        if not self.authenticates:
            pytest.skip("not an authenticating transform")
        encoded = bytearray(transform.encode(b"secret data" * 10, b"c"))
        for position in (0, len(encoded) // 2, len(encoded) - 1):
            damaged = bytearray(encoded)
            damaged[position] ^= 0x01
            with pytest.raises(IntegrityError):
                transform.decode(bytes(damaged), b"c")
        with pytest.raises(IntegrityError):
            transform.decode(bytes(encoded[:-1]), b"c")

    def test_equal_plaintexts_look_different(self, transform: Transform) -> None:
        if not self.authenticates:
            pytest.skip("not an authenticating transform")
        assert transform.encode(b"same", b"c") != transform.encode(b"same", b"c")
