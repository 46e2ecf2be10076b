"""What spare says, to a person and to a program: the progress line and the summary on a
terminal, ``--json`` lines on standard output, ``--quiet`` and ``--verbose``, ``--dry-run``, and
nothing of the libraries' own chatter."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, assert_error, assert_ok, clean_env
from support.jsonout import json_lines, summary
from support.terminal import run_on_terminal

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(240)


def make_tree(root: Path, files: int = 5, size: int = 200_000) -> None:
    for index in range(files):
        write_file(root / f"f{index}.bin", os.urandom(size), 0o644)


def test_json_progress_and_summary_of_create(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """``create --json``: progress events at most twice a second, then one summary with every
    figure: files and bytes, new, changed and deleted files, stored bytes, objects written and
    deleted, the snapshot; nothing else on standard output."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    make_tree(source)
    # Uploads paced to 400 KiB/s: about 2.5 s of run, so that progress is reported.
    result = run_spare("create", "--path", source, "--json", "--limit-upload", "400", env=env)
    assert_ok(result)
    lines = json_lines(result.stdout)
    progress, [summary] = lines[:-1], lines[-1:]
    assert summary["type"] == "summary" and summary["command"] == "create"
    assert progress and all(line["type"] == "progress" for line in progress), lines
    times = [line["seconds"] for line in progress]
    assert all(later - earlier >= 0.4 for earlier, later in itertools.pairwise(times)), times
    assert progress[-1]["unit"] == "files" and progress[-1]["done"] <= 5
    assert summary["exit_code"] == 0 and summary["error"] is None and summary["warnings"] == []
    assert summary["files"] == 5 and summary["bytes"] == 1_000_000
    assert (summary["new_files"], summary["changed_files"]) == (5, 0)
    assert summary["new_bytes"] == 1_000_000
    assert 1_000_000 <= summary["stored_bytes"] < 1_100_000  # random data does not compress
    stored = file_backend.objects()
    assert summary["objects_written"] == len(stored) + 1  # and the lock, removed at the end
    assert 0 < summary["bytes_uploaded"] - sum(map(len, stored.values())) < 1000
    assert summary["snapshot"]["seq"] == 1 and summary["snapshot"]["path"] == str(source)

    (source / "f0.bin").write_bytes(b"changed")
    (source / "f1.bin").unlink()
    write_file(source / "new.txt", b"new\n", 0o644)
    again = json_lines(run_spare("create", "--path", source, "--json", env=env).stdout)[-1]
    assert (again["new_files"], again["changed_files"], again["deleted_files"]) == (1, 1, 1)
    assert again["files"] == 5 and again["new_bytes"] == len(b"changed") + len(b"new\n")
    assert again["objects_deleted"] >= 2  # the old snapshot root and its copy
    assert again["snapshot"]["seq"] == 2


