"""The study's report (``report.md``, ``report.json``, figures), read from the runs' own files.

Per modality: the paper's table layout (rows T, columns noLS / LS teacher, plus the teachers and the
no-KD baseline) with mean +- 95% interval and n for every metric; the comparisons of
``stats.comparisons`` (verdicts for the primary metric only); metric-vs-T plots with error bars and
the teachers and the baseline as reference lines; diffusion numbers vs T with intervals; seed 0's
projection grid; and the settings and key of every run, from each run's ``run.json``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.files import write_text_atomic
from lskd_plugins.study import kinds as kind_table
from lskd_plugins.study import layout, modalities, stats
from lskd_plugins.study.grid import Run
from lskd_plugins.study.modalities import Metric

# the diffusion numbers of every modality; each modality's own metrics are in its module's table
DIFFUSION_METRICS = {
    "eta": Metric("eta (directional diffusion)", 3),
    "fisher_ab": Metric("Fisher J_ab", 3),
    "leakage_ab": Metric("leakage a->b", 3),
}
DIFFUSION = tuple(DIFFUSION_METRICS)
COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple")
MARKERS = ("o", "s", "^", "D")  # one per teacher: equal values stay visible
DODGE = 0.12  # x offset between the teachers' students at one T


def metric_info(name: str) -> Metric:
    """A metric's label and digits, from the modality that has it (or the diffusion numbers)."""
    for mod in modalities.MODALITIES.values():
        if name in mod.metrics:
            return mod.metrics[name]
    return DIFFUSION_METRICS.get(name, Metric(name))


def diffusion_kind(modality: str, kind_names: List[str]) -> str | None:
    """The kind whose students the diffusion figures show: the first the analysis measures."""
    return next((k for k in kind_names if kind_table.kind(k).diffusion), None)


