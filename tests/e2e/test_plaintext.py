"""The storage provider learns sizes and timing, never a byte of the data or a file name.

Markers that cannot occur by chance are planted in file names, directory names, file contents,
symlink targets, the backed-up path and the host name; then every stored object (key and bytes)
is scanned for each of them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, assert_ok, hostname_prefix

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(180)

# Shorter strings occur by chance in megabytes of ciphertext (a 2-letter host name does).
MIN_MARKER_LENGTH = 12


def leaks(objects: Mapping[str, bytes], markers: Mapping[str, str]) -> list[str]:
    """Every (object, marker) pair where the marker shows in the key or the bytes, as UTF-8."""
    found = []
    for key, data in sorted(objects.items()):
        for what, marker in markers.items():
            raw = marker.encode()
            if raw in key.encode() or raw in data:
                found.append(f"{what} {marker!r} readable in object {key!r}")
    return found


def test_nothing_readable_in_the_bucket(
    backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    markers = {
        "file name": f"spare-secret-name-{tag}",
        "directory name": f"spare-secret-dir-{tag}",
        "file content": f"spare-secret-content-{tag}",
        "compressible content": f"spare-secret-repeated-{tag}",
        "symlink target": f"spare-secret-target-{tag}",
        "backed-up path": f"spare-secret-path-{tag}",
        "password": password,
    }
    host = f"spare-secret-host-{tag[:16]}"
    prefix = hostname_prefix(host)
    if prefix is not None:
        markers["host name"] = host
    elif len(socket.gethostname()) >= MIN_MARKER_LENGTH:
        markers["host name"] = socket.gethostname()
        prefix = []
    else:
        prefix = []  # the host name is too short to tell from chance: checked elsewhere, not here

    source = tmp_path / markers["backed-up path"]
    secret_dir = source / markers["directory name"]
    write_file(
        secret_dir / f"{markers['file name']}.txt",
        f"{markers['file content']}\n{uuid.uuid4().hex}\n".encode(),
        0o644,
    )
    # Plaintext survives compression of repetitive text only if the data is not encrypted.
    write_file(
        source / "log.txt", (f"{markers['compressible content']} {tag}\n" * 5000).encode(), 0o644
    )
    write_file(source / "random.bin", os.urandom(256 * 1024), 0o644)
    os.symlink(markers["symlink target"], source / "link")

    env = {**backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env, prefix=prefix))
    objects = backend.objects()
    assert objects
    assert not leaks(objects, markers), "\n".join(leaks(objects, markers))

    # A held lock describes its holder (host, pid, command line with the path): encrypted too.
    assert_ok(run_spare("lock", env=env, prefix=prefix))
    objects = backend.objects()
    assert not leaks(objects, markers), "\n".join(leaks(objects, markers))
    assert_ok(run_spare("unlock", env=env))
