"""A real OpenSSH server on a free loopback port, for the ``sftp://`` storage's tests.

The server gets a throwaway host key and accepts one throwaway client key (no passwords) for
the user running the suite. :class:`SshHome` is the ``HOME`` a spare child process gets: the
client key in ``.ssh/id_ed25519`` and the server's host key in ``.ssh/known_hosts``, as a
sysadmin would have after ``ssh-keygen`` and a first ``ssh`` to the host.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.harness import free_port

SSHD = shutil.which("sshd") or next(
    (path for path in ("/usr/sbin/sshd", "/sbin/sshd") if os.access(path, os.X_OK)), None
)


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at ``path``; returns the public key's line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "spare-test", "-f", str(path)],
        check=True,
    )
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    home: Path  # a HOME for clients: .ssh/id_ed25519 and .ssh/known_hosts
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: Path) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sshd(workdir: Path) -> SshServer:
    """Start sshd on loopback with key-only authentication; raises RuntimeError if it fails."""
    if SSHD is None or shutil.which("ssh-keygen") is None:
        raise RuntimeError("OpenSSH's sshd and ssh-keygen are not installed (openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = workdir / "host_key"
    host_public = keygen(host_key)
    home = workdir / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    client_public = keygen(home / ".ssh" / "id_ed25519")
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_public + "\n")
    authorized.chmod(0o600)
    port = free_port()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    user = getpass.getuser()
    log = workdir / "sshd.log"
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
            ]
        )
        + "\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    server = SshServer("127.0.0.1", port, user, home, process, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(4).startswith(b"SSH-"):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sshd did not answer on port {port}: {log.read_text()[-2000:]}")
