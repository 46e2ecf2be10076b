"""Backing up a tree that changes under spare's feet.

Files vanish, directories are removed, a file grows or is rewritten while it is read. Timing is
not under the test's control, so the assertions are the ones that hold whatever the timing: the
run ends with 0 or 3; every warning names something that really changed; the snapshot is
consistent (restore succeeds, and every restored file holds a version its source really had).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import EXIT_WARNINGS, SpareRunner, assert_ok, describe, finish, wait_until

from spare.testing.trees import pattern_bytes

pytestmark = pytest.mark.timeout(240)

WARNING = re.compile(r"^spare: warning: (.*)$", re.MULTILINE)


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    return {**file_backend.env, "SPARE_PASSWORD": password}


def content_of(relative: str) -> bytes:
    """The one content each file of the vanishing tree ever has."""
    seed = int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16)
    return pattern_bytes(seed, 1500 + seed % 3000)


def per_file_warnings(stderr: str) -> list[str]:
    """Warning lines about one path (the final summary line names none)."""
    return [
        message
        for message in WARNING.findall(stderr)
        if not message.startswith("backup stored") and not message.startswith("restored")
    ]


def test_files_and_directories_vanishing_during_the_backup(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    names = []
    for directory in range(30):
        for index in range(100):
            relative = f"d{directory:02d}/f{index:03d}.bin"
            path = source / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content_of(relative))
            names.append(relative)
    deleted: set[str] = set()
    removed_dirs: set[str] = set()
    done = threading.Event()

    def delete() -> None:
        """Delete every seventh file and whole directories, spread over the run."""
        victims = [name for number, name in enumerate(names) if number % 7 == 3]
        dirs = [f"d{directory:02d}" for directory in (11, 19, 27)]
        step = 0
        while not done.is_set() and (victims or dirs):
            if step % 40 == 39 and dirs:
                directory = dirs.pop(0)
                removed_dirs.add(directory)
                shutil.rmtree(source / directory, ignore_errors=True)
            elif victims:
                name = victims.pop(0)
                deleted.add(name)
                (source / name).unlink(missing_ok=True)
            step += 1
            time.sleep(0.002)

    proc = run_spare.popen("create", "--path", source, env=env)
    thread = threading.Thread(target=delete)
    time.sleep(0.2)  # spare starts, derives its key
    thread.start()
    try:
        created = finish(proc, timeout=180)
    finally:
        done.set()
        thread.join()
    assert created.returncode in (0, EXIT_WARNINGS), describe(created)
    assert "Traceback" not in created.stderr, describe(created)
    changed = [str(source / name) for name in deleted] + [
        str(source / name) for name in removed_dirs
    ]
    for message in per_file_warnings(created.stderr):
        assert any(message.startswith((path + ":", path + "/")) for path in changed), (
            f"a warning names something that did not change: {message}\n{describe(created)}"
        )
    if created.returncode == EXIT_WARNINGS:
        assert per_file_warnings(created.stderr), describe(created)
    print(
        f"deleted {len(deleted)} files and {len(removed_dirs)} directories during the run; "
        f"spare exited {created.returncode} with {len(per_file_warnings(created.stderr))} warnings"
    )

    target = tmp_path / "restored"
    restored = run_spare("restore", "--path", target, env=env)
    assert_ok(restored)
    found = []
    for dirpath, _, filenames in os.walk(target):
        for filename in filenames:
            path = Path(dirpath, filename)
            relative = path.relative_to(target).as_posix()
            found.append(relative)
            assert relative in names, f"restored {relative}, which never existed"
            assert path.read_bytes() == content_of(relative), f"{relative} came back altered"
    # What was never touched must all be there.
    untouched = {
        name for name in names if name not in deleted and name.split("/")[0] not in removed_dirs
    }
    missing = untouched - set(found)
    assert not missing, f"files never deleted are missing: {sorted(missing)[:10]}"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="running as root: root reads every file, whatever its mode"
)
def test_unreadable_file_is_a_warning(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "readable.txt").write_bytes(b"fine\n")
    locked = source / "locked.txt"
    locked.write_bytes(b"secret\n")
    locked.chmod(0o000)
    try:
        created = run_spare("create", "--path", source, env=env)
    finally:
        locked.chmod(0o600)
    assert created.returncode == EXIT_WARNINGS, describe(created)
    assert "Traceback" not in created.stderr, describe(created)
    [message] = per_file_warnings(created.stderr)
    assert message.startswith(str(locked) + ":"), describe(created)
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    assert (target / "readable.txt").read_bytes() == b"fine\n"
    assert not (target / "locked.txt").exists()


BLOCK = 4096  # one page: an append of one block is seen whole or not at all


def test_file_growing_while_it_is_read(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A log appended to during the backup is stored as one of its versions: a prefix of its
    final content whose length the file really had (never padded with zeros)."""
    source = tmp_path / "source"
    source.mkdir()
    growing = source / "growing.log"
    initial = pattern_bytes(11, 24 * 1024 * 1024)
    growing.write_bytes(initial)
    (source / "still.txt").write_bytes(b"still\n")
    done = threading.Event()
    appended = [0]

    def append() -> None:
        with open(growing, "ab", buffering=0) as handle:
            while not done.is_set():
                handle.write(pattern_bytes(1000 + appended[0], BLOCK))
                appended[0] += 1
                time.sleep(0.001)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        assert wait_until(lambda: appended[0] > 10, timeout=10)
        created = run_spare("create", "--path", source, env=env)
    finally:
        done.set()
        thread.join()
    assert created.returncode in (0, EXIT_WARNINGS), describe(created)
    assert "Traceback" not in created.stderr, describe(created)
    for message in per_file_warnings(created.stderr):
        assert message.startswith(str(growing) + ":"), describe(created)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    final = growing.read_bytes()
    got = (target / "growing.log").read_bytes()
    assert len(got) >= len(initial), f"restored {len(got)} bytes, less than the initial size"
    warned = per_file_warnings(created.stderr)
    consistent = len(got) <= len(final) and got == final[: len(got)]
    if not warned:
        assert consistent and len(got) % BLOCK == 0, (
            f"growing.log was stored without a warning, but its {len(got)} restored bytes are "
            f"no version of the file (final size {len(final)})"
        )
    # With the warning ("stored as last read") too, what comes back must be bytes that were
    # read: the file only grows, so any read gives a prefix of its final content. A size
    # recorded larger than what was stored shows as zeros at the end.
    if not consistent:
        first = next(
            (i for i in range(0, len(got), BLOCK) if got[i : i + BLOCK] != final[i : i + BLOCK]),
            min(len(got), len(final)),
        )
        tail = got[first:]
        raise AssertionError(
            f"restored growing.log has {len(got)} bytes; from byte {first} on they are not the "
            f"file's ({tail.count(0)} of the {len(tail)} bytes from there are zeros; final size "
            f"{len(final)}); warnings: {warned}"
        )
    assert (target / "still.txt").read_bytes() == b"still\n"


