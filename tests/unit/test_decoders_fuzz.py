"""Every decoder of what comes from the bucket, fed random and mutated objects.

A hostile or damaged bucket may hold anything: each decoder must raise only spare's own errors
(one line, a documented exit code), never hang, and never allocate more than its input calls
for. Valid objects are made with spare's own code and then cut, overwritten, extended or
replaced by random bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.formats import KEYS, PLUGINS, chain

from spare.errors import SpareError
from spare.keys import KdfParams
from spare.processes import this_host
from spare.repository import objects
from spare.repository.index import decode_index, encode_index
from spare.repository.locking import LockInfo, describe_lock, encode_lock
from spare.repository.manifest import Entry
from spare.repository.objects import KIND_PACK, BlobRecord, parse_preamble
from spare.repository.opening import CHUNKER, _check_config, _read_configs, open_repository
from spare.repository.packs import (
    BLOB_CONTEXT,
    FinishedPack,
    PackInfo,
    PackWriter,
    parse_trailer,
    read_pack,
)
from spare.repository.repo import Repository
from spare.repository.snapshots import Snapshot
from spare.storage import StorageLocation

#: SPARE_FUZZ_EXAMPLES=5000 explores afresh and deeper; by default every run (CI's too) tries the
#: same examples, so that it never turns red by chance.
DEEP = os.environ.get("SPARE_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(DEEP or 150),
    derandomize=DEEP is None,
    deadline=2000,  # ms per example: a decoder that loops or hashes for long fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: What a decoder may allocate beyond its input, at most.
MEMORY_BOUND = 32 << 20


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and ``valid`` cut short, overwritten, with bytes slipped in, or extended."""
    size = len(valid)
    position = st.integers(0, size)
    return st.one_of(
        st.binary(max_size=2 * size + 16),
        position.map(lambda n: valid[:n]),
        st.tuples(position, st.binary(min_size=1, max_size=16)).map(
            lambda t: valid[: t[0]] + t[1] + valid[t[0] + len(t[1]) :]
        ),
        st.tuples(position, st.binary(min_size=1, max_size=64)).map(
            lambda t: valid[: t[0]] + t[1] + valid[t[0] :]
        ),
        st.binary(min_size=1, max_size=64).map(lambda junk: valid + junk),
    )


def only_spare_errors(decode: Callable[[], object]) -> None:
    """Run ``decode``: it returns, or raises a SpareError; within the memory bound either way."""
    tracemalloc.start()
    try:
        decode()
    except SpareError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"a decoder allocated {peak} bytes"


def make_pack(tmp: str) -> tuple[bytes, str]:
    finished: list[FinishedPack] = []
    encode = chain(["lzma", "aes-siv"])
    writer = PackWriter(encode, 1 << 20, tmp, finished.append)
    for index in range(3):
        data = os.urandom(200) + b"text " * index * 50
        chunk_id = KEYS.chunk_id(data)
        writer.add([(chunk_id, len(data))], encode.encode(data, BLOB_CONTEXT))
    writer.flush()
    (pack,) = finished
    data = Path(pack.path).read_bytes()
    os.unlink(pack.path)
    return data, pack.info.name


VALID_PACK, PACK_NAME = make_pack(os.environ.get("TMPDIR", "/tmp"))


@given(mutations(VALID_PACK))
@FUZZ
def test_preamble(data: bytes) -> None:
    only_spare_errors(lambda: parse_preamble(data, KIND_PACK))


@given(mutations(VALID_PACK))
@FUZZ
def test_whole_pack(data: bytes) -> None:
    only_spare_errors(lambda: read_pack(data, PACK_NAME, lambda names: chain(list(names))))


@given(mutations(VALID_PACK[-2000:]))
@FUZZ
def test_pack_trailer(tail: bytes) -> None:
    only_spare_errors(lambda: parse_trailer(tail, chain(["lzma", "aes-siv"]), PACK_NAME))


VALID_INDEX = encode_index(
    [
        PackInfo(
            secrets.token_hex(32),
            ("lzma", "aes-siv"),
            8 << 20,
            tuple(BlobRecord(os.urandom(32), i * 100, 100, 400) for i in range(5)),
        )
        for _ in range(3)
    ]
)


@given(mutations(VALID_INDEX))
@FUZZ
def test_index_object(body: bytes) -> None:
    only_spare_errors(lambda: list(decode_index(body)))


VALID_LINE = Entry(
    path=b"etc/\xffodd name",
    type="f",
    mode=0o4755,
    uid=0,
    gid=0,
    mtime_ns=1_700_000_000_123_456_789,
    user="root",
    group="root",
    size=1234,
    chunks=[os.urandom(32), os.urandom(32)],
    xattrs={"user.a": b"\x00\x01"},
).to_line()


@given(mutations(VALID_LINE))
@FUZZ
def test_manifest_line(line: bytes) -> None:
    only_spare_errors(lambda: Entry.from_line(line))


VALID_ROOT = json.dumps(
    dataclasses.asdict(
        Snapshot(
            seq=3,
            time="2026-11-26T02:00:00Z",
            host="web1",
            path="/srv/data",
            inode=1234,
            manifest=[os.urandom(32).hex() for _ in range(3)],
            stats={"files": 10, "bytes": 1000},
        )
    )
).encode()


@given(mutations(VALID_ROOT))
@FUZZ
def test_snapshot_root(raw: bytes) -> None:
    only_spare_errors(lambda: Snapshot.from_json(raw))


VALID_CONFIG = json.dumps(
    {
        "format": "spare-repository",
        "version": objects.FORMAT_VERSION,
        "id": secrets.token_hex(16),
        "created": "2026-11-26T02:00:00Z",
        "kdf": KdfParams.generate().to_json(),
        "chunker": CHUNKER,
        "master_key": os.urandom(80).hex(),
    }
).encode()


@given(mutations(VALID_CONFIG))
@FUZZ
def test_config(raw: bytes) -> None:
    """The config is the one plaintext object: everything in it is checked before use."""
    location = StorageLocation("memory", secrets.token_hex(6), "bucket")
    storage = PLUGINS.storages.get("memory")(location)
    storage.ensure_bucket()
    storage.put("config", raw)

    def decode() -> None:
        candidates, _ = _read_configs(storage, None)
        for config in candidates:
            _check_config(config)

    only_spare_errors(decode)


def _repository() -> Repository:
    location = StorageLocation("memory", secrets.token_hex(6), "bucket")
    storage = PLUGINS.storages.get("memory")(location)
    cache_root = Path(tempfile.mkdtemp(prefix="spare-fuzz-"))
    return open_repository(
        lambda: storage, "password", PLUGINS, cache_root, location="fuzz", create=True
    )


REPO = _repository()
VALID_LOCK = encode_lock(REPO, LockInfo.for_this_process("create", this_host()))


@given(mutations(VALID_LOCK))
@FUZZ
def test_lock_payload(payload: bytes) -> None:
    """Whatever the lock object holds names a holder or an unreadable lock, never a crash."""
    only_spare_errors(lambda: describe_lock(REPO, payload))
