"""A hostile local user cannot hijack a restore run as root.

Restores are often run as root, on hosts where other users have accounts. A user who owns the
target, may write to it or to the directory holding it, can swap what restore made for a
symlink or a FIFO at any moment. These tests make those attacks for real, as the user ``nobody``
(see ``support/hostile.py``), against ``python -m spare restore`` run as root, and check that
restore refuses such a target unless ``--force``, never follows the symlink (a root-owned file
outside keeps its mode, owner and content: above all, it does not become setuid), never blocks
on the FIFO, and restores the rest with a warning (exit 3).

The moments between restore's steps are reached by holding back spare's reading of a pack of
the bucket (``support.hostile.files_held``): no hook in spare, a slow disk played by the test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import (
    EXIT_TARGET_NOT_EMPTY,
    EXIT_WARNINGS,
    SpareRunner,
    assert_error,
    assert_ok,
    describe,
    finish,
    wait_until,
)
from support.hostile import (
    NOBODY,
    as_nobody,
    files_held,
    pack_files,
    wait_for_reader,
    why_no_other_user,
)

pytestmark = pytest.mark.timeout(240)

TOOL = os.urandom(64 * 1024)  # a setuid binary, as far as restore can tell
DATA = os.urandom(512 * 1024)
MORE = os.urandom(512 * 1024)
VICTIM = b"#!/bin/sh\n# a root-owned program the attacker wants setuid, or overwritten\n"
VICTIM_MTIME_NS = 1_500_000_000_000_000_000


@pytest.fixture
def env(file_backend: Backend, password: str) -> dict[str, str]:
    return {**file_backend.env, "SPARE_PASSWORD": password}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Root's files outside the target, which the attacker points symlinks at."""
    path = tmp_path / "outside"
    path.mkdir()
    for name in ("victim", "victim2"):
        victim = path / name
        victim.write_bytes(VICTIM)
        victim.chmod(0o755)
        os.utime(victim, ns=(VICTIM_MTIME_NS, VICTIM_MTIME_NS))
    return path


