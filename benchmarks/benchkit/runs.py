"""One measured run: init, backup, unchanged rerun, (the 1 % change and its backup), restore,
compare."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from .change import Change, apply_change, revert_change
from .common import MIB, note
from .datasets import Dataset
from .process import drop_caches, run_measured
from .s3moto import counts_since
from .tools import Run, Tool
from .trees import compare_trees, disk_usage, scan_tree, written_since

GB = 10**9


def new_run(tool: Tool, workdir: Path, section: str, ds: Dataset, rep: int, token: str) -> Run:
    base = workdir / "runs" / section / tool.slug / f"rep{rep + 1}"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    # S3 bucket names: 3-63 lowercase letters, digits and hyphens.
    bucket = f"bench-{tool.slug}-{ds.name}-{rep + 1}-{token}"[:63] if tool.s3 else "bench"
    return Run(
        dataset=ds.name,
        rep=rep + 1,
        base=base,
        repo=base / "repo",
        cache=base / "cache",
        restore=base / "restore",
        log=base / "log.txt",
        bucket=bucket,
        source=ds.root,
        workdir=workdir,
    )


class Measurement:
    """The commands of one run, each measured into ``result``."""

    def __init__(self, tool: Tool, run: Run, args: argparse.Namespace) -> None:
        self.tool = tool
        self.run = run
        self.args = args
        self.env = tool.env(run)
        self.counter = tool.s3.counter if tool.s3 is not None else None
        #: What the 1 % change overwrote, once it is being applied (see change.apply_change).
        self.saved: dict[str, bytes] | None = None
        self.result: dict[str, Any] = {
            "rep": run.rep,
            "warnings": [],
            "errors": [],
            "log": str(run.log),
        }

    def step(self, phase: str, cmd: tuple[list[str], Path], timed: bool = True) -> bool:
        argv, cwd = cmd
        result, args = self.result, self.args
        if timed and args.drop_caches:
            drop_caches()
        before = self.counter.snapshot() if self.counter else None
        p = run_measured(argv, env=self.env, cwd=cwd, log=self.run.log, timeout=args.timeout)
        if self.counter and before is not None:
            result[f"{phase}_requests"] = counts_since(before, self.counter.snapshot())
        result[f"{phase}_exit"] = p.rc
        if p.timed_out:
            result["errors"].append(f"{phase}: killed after {args.timeout:g} s\n{p.tail}")
            return False
        if p.rc != 0 and p.rc not in self.tool.warn_codes:
            result["errors"].append(f"{phase}: exit {p.rc}: {p.tail}")
            return False
        if p.rc != 0:
            result["warnings"].append(f"{phase}: exit {p.rc} (warnings): {p.tail}")
        # Only commands that did their job count in the medians.
        result[f"{phase}_wall_s"] = round(p.wall, 4)
        result[f"{phase}_cpu_s"] = round(p.cpu, 4)
        result[f"{phase}_rss_mib"] = round(p.rss_mib, 1)
        if p.own_rss_mib is not None:
            result[f"{phase}_own_rss_mib"] = round(p.own_rss_mib, 1)
        if p.wall > 0:
            result[f"{phase}_cpu_per_wall"] = round(p.cpu / p.wall, 3)
        return True

    def sizes(self, prefix: str) -> tuple[int, int, int]:
        disk, apparent, objects = self.tool.usage(self.run)
        self.result.update(
            {
                f"{prefix}_mib": round(disk / MIB, 3),
                f"{prefix}_apparent_mib": round(apparent / MIB, 3),
                f"{prefix}_objects": objects,
            }
        )
        return disk, apparent, objects

    def cache_size(self) -> None:
        disk = apparent = 0
        for d in self.tool.cache_dirs(self.run):
            du, size, _ = disk_usage(d)
            disk, apparent = disk + du, apparent + size
        self.result["cache_mib"] = round(disk / MIB, 3)
        self.result["cache_apparent_mib"] = round(apparent / MIB, 3)

    def request_metrics(self, stored_bytes: int) -> None:
        """Flatten the S3 request counts of the phases into the numbers the table shows."""
        r = self.result
        if "backup_requests" not in r:
            return
        puts = r["backup_requests"]["requests"]["PUT"]
        puts += r.get("init_requests", {}).get("requests", {}).get("PUT", 0)
        r["backup_puts"] = puts
        if stored_bytes:
            r["backup_puts_per_gb"] = round(puts / (stored_bytes / GB), 1)
        rerun = r.get("rerun_requests")
        if rerun is not None:
            for kind in ("PUT", "GET", "HEAD", "LIST", "POST", "DELETE"):
                r[f"rerun_{kind.lower()}s"] = rerun["requests"][kind]
            r["rerun_get_mib"] = round(rerun["get_bytes"] / MIB, 4)
            pack = rerun["get_bytes_by_prefix"].get(self.tool.pack_prefix, 0)
            r["rerun_pack_get_bytes"] = pack


def backup_change(m: Measurement, ds: Dataset, change: Change) -> bool:
    """Apply the change, back it up, record what it added to the repository."""
    run, result = m.run, m.result
    before = m.tool.repo_states(run)
    m.saved = {}
    apply_change(ds, change, m.saved)
    run.last_label = "change"
    ok = m.step("change", m.tool.backup_cmd(run, ds.root, "change"))
    if not ok:
        return False
    # What the repository gained: new or rewritten files or objects; with --s3 moto, every byte
    # PUT (objects deleted again in the same run, such as the lock, included).
    written, objects = written_since(before, m.tool.repo_states(run))
    result["change_new_objects"] = objects
    result["change_new_objects_mib"] = round(written / MIB, 3)
    if m.counter is not None:
        written = result["change_requests"]["put_bytes"]
    result["change_written_mib"] = round(written / MIB, 3)
    result["change_written_pct"] = round(100 * written / ds.bytes, 3)
    m.sizes("repo_after_change")
    return True


def measure(
    tool: Tool,
    ds: Dataset,
    rep: int,
    workdir: Path,
    args: argparse.Namespace,
    token: str,
    section: str,
    change: Change | None,
) -> dict:
    run = new_run(tool, workdir, section, ds, rep, token)
    m = Measurement(tool, run, args)
    result = m.result
    try:
        measure_steps(m, ds, change)
    except Exception as exc:  # one broken run must not end the whole benchmark
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        if change is not None and m.saved is not None:
            try:
                revert_change(ds, change, m.saved)
            except OSError as exc:
                # The data set stays marked as changed and is generated anew next time.
                note(f"[{ds.name}] could not undo the 1 % change: {exc}")
                raise
        failed = bool(result["errors"])
        if not args.keep and not failed:
            tool.cleanup(run)
            shutil.rmtree(run.base, ignore_errors=True)
        elif tool.s3 is not None and not args.keep:
            tool.cleanup(run)
    return result


def measure_steps(m: Measurement, ds: Dataset, change: Change | None) -> None:
    tool, run, result = m.tool, m.run, m.result
    tool.prepare(run)
    init = tool.init_cmd(run)
    if init is not None and not m.step("init", init, timed=False):
        return
    if not m.step("backup", tool.backup_cmd(run, ds.root, "initial")):
        return
    _, apparent, _ = m.sizes("repo")
    m.cache_size()
    run.last_label = "rerun"
    ok = m.step("rerun", tool.backup_cmd(run, ds.root, "rerun"))
    m.request_metrics(apparent)
    if not ok:
        return
    m.sizes("repo_after_rerun")
    expected = ds.manifest
    if change is not None:
        ok = backup_change(m, ds, change)
        m.request_metrics(apparent)
        if not ok:
            return
        expected = change.manifest
    run.restore.mkdir()
    if not m.step("restore", tool.restore_cmd(run, run.restore)):
        return
    check = compare_trees(expected, scan_tree(run.restore))
    result["check"] = check
    if not check["correct"]:
        result["errors"].append(
            "restored tree differs from the source: "
            + json.dumps({k: check[k] for k in ("missing", "extra", "differ", "examples")})
        )
    if m.args.verify:
        m.step("verify", tool.verify_cmd(run))
