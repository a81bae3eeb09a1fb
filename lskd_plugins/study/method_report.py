"""The report's KD-method section (issue 18): the methods of ``kd_methods`` side by side.

Read from the same cells as the rest of the report (``report.collect``: plain kd students keyed
(kind, eps, T), another method's (kind, eps, T, method)), for the kinds that take a teacher's
distribution: per metric a table in the paper's layout with one row per kind, T and method; the
comparisons of ``stats.method_comparisons`` (method - KD at each teacher and T, paired by seed
index; the method's effect on the LS - noLS gap; each method's own LS - noLS gaps and interactions),
which form their own Holm family (so the kd answer above it is unchanged); a side-by-side table of
the LS - noLS gap and the interaction per method (KD's from the main family); a figure of the
methods vs T (``figures.plot_methods``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.study import figures, kinds, multiple, readings, stats
from lskd_plugins.study.adequacy import teacher_name
from lskd_plugins.study.report import collect, comparison_markdown, digits_of, metric_info, table_markdown

GAP_GROUPS = ("LS - noLS", "interaction")


def methods_of(cfg: Dict[str, Any], modality: str, kind_names: List[str]) -> List[str]:
    """The modality's KD methods when it has more than plain KD and a kind they apply to; else []."""
    names = cfg[modality].get("kd_methods") or [kinds.DEFAULT_METHOD]
    if names == [kinds.DEFAULT_METHOD] or not any(kinds.kind(k).distribution for k in kind_names):
        return []
    return [kinds.DEFAULT_METHOD] + [m for m in names if m != kinds.DEFAULT_METHOD]


def method_table(data, smoothings, temps, kind_names, methods, metric: str, base_label: str) -> dict:
    """Rows (teacher, then per kind, T and method, then the baseline) x columns (teacher eps)."""
    rows = [
        {
            "label": "teacher",
            "cells": {a: stats.summary(data["teachers"].get(a, {}).values()) for a in smoothings},
        }
    ]
    by_method = {m: stats.method_cells(data["cells"], m) for m in methods}
    for kind in [k for k in kind_names if kinds.kind(k).distribution]:
        for t in temps if kinds.kind(kind).takes_temperature else [None]:
            for m in methods:
                label = (
                    kinds.kind(kind).label
                    + ("" if t is None else f", T={t:g}")
                    + f", {kinds.method(m).label}"
                )
                cells = {a: stats.summary(by_method[m].get((kind, a, t), {}).values()) for a in smoothings}
                rows.append({"label": label, "kind": kind, "temperature": t, "method": m, "cells": cells})
    base = stats.summary(data["baseline"].values())
    rows.append({"label": base_label, "cells": {a: base for a in smoothings}})
    for row in rows:
        row["cells"] = {f"{a:g}": c for a, c in row["cells"].items()}
    return {"metric": metric, "rows": rows}


def summary(comps: List[dict], primary: str, n_seeds: int, family: int, warnings: List[str]) -> str:
    """What the methods' family says, from its Holm-adjusted verdicts only."""
    if warnings:
        return (
            "The models are not adequate (see the warnings above): the comparisons are for the record only."
        )
    if n_seeds < 2:
        return "One seed: numbers only, no verdicts."
    if not comps:
        return "No comparison could be formed."
    resolved = [c for c in comps if c.get("verdict_adjusted") in (multiple.BETTER, multiple.WORSE)]
    if not resolved:
        return readings.nothing_resolved(comps, metric_info(primary).label, n_seeds, family)
    d = digits_of(primary)
    evidence = "; ".join(
        f"{c['reading_adjusted']} ({c['mean']:+.{d}f} [{c['lo']:+.{d}f}, {c['hi']:+.{d}f}])" for c in resolved
    )
    head = f"Resolved after Holm's adjustment ({len(resolved)} of {family})"
    return f"{head}: {evidence}. Every other comparison is not resolved."


def adjust(sec: Dict[str, Any], comps: List[dict], cfg, primary: str, warnings: List[str]) -> None:
    """The methods' family: Holm-adjusted verdicts, readings and the summary."""
    sec["family_size"] = multiple.adjust(comps)
    for c in comps:
        c["reading"] = readings.reading(c)
        c["reading_adjusted"] = readings.reading(c, "verdict_adjusted")
        if c["group"] == "interaction":
            c["agrees_with_paper"] = readings.agrees_with_paper(c, c["verdict_adjusted"])
        if warnings:
            c["inadequate_models"] = True
    sec["summary"] = summary(comps, primary, cfg["seeds"], sec["family_size"], warnings)


