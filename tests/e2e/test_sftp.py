"""``sftp://user@host:port/directory`` against a real OpenSSH server on loopback: a backup
round trip, the lock taken atomically, and the refusals of an unknown host key, of a key the
server does not accept and of a missing directory; a server down when the run starts, and a
connection that breaks during it, through a TCP relay."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.harness import SpareRunner, assert_error, assert_ok, finish, wait_until
from support.sshd import SshServer, keygen
from support.tcprelay import TcpRelay

from spare.testing.trees import snapshot_tree, write_file

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def sftp_env(ssh_server: SshServer, tmp_path: Path, password: str) -> dict[str, str]:
    store = tmp_path / "remote"
    store.mkdir()
    return {
        "HOME": str(ssh_server.home),
        "SPARE_ENDPOINT": ssh_server.url(store),
        "SPARE_BUCKET": "web1",
        "SPARE_PASSWORD": password,
    }


def test_backup_round_trip_over_sftp(
    sftp_env: dict[str, str], run_spare: SpareRunner, tmp_path: Path
) -> None:
    """create, info, verify, restore over SFTP; the bucket is a directory on the server, with
    no file name of the tree in it; a second spare finds the bucket locked."""
    source = tmp_path / "source"
    write_file(source / "etc" / "app.conf", b"key = value\n", 0o600)
    write_file(source / "data.bin", os.urandom(300_000), 0o644)
    assert_ok(run_spare("create", "--path", source, env=sftp_env))
    stored = [p for p in (tmp_path / "remote" / "web1").rglob("*") if p.is_file()]
    assert any(p.parent.parent.name == "packs" for p in stored), stored
    assert not any(".tmp-" in p.name for p in stored)
    assert all(b"app.conf" not in p.read_bytes() for p in stored)

    assert_ok(run_spare("verify", env=sftp_env))
    assert_ok(run_spare("lock", env=sftp_env))
    assert "locked by hand" in assert_error(run_spare("create", "--path", source, env=sftp_env), 7)
    assert_ok(run_spare("unlock", env=sftp_env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=sftp_env))
    assert snapshot_tree(target) == snapshot_tree(source)


def test_unknown_or_changed_host_key_is_refused(
    sftp_env: dict[str, str], ssh_server: SshServer, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A server whose host key known_hosts does not hold is never sent a byte of the backup
    (exit 10, one line saying what to do); nor is one whose key differs from the known one."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for name in ("id_ed25519", "id_ed25519.pub"):
        (home / ".ssh" / name).write_bytes((ssh_server.home / ".ssh" / name).read_bytes())
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    env = {**sftp_env, "HOME": str(home)}
    unknown = run_spare("create", "--path", source, env=env)
    assert "not in ~/.ssh/known_hosts" in assert_error(unknown, 10)

    other = keygen(tmp_path / "other_host_key")
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{ssh_server.port} {other}\n")
    changed = run_spare("create", "--path", source, env=env)
    assert "not the one known_hosts holds" in assert_error(changed, 10)
    assert not list((tmp_path / "remote").iterdir())


def test_refused_key_and_missing_directory(
    sftp_env: dict[str, str], ssh_server: SshServer, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A client key the server does not accept is exit 11; an endpoint directory that does not
    exist on the server is exit 10; both in one line."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    keygen(home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "known_hosts").write_bytes(
        (ssh_server.home / ".ssh" / "known_hosts").read_bytes()
    )
    refused = run_spare("create", "--path", source, env={**sftp_env, "HOME": str(home)})
    assert "refused the keys" in assert_error(refused, 11)

    missing = {**sftp_env, "SPARE_ENDPOINT": ssh_server.url(tmp_path / "no" / "such")}
    assert "does not exist on the SSH server" in assert_error(
        run_spare("create", "--path", source, env=missing), 10
    )


@pytest.fixture
def relay(ssh_server: SshServer) -> Iterator[TcpRelay]:
    relay = TcpRelay((ssh_server.host, ssh_server.port))
    yield relay
    relay.close()


@pytest.fixture
def relayed_env(
    sftp_env: dict[str, str], ssh_server: SshServer, relay: TcpRelay, tmp_path: Path
) -> dict[str, str]:
    """The environment of a run that reaches the SSH server through ``relay``: the same keys,
    and the server's host key known under the relay's port."""
    home = tmp_path / "relayed-home"
    shutil.copytree(ssh_server.home, home)
    known = (home / ".ssh" / "known_hosts").read_text()
    (home / ".ssh" / "known_hosts").write_text(
        known.replace(f"]:{ssh_server.port} ", f"]:{relay.port} ")
    )
    url = ssh_server.url(tmp_path / "remote").replace(f":{ssh_server.port}/", f":{relay.port}/")
    return {**sftp_env, "HOME": str(home), "SPARE_ENDPOINT": url}


def test_a_server_down_when_the_run_starts_is_tried_again(
    relayed_env: dict[str, str], relay: TcpRelay, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The SSH server refuses connections for the first 2 s of the run (down for the night's
    reboot): the connection is retried as any failed request is, and the run completes."""
    source = tmp_path / "source"
    write_file(source / "a.txt", b"a\n", 0o644)
    relay.listen(after=2)
    result = run_spare("create", "-v", "--path", source, env=relayed_env)
    assert_ok(result)
    assert "cannot reach the SSH server" in result.stderr  # said with -v as it was retried
    assert_ok(run_spare("verify", env=relayed_env))


def test_a_connection_that_breaks_is_made_again(
    relayed_env: dict[str, str], relay: TcpRelay, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The SSH connection breaks while packs are uploaded (the server restarted, a NAT forgot
    it): the next call connects again, the failed upload is sent again, and the run completes
    with a backup that verify passes and that restores whole."""
    source = tmp_path / "source"
    for index in range(4):
        write_file(source / f"part-{index}.bin", os.urandom(1 << 20), 0o644)
    relay.listen()
    packs = tmp_path / "remote" / "web1" / "packs"
    running = run_spare.popen(
        "create", "--path", source, "--pack-size", "1", "--limit-upload", "1024", env=relayed_env
    )
    try:
        assert wait_until(lambda: any(packs.glob("*/*")) or running.poll() is not None, 60)
        assert relay.cut() == 1, "the run was not connected when its first pack was stored"
    finally:
        result = finish(running)
    assert_ok(result)
    assert relay.accepted == 2
    assert_ok(run_spare("verify", env=relayed_env))
    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, env=relayed_env))
    assert snapshot_tree(target) == snapshot_tree(source)
