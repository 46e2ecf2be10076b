"""One measured run: init, backup, unchanged rerun, restore, compare."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .common import MIB
from .datasets import Dataset
from .process import drop_caches, run_measured
from .tools import Run, Tool
from .trees import compare_trees, scan_tree


def new_run(tool: Tool, workdir: Path, ds: Dataset, rep: int, token: str) -> Run:
    base = workdir / "runs" / ds.name / tool.name / f"rep{rep + 1}"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    # S3 bucket names: 3-63 lowercase letters, digits and hyphens.
    bucket = f"bench-{tool.name}-{ds.name}-{rep + 1}-{token}"[:63] if tool.s3 else "bench"
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
    )


def measure(
    tool: Tool, ds: Dataset, rep: int, workdir: Path, args: argparse.Namespace, token: str
) -> dict:
    run = new_run(tool, workdir, ds, rep, token)
    result: dict = {"rep": rep + 1, "warnings": [], "errors": [], "log": str(run.log)}
    env = tool.env(run)

    def step(phase: str, cmd: tuple[list[str], Path], timed: bool = True) -> bool:
        argv, cwd = cmd
        if timed and args.drop_caches:
            drop_caches()
        p = run_measured(argv, env=env, cwd=cwd, log=run.log, timeout=args.timeout)
        result[f"{phase}_exit"] = p.rc
        if p.timed_out:
            result["errors"].append(f"{phase}: killed after {args.timeout:g} s\n{p.tail}")
            return False
        if p.rc != 0 and p.rc not in tool.warn_codes:
            result["errors"].append(f"{phase}: exit {p.rc}: {p.tail}")
            return False
        if p.rc != 0:
            result["warnings"].append(f"{phase}: exit {p.rc} (warnings): {p.tail}")
        # Only commands that did their job count in the medians.
        result[f"{phase}_wall_s"] = round(p.wall, 4)
        result[f"{phase}_cpu_s"] = round(p.cpu, 4)
        result[f"{phase}_rss_mib"] = round(p.rss_mib, 1)
        return True

    try:
        tool.prepare(run)
        init = tool.init_cmd(run)
        if init is not None and not step("init", init, timed=False):
            return result
        if not step("backup", tool.backup_cmd(run, ds.root, "initial")):
            return result
        disk, apparent, objects = tool.usage(run)
        result.update(
            repo_mib=round(disk / MIB, 3),
            repo_apparent_mib=round(apparent / MIB, 3),
            repo_objects=objects,
        )
        if not step("rerun", tool.backup_cmd(run, ds.root, "rerun")):
            return result
        disk, apparent, objects = tool.usage(run)
        result.update(
            repo_after_rerun_mib=round(disk / MIB, 3),
            repo_after_rerun_objects=objects,
        )
        run.restore.mkdir()
        if not step("restore", tool.restore_cmd(run, run.restore)):
            return result
        check = compare_trees(ds.manifest, scan_tree(run.restore))
        result["check"] = check
        if not check["correct"]:
            result["errors"].append(
                "restored tree differs from the source: "
                + json.dumps({k: check[k] for k in ("missing", "extra", "differ", "examples")})
            )
        if args.verify:
            step("verify", tool.verify_cmd(run))
    except Exception as exc:  # one broken run must not end the whole benchmark
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        failed = bool(result["errors"])
        if not args.keep and not failed:
            tool.cleanup(run)
            shutil.rmtree(run.base, ignore_errors=True)
        elif tool.s3 is not None and not args.keep:
            tool.cleanup(run)
    return result