def test_file_rewritten_while_it_is_read(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A file rewritten in place over and over: spare stores one whole version, or says that it
    could not (a warning naming the file)."""
    source = tmp_path / "source"
    source.mkdir()
    rewritten = source / "state.db"
    size = 16 * 1024 * 1024
    versions = {0: pattern_bytes(0, size)}
    rewritten.write_bytes(versions[0])
    done = threading.Event()
    count = [0]

    def rewrite() -> None:
        fd = os.open(rewritten, os.O_WRONLY)
        try:
            while not done.is_set():
                count[0] += 1
                data = versions.setdefault(count[0] % 4, pattern_bytes(count[0] % 4, size))
                os.pwrite(fd, data, 0)
                time.sleep(0.001)
        finally:
            os.close(fd)

    for version in range(4):
        versions.setdefault(version, pattern_bytes(version, size))
    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        assert wait_until(lambda: count[0] > 1, timeout=10)
        created = run_spare("create", "--path", source, env=env)
    finally:
        done.set()
        thread.join()
    assert created.returncode in (0, EXIT_WARNINGS), describe(created)
    assert "Traceback" not in created.stderr, describe(created)
    warned = per_file_warnings(created.stderr)
    for message in warned:
        assert message.startswith(str(rewritten) + ":"), describe(created)

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=env))
    got = (target / "state.db").read_bytes()
    assert len(got) == size
    if not warned:
        assert got in versions.values(), (
            "state.db was stored without a warning, but is no version the file ever had"
        )