def test_json_summary_of_a_failure(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """A command that fails still ends its JSON with the summary: exit code and error."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    make_tree(source, files=1, size=10)
    assert_ok(run_spare("create", "--path", source, env=env))
    wrong = run_spare("verify", "--json", env={**env, "SPARE_PASSWORD": "not it"})
    assert_error(wrong, 4)
    [summary] = json_lines(wrong.stdout)
    assert summary["exit_code"] == 4 and "password" in summary["error"]


def test_quiet_verbose_and_dry_run(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """The first create says once that it initialised the bucket, unless ``-q``; ``-v`` off a
    terminal prints timestamped lines and a summary whose "new" is never above the total;
    ``--dry-run`` says what would be stored and writes nothing."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    make_tree(source, files=3, size=1000)

    quiet = run_spare("create", "--path", source, "-q", env=env)
    assert_ok(quiet)
    assert quiet.stderr == "" and quiet.stdout == ""
    other = {**env, "SPARE_BUCKET": file_backend.bucket + "-other"}
    first = run_spare("create", "--path", source, env=other)
    assert_ok(first)
    assert re.fullmatch(
        r"spare: note: initialised a new backup in the empty bucket .*\n", first.stderr
    )
    assert run_spare("create", "--path", source, env=other).stderr == ""  # once

    (source / "f0.bin").write_bytes(b"changed")
    write_file(source / "g.bin", b"g" * 100, 0o644)
    (source / "f2.bin").unlink()
    before = file_backend.objects()
    dry = run_spare("create", "--path", source, "--dry-run", "--json", env=env)
    assert_ok(dry)
    [summary] = json_lines(dry.stdout)
    assert summary["dry_run"] is True
    assert (summary["new_files"], summary["changed_files"], summary["deleted_files"]) == (1, 1, 1)
    assert summary["new_bytes"] == len(b"changed") + 100 and summary["files"] == 3
    assert summary["objects_written"] == 0
    assert file_backend.objects() == before

    verbose = run_spare("create", "--path", source, "-v", env=env)
    assert_ok(verbose)
    lines = verbose.stderr.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d spare: ", line) for line in lines), lines
    [backed_up] = [line for line in lines if "backed up" in line]
    assert "backed up 3 files, 1.1 KiB (2 new or changed files" in backed_up, backed_up


def test_bare_spare_prints_help() -> None:
    """``spare`` alone is a question: the help, exit 0."""
    result = subprocess.run(
        [os.sys.executable, "-m", "spare"],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        env=clean_env({}, Path("/nonexistent")),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: spare" in result.stdout and "create" in result.stdout


def test_library_chatter_stays_out(
    s3_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Credentials from AWS_* variables make botocore say "Found credentials in environment
    variables." at INFO: that is not spare's output, even with ``-v``."""
    env = {
        key: value
        for key, value in s3_backend.env.items()
        if key not in ("SPARE_ACCESS_KEY", "SPARE_SECRET_KEY")
    }
    env["AWS_ACCESS_KEY_ID"] = s3_backend.env["SPARE_ACCESS_KEY"]
    env["AWS_SECRET_ACCESS_KEY"] = s3_backend.env["SPARE_SECRET_KEY"]
    env["SPARE_PASSWORD"] = password
    source = tmp_path / "source"
    make_tree(source, files=1, size=10)
    result = run_spare("create", "--path", source, "-v", env=env)
    assert_ok(result)
    assert "Found credentials" not in result.stderr, result.stderr
    assert all(line.split(" ", 1)[1].startswith("spare: ") for line in result.stderr.splitlines())


def test_progress_line_and_summary_on_a_terminal(
    file_backend: Backend, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """On a terminal, create, restore and verify redraw one progress line (files and bytes of
    the total, rate, time left) and end with a summary; nothing of it off a terminal."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    source = tmp_path / "source"
    make_tree(source)
    code, first = run_on_terminal(
        run_spare, ["create", "--path", str(source), "--limit-upload", "400"], env
    )
    assert code == 0, first
    redraws = re.findall(r"\r\x1b\[Kspare create: ([^\r\n]*)", first)
    assert redraws, first
    assert re.match(r"\d+ of 5 files, [\d.]+ (KiB|MiB) of 976.6 KiB, ", redraws[-1]), redraws
    assert "backed up 5 files, 976.6 KiB (5 new or changed files" in first, first

    (source / "f0.bin").write_bytes(os.urandom(200_000))
    code, second = run_on_terminal(
        run_spare, ["create", "--path", str(source), "--limit-upload", "200"], env
    )
    assert code == 0, second
    # Totals from the last snapshot's figures, and so the time left.
    assert re.search(r"spare create: \d+ of 5 files, .* of 976.6 KiB, .* left", second), second

    restored_json = summary(
        run_spare("restore", "--json", "--path", tmp_path / "restored-json", env=env).stdout
    )
    assert (restored_json["files"], restored_json["bytes"]) == (5, 1_000_000)
    assert restored_json["bytes_downloaded"] > 1_000_000
    verified_json = summary(run_spare("verify", "--json", env=env).stdout)
    assert verified_json["packs"] == verified_json["packs_checked"] >= 2
    assert verified_json["files"] == 5 and verified_json["exit_code"] == 0

    code, restored = run_on_terminal(
        run_spare, ["restore", "--path", str(tmp_path / "restored")], env
    )
    assert code == 0, restored
    assert "restored 5 files, 976.6 KiB" in restored, restored
    code, verified = run_on_terminal(run_spare, ["verify"], env)
    assert code == 0, verified
    assert "the backup is intact" in verified, verified

    piped = run_spare("create", "--path", source, "--limit-upload", "400", env=env)
    assert_ok(piped)
    assert piped.stderr == "" and piped.stdout == ""
