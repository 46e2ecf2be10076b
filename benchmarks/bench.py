#!/usr/bin/env python3
"""Benchmark spare side by side with restic and borg.

Standard library only. Generates reproducible data sets, backs each one up with every selected
tool, backs it up again unchanged (and, for bigfile, again after a seeded 1 % change), restores
it, checks the restored tree against the source, prints the median of each measurement and then
each performance target with its verdict. See ``benchmarks/README.rst``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchkit sits beside this script, whose directory Python puts first on sys.path.
from benchkit.change import plan_change
from benchkit.common import MIB, REPO_ROOT, note
from benchkit.datasets import ALL_DATASETS, ISSUE_DATASETS, Dataset, prepare_dataset
from benchkit.report import Section, report, spare_ratios, summarize, write_json
from benchkit.runs import measure
from benchkit.s3 import S3Config, s3_config
from benchkit.s3moto import MotoServer, moto_available
from benchkit.targets import Lookup, as_json, evaluate, render
from benchkit.tools import (
    ALL_TOOLS,
    DEFAULT_BORG_COMPRESSION,
    SPARE_VARIANTS,
    TOOL_CLASSES,
    Restic,
    Spare,
    Tool,
)

#: What --quick sets, unless given: tiny data sets, one run each, a short S3 pass.
QUICK = {
    "scale": 0.01,
    "repeat": 1,
    "million_files": 2000,
    "bigfile_mib": 20,
    "s3_datasets": ["bigfile"],
    "variant_datasets": ["stdlib"],
}


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if items == ["all"]:
        return list(allowed)
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(bad) or value!r} (choose from {', '.join(allowed)})"
        )
    return items


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, "", False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark spare side by side with restic and borg (see README.rst).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="where data sets, repositories and caches go "
        "(default: a new temporary directory, removed at the end)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny data sets, one run each, and a short S3 pass when moto is installed: "
        "--scale 0.01 --repeat 1 --million-files 2000 --bigfile-mib 20 --s3 moto "
        "--s3-datasets bigfile --variant-datasets stdlib, each unless given",
    )
    p.add_argument(
        "--scale",
        type=float,
        help="multiplies every data set's size (default 1; for stdlib, the share of the "
        "corpus copied, at most 1, and the random bytes)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        help="runs per tool and data set, each with a fresh repository (default 3)",
    )
    p.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        type=lambda v: parse_list(v, ALL_TOOLS, "tool"),
        help="comma-separated",
    )
    p.add_argument(
        "--spare-variants",
        default="default,zstd,jobs2",
        type=lambda v: parse_list(v, tuple(SPARE_VARIANTS), "spare variant"),
        help="spare configurations, one column each: default, zstd (--compression zstd), "
        "jobs1, jobs2 (--jobs N; jobs2 brings jobs1 along); 'all' for every one",
    )
    p.add_argument(
        "--variant-datasets",
        type=lambda v: parse_list(v, ALL_DATASETS, "data set"),
        help="data sets the spare variants other than default run on (default: every one selected)",
    )
    p.add_argument(
        "--datasets",
        default=",".join(ISSUE_DATASETS),
        type=lambda v: parse_list(v, ALL_DATASETS, "data set"),
        help=f"comma-separated, or 'all' ({', '.join(ALL_DATASETS)})",
    )
    p.add_argument(
        "--json",
        default=str(REPO_ROOT / "benchmarks" / "results" / "latest.json"),
        help="write the results here as JSON ('' for none)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the data set generator")
    p.add_argument(
        "--corpus",
        type=Path,
        help="source tree copied into stdlib (default: this Python's standard library)",
    )
    p.add_argument("--million-files", type=int, help="files in million (default 1,000,000 x scale)")
    p.add_argument("--bigfile-mib", type=float, help="MiB of bigfile's file (default 4096 x scale)")
    p.add_argument("--small-files", type=int, help="files in small-files (default 5000 x scale)")
    p.add_argument("--large-mib", type=float, help="MiB in large (default 200 x scale)")
    p.add_argument(
        "--rerun-files", type=int, help="files in unchanged-rerun (default 50000 x scale)"
    )
    p.add_argument(
        "--s3",
        nargs="?",
        const="env",
        choices=("env", "moto", "off"),
        help="'env' (or --s3 alone): every run backs up to the S3 endpoint in SPARE_ENDPOINT, "
        "SPARE_ACCESS_KEY, SPARE_SECRET_KEY instead of local directories (not borg); 'moto': "
        "after the local runs, an S3 pass of spare and restic on a moto server started here, "
        "counting their requests; 'off': no S3 (default, but --quick uses moto when installed)",
    )
    p.add_argument(
        "--s3-datasets",
        type=lambda v: parse_list(v, ALL_DATASETS, "data set"),
        help="data sets of the --s3 moto pass (default stdlib,million; those selected)",
    )
    p.add_argument(
        "--s3-region",
        default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        help="region used to sign requests in --s3 mode",
    )
    p.add_argument(
        "--spare-python",
        default="",
        help="interpreter that runs `-m spare` from this working tree and moto_server "
        "(default: the one running this script)",
    )
    p.add_argument(
        "--spare-cmd",
        default="",
        help="command that runs spare instead (e.g. 'spare' for the installed entry point)",
    )
    p.add_argument(
        "--borg-compression", default=DEFAULT_BORG_COMPRESSION, help="borg --compression value"
    )
    p.add_argument(
        "--gomaxprocs",
        type=int,
        default=1,
        help="GOMAXPROCS for restic (1: one core, as the targets compare; 0: every core)",
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
    defaults = {
        "scale": 1.0,
        "repeat": 3,
        "s3_datasets": ["stdlib", "million"],
        "variant_datasets": list(ALL_DATASETS),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick and key in QUICK else value)
    if args.quick:
        for key in ("million_files", "bigfile_mib"):
            if getattr(args, key) is None:
                setattr(args, key, QUICK[key])
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.scale <= 0:
        p.error("--scale must be positive")
    if "jobs2" in args.spare_variants and "jobs1" not in args.spare_variants:
        args.spare_variants.insert(args.spare_variants.index("jobs2"), "jobs1")
    return args


def probe_tools(args: argparse.Namespace, s3: S3Config | None) -> tuple[list[Tool], dict]:
    """The usable tools (spare once per variant), and why each other one is skipped."""
    candidates: list[Tool] = []
    for name in args.tools:
        if name == "spare":
            # The default first: when it cannot run, neither can the others.
            variants = [v for v in SPARE_VARIANTS if v in args.spare_variants]
            candidates.extend(Spare(args, s3, v) for v in variants)
        else:
            candidates.append(TOOL_CLASSES[name](args, s3))
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for tool in candidates:
        if isinstance(tool, Spare) and "spare" in skipped:
            skipped[tool.name] = "spare itself cannot run"
            continue
        why = tool.probe()
        if why:
            skipped[tool.name] = why
            note(f"note: skipping {tool.name}: {why}")
        else:
            tools.append(tool)
    return tools, skipped


def start_moto(args: argparse.Namespace, workdir: Path) -> MotoServer | None:
    """Start moto for --s3 moto (or --quick, when moto is installed); None for no S3 pass."""
    if args.s3 not in ("moto", None) or (args.s3 is None and not args.quick):
        return None
    python = args.spare_python or sys.executable
    why = moto_available(python)
    if why:
        if args.s3 == "moto":
            raise SystemExit(f"--s3 moto: {why}")
        note(f"note: no S3 pass: {why}")
        return None
    return MotoServer(python, workdir / "moto.log")


def build_sections(
    datasets: list[Dataset],
    tools: list[Tool],
    store: str,
    s3_pass: S3Config | None,
    args: argparse.Namespace,
) -> list[Section]:
    changes = {ds.name: plan_change(ds, args.seed) for ds in datasets if ds.changes}
    sections = []
    for ds in datasets:
        # spare's variants other than the default run on --variant-datasets only.
        ds_tools = [
            t
            for t in tools
            if ds.name in args.variant_datasets
            or not isinstance(t, Spare)
            or t.variant == "default"
        ]
        sections.append(Section(ds.name, ds, ds_tools, store, changes.get(ds.name)))
    if s3_pass is not None and not set(args.s3_datasets) & {ds.name for ds in datasets}:
        note(f"note: no S3 pass: --s3-datasets {','.join(args.s3_datasets)} not selected")
    if s3_pass is not None:
        # The S3 pass is about requests: spare with its defaults, and restic (borg has no S3).
        s3_tools = [t.on_s3(s3_pass) for t in tools if t.name in ("spare", "restic")]
        for ds in datasets:
            if ds.name in args.s3_datasets and s3_tools:
                sections.append(
                    Section(
                        f"{ds.name}@s3",
                        ds,
                        s3_tools,
                        "S3 (moto, requests counted)",
                        changes.get(ds.name),
                    )
                )
    return sections


def run_sections(
    sections: list[Section], args: argparse.Namespace, workdir: Path, token: str
) -> dict[str, dict[str, list[dict]]]:
    results: dict[str, dict[str, list[dict]]] = {}
    for sec in sections:
        results[sec.key] = {}
        note(f"[{sec.key}] {sec.ds.files} files, {sec.ds.bytes / MIB:.1f} MiB")
        for rep in range(args.repeat):
            for tool in sec.tools:
                r = measure(tool, sec.ds, rep, workdir, args, token, sec.key, sec.change)
                results[sec.key].setdefault(tool.name, []).append(r)
                state = "ok" if not r["errors"] else "FAILED"
                if r["warnings"] and not r["errors"]:
                    state = "ok with warnings"
                phases = ("backup", "rerun", "change", "restore", "verify")
                note(
                    f"[{sec.key}] {tool.name} {rep + 1}/{args.repeat}: "
                    + " ".join(
                        f"{ph} {r[ph + '_wall_s']:.2f}s" for ph in phases if ph + "_wall_s" in r
                    )
                    + f" {state}"
                )
    return results


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    s3 = s3_config(args) if args.s3 == "env" else None
    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spare-bench-")) if temp else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = f"{int(time.time()):x}{os.getpid():x}"[-12:]

    tools, skipped = probe_tools(args, s3)
    if not tools:
        note("no tool to benchmark")
        return 2
    moto = None
    templates: list[subprocess.Popen[bytes]] = []
    try:
        # moto and restic's template repository take seconds to start: they do so while the
        # data sets are prepared.
        moto = start_moto(args, workdir)
        templates = [p for t in tools if isinstance(t, Restic) and (p := t.init_template(workdir))]
        datasets = [prepare_dataset(n, workdir / "data", args) for n in args.datasets]
        for proc in templates:
            proc.wait()
        store = f"S3 {s3.url}" if s3 else "local"
        try:
            s3_pass = moto.config(args.s3_region) if moto else None
        except RuntimeError as exc:
            raise SystemExit(f"--s3 moto: {exc}") from None
        sections = build_sections(datasets, tools, store, s3_pass, args)
        results = run_sections(sections, args, workdir, token)
    finally:
        for proc in templates:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if moto is not None:
            moto.stop()
        if temp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        sec.key: {t.name: summarize(results[sec.key][t.name]) for t in sec.tools}
        for sec in sections
    }
    ratios = {sec.key: spare_ratios(sec, summary) for sec in sections}
    meta = {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mode": (f"s3 {s3.url}" if s3 else "local directories")
        + (" + S3 pass on moto" if moto else ""),
        "workdir": str(workdir) + (" (removed)" if temp and not args.keep else ""),
        "quick": args.quick,
        "repeat": args.repeat,
        "scale": args.scale,
        "seed": args.seed,
        "borg_compression": args.borg_compression,
        "restic_compression": "auto",
        "restic_gomaxprocs": args.gomaxprocs or None,
        "spare_variants": args.spare_variants,
        "drop_caches": args.drop_caches,
        "tools": {t.name: t.version for t in tools},
        "skipped": skipped,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    look = Lookup(sections, summary, skipped, set(args.datasets))
    targets = evaluate(look, meta)
    print(report(sections, summary, ratios, meta))
    print(render(targets, small=small_sizes(args)))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"elapsed {meta['elapsed_s']:.1f} s")
    if args.json:
        write_json(Path(args.json), meta, sections, summary, ratios, as_json(targets))
    failed = any(
        not s["correct"] or s["runs_ok"] != s["runs"] for d in summary.values() for s in d.values()
    )
    if "spare" in skipped:
        note(f"spare itself could not run: {skipped['spare']}")
        failed = True
    return 1 if failed else 0


def small_sizes(args: argparse.Namespace) -> bool:
    """Whether any data set is smaller than the issue's."""
    return (
        args.scale < 1
        or (args.million_files or 1_000_000) < 1_000_000
        or (args.bigfile_mib or 4096) < 4096
    )


if __name__ == "__main__":
    sys.exit(main())