def read_runs(runs: List[Run], folders: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """{name: {"result": result.json, "settings": run.json}} -- the runs' own files, nothing else."""
    out = {}
    for r in runs:
        settings, result = layout.read_run(folders[r.name])
        out[r.name] = {"result": result, "settings": settings}
    return out


def collect(runs: List[Run], files: Dict[str, dict], modality: str, metric: str) -> Dict[str, Any]:
    """cells[(kind, teacher smoothing, T)] / teachers[smoothing] / baseline: {seed: value} of one metric."""
    cells: Dict[tuple, Dict[int, float]] = {}
    teachers: Dict[float, Dict[int, float]] = {}
    baseline: Dict[int, float] = {}
    for r in runs:
        if r.modality != modality:
            continue
        value = files[r.name]["result"].get("metrics", {}).get(metric)
        if r.role == "student":
            cells.setdefault((r.kind, r.teacher_smoothing, r.temperature), {})[r.seed] = value
        elif r.role == "teacher":
            teachers.setdefault(r.teacher_smoothing, {})[r.seed] = value
        elif r.role == "baseline":
            baseline[r.seed] = value
    return {"cells": cells, "teachers": teachers, "baseline": baseline}


def collect_diffusion(runs: List[Run], files: Dict[str, dict], modality: str, key: str) -> Dict[str, Any]:
    """Diffusion numbers per cell, from each seed's analysis (``per_model`` by run name)."""
    by_name = {r.name: r for r in runs}
    cells: Dict[tuple, Dict[int, float]] = {}
    for r in runs:
        if r.modality != modality or r.role != "diffusion":
            continue
        for name, numbers in files[r.name]["result"].get("per_model", {}).items():
            m = by_name[name]
            a = m.teacher_smoothing
            cell = ("teacher", a, None) if m.role == "teacher" else (m.kind, a, m.temperature)
            # a fixed teacher appears in every seed's analysis but is one model: keyed by its own seed
            cells.setdefault(cell, {})[m.seed] = numbers.get(key)
    return cells


def fmt(s: Dict[str, Any], digits: int = 2) -> str:
    if not s or s.get("mean") is None or not math.isfinite(s["mean"]):
        return "–"
    text = f"{s['mean']:.{digits}f}"
    if s.get("half") is not None:
        text += f" ± {s['half']:.{digits}f}"
    return f"{text} (n={s['n']})"


def digits_of(name: str) -> int:
    return metric_info(name).digits


def table(
    data: Dict[str, Any], alphas: List[float], temps: List[float], kinds: List[str], metric: str
) -> dict:
    """Rows (label, {alpha: summary}) in the paper's layout."""
    rows = [("teacher", {a: stats.summary(data["teachers"].get(a, {}).values()) for a in alphas})]
    for kind in kinds:
        for t in temps if kind_table.kind(kind).takes_temperature else [None]:
            label = kind_table.kind(kind).label + ("" if t is None else f", T={t:g}")
            rows.append(
                (label, {a: stats.summary(data["cells"].get((kind, a, t), {}).values()) for a in alphas})
            )
    base = stats.summary(data["baseline"].values())
    rows.append(("no-KD baseline (same student, plain label-smoothed loss)", {a: base for a in alphas}))
    return {
        "metric": metric,
        "rows": [{"label": lab, "cells": {f"{a:g}": c for a, c in cells.items()}} for lab, cells in rows],
    }


def column_title(a: float) -> str:
    return f"noLS teacher (α={a:g})" if a == 0 else f"LS teacher (α={a:g})"


def table_markdown(tab: dict, alphas: List[float]) -> List[str]:
    d = digits_of(tab["metric"])
    lines = ["| | " + " | ".join(column_title(a) for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for row in tab["rows"]:
        lines.append(
            f"| {row['label']} | " + " | ".join(fmt(row["cells"][f"{a:g}"], d) for a in alphas) + " |"
        )
    return lines


def comparison_markdown(comps: List[dict], metric: str, with_verdict: bool) -> List[str]:
    d = digits_of(metric)
    head = "| comparison | mean difference | 95% interval | n |" + (" verdict |" if with_verdict else "")
    lines = [head, "|---|---|---|---|" + ("---|" if with_verdict else "")]
    for c in comps:
        interval = "–" if c["lo"] is None else f"[{c['lo']:+.{d}f}, {c['hi']:+.{d}f}]"
        row = f"| {c['group']}: {c['label']} | {c['mean']:+.{d}f} | {interval} | {c['n']} |"
        if with_verdict:
            row += f" {c['verdict'] or 'no verdict (one seed)'} |"
        lines.append(row)
    return lines


def answer(comps: List[dict], name: str, n_seeds: int) -> str:
    """Written only from resolved comparisons; otherwise how many seeds the spread suggests."""
    if n_seeds < 2:
        return f"One seed: numbers only, no verdicts (set `seeds` >= 2 to compare {metric_info(name).label})."
    resolved = [c for c in comps if c["verdict"] in (stats.BETTER, stats.WORSE)]
    if resolved:
        parts = [
            f"{c['group']}: {c['label']} is {c['verdict']} by {c['mean']:+.2f} "
            f"[{c['lo']:+.2f}, {c['hi']:+.2f}]"
            for c in resolved
        ]
        return (
            f"Resolved at this budget ({n_seeds} seeds, {metric_info(name).label}), {len(resolved)} of "
            f"{len(comps)} comparisons: " + "; ".join(parts) + ". Every other comparison is not resolved."
        )
    if not comps:
        return "No comparison could be formed."
    big = max(comps, key=lambda c: abs(c["mean"]))
    need = big["seeds_to_resolve"]
    return (
        f"No comparison is resolved at this budget ({n_seeds} seeds). The largest difference, "
        f"{big['group']}: {big['label']} = {big['mean']:+.2f} with paired sd {big['sd']:.2f}, would need "
        f"about {need if need else 'many'} seeds to resolve ((2.1 sd / m)^2, computed exactly from t)."
    )


def plot_metric(data: Dict[str, Any], alphas, temps, kind_names, name: str, title: str, path: Path) -> Path:
    """Students' metric vs T (error bars: 95% intervals), teachers dashed, the no-KD baseline grey."""
    plt = _pyplot()

    tkinds = [k for k in kind_names if kind_table.kind(k).takes_temperature] or kind_names
    fig, axes = plt.subplots(
        1, len(tkinds), figsize=(max(7.5, 5.6 * len(tkinds)), 4.3), dpi=110, squeeze=False
    )
    xs = list(range(len(temps)))
    for ax, kind in zip(axes[0], tkinds):
        for i, (a, col) in enumerate(zip(alphas, COLOURS)):
            ss = [stats.summary(data["cells"].get((kind, a, t), {}).values()) for t in temps]
            _errorbar(ax, [x + (i - 0.5) * DODGE for x in xs], ss, col, f"student of {column_title(a)}", i)
            _reference(ax, stats.summary(data["teachers"].get(a, {}).values()), col, f"teacher α={a:g}", "--")
        _reference(ax, stats.summary(data["baseline"].values()), "0.3", "no-KD baseline", ":", lw=2.2)
        _style(ax, temps, metric_info(name).label, f"{title}: {kind_table.kind(kind).label}")
    return _save(fig, axes[0][0], path)


def _pyplot():
    """matplotlib without a display, and quiet: fairseq may leave the root logger at DEBUG."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _style(ax, temps, ylabel: str, title: str) -> None:
    ax.set_xticks(range(len(temps)), [f"T={t:g}" for t in temps])
    ax.set_xlabel("KD temperature")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    low, high = ax.get_ylim()  # room above and below, so a teacher's line never sits on the frame
    pad = 0.06 * (high - low)
    ax.set_ylim(low - pad, high + pad)


def _save(fig, legend_ax, path: Path) -> Path:
    """One legend for all panels, below them (never over the data)."""
    import matplotlib.pyplot as plt

    handles, labels = legend_ax.get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False
    )
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _errorbar(ax, xs, ss, colour, label, index: int = 0) -> None:
    ys = [s["mean"] if s["mean"] is not None else float("nan") for s in ss]
    err = [s["half"] or 0.0 for s in ss]
    marker = MARKERS[index % len(MARKERS)]
    ax.errorbar(xs, ys, yerr=err, fmt=f"{marker}-", color=colour, capsize=4, label=label + " (mean ± 95% CI)")


def _reference(ax, s: Dict[str, Any], colour, label, style, lw: float = 1.2) -> None:
    """A horizontal reference (a teacher, the baseline), drawn over the grid so that a line equal to
    another one still shows (the baseline's thicker dots over a teacher's dashes)."""
    if s["mean"] is None:
        return
    text = f"{label}: {s['mean']:.2f}" + (f" ± {s['half']:.2f}" if s["half"] is not None else "")
    ax.axhline(s["mean"], color=colour, ls=style, lw=lw, label=text, zorder=3)


def plot_diffusion(cells_by_key: Dict[str, dict], alphas, temps, kind: str, path: Path) -> Path:
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(DIFFUSION), figsize=(5.2 * len(DIFFUSION), 4.2), dpi=110)
    xs = list(range(len(temps)))
    for ax, key in zip(axes, DIFFUSION):
        cells = cells_by_key[key]
        for i, (a, col) in enumerate(zip(alphas, COLOURS)):
            ss = [stats.summary(cells.get((kind, a, t), {}).values()) for t in temps]
            _errorbar(ax, [x + (i - 0.5) * DODGE for x in xs], ss, col, f"students of {column_title(a)}", i)
            _reference(
                ax, stats.summary(cells.get(("teacher", a, None), {}).values()), col, f"teacher α={a:g}", "--"
            )
        if key == "eta":
            ax.axhline(1.0, color="0.3", ls="-.", lw=1, label="eta = 1: isotropic spread", zorder=2)
        _style(ax, temps, metric_info(key).label, metric_info(key).label)
    return _save(fig, axes[0], path)


def cfg_first(runs: List[Run], modality: str) -> int:
    return min(r.seed for r in runs if r.modality == modality)


def projection_grid(
    runs: List[Run], folders, modality: str, alphas, temps, path: Path, kind: str | None = None
) -> Path | None:
    """Seed 0's projections: rows teacher smoothing, columns the teacher then each T."""
    import pickle

    diff = next(
        (
            r
            for r in runs
            if r.modality == modality and r.role == "diffusion" and r.seed == cfg_first(runs, modality)
        ),
        None,
    )
    if diff is None:
        return None
    folder = Path(folders[diff.name])
    try:
        from lskd_plugins.diffusion import plot_projection_grid
    except ImportError:
        plot_projection_grid = None
    if plot_projection_grid is None or not (folder / "projections.pkl").is_file():
        shutil.copyfile(folder / layout.DIFFUSION_DIR / "projection.png", path)
        return path
    with open(folder / "projections.pkl", "rb") as f:
        projections = pickle.load(f)
    by_label = {p.label: p for p in projections}
    names = {layout.short_name(r.name): r for r in runs if r.name in diff.deps}
    grid = []
    for a in alphas:
        row = [n for n, r in names.items() if r.role == "teacher" and r.teacher_smoothing == a]
        row += [
            n
            for t in temps
            for n, r in names.items()
            if kind is not None and r.kind == kind and r.teacher_smoothing == a and r.temperature == t
        ]
        grid += [by_label.get(n) for n in row]
    plot_projection_grid(
        grid, [f"teacher α={a:g}" for a in alphas], ["teacher", *[f"T={t:g}" for t in temps]], path
    )
    return path


def modality_section(cfg, runs: List[Run], files, folders, modality: str, out: Path) -> Dict[str, Any]:
    """Tables, comparisons, answer, figures and run settings of one modality."""
    alphas, temps, n_seeds = cfg["teacher_smoothing"], cfg["temperatures"], cfg["seeds"]
    mod = modalities.get(modality)
    kind_names = mod.kinds(cfg[modality])
    primary = mod.primary
    doc: Dict[str, Any] = {"primary_metric": primary, "tables": {}, "comparisons": {}, "figures": {}}
    for name in mod.metrics:
        data = collect(runs, files, modality, name)
        doc["tables"][name] = table(data, alphas, temps, kind_names, name)
        doc["comparisons"][name] = stats.comparisons(
            data["cells"], data["baseline"], alphas, temps, kind_names, with_verdict=name == primary
        )
        if name == primary and kind_names:  # kinds: []: teachers and the baseline only, nothing vs T
            doc["figures"]["metric_vs_T"] = plot_metric(
                data, alphas, temps, kind_names, name, modality, out / f"{modality}_{name}_vs_T.png"
            ).name
    doc["answer"] = answer(doc["comparisons"][primary], primary, n_seeds)
    if any(r.modality == modality and r.role == "diffusion" for r in runs):
        dcells = {k: collect_diffusion(runs, files, modality, k) for k in DIFFUSION}
        kind = diffusion_kind(modality, kind_names)
        doc["diffusion"] = {
            k: {f"{c[0]}|{c[1]}|{c[2]}": stats.summary(v.values()) for c, v in cells.items()}
            for k, cells in dcells.items()
        }
        doc["diffusion_classes"] = next(
            files[r.name]["result"].get("classes")
            for r in runs
            if r.modality == modality and r.role == "diffusion"
        )
        doc["figures"]["diffusion_vs_T"] = plot_diffusion(
            dcells, alphas, temps, kind, out / f"{modality}_diffusion_vs_T.png"
        ).name
        doc["diffusion_cells"] = dcells
        doc["diffusion_kind"] = kind
        grid = projection_grid(
            runs, folders, modality, alphas, temps, out / f"{modality}_projection_seed0.png", kind
        )
        doc["figures"]["projection"] = grid.name if grid else None
    doc["runs"] = [
        {
            "name": r.name,
            "key": r.key,
            "folder": r.folder,
            "seconds": files[r.name]["result"].get("seconds"),
            "metrics": files[r.name]["result"].get("metrics"),
            "command": files[r.name]["settings"]["command"],
        }
        for r in runs
        if r.modality == modality
    ]
    return doc


def diffusion_markdown(doc: Dict[str, Any], alphas, temps, kind: str | None) -> List[str]:
    cells = doc["diffusion_cells"]
    lines = [
        f"Classes (a, b similar to a, c dissimilar): {', '.join(map(str, doc['diffusion_classes']))}. "
        "eta > 1: class a spreads toward b more than toward c; J_ab falls when a and b diffuse into "
        "each other (docs/diffusion.md). Mean ± 95% interval over seeds (no verdicts).",
        "",
        "| model | " + " | ".join(metric_info(k).label for k in DIFFUSION) + " |",
        "|---|" + "---|" * len(DIFFUSION),
    ]
    for a in alphas:
        for t in [None, *(temps if kind is not None else [])]:
            cell = ("teacher", a, None) if t is None else (kind, a, t)
            label = f"teacher α={a:g}" if t is None else f"student of α={a:g}, T={t:g}"
            lines.append(
                f"| {label} | "
                + " | ".join(fmt(stats.summary(cells[k].get(cell, {}).values()), 3) for k in DIFFUSION)
                + " |"
            )
    return lines


def section_markdown(cfg, modality: str, doc: Dict[str, Any]) -> List[str]:
    alphas, temps, primary = cfg["teacher_smoothing"], cfg["temperatures"], doc["primary_metric"]
    variance = (
        "students' seeds only (the teachers are fixed: `fixed_teachers: true`)"
        if cfg[modality]["fixed_teachers"]
        else "teachers' and students' seeds (each seed trains its own teachers)"
    )
    lines = [
        f"## {modality.capitalize()}",
        "",
        f"**Answer.** {doc['answer']}",
        "",
        f"Cells: mean ± 95% t interval over seeds (n), intervals holding the variance of the {variance}.",
        "",
        f"### {metric_info(primary).label} (primary metric)",
        "",
        *table_markdown(doc["tables"][primary], alphas),
        "",
        *(
            [f"![{primary} vs T]({doc['figures']['metric_vs_T']})", ""]
            if "metric_vs_T" in doc["figures"]
            else []
        ),
        "### Comparisons, paired by seed (verdicts for the primary metric only)",
        "",
        *comparison_markdown(doc["comparisons"][primary], primary, True),
        "",
    ]
    for name in [m for m in modalities.get(modality).metrics if m != primary]:
        lines += [
            f"### {metric_info(name).label} ({metric_info(name).what}; intervals, no verdicts)",
            "",
            *table_markdown(doc["tables"][name], alphas),
            "",
            "<details><summary>paired differences</summary>",
            "",
            *comparison_markdown(doc["comparisons"][name], name, False),
            "",
            "</details>",
            "",
        ]
    if "diffusion" in doc:
        lines += [
            "### Systematic diffusion (validation)",
            "",
            *diffusion_markdown(doc, alphas, temps, doc["diffusion_kind"]),
            "",
            f"![diffusion vs T]({doc['figures']['diffusion_vs_T']})",
            "",
        ]
        if doc["figures"].get("projection"):
            lines += [
                "Seed 0's models projected on the three classes' templates (rows: teacher label "
                "smoothing; columns: the teacher, then each T):",
                "",
                f"![projection]({doc['figures']['projection']})",
                "",
            ]
    return lines + runs_markdown(doc["runs"])


def runs_markdown(runs: List[dict]) -> List[str]:
    """The settings (the command) and key of every run shown, from each run's own run.json."""
    lines = [
        "### Every run: settings and key (from each run's own run.json / result.json)",
        "",
        "<details><summary>runs</summary>",
        "",
        "| run | key | seconds | command |",
        "|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['name']} | `{r['key']}` | {r['seconds']} | `{' '.join(r['command'])}` |")
    return lines + ["", "</details>", ""]


def write_report(cfg: Dict[str, Any], runs: List[Run], folders: Dict[str, str], out: Path) -> Dict[str, Any]:
    """report.md + report.json (+ PNGs) in ``out``; returns the JSON document."""
    from lskd_plugins.diffusion.report import clean

    files = read_runs(runs, folders)
    doc: Dict[str, Any] = {
        "format": "lskd-study-v2",
        "seeds": cfg["seeds"],
        "fixed_teachers": cfg["fixed_teachers"],
        "temperatures": cfg["temperatures"],
        "teacher_smoothing": cfg["teacher_smoothing"],
        "modalities": {},
    }
    lines = [
        "# lskd study: label smoothing x knowledge distillation",
        "",
        f"{cfg['seeds']} seed(s); teachers' label smoothing "
        f"{', '.join(f'{a:g}' for a in cfg['teacher_smoothing'])}; "
        f"KD temperatures {', '.join(f'{t:g}' for t in cfg['temperatures'])}. Comparisons are paired by seed "
        "(docs/study.md): better / worse when the 95% interval excludes 0, otherwise not resolved.",
        "",
    ]
    for modality in [m.name for m in modalities.present(cfg)]:
        sec = modality_section(cfg, runs, files, folders, modality, out)
        lines += section_markdown(cfg, modality, sec)
        sec.pop("diffusion_cells", None)
        doc["modalities"][modality] = sec
    write_text_atomic(out / "report.json", json.dumps(clean(doc), indent=1) + "\n")
    write_text_atomic(out / "report.md", "\n".join(lines))
    return doc
