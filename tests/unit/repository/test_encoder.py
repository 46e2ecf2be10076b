"""The encoder (spare.repository.encoder): blobs in submission order, whatever the workers."""

from __future__ import annotations

import os
import threading

import pytest
from support.formats import chain

from spare.repository.encoder import QUEUED_PER_JOB, Encoder, Members
from spare.repository.packs import BLOB_CONTEXT
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
    delivered: list[tuple[Members, bytes]] = []
    encoder = Encoder(encode, jobs, lambda *blob: delivered.append(blob))
    given = chunks(24, 100_000)
    for chunk_id, data in given:
        encoder.submit([(chunk_id, len(data))], data)
    encoder.drain()
    encoder.close()
    assert [members for members, _ in delivered] == [[(c, len(d))] for c, d in given]
    for (_, data), (_, blob) in zip(given, delivered, strict=True):
        assert encode.decode(blob, BLOB_CONTEXT) == data


def test_a_chunk_is_in_the_encoder_until_delivered() -> None:
    delivered: list[bytes] = []
    encoder = Encoder(
        chain(["lzma"]), 2, lambda members, _: delivered.extend(c for c, _ in members)
    )
    (one, data), (two, _) = chunks(2, 1000)
    encoder.submit([(one, 500), (two, 500)], data)
    assert (one in encoder and two in encoder) or delivered == [one, two]
    encoder.drain()
    assert one not in encoder and two not in encoder
    assert delivered == [one, two]
    encoder.close()


def test_the_bytes_waiting_for_workers_are_bounded() -> None:
    """Memory: a fast reader never queues more than QUEUED_PER_JOB per worker."""
    jobs = 2
    delivered: list[bytes] = []
    encoder = Encoder(chain(["lzma"]), jobs, lambda members, _: delivered.append(members[0][0]))
    given = chunks(40, MiB)
    for submitted, (chunk_id, data) in enumerate(given, start=1):
        encoder.submit([(chunk_id, len(data))], data)
        assert (submitted - len(delivered)) * MiB <= jobs * QUEUED_PER_JOB
    encoder.drain()
    encoder.close()
    assert len(delivered) == len(given)


def test_a_buffer_reused_after_submit_does_not_change_the_blob() -> None:
    """pyfastcdc reuses its buffer: the encoder copies a chunk before a worker takes it."""
    encode = chain(["lzma"])
    delivered: list[bytes] = []
    encoder = Encoder(encode, 2, lambda _, blob: delivered.append(blob))
    buffer = bytearray(b"original content " * 1000)
    encoder.submit([(b"\1" * 32, len(buffer))], memoryview(buffer))
    buffer[:] = bytes(len(buffer))
    encoder.drain()
    encoder.close()
    assert encode.decode(delivered[0], BLOB_CONTEXT) == b"original content " * 1000


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
    encoder.submit([(b"\2" * 32, 4)], b"data")
    with pytest.raises(OSError, match="under the encoder"):
        encoder.drain()
    encoder.close()
    assert all(name.startswith("spare-encoder") for name in failing.threads)
