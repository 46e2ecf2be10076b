#!/usr/bin/env python3
"""How faithfully do spare, restic and borg restore the richest tree a Linux host can hold?

Builds ``spare.testing.trees.build_richest_tree`` (run it as root: devices, foreign and unnamed
owners, mode 000 directories with content, file capabilities need it), backs it up and restores
it with each tool, and compares every restored tree with the source entry by entry and field by
field (``spare.testing.trees.compare_scans``). ``rsync -aHAX --dry-run --itemize-changes --delete``
gives a second opinion: the number of lines it would change. Prints a table of differences by
category and the first differences of each tool. See ``benchmarks/README.rst``.

Standard library and spare's own ``spare.testing.trees`` only (plus the tools themselves): spare
must be importable, installed or run from the root of a checkout as ``python3 -m
benchmarks.fidelity``. Everything (tree, repositories, caches, restores, logs) stays inside one
work directory, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spare.testing.trees import (
    CATEGORIES,
    PARTS,
    Difference,
    build_tree,
    compare_scans,
    count_by_category,
    scan_tree,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "spare-fidelity-password"
ALL_TOOLS = ("spare", "restic", "borg")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Outcome:
    tool: str
    status: str = "ok"
    backup_s: float = 0.0
    restore_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    diffs: list[Difference] = field(default_factory=list)
    rsync_lines: list[str] | None = None
    rsync_errors: list[str] = field(default_factory=list)


class CommandFailed(Exception):
    pass


@dataclass
class Runner:
    """Runs one tool's commands with a clean environment, logging everything to a file."""

    workdir: Path
    log: Path
    timeout: float

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SPARE_", "RESTIC_", "BORG_", "AWS_"))
        }
        env["XDG_CACHE_HOME"] = str(self.workdir / "xdg-cache")
        env["XDG_CONFIG_HOME"] = str(self.workdir / "xdg-config")
        env.update(extra)
        return env

    def __call__(
        self,
        cmd: list[str],
        extra: dict[str, str],
        *,
        cwd: Path | None = None,
        ok: tuple[int, ...] = (0,),
        outcome: Outcome | None = None,
    ) -> float:
        started = time.monotonic()
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(cmd)}  (cwd={cwd})\n")
            log.flush()
            try:
                result = subprocess.run(
                    cmd,
                    cwd=cwd,
                    env=self.env(extra),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise CommandFailed(f"{cmd[0]} timed out after {self.timeout} s") from None
            log.write(f"[exit {result.returncode}]\n")
        if result.returncode not in ok:
            raise CommandFailed(
                f"{' '.join(cmd[:4])}... exited {result.returncode}; see {self.log}"
            )
        if result.returncode != 0 and outcome is not None:
            outcome.notes.append(f"{' '.join(cmd[1:3])} exited {result.returncode} (warnings)")
        return time.monotonic() - started


def run_spare(run: Runner, source: Path, target: Path, out: Outcome) -> Path:
    (run.workdir / "repo").mkdir(exist_ok=True)  # spare creates the bucket, not the endpoint
    extra = {
        "SPARE_ENDPOINT": f"file://{run.workdir / 'repo'}",
        "SPARE_BUCKET": "fidelity",
        "SPARE_PASSWORD": PASSWORD,
        "SPARE_CACHE_DIR": str(run.workdir / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    spare = [sys.executable, "-m", "spare"]
    out.backup_s = run([*spare, "create", "--path", str(source)], extra, ok=(0, 3), outcome=out)
    out.restore_s = run([*spare, "restore", "--path", str(target)], extra, ok=(0, 3), outcome=out)
    return target


def run_restic(run: Runner, source: Path, target: Path, out: Outcome) -> Path:
    extra = {
        "RESTIC_REPOSITORY": str(run.workdir / "repo"),
        "RESTIC_PASSWORD": PASSWORD,
        "RESTIC_CACHE_DIR": str(run.workdir / "cache"),
    }
    run(["restic", "init"], extra)
    # From inside the tree, so that the snapshot holds the tree at its root.
    out.backup_s = run(["restic", "backup", "."], extra, cwd=source, ok=(0, 3), outcome=out)
    out.restore_s = run(
        ["restic", "restore", "latest", "--target", str(target)], extra, ok=(0, 1), outcome=out
    )
    return target


def run_borg(run: Runner, source: Path, target: Path, out: Outcome) -> Path:
    base = run.workdir / "borg-home"
    extra = {
        "BORG_REPO": str(run.workdir / "repo"),
        "BORG_PASSPHRASE": PASSWORD,
        "BORG_BASE_DIR": str(base),
        "BORG_CACHE_DIR": str(base / "cache"),
        "BORG_CONFIG_DIR": str(base / "config"),
        "BORG_SECURITY_DIR": str(base / "security"),
        "BORG_KEYS_DIR": str(base / "keys"),
    }
    run(["borg", "init", "--encryption=repokey-blake2"], extra)
    out.backup_s = run(
        ["borg", "create", "::fidelity", "."], extra, cwd=source, ok=(0, 1), outcome=out
    )
    target.mkdir()
    out.restore_s = run(
        ["borg", "extract", "::fidelity"], extra, cwd=target, ok=(0, 1), outcome=out
    )
    return target


TOOLS: dict[str, Callable[[Runner, Path, Path, Outcome], Path]] = {
    "spare": run_spare,
    "restic": run_restic,
    "borg": run_borg,
}


def tool_version(tool: str) -> str:
    if tool == "spare":
        cmd = [sys.executable, "-m", "spare", "--version"]
    else:
        cmd = [tool, "version" if tool == "restic" else "--version"]
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    except OSError:
        return "not installed"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "?"
    )


def find_rsync(install: bool) -> str | None:
    rsync = shutil.which("rsync")
    if rsync or not install:
        return rsync
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    note("rsync is missing; installing it with apt-get")
    subprocess.run(
        [apt, "install", "-y", "-q", "rsync"],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=600,
    )
    return shutil.which("rsync")


#: An itemized change: "YXcstpoguax path" (see rsync(1), --itemize-changes), or a deletion.
ITEMIZED = re.compile(r"^([<>ch.][fdLDS][.+ ?a-zA-Z]{9} |\*deleting )")


def rsync_differences(rsync: str, source: Path, restored: Path) -> tuple[list[str], list[str]]:
    """The items rsync would change, and what rsync itself could not read (its errors)."""
    result = subprocess.run(
        [
            rsync,
            "-aHAX",
            "--dry-run",
            "--itemize-changes",
            "--delete",
            f"{source}/",
            f"{restored}/",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
        check=False,
    )
    changes = [line for line in result.stdout.splitlines() if ITEMIZED.match(line)]
    errors = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not ITEMIZED.match(line)
    ]
    if result.returncode not in (0, 23, 24):
        errors.append(f"rsync exited {result.returncode}")
    return changes, errors


def restored_root(target: Path, source: Path) -> Path:
    """The tree's root inside a restore (a tool that keeps absolute paths nests it)."""
    nested = target / source.relative_to("/")
    return nested if nested.is_dir() else target


def print_report(
    report: dict, outcomes: list[Outcome], entries: int, examples: int, rsync: bool
) -> None:
    print(f"richest tree: {entries} entries")
    print(f"  built: {', '.join(report['built'])}")
    for what, why in report["skipped"].items():
        print(f"  not built: {what} ({why})")
    print()
    headers = ["tool", *CATEGORIES, "total"]
    if rsync:
        headers.append("rsync lines")
    headers += ["backup s", "restore s"]
    rows = []
    for out in outcomes:
        if out.status != "ok":
            rows.append([out.tool, *["-"] * (len(headers) - 2), out.status])
            continue
        counts = count_by_category(out.diffs)
        row = [out.tool, *(str(counts[c]) for c in CATEGORIES), str(len(out.diffs))]
        if rsync:
            row.append("-" if out.rsync_lines is None else str(len(out.rsync_lines)))
        row += [f"{out.backup_s:.1f}", f"{out.restore_s:.1f}"]
        rows.append(row)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print(
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in rows:
        cells = row + [""] * (len(headers) - len(row))
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    for out in outcomes:
        print()
        print(f"== {out.tool}: {out.status}")
        for line in out.notes:
            print(f"  note: {line}")
        if out.status != "ok":
            continue
        if not out.diffs:
            print("  no differences")
        for category in CATEGORIES:
            chosen = [d for d in out.diffs if d.category == category][:examples]
            for diff in chosen:
                print(f"  [{category}] {diff}")
        if out.rsync_lines:
            print(f"  rsync would change {len(out.rsync_lines)} items, e.g.:")
            for line in out.rsync_lines[:examples]:
                print(f"    {line}")
        if out.rsync_errors:
            print(f"  rsync itself reported {len(out.rsync_errors)} problems, e.g.:")
            for line in out.rsync_errors[:2]:
                print(f"    {line[:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma-separated tools")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--big-dir", type=int, default=0, help="add a directory of N files")
    parser.add_argument("--sparse-mib", type=int, default=64, help="size of the sparse file")
    parser.add_argument(
        "--special-hardlinks",
        action="store_true",
        help="also hard-link a FIFO, a symlink and a device node",
    )
    parser.add_argument("--examples", type=int, default=4, help="differences shown per category")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    parser.add_argument("--no-rsync", action="store_true", help="leave out the rsync column")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install rsync")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        note("not running as root: devices, owners, mode 000 and capabilities are left out")

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="fidelity-", dir=args.workdir))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="spare-fidelity-"))
    try:
        source = workdir / "source"
        note(f"building the richest tree in {source}")
        parts = [*PARTS, *(["special-hardlinks"] if args.special_hardlinks else [])]
        report = build_tree(source, parts, big_dir=args.big_dir, sparse_mib=args.sparse_mib)
        expected = scan_tree(source)
        rsync = None if args.no_rsync else find_rsync(not args.no_install)
        if rsync is None and not args.no_rsync:
            note("rsync is not available: no rsync column")
        outcomes = []
        for tool in tools:
            out = Outcome(tool)
            outcomes.append(out)
            if tool != "spare" and shutil.which(tool) is None:
                out.status = "not installed"
                continue
            tool_dir = workdir / tool
            tool_dir.mkdir()
            runner = Runner(tool_dir, tool_dir / "log.txt", args.timeout)
            note(f"{tool}: backup and restore ({tool_version(tool)})")
            try:
                target = TOOLS[tool](runner, source, tool_dir / "restore", out)
            except CommandFailed as exc:
                out.status = f"failed: {exc}"
                continue
            root = restored_root(target, source)
            out.diffs = compare_scans(expected, scan_tree(root))
            if rsync:
                out.rsync_lines, out.rsync_errors = rsync_differences(rsync, source, root)
        changed = compare_scans(expected, scan_tree(source), labels=("before", "after"))
        if changed:
            note(f"warning: the source changed during the runs ({len(changed)} differences)")
        print_report(report, outcomes, len(expected), args.examples, rsync is not None)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "tree": report,
                        "entries": len(expected),
                        "tools": {
                            out.tool: {
                                "status": out.status,
                                "version": tool_version(out.tool),
                                "backup_s": out.backup_s,
                                "restore_s": out.restore_s,
                                "counts": count_by_category(out.diffs),
                                "differences": [str(d) for d in out.diffs[:500]],
                                "rsync_lines": out.rsync_lines,
                                "rsync_errors": out.rsync_errors[:50],
                                "notes": out.notes,
                            }
                            for out in outcomes
                        },
                    },
                    indent=2,
                )
            )
        return 0 if all(out.status == "ok" for out in outcomes) else 1
    finally:
        if args.keep:
            note(f"kept {workdir}")
        else:
            _remove(workdir)


def _remove(path: Path) -> None:
    """Remove the work directory: it holds mode 000 directories and paths over PATH_MAX."""

    def unlock(dir_fd: int) -> None:
        with os.scandir(dir_fd) as entries:
            names = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        for name in names:
            with contextlib.suppress(OSError):
                os.chmod(name, 0o700, dir_fd=dir_fd)
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    unlock(sub)
                finally:
                    os.close(sub)

    if os.geteuid() != 0:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                unlock(fd)
            finally:
                os.close(fd)
    shutil.rmtree(path, ignore_errors=True)  # descriptor based: long paths are no problem


if __name__ == "__main__":
    sys.exit(main())
