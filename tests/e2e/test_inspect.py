"""Looking inside the backup without restoring it: ``info``, ``ls``, ``dump``, and ``restore
--include`` with the paths of the backed-up host."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from support.buckets import Backend
from support.harness import SpareRunner, assert_error, assert_ok
from support.jsonout import json_lines, summary

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small tree with a file of each kind worth listing."""
    root = tmp_path / "srv"
    write_file(root / "etc" / "nginx.conf", b"worker_processes 4;\n", 0o640)
    write_file(root / "www" / "index.html", b"<h1>hello</h1>\n" * 1000, 0o644)
    os.symlink("../etc/nginx.conf", root / "www" / "conf")
    os.link(root / "etc" / "nginx.conf", root / "www" / "nginx.hard")
    os.mkfifo(root / "pipe", 0o600)
    return root


def test_info_tells_a_monitoring_check_what_it_needs(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """``spare info``: the snapshot (time, host, path, sequence, age), its files and size, what
    the bucket stores, and the lock: as text and as JSON. A bucket with no backup exits 15."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    empty = run_spare("info", "--json", env=env)
    assert_error(empty, 15)
    assert summary(empty.stdout)["exit_code"] == 15

    assert_ok(run_spare("create", "--path", source, env=env))
    text = run_spare("info", env=env)
    assert_ok(text)
    assert f"of {socket.gethostname()}:{source}" in text.stdout, text.stdout
    assert "the bucket is not locked" in text.stdout, text.stdout

    assert_ok(run_spare("lock", env=env))
    result = run_spare("info", "--json", env=env)
    assert_ok(result)
    info = summary(result.stdout)
    assert info["exit_code"] == 0 and info["error"] is None
    assert info["snapshot"] == {
        "seq": 1,
        "time": info["snapshot"]["time"],  # type: ignore[index]
        "host": socket.gethostname(),
        "path": str(source),
    }
    assert 0 <= info["age_seconds"] < 120  # type: ignore[operator]
    assert info["files"] == 2  # the hardlink's second name is no second file
    assert info["bytes"] == len(b"worker_processes 4;\n") + 15000
    stored = file_backend.objects()
    assert info["stored_bytes"] == sum(map(len, stored.values()))
    assert info["objects"] == len(stored)
    assert 1 <= info["packs"] < info["objects"]  # type: ignore[operator]
    assert info["ratio"] == round(15020 / info["stored_bytes"], 2)  # type: ignore[operator]
    assert info["locked"] is True
    assert info["lock"]["command"] == "lock"  # type: ignore[index]


def test_ls_lists_like_ls_l_and_filters_like_restore(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """``spare ls`` shows type, mode, owner, size, mtime and the host's path (symlink targets,
    hardlinks); patterns are relative or absolute paths, globs allowed; ``--json`` gives one
    object per entry and the summary."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))

    every = run_spare("ls", env=env)
    assert_ok(every)
    lines = every.stdout.splitlines()
    assert len(lines) == 8, every.stdout  # the root, 2 directories, 5 entries
    by_path = {
        line[line.index(str(source)) :].split(" -> ")[0].split(" link to ")[0]: line
        for line in lines
    }
    assert by_path[f"{source}/etc/nginx.conf"].startswith("-rw-r----- ")
    assert " 15000 " in by_path[f"{source}/www/index.html"]
    assert by_path[f"{source}/www/conf"].startswith("lrwxrwxrwx ")
    assert by_path[f"{source}/www/conf"].endswith(" -> ../etc/nginx.conf")
    assert by_path[f"{source}/www/nginx.hard"].endswith(" link to etc/nginx.conf")
    assert by_path[f"{source}/pipe"].startswith("prw------- ")
    assert by_path[str(source)].startswith("d")

    relative = run_spare("ls", "www", env=env)
    absolute = run_spare("ls", f"{source}/www", env=env)
    assert_ok(relative)
    assert relative.stdout == absolute.stdout
    assert len(relative.stdout.splitlines()) == 4  # www and what is below it

    globbed = run_spare("ls", "--json", f"{source}/*.conf", env=env)
    assert_ok(globbed)
    records = json_lines(globbed.stdout)
    assert [r["path"] for r in records if r["type"] == "entry"] == [f"{source}/etc/nginx.conf"]
    entry = records[0]
    assert entry["kind"] == "file" and entry["mode"] == "0640" and entry["size"] == 20
    assert summary(globbed.stdout)["entries"] == 1

    elsewhere = run_spare("ls", "/etc/passwd", env=env)
    assert "not below" in assert_error(elsewhere, 2)


def test_dump_writes_one_file_to_stdout(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """``spare dump`` gives yesterday's config file back at once, by relative or host path and
    through a hardlink's other name; a directory or a missing path is a one-line error."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))
    (source / "etc" / "nginx.conf").write_bytes(b"broken by today's edit\n")

    for path in (f"{source}/etc/nginx.conf", "etc/nginx.conf", "www/nginx.hard"):
        result = run_spare("dump", path, env=env)
        assert_ok(result)
        assert result.stdout == "worker_processes 4;\n", path
    big = run_spare("dump", "./www/index.html", env=env)
    assert big.stdout == "<h1>hello</h1>\n" * 1000

    assert "a directory" in assert_error(run_spare("dump", "www", env=env), 2)
    assert "not in the backup" in assert_error(run_spare("dump", "www/gone", env=env), 2)


def test_restore_include_takes_host_paths_and_leaves_nothing_when_nothing_matches(
    file_backend: Backend, password: str, run_spare: SpareRunner, source: Path, tmp_path: Path
) -> None:
    """``restore --include /srv/etc`` (the path on the backed-up host) restores that part; an
    ``--include`` that matches nothing fails with exit 2 and creates no target directory."""
    env = {**file_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", "--path", source, env=env))

    target = tmp_path / "restored"
    assert_ok(run_spare("restore", "--path", target, "--include", f"{source}/etc/", env=env))
    assert sorted(p.name for p in target.rglob("*")) == ["etc", "nginx.conf"]

    nowhere = tmp_path / "new" / "deeper" / "restored"
    result = run_spare("restore", "--path", nowhere, "--include", "no/such/path", env=env)
    assert "matched nothing" in assert_error(result, 2)
    assert not (tmp_path / "new").exists()
    result = run_spare("restore", "--path", nowhere, "--include", "/etc/passwd", env=env)
    assert "not below" in assert_error(result, 2)
    assert not (tmp_path / "new").exists()
