"""The encoder (spare.repository.encoder): blobs in submission order, whatever the workers."""

from __future__ import annotations

import os
import threading

import pytest
from support.formats import chain

from spare.repository.encoder import QUEUED_PER_JOB, Encoder
from spare.repository.packs import blob_context
from spare.transform import Transform, TransformChain

MiB = 1 << 20


def chunks(count: int, size: int) -> list[tuple[bytes, bytes]]:
    """(id, data) pairs: half compressible text, half random bytes."""
    return [
        (
            n.to_bytes(32, "big"),
            (b"line %d of some text\n" % n) * (size // 20) if n % 2 else os.urandom(size),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("jobs", [1, 3])
def test_blobs_come_in_submission_order_and_decode_back(jobs: int) -> None:
    encode = chain(["lzma", "aes-siv"])
    delivered: list[tuple[bytes, bytes, int]] = []
    encoder = Encoder(encode, jobs, lambda *blob: delivered.append(blob))
    given = chunks(24, 100_000)
    for chunk_id, data in given:
        encoder.submit(chunk_id, data)
    encoder.drain()
    encoder.close()
    assert [chunk_id for chunk_id, _, _ in delivered] == [chunk_id for chunk_id, _ in given]
    for (chunk_id, data), (_, blob, size) in zip(given, delivered, strict=True):
        assert size == len(data)
        assert encode.decode(blob, blob_context(chunk_id)) == data


def test_a_chunk_is_in_the_encoder_until_delivered() -> None:
    delivered: list[bytes] = []
    encoder = Encoder(chain(["lzma"]), 2, lambda chunk_id, *_: delivered.append(chunk_id))
    ((chunk_id, data),) = chunks(1, 1000)
    encoder.submit(chunk_id, data)
    assert chunk_id in encoder or delivered == [chunk_id]
    encoder.drain()
    assert chunk_id not in encoder
    assert delivered == [chunk_id]
    encoder.close()


def test_the_bytes_waiting_for_workers_are_bounded() -> None:
    """Memory: a fast reader never queues more than QUEUED_PER_JOB per worker."""
    jobs = 2
    delivered: list[bytes] = []
    encoder = Encoder(chain(["lzma"]), jobs, lambda chunk_id, *_: delivered.append(chunk_id))
    given = chunks(40, MiB)
    for submitted, (chunk_id, data) in enumerate(given, start=1):
        encoder.submit(chunk_id, data)
        assert (submitted - len(delivered)) * MiB <= jobs * QUEUED_PER_JOB
    encoder.drain()
    encoder.close()
    assert len(delivered) == len(given)


def test_a_buffer_reused_after_submit_does_not_change_the_blob() -> None:
    """pyfastcdc reuses its buffer: the encoder copies a chunk before a worker takes it."""
    encode = chain(["lzma"])
    delivered: list[bytes] = []
    encoder = Encoder(encode, 2, lambda _, blob, __: delivered.append(blob))
    buffer = bytearray(b"original content " * 1000)
    encoder.submit(b"\1" * 32, memoryview(buffer))
    buffer[:] = bytes(len(buffer))
    encoder.drain()
    encoder.close()
    assert encode.decode(delivered[0], blob_context(b"\1" * 32)) == b"original content " * 1000


class Failing(Transform):
    name = "failing"

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def encode(self, data: bytes | memoryview, context: bytes) -> bytes:
        self.threads.add(threading.current_thread().name)
        raise OSError("the disk under the encoder failed")

    def decode(self, data: bytes, context: bytes) -> bytes:
        raise AssertionError("not reached")


def test_an_error_in_a_worker_is_raised_in_the_caller() -> None:
    failing = Failing()
    encoder = Encoder(TransformChain([failing]), 2, lambda *_: None)
    encoder.submit(b"\2" * 32, b"data")
    with pytest.raises(OSError, match="under the encoder"):
        encoder.drain()
    encoder.close()
    assert all(name.startswith("spare-encoder") for name in failing.threads)
