"""Summary: medians over the runs, ratios, the table and the JSON file."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .common import MIB, note
from .datasets import Dataset
from .tools import Tool

# Lower is better for every measurement; the ratios are spare / other.
METRICS = (
    ("backup_wall_s", "backup wall s"),
    ("backup_cpu_s", "backup CPU s"),
    ("backup_rss_mib", "backup peak RSS MiB"),
    ("rerun_wall_s", "unchanged rerun wall s"),
    ("rerun_cpu_s", "unchanged rerun CPU s"),
    ("rerun_rss_mib", "unchanged rerun RSS MiB"),
    ("repo_mib", "repository MiB (du)"),
    ("repo_apparent_mib", "repository MiB (bytes)"),
    ("repo_objects", "repository objects"),
    ("restore_wall_s", "restore wall s"),
    ("restore_cpu_s", "restore CPU s"),
    ("restore_rss_mib", "restore peak RSS MiB"),
    ("verify_wall_s", "verify wall s"),
    ("verify_cpu_s", "verify CPU s"),
    ("verify_rss_mib", "verify peak RSS MiB"),
)


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> dict:
    med = {key: median_of(runs, key) for key, _ in METRICS}
    checked = [r for r in runs if "check" in r]
    correct = sum(1 for r in checked if r["check"]["correct"])
    return {
        "median": med,
        "runs_ok": sum(1 for r in runs if not r["errors"]),
        "runs": len(runs),
        "correct": len(checked) == len(runs) and correct == len(runs) and bool(runs),
        "restores_correct": correct,
        "restores_checked": len(checked),
        "mode_mismatch": max((r["check"]["mode_mismatch"] for r in checked), default=0),
        "mtime_mismatch": max((r["check"]["mtime_mismatch"] for r in checked), default=0),
        "runs_detail": runs,
    }


def fmt(v: float | None, integer: bool = False) -> str:
    if v is None:
        return "-"
    if integer:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 100):
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    datasets: list[Dataset], tools: list[Tool], summary: dict, ratios: dict, meta: dict
) -> str:
    names = [t.name for t in tools]
    others = [n for n in names if n != "spare"] if "spare" in names else []
    out = [
        f"spare benchmark  {meta['started']}  host {meta['host']}  {meta['cpus']} CPUs  "
        f"python {meta['python']}  mode {meta['mode']}",
        "tools: " + ", ".join(f"{t.name} ({t.version})" for t in tools),
        f"repeat {meta['repeat']} (median shown), scale {meta['scale']}, seed {meta['seed']}, "
        f"borg compression {meta['borg_compression']}, restic compression auto",
        "lower is better everywhere; a ratio below 1 means spare is faster or smaller",
    ]
    for ds in datasets:
        out.append("")
        out.append(f"== {ds.name}: {ds.files} files, {ds.dirs} dirs, {ds.bytes / MIB:.1f} MiB")
        header = ["metric", *names] + [f"spare/{o}" for o in others]
        rows = [header]
        res = summary[ds.name]
        for key, label in METRICS:
            if all(res[n]["median"][key] is None for n in names):
                continue
            integer = key == "repo_objects"
            row = [label] + [fmt(res[n]["median"][key], integer) for n in names]
            row += [fmt(ratios[ds.name][f"spare/{o}"].get(key)) for o in others]
            rows.append(row)
        row = ["restore correct"]
        for n in names:
            s = res[n]
            row.append(("yes" if s["correct"] else "NO") + f" {s['restores_correct']}/{s['runs']}")
        rows.append(row + [""] * len(others))
        row = ["restored mode/mtime diffs"]
        for n in names:
            if res[n]["restores_checked"]:
                row.append(f"{res[n]['mode_mismatch']}/{res[n]['mtime_mismatch']}")
            else:
                row.append("-")
        rows.append(row + [""] * len(others))
        out.append(render_table(rows))
        for n in names:
            for r in res[n]["runs_detail"]:
                for w in r["warnings"]:
                    out.append(f"  note: {n} rep {r['rep']}: {w.splitlines()[0]}")
                for e in r["errors"]:
                    first = e.splitlines()
                    out.append(f"  ERROR: {n} rep {r['rep']}: {' | '.join(first[:4])}")
                    out.append(f"         log: {r['log']}")
    return "\n".join(out)


def write_json(
    path: Path, meta: dict, datasets: list[Dataset], summary: dict, ratios: dict
) -> None:
    """Write the settings, the data sets, every run with its medians, and the ratios to path."""
    doc = {
        "meta": meta,
        "datasets": {ds.name: ds.summary() for ds in datasets},
        "results": summary,
        "ratios": ratios,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    note(f"results written to {path}")
