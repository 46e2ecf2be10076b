#!/usr/bin/env python3
"""Benchmark spare side by side with restic and borg.

Standard library only. Generates reproducible data sets, backs each one up with every selected
tool, backs it up again unchanged, restores it, checks the restored tree against the source and
prints the median of each measurement. See ``benchmarks/README.rst``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

# benchkit sits beside this script, whose directory Python puts first on sys.path.
from benchkit.common import MIB, REPO_ROOT, note
from benchkit.datasets import ALL_DATASETS, prepare_dataset
from benchkit.report import METRICS, ratio, report, summarize, write_json
from benchkit.runs import measure
from benchkit.s3 import s3_config
from benchkit.tools import ALL_TOOLS, DEFAULT_BORG_COMPRESSION, TOOL_CLASSES, Tool


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(bad) or value!r} (choose from {', '.join(allowed)})"
        )
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark spare side by side with restic and borg (see README.rst).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="where data sets, repositories and caches go "
        "(default: a new temporary directory, removed at the end)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies every data set's size (0.05 for a quick run)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per tool and data set, each with a fresh repository",
    )
    p.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        type=lambda v: parse_list(v, ALL_TOOLS, "tool"),
        help="comma-separated",
    )
    p.add_argument(
        "--datasets",
        default=",".join(ALL_DATASETS),
        type=lambda v: parse_list(v, ALL_DATASETS, "data set"),
        help="comma-separated",
    )
    p.add_argument(
        "--json",
        default=str(REPO_ROOT / "benchmarks" / "results" / "latest.json"),
        help="write the results here as JSON ('' for none)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the data set generator")
    p.add_argument("--small-files", type=int, help="files in small-files (default 5000 x scale)")
    p.add_argument("--large-mib", type=float, help="MiB in large (default 200 x scale)")
    p.add_argument(
        "--rerun-files", type=int, help="files in unchanged-rerun (default 50000 x scale)"
    )
    p.add_argument(
        "--s3",
        action="store_true",
        help="back up to the S3 endpoint in SPARE_ENDPOINT, SPARE_ACCESS_KEY and "
        "SPARE_SECRET_KEY instead of local directories (spare and restic; not borg)",
    )
    p.add_argument(
        "--s3-region",
        default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        help="region used to sign requests in --s3 mode",
    )
    p.add_argument(
        "--spare-cmd",
        default="",
        help="command that runs spare (default: this interpreter -m spare, with the "
        "working tree on PYTHONPATH)",
    )
    p.add_argument(
        "--borg-compression", default=DEFAULT_BORG_COMPRESSION, help="borg --compression value"
    )
    p.add_argument(
        "--gomaxprocs",
        type=int,
        default=0,
        help="GOMAXPROCS for restic (0: leave restic to use every core)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also time a full check after the restore: spare verify, restic check "
        "--read-data, borg check --verify-data",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per command")
    p.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the page cache before each timed command (root only)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep repositories, caches, restores and logs of every run",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.scale <= 0:
        p.error("--scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s3 = s3_config(args) if args.s3 else None
    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spare-bench-")) if temp else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = f"{int(time.time()):x}{os.getpid():x}"[-12:]

    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for name in args.tools:
        tool = TOOL_CLASSES[name](args, s3)
        why = tool.probe()
        if why:
            skipped[name] = why
            note(f"note: skipping {name}: {why}")
        else:
            tools.append(tool)
    if not tools:
        note("no tool to benchmark")
        return 2

    try:
        datasets = [prepare_dataset(n, workdir / "data", args) for n in args.datasets]
        results: dict[str, dict[str, list[dict]]] = {ds.name: {} for ds in datasets}
        for ds in datasets:
            note(f"[{ds.name}] {ds.files} files, {ds.bytes / MIB:.1f} MiB")
            for rep in range(args.repeat):
                for tool in tools:
                    r = measure(tool, ds, rep, workdir, args, token)
                    results[ds.name].setdefault(tool.name, []).append(r)
                    state = "ok" if not r["errors"] else "FAILED"
                    if r["warnings"] and not r["errors"]:
                        state = "ok with warnings"
                    note(
                        f"[{ds.name}] {tool.name} {rep + 1}/{args.repeat}: "
                        + " ".join(
                            f"{ph} {r[ph + '_wall_s']:.2f}s"
                            for ph in ("backup", "rerun", "restore", "verify")
                            if ph + "_wall_s" in r
                        )
                        + f" {state}"
                    )
    finally:
        if temp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        ds.name: {t.name: summarize(results[ds.name][t.name]) for t in tools} for ds in datasets
    }
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for ds in datasets:
        ratios[ds.name] = {}
        if "spare" not in summary[ds.name]:
            continue
        mine = summary[ds.name]["spare"]["median"]
        for t in tools:
            if t.name != "spare":
                theirs = summary[ds.name][t.name]["median"]
                ratios[ds.name][f"spare/{t.name}"] = {
                    k: ratio(mine[k], theirs[k]) for k, _ in METRICS
                }
    meta = {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mode": "s3 " + s3.url if s3 else "local directories",
        "workdir": str(workdir) + (" (removed)" if temp and not args.keep else ""),
        "repeat": args.repeat,
        "scale": args.scale,
        "seed": args.seed,
        "borg_compression": args.borg_compression,
        "restic_compression": "auto",
        "restic_gomaxprocs": args.gomaxprocs or None,
        "drop_caches": args.drop_caches,
        "tools": {t.name: t.version for t in tools},
        "skipped": skipped,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    print(report(datasets, tools, summary, ratios, meta))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if args.json:
        write_json(Path(args.json), meta, datasets, summary, ratios)
    failed = any(
        not s["correct"] or s["runs_ok"] != s["runs"] for d in summary.values() for s in d.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
