"""The examples in examples/ work as shipped: the systemd units pass ``systemd-analyze
verify``, the playbook passes ``ansible-playbook --syntax-check``, and the exact commands of
the cron line, the service and the playbook's freshness check run against a file:// bucket,
with the settings file rewritten only where it names this host's paths."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import REPO_ROOT, SpareRunner, clean_env
from support.jsonout import summary

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(240)

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture
def host(tmp_path: Path, file_backend: Backend, password: str) -> dict[str, str]:
    """The examples' /etc/spare, made here: the settings file with this test's bucket and
    paths, the password and secret key files; and a ``spare`` on the PATH. Returns the
    environment a command of the examples runs in, and where things are."""
    etc = tmp_path / "etc-spare"
    etc.mkdir()
    (etc / "password").write_text(password + "\n")
    (etc / "secret-key").write_text("unused by a file:// bucket\n")
    for secret in ("password", "secret-key"):
        (etc / secret).chmod(0o600)
    source = tmp_path / "srv"
    write_file(source / "www" / "index.html", b"<h1>hello</h1>\n", 0o644)
    write_file(source / "tmp" / "scratch", b"skipped\n", 0o644)
    settings = []
    for line in (EXAMPLES / "spare.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "SPARE_ENDPOINT":
            value = file_backend.env["SPARE_ENDPOINT"]
        elif name == "SPARE_BUCKET":
            value = file_backend.env["SPARE_BUCKET"]
        elif name == "SPARE_PATH":
            value = str(source)
        settings.append(f"{name}={value}".replace("/etc/spare/", f"{etc}/") if value else line)
    (etc / "spare.env").write_text("\n".join(settings) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "spare"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m spare "$@"\n')
    shim.chmod(0o755)
    return {"etc": str(etc), "bin": str(bin_dir), "source": str(source)}


def run_shell(
    command: str, host: dict[str, str], run_spare: SpareRunner
) -> subprocess.CompletedProcess[str]:
    env = clean_env({}, run_spare.cache_dir)
    env["PATH"] = f"{host['bin']}:{env['PATH']}"
    command = command.replace("/etc/spare/", f"{host['etc']}/")
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )


def test_cron_line_backs_up_quietly(host: dict[str, str], run_spare: SpareRunner) -> None:
    """The cron line, run as cron would (sh -c), backs up and says nothing."""
    lines = (EXAMPLES / "cron" / "spare").read_text().splitlines()
    [entry] = [line for line in lines if line and line[0].isdigit()]
    fields = entry.split(None, 6)
    assert fields[5] == "root"
    done = run_shell(fields[6], host, run_spare)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    listed = run_shell("set -a && . /etc/spare/spare.env && spare ls", host, run_spare)
    assert "www/index.html" in listed.stdout and "scratch" not in listed.stdout, listed


def service(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(EXAMPLES / "systemd" / name)
    return parser


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say of the units (ExecStart pointed at a
    program that exists here)."""
    for name in ("spare.service", "spare.timer"):
        text = (EXAMPLES / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/local/bin/spare", "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "spare.service", "spare.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_systemd_service_command_logs_a_json_summary(
    host: dict[str, str], run_spare: SpareRunner
) -> None:
    """The service's ExecStart, with its Environment= and EnvironmentFile=, stores a backup
    and prints one JSON summary line for the journal; its nice and I/O class are set."""
    unit = service("spare.service")["Service"]
    assert unit["Nice"] == "19" and unit["IOSchedulingClass"] == "idle"
    assert unit["EnvironmentFile"] == "/etc/spare/spare.env"
    exported = " ".join(f"export {value};" for value in unit["Environment"].split("\n"))
    command = unit["ExecStart"].replace("/usr/local/bin/spare", "spare")
    done = run_shell(
        f"set -a && . {unit['EnvironmentFile']} && {exported} {command}", host, run_spare
    )
    assert done.returncode == 0, done.stderr
    result = summary(done.stdout)
    assert result["exit_code"] == 0 and result["files"] == 1  # ./tmp is skipped
    assert "3" in unit["SuccessExitStatus"].split()


@pytest.mark.skipif(not shutil.which("ansible-playbook"), reason="ansible not installed")
def test_ansible_playbook_syntax(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "ansible-playbook",
            "--syntax-check",
            "-i",
            "localhost,",
            str(EXAMPLES / "ansible" / "spare.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_freshness_check_command(host: dict[str, str], run_spare: SpareRunner) -> None:
    """The playbook's check reads ``spare info --json``: the bucket's age is within the limit
    after a backup, and the check fails on a bucket with no backup."""
    playbook = (EXAMPLES / "ansible" / "spare.yml").read_text()
    start = playbook.index("ansible.builtin.shell: >-")
    command = playbook[start:].split("\n")[1].strip()
    limit = int(playbook.split("spare_max_age_seconds: ")[1].split()[0])

    empty = run_shell(command, host, run_spare)
    assert summary(empty.stdout)["exit_code"] == 15
    run_shell("set -a && . /etc/spare/spare.env && spare create", host, run_spare)
    fresh = summary(run_shell(command, host, run_spare).stdout)
    assert fresh["exit_code"] == 0 and 0 <= fresh["age_seconds"] < limit