def section(
    cfg, runs, files, modality: str, doc: Dict[str, Any], kind_names, out: Path
) -> Dict[str, Any] | None:
    """The KD-method section of one modality (None when it trains plain KD only)."""
    methods = methods_of(cfg, modality, kind_names)
    if not methods:
        return None
    smoothings, temps, primary = cfg["teacher_smoothing"], cfg["temperatures"], doc["primary_metric"]
    settings = {k: cfg[modality].get(k) for m in methods for k in kinds.method(m).settings}
    sec: Dict[str, Any] = {"methods": methods, "settings": settings, "tables": {}, "comparisons": {}}
    for name in doc["tables"]:
        data = collect(runs, files, modality, name)
        sec["tables"][name] = method_table(
            data, smoothings, temps, kind_names, methods, name, doc["baseline_label"]
        )
        comps = stats.method_comparisons(
            data["cells"], smoothings, temps, kind_names, methods, name == primary
        )
        sec["comparisons"][name] = comps
        if name != primary:
            continue
        adjust(sec, comps, cfg, primary, doc["warnings"])
        sec["gaps"] = gaps(doc["comparisons"][primary], comps, methods)
        path = out / f"{modality}_{name}_methods_vs_T.png"
        warn = (
            "Models inadequate (see report.md): no comparison here can be trusted"
            if doc["warnings"]
            else None
        )
        tkinds = [k for k in kind_names if kinds.kind(k).distribution]
        figures.plot_methods(
            data, smoothings, temps, tkinds, methods, name, path, doc["baseline_label"], None,
            metric_info(name).label, warn,
        )  # fmt: skip
        sec["figure"] = path.name
    return sec


def gaps(main: List[dict], comps: List[dict], methods: List[str]) -> List[Dict[str, Any]]:
    """The LS - noLS gap and the interaction per method, side by side: rows (group, kind, eps, T,
    T_ref), one comparison per method (KD's from the main family, the others' from the methods')."""
    rows: Dict[tuple, Dict[str, Any]] = {}
    for c in [*main, *comps]:
        if c["group"] not in GAP_GROUPS:
            continue
        where = (c["group"], c["kind"], c["smoothing"], c["temperature"], c["t_ref"])
        row = rows.setdefault(
            where,
            {
                "where": dict(zip(("group", "kind", "smoothing", "temperature", "t_ref"), where)),
                "by_method": {},
            },
        )
        row["by_method"][c.get("method") or kinds.DEFAULT_METHOD] = c
    return [
        r for r in rows.values() if len(r["by_method"]) > 1 or set(r["by_method"]) != {kinds.DEFAULT_METHOD}
    ]


def _gap_label(w: Dict[str, Any]) -> str:
    kind, ls = kinds.kind(w["kind"]).label, teacher_name(w["smoothing"])
    if w["group"] == "LS - noLS":
        return f"{kind}: {ls} - noLS" + ("" if w["temperature"] is None else f", T={w['temperature']:g}")
    return f"{kind}: interaction, ({ls} - noLS at T={w['temperature']:g}) - (same at T={w['t_ref']:g})"


def _gap_cell(c: Dict[str, Any] | None, d: int) -> str:
    if c is None:
        return "–"
    interval = "" if c["lo"] is None else f" [{c['lo']:+.{d}f}, {c['hi']:+.{d}f}]"
    verdict = c.get("verdict_adjusted")
    return f"{c['mean']:+.{d}f}{interval}" + (f" {verdict}" if verdict else "")


def gaps_markdown(sec: Dict[str, Any], primary: str) -> List[str]:
    d, methods = digits_of(primary), sec["methods"]
    lines = [
        "| | " + " | ".join(kinds.method(m).label for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for row in sec["gaps"]:
        cells = " | ".join(_gap_cell(row["by_method"].get(m), d) for m in methods)
        lines.append(f"| {_gap_label(row['where'])} | {cells} |")
    return lines


def intro(sec: Dict[str, Any], primary: str) -> str:
    labels = ", ".join(kinds.method(m).label + f" (`{m}`)" for m in sec["methods"])
    settings = ", ".join(f"{k} = {v:g}" for k, v in sec["settings"].items() if v is not None)
    return (
        f"Students of each KD method ({labels}{'; ' + settings if settings else ''}) at each teacher and "
        "T, for the kinds that take a teacher's distribution. A method's student and the KD student of "
        "one seed index share their student seed, so method - KD is paired by seed index. "
        "`method x LS` = (LS - noLS under the method) - (LS - noLS under KD): does the method change "
        f"the LS teacher's standing? The {metric_info(primary).label} comparisons of this section form "
        f"their own Holm family of {sec.get('family_size', 0)} (the answer above reads only KD's family)."
    )


def markdown(sec: Dict[str, Any], doc: Dict[str, Any], smoothings) -> List[str]:
    primary = doc["primary_metric"]
    label = metric_info(primary).label
    lines = [
        "### KD methods side by side: " + ", ".join(kinds.method(m).label for m in sec["methods"]),
        "",
        intro(sec, primary),
        "",
        f"**KD methods, in short.** {sec['summary']}",
        "",
        f"#### {label} per KD method",
        "",
        *table_markdown(sec["tables"][primary], smoothings),
        "",
        f"![{primary} vs T per KD method]({sec['figure']})",
        "",
        "#### LS - noLS gap and interaction per KD method (mean [95% interval] Holm-adjusted verdict)",
        "",
        *gaps_markdown(sec, primary),
        "",
        "#### KD-method comparisons, paired by seed index (Holm family of this section)",
        "",
        *comparison_markdown(sec["comparisons"][primary], primary, True, bool(doc["warnings"])),
        "",
    ]
    for name in [m for m in sec["tables"] if m != primary]:
        lines += [
            f"<details><summary>{metric_info(name).label} per KD method (intervals, no verdicts)</summary>",
            "",
            *table_markdown(sec["tables"][name], smoothings),
            "",
            *comparison_markdown(sec["comparisons"][name], name, False),
            "",
            "</details>",
            "",
        ]
    return lines
