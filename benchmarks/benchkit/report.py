"""Summary: medians over the runs, ratios, the table and the JSON file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from .change import Change
from .common import MIB, note
from .datasets import Dataset
from .tools import Tool

# Lower is better for nearly every measurement; the ratios are spare / other.
METRICS = (
    ("backup_wall_s", "backup wall s"),
    ("backup_cpu_s", "backup CPU s"),
    ("backup_cpu_per_wall", "backup CPU/wall"),
    ("backup_rss_mib", "backup peak RSS MiB"),
    ("backup_own_rss_mib", "  main process only"),
    ("cache_mib", "local cache MiB (du)"),
    ("repo_mib", "repository MiB (du)"),
    ("repo_apparent_mib", "repository MiB (bytes)"),
    ("repo_objects", "repository objects"),
    ("backup_puts", "backup PUTs"),
    ("backup_puts_per_gb", "backup PUTs per stored GB"),
    ("rerun_wall_s", "unchanged rerun wall s"),
    ("rerun_cpu_s", "unchanged rerun CPU s"),
    ("rerun_rss_mib", "unchanged rerun RSS MiB"),
    ("rerun_own_rss_mib", "  main process only"),
    ("rerun_puts", "unchanged rerun PUTs"),
    ("rerun_gets", "unchanged rerun GETs"),
    ("rerun_heads", "unchanged rerun HEADs"),
    ("rerun_lists", "unchanged rerun LISTs"),
    ("rerun_posts", "unchanged rerun POSTs"),
    ("rerun_deletes", "unchanged rerun DELETEs"),
    ("rerun_get_mib", "unchanged rerun GET MiB"),
    ("rerun_pack_get_bytes", "unchanged rerun pack GET bytes"),
    ("change_wall_s", "1% change backup wall s"),
    ("change_cpu_s", "1% change backup CPU s"),
    ("change_rss_mib", "1% change backup RSS MiB"),
    ("change_own_rss_mib", "  main process only"),
    ("change_written_mib", "1% change uploaded MiB"),
    ("change_written_pct", "1% change uploaded % of corpus"),
    ("change_new_objects_mib", "1% change new objects MiB"),
    ("repo_after_change_apparent_mib", "repository MiB after change"),
    ("restore_wall_s", "restore wall s"),
    ("restore_cpu_s", "restore CPU s"),
    ("restore_rss_mib", "restore peak RSS MiB"),
    ("restore_own_rss_mib", "  main process only"),
    ("verify_wall_s", "verify wall s"),
    ("verify_cpu_s", "verify CPU s"),
    ("verify_rss_mib", "verify peak RSS MiB"),
)
#: Counts, shown without decimals.
INTEGER_METRICS = frozenset(
    {
        "repo_objects",
        "backup_puts",
        "rerun_puts",
        "rerun_gets",
        "rerun_heads",
        "rerun_lists",
        "rerun_posts",
        "rerun_deletes",
        "rerun_pack_get_bytes",
    }
)


@dataclass
class Section:
    """One table: a data set backed up by some tools to one kind of store."""

    key: str
    ds: Dataset
    tools: list[Tool]
    store: str
    change: Change | None = None

    @property
    def title(self) -> str:
        ds = self.ds
        where = "" if self.store == "local" else f" on {self.store}"
        return f"{ds.name}{where}: {ds.files} files, {ds.dirs} dirs, {ds.bytes / MIB:.1f} MiB"


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


def spare_ratios(section: Section, summary: dict) -> dict[str, dict[str, float | None]]:
    """Each spare column's medians divided by each other tool's, metric by metric."""
    res = summary[section.key]
    names = [t.name for t in section.tools]
    out: dict[str, dict[str, float | None]] = {}
    for mine in (n for n in names if n.startswith("spare")):
        for theirs in (n for n in names if not n.startswith("spare")):
            out[f"{mine}/{theirs}"] = {
                k: ratio(res[mine]["median"][k], res[theirs]["median"][k]) for k, _ in METRICS
            }
    return out


def header(meta: dict) -> list[str]:
    return [
        f"spare benchmark  {meta['started']}  host {meta['host']}  {meta['cpus']} CPUs  "
        f"python {meta['python']}  mode {meta['mode']}",
        "tools: " + ", ".join(f"{n} ({v})" for n, v in meta["tools"].items()),
        f"repeat {meta['repeat']} (median shown), scale {meta['scale']}, seed {meta['seed']}, "
        f"borg compression {meta['borg_compression']}, restic compression auto, restic "
        f"GOMAXPROCS {meta['restic_gomaxprocs'] or 'unset (every core)'}",
        "lower is better nearly everywhere; a ratio below 1 means spare is faster or smaller",
    ]


def section_table(section: Section, summary: dict, ratios: dict) -> str:
    names = [t.name for t in section.tools]
    others = [n for n in names if not n.startswith("spare")] if "spare" in names else []
    res = summary[section.key]
    rows = [["metric", *names] + [f"spare/{o}" for o in others]]
    for key, label in METRICS:
        if all(res[n]["median"][key] is None for n in names):
            continue
        integer = key in INTEGER_METRICS
        row = [label] + [fmt(res[n]["median"][key], integer) for n in names]
        row += [fmt(ratios[section.key][f"spare/{o}"].get(key)) for o in others]
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
    return render_table(rows)


def section_notes(section: Section, summary: dict) -> list[str]:
    out = []
    if section.change is not None:
        c = section.change.summary()
        out.append(
            f"  1% change: {c['overwritten_ranges']} ranges overwritten in place "
            f"({c['overwritten_bytes'] / MIB:.2f} MiB), {c['appended_bytes'] / MIB:.2f} MiB "
            f"appended, {c['small_files_touched']} small files touched, "
            f"{c['small_files_rewritten']} rewritten: {c['changed_bytes'] / MIB:.2f} MiB of new "
            f"content, {100 * c['changed_bytes'] / section.ds.bytes:.2f}% of the corpus; the "
            "restore is of the changed tree"
        )
    out.extend(f"  note: {n}" for n in section.ds.notes)
    for t in section.tools:
        for r in summary[section.key][t.name]["runs_detail"]:
            for w in r["warnings"]:
                out.append(f"  note: {t.name} rep {r['rep']}: {w.splitlines()[0]}")
            for e in r["errors"]:
                first = e.splitlines()
                out.append(f"  ERROR: {t.name} rep {r['rep']}: {' | '.join(first[:4])}")
                out.append(f"         log: {r['log']}")
    return out


def report(sections: list[Section], summary: dict, ratios: dict, meta: dict) -> str:
    out = header(meta)
    for section in sections:
        out.append("")
        out.append(f"== {section.title}")
        out.append(section_table(section, summary, ratios))
        out.extend(section_notes(section, summary))
    return "\n".join(out)


def write_json(
    path: Path, meta: dict, sections: list[Section], summary: dict, ratios: dict, targets: list
) -> None:
    """Write the settings, the data sets, every run with its medians, the ratios and the targets
    to path."""
    doc = {
        "meta": meta,
        "datasets": {s.ds.name: s.ds.summary() for s in sections},
        "sections": {
            s.key: {
                "dataset": s.ds.name,
                "store": s.store,
                "tools": [t.name for t in s.tools],
                "change": s.change.summary() if s.change else None,
            }
            for s in sections
        },
        "results": summary,
        "ratios": ratios,
        "targets": targets,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    note(f"results written to {path}")