def assert_untouched(outside: Path) -> None:
    for name in ("victim", "victim2"):
        st = (outside / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o755, f"{name} is now {stat.S_IMODE(st.st_mode):o}"
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert st.st_mtime_ns == VICTIM_MTIME_NS
        assert (outside / name).read_bytes() == VICTIM


def write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def nobodys(path: Path, mode: int = 0o755) -> Path:
    """``path`` as a directory that belongs to nobody."""
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _other_user() -> None:
    reason = why_no_other_user()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def backed_up(env: dict[str, str], run_spare: SpareRunner, tmp_path: Path) -> Path:
    source = tmp_path / "source"
    write(source / "tool", TOOL, 0o4755)
    write(source / "sub" / "file", b"the rest\n", 0o640)
    assert_ok(run_spare("create", "--path", source, env=env))
    return source


# --------------------------------------------------------------------------------------------
# Targets that root must not restore into
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "mode"),
    [(NOBODY, 0o755), (NOBODY, 0o700), (0, 0o777), (0, 0o1777), (0, 0o775)],
    ids=["nobody's", "nobody's, private", "world-writable", "sticky /tmp-like", "group-writable"],
)
def test_a_target_another_user_controls_is_refused_as_root_unless_forced(
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
    owner: int,
    mode: int,
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    os.chown(target, owner, owner)
    target.chmod(mode)

    line = assert_error(run_spare("restore", "--path", target, env=env), EXIT_TARGET_NOT_EMPTY)
    assert str(target) in line and "--force" in line, line
    assert os.listdir(target) == []

    assert_ok(run_spare("restore", "--path", target, "--force", env=env))
    assert (target / "tool").read_bytes() == TOOL
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o4755


def test_spare_force_is_read_from_the_environment(
    env: dict[str, str], run_spare: SpareRunner, backed_up: Path, tmp_path: Path
) -> None:
    target = nobodys(tmp_path / "target")
    assert_error(run_spare("restore", "--path", target, env=env), EXIT_TARGET_NOT_EMPTY)
    assert_ok(run_spare("restore", "--path", target, env={**env, "SPARE_FORCE": "1"}))
    assert (target / "sub" / "file").read_bytes() == b"the rest\n"


@pytest.mark.parametrize("dangling", [False, True], ids=["to a directory", "dangling"])
def test_a_symlink_as_the_target_is_refused(
    env: dict[str, str],
    run_spare: SpareRunner,
    backed_up: Path,
    tmp_path: Path,
    dangling: bool,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.mkdir()
    target = tmp_path / "target"
    target.symlink_to(elsewhere)
    for force in ((), ("--force",)):  # --force never makes restore follow it
        line = assert_error(
            run_spare("restore", "--path", target, *force, env=env), EXIT_TARGET_NOT_EMPTY
        )
        assert "symlink" in line, line
    assert target.is_symlink()
    if dangling:
        assert not elsewhere.exists()
    else:
        assert os.listdir(elsewhere) == []


# --------------------------------------------------------------------------------------------
# Swaps while restore runs
# --------------------------------------------------------------------------------------------


def test_the_target_swapped_for_a_symlink_after_it_was_checked(
    env: dict[str, str], run_spare: SpareRunner, tmp_path: Path, file_backend: Backend
) -> None:
    """Root restores into an empty directory of its own, in a directory nobody owns; once restore
    has checked the target, nobody moves it away and puts a symlink to another directory in its
    place. Restore goes on into the directory it opened, never into the symlink's."""
    source = tmp_path / "source"
    write(source / "tool", b"", 0o4755)  # empty files only: the manifest's are the only packs
    (source / "dir").mkdir()
    assert_ok(run_spare("create", "--path", source, env=env))
    manifest_packs = list(pack_files(file_backend.path).values())  # its two copies

    home = nobodys(tmp_path / "home")
    target = home / "restore"
    target.mkdir(mode=0o755)  # root's, private: accepted without --force
    elsewhere = tmp_path / "elsewhere"  # say, /etc/cron.d
    elsewhere.mkdir()

    with files_held(manifest_packs) as held:
        proc = run_spare.popen("restore", "--path", target, env=env)
        wait_for_reader(held)  # restore has opened the target and is reading the file list
        home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
        try:

            def swap() -> None:
                os.rename("restore", "restore.moved", src_dir_fd=home_fd, dst_dir_fd=home_fd)
                os.symlink(os.fsencode(elsewhere), "restore", dir_fd=home_fd)

            as_nobody(swap)
        finally:
            os.close(home_fd)
        for each in held:
            each.release()
        result = finish(proc, timeout=60)

    assert_ok(result)
    assert os.listdir(elsewhere) == [], "restore followed the symlink put in place of the target"
    moved = home / "restore.moved"
    assert sorted(os.listdir(moved)) == ["dir", "tool"]
    assert stat.S_IMODE((moved / "tool").stat().st_mode) == 0o4755


SWAPS = {
    # The setuid file is written before the pause: restore is about to set its mode 4755.
    "a setuid file for a symlink to a root-owned file": ("tool", "symlink", "victim"),
    # The others are written after the pause.
    "a file for a FIFO": ("data", "fifo", None),
    "a file for a symlink to a root-owned file": ("more", "symlink", "victim2"),
}


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_an_entry_swapped_between_the_passes_is_left_alone(
    env: dict[str, str],
    run_spare: SpareRunner,
    tmp_path: Path,
    file_backend: Backend,
    outside: Path,
    swap: str,
) -> None:
    """nobody owns the target, and root restores into it with --force. Once every entry is
    created (and the setuid file written), nobody swaps one for a symlink to a root-owned file
    outside, or for a FIFO. Restore neither follows the symlink nor blocks on the FIFO: it warns
    and restores the rest."""
    name, kind, victim = SWAPS[swap]
    source = tmp_path / "source"
    write(source / "tool", TOOL, 0o4755)
    # A first backup of the setuid file alone puts its content in a pack of its own, which the
    # second backup keeps: the pack holding the other files can be held back alone.
    assert_ok(run_spare("create", "--path", source, env=env))
    first_packs = pack_files(file_backend.path)
    # The largest: the file list's own pack is smaller (packs are padded to 64 KiB multiples).
    tool_pack = {max(first_packs, key=lambda key: first_packs[key].stat().st_size)}
    assert all(first_packs[key].stat().st_size >= len(TOOL) for key in tool_pack)
    write(source / "data", DATA, 0o644)
    write(source / "more", MORE, 0o644)
    write(source / "sub" / "file", b"the rest\n", 0o640)
    assert_ok(run_spare("create", "--path", source, env=env))
    packs = pack_files(file_backend.path)
    assert len(tool_pack) == 1 and tool_pack < set(packs), "the setuid file's pack is kept"
    later = [path for key, path in packs.items() if key not in first_packs]
    contents = [path for path in later if path.stat().st_size > 256 * 1024]  # not the manifest's
    assert contents

    target = nobodys(tmp_path / "target")
    target_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with files_held(contents) as held:
            proc = run_spare.popen("restore", "--path", target, "--force", env=env)
            wait_for_reader(held)  # every entry is created; their contents are being written
            if name == "tool":
                assert wait_until(lambda: (target / "tool").read_bytes() == TOOL, 30)
            assert stat.S_IMODE(os.stat(target / name).st_mode) == 0o600  # no metadata yet

            def attack() -> None:
                os.unlink(name, dir_fd=target_fd)
                if kind == "fifo":
                    os.mkfifo(name, dir_fd=target_fd)
                else:
                    os.symlink(os.fsencode(outside / str(victim)), name, dir_fd=target_fd)

            as_nobody(attack)
            for each in held:
                each.release()
            result = finish(proc, timeout=60)
    finally:
        os.close(target_fd)

    assert result.returncode == EXIT_WARNINGS, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    warnings = [line for line in result.stderr.splitlines() if "replaced" in line]
    assert len(warnings) == 1 and f"{target / name}" in warnings[0], describe(result)
    assert_untouched(outside)
    swapped = os.lstat(target / name)
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISLNK)(swapped.st_mode)
    assert swapped.st_uid == NOBODY  # left as the attacker made it
    restored = {"tool": TOOL, "data": DATA, "more": MORE}
    for other, data in restored.items():
        if other != name:
            assert (target / other).read_bytes() == data, other
    assert (target / "sub" / "file").read_bytes() == b"the rest\n"
    assert stat.S_IMODE((target / "sub" / "file").stat().st_mode) == 0o640
    if name != "tool":
        assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o4755
