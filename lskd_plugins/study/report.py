"""The study's report (``report.md``, ``report.json``, figures), read from the runs' own files.

Per modality: first the adequacy checks (``adequacy``: are the models good enough for an answer?),
then the answer (from the Holm-adjusted verdicts, ``multiple``; its words from ``readings``); the
paper's table layout (rows T, columns noLS / LS eps teacher, plus the teachers and the no-KD
baseline, labelled with its real loss) with mean +- 95% interval and n for every metric that can
differ; the comparisons of ``stats.comparisons`` with their readings, verdicts and adjusted verdicts
(primary metric only); metric-vs-T plots with clipped error bars and the teachers' and baseline's
interval bands (``figures``); diffusion numbers vs T with intervals; seed 0's projection grid; and
the settings and key of every run, from each run's ``run.json``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List

from lskd_plugins.files import write_text_atomic
from lskd_plugins.study import adequacy, figures, kinds, layout, modalities, multiple, readings, stats
from lskd_plugins.study.adequacy import teacher_name
from lskd_plugins.study.grid import Run
from lskd_plugins.study.modalities import Metric

# the diffusion numbers of every modality; each modality's own metrics are in its module's table
DIFFUSION_METRICS = {
    "eta": Metric("eta (directional diffusion)", 3),
    "fisher_ab": Metric("Fisher J_ab", 3),
    "leakage_ab": Metric("leakage a->b", 3),
}
DIFFUSION = tuple(DIFFUSION_METRICS)
UNITS = {"top1": "top-1 points", "bleu": "BLEU"}  # the answer's unit of a primary metric
MAX_CLASSES_TOP5_CANNOT_DIFFER = 5  # with 5 classes or fewer every model's top-5 is 100%
INADEQUATE = "inadequate models"


def metric_info(name: str) -> Metric:
    """A metric's label and digits, from the modality that has it (or the diffusion numbers)."""
    for mod in modalities.MODALITIES.values():
        if name in mod.metrics:
            return mod.metrics[name]
    return DIFFUSION_METRICS.get(name, Metric(name))


def diffusion_kind(modality: str, kind_names: List[str]) -> str | None:
    """The kind whose students the diffusion figures show: the first the analysis measures."""
    return next((k for k in kind_names if kinds.kind(k).diffusion), None)


def read_runs(runs: List[Run], folders: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """{name: {"result": result.json, "settings": run.json, "own": the tool's own result file}} --
    the runs' own files, nothing else."""
    out = {}
    for r in runs:
        settings, result = layout.read_run(folders[r.name])
        own = Path(folders[r.name]) / result.get("result_file", "-")
        try:
            own_json = json.loads(own.read_text()) if own.is_file() and own.suffix == ".json" else {}
        except ValueError:
            own_json = {}
        out[r.name] = {"result": result, "settings": settings, "own": own_json, "own_file": str(own)}
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
            cell = (r.kind, r.teacher_smoothing, r.temperature)
            # students of another KD method than kd: their own cells, never mixed into kd's tables
            cell += (r.method,) if r.method not in (None, kinds.DEFAULT_METHOD) else ()
            cells.setdefault(cell, {})[r.seed] = value
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


# ------------------------------------------------------------------------ what the runs say of themselves
def num_classes(runs: List[Run], files: Dict[str, dict], modality: str) -> int | None:
    """The classes the models were trained on, from their own result files (image: summary.json)."""
    for r in runs:
        if r.modality == modality and files[r.name]["own"].get("num_classes"):
            return int(files[r.name]["own"]["num_classes"])
    return None


def left_out(metrics: List[str], classes: int | None) -> Dict[str, str]:
    """Metrics that cannot differ between models, each with the one line that says why."""
    out = {}
    if "top5" in metrics and classes is not None and classes <= MAX_CLASSES_TOP5_CANNOT_DIFFER:
        out["top5"] = (
            f"top-5 is left out: with {classes} classes every model's top-5 is 100% (it can differ only "
            f"with more than {MAX_CLASSES_TOP5_CANNOT_DIFFER} classes)."
        )
    return out


def baseline_label(runs: List[Run], files: Dict[str, dict], modality: str) -> str:
    """The no-KD baseline's label with its real loss, from the baseline runs' own settings."""
    eps = {
        files[r.name]["settings"].get("spec", {}).get("smoothing")
        for r in runs
        if r.modality == modality and r.role == "baseline"
    }
    eps.discard(None)
    if not eps:
        return "no-KD baseline (same student)"
    (e,) = eps if len(eps) == 1 else (max(eps),)
    loss = "plain CE" if e == 0 else f"label-smoothed CE, eps={e:g}"
    return f"no-KD baseline (same student, {loss})"


def decoding(runs: List[Run], files: Dict[str, dict], modality: str) -> List[Dict[str, Any]]:
    """``adequacy.decoding_stats`` of every run scored by ``lskd bleu`` (its .bleu.json and .hyp)."""
    out = []
    for r in runs:
        f = files[r.name]
        if r.modality != modality or not f["own_file"].endswith(".bleu.json") or not f["own"]:
            continue
        hyp = Path(f["own_file"][: -len(".bleu.json")] + ".hyp")
        lines = hyp.read_text(encoding="utf-8").splitlines() if hyp.is_file() else None
        out.append(adequacy.decoding_stats(r.name, f["own"], lines))
    return out


def checks(data: Dict[str, Any], primary: str, classes: int | None, dec, kind_names) -> List[str]:
    """The adequacy warnings of one modality, from its primary metric's cells."""
    kd = {}
    for cell, values in stats.method_cells(data["cells"], kinds.DEFAULT_METHOD).items():
        kind, eps, t = cell
        label = kinds.kind(kind).label + ("" if t is None else f", T={t:g}") + f" ({teacher_name(eps)})"
        kd[label] = list(values.values())
    return adequacy.warnings(
        primary,
        {e: list(v.values()) for e, v in data["teachers"].items()},
        kd,
        list(data["baseline"].values()),
        classes,
        dec,
    )


# -------------------------------------------------------------------------------------------- tables
def fmt(s: Dict[str, Any], digits: int = 2) -> str:
    if not s or s.get("mean") is None or not math.isfinite(s["mean"]):
        return "–"
    text = f"{s['mean']:.{digits}f}"
    if s.get("half") is not None:
        text += f" ± {s['half']:.{digits}f}"
    return f"{text} (n={s['n']})"


def digits_of(name: str) -> int:
    return metric_info(name).digits


def table(data: Dict[str, Any], smoothings, temps, kind_names, metric: str, base_label: str) -> dict:
    """Rows (label, {eps: summary}) in the paper's layout."""
    rows = [("teacher", {a: stats.summary(data["teachers"].get(a, {}).values()) for a in smoothings})]
    for kind in kind_names:
        for t in temps if kinds.kind(kind).takes_temperature else [None]:
            label = kinds.kind(kind).label + ("" if t is None else f", T={t:g}")
            cells = {a: stats.summary(data["cells"].get((kind, a, t), {}).values()) for a in smoothings}
            rows.append((label, cells))
    base = stats.summary(data["baseline"].values())
    rows.append((base_label, {a: base for a in smoothings}))
    return {
        "metric": metric,
        "rows": [{"label": lab, "cells": {f"{a:g}": c for a, c in cells.items()}} for lab, cells in rows],
    }


def table_markdown(tab: dict, smoothings) -> List[str]:
    d = digits_of(tab["metric"])
    titles = " | ".join(figures.column_title(a) for a in smoothings)
    lines = [f"| | {titles} |", "|---|" + "---|" * len(smoothings)]
    for row in tab["rows"]:
        cells = " | ".join(fmt(row["cells"][f"{a:g}"], d) for a in smoothings)
        lines.append(f"| {row['label']} | {cells} |")
    return lines


def _verdict_text(c: dict, key: str, marked: bool) -> str:
    text = c.get(key) or "no verdict (one seed)"
    return f"{text} ({INADEQUATE})" if marked and c.get(key) else text


def comparison_markdown(
    comps: List[dict], metric: str, with_verdict: bool, marked: bool = False
) -> List[str]:
    d = digits_of(metric)
    if with_verdict:
        head = (
            "| comparison | reading | mean difference | 95% interval | n | verdict | verdict, Holm-adjusted |"
        )
        lines = [head, "|---|---|---|---|---|---|---|"]
    else:
        lines = ["| comparison | mean difference | 95% interval | n |", "|---|---|---|---|"]
    for c in comps:
        interval = "–" if c["lo"] is None else f"[{c['lo']:+.{d}f}, {c['hi']:+.{d}f}]"
        numbers = f"{c['mean']:+.{d}f} | {interval} | {c['n']}"
        if with_verdict:
            v, va = _verdict_text(c, "verdict", marked), _verdict_text(c, "verdict_adjusted", marked)
            lines.append(f"| {c['group']}: {c['label']} | {c['reading']} | {numbers} | {v} | {va} |")
        else:
            lines.append(f"| {c['group']}: {c['label']} | {numbers} |")
    return lines


# ------------------------------------------------------------------------------------------ figures
def projection_grid(runs: List[Run], folders, modality: str, smoothings, temps, path: Path, kind=None):
    """Seed 0's projections: rows teacher smoothing, columns the teacher then each T."""
    import pickle

    first = min(r.seed for r in runs if r.modality == modality)
    diff = next(
        (r for r in runs if r.modality == modality and r.role == "diffusion" and r.seed == first), None
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
    for a in smoothings:
        row = [n for n, r in names.items() if r.role == "teacher" and r.teacher_smoothing == a]
        row += [
            n
            for t in temps
            for n, r in names.items()
            if kind is not None and r.kind == kind and r.teacher_smoothing == a and r.temperature == t
        ]
        grid += [by_label.get(n) for n in row]
    rows = [f"teacher {teacher_name(a)}" for a in smoothings]
    plot_projection_grid(grid, rows, ["teacher", *[f"T={t:g}" for t in temps]], path)
    return path


# ------------------------------------------------------------------------------------------ sections
def primary_comparisons(doc, data, cfg, kind_names, primary, warnings) -> None:
    """The primary metric's family: Holm-adjusted verdicts, readings, the answer."""
    comps = doc["comparisons"][primary]
    doc["family_size"] = multiple.adjust(comps)
    for c in comps:
        c["reading"] = readings.reading(c)
        c["reading_adjusted"] = readings.reading(c, "verdict_adjusted")
        if c["group"] == "interaction":
            c["agrees_with_paper"] = readings.agrees_with_paper(c, c["verdict_adjusted"])
        if warnings:
            c["inadequate_models"] = True
    doc["answer"] = readings.answer(
        comps, metric_info(primary).label, UNITS.get(primary, ""), cfg["seeds"], doc["family_size"], warnings
    )


def modality_section(cfg, runs: List[Run], files, folders, modality: str, out: Path) -> Dict[str, Any]:
    """Checks, tables, comparisons, answer, figures and run settings of one modality."""
    smoothings, temps = cfg["teacher_smoothing"], cfg["temperatures"]
    mod = modalities.get(modality)
    kind_names, primary = mod.kinds(cfg[modality]), mod.primary
    classes = num_classes(runs, files, modality)
    dropped = left_out(list(mod.metrics), classes)
    base_label = baseline_label(runs, files, modality)
    doc: Dict[str, Any] = {"primary_metric": primary, "tables": {}, "comparisons": {}, "figures": {}}
    doc.update({"left_out": dropped, "baseline_label": base_label, "num_classes": classes})
    for name in [m for m in mod.metrics if m not in dropped]:
        data = collect(runs, files, modality, name)
        doc["tables"][name] = table(data, smoothings, temps, kind_names, name, base_label)
        doc["comparisons"][name] = stats.comparisons(
            data["cells"], data["baseline"], smoothings, temps, kind_names, with_verdict=name == primary
        )
        if name == primary:
            doc["warnings"] = checks(data, primary, classes, decoding(runs, files, modality), kind_names)
            primary_comparisons(doc, data, cfg, kind_names, primary, doc["warnings"])
            if kind_names:  # kinds: []: teachers and the baseline only, nothing vs T
                path = out / f"{modality}_{name}_vs_T.png"
                warn = (
                    "Models inadequate (see report.md): no comparison here can be trusted"
                    if doc["warnings"]
                    else None
                )
                figures.plot_metric(
                    data,
                    smoothings,
                    temps,
                    kind_names,
                    name,
                    modality,
                    path,
                    base_label,
                    None,
                    metric_info(name).label,
                    warn,
                )
                doc["figures"]["metric_vs_T"] = path.name
    from lskd_plugins.study import method_report  # it reads this module's helpers

    doc["methods"] = method_report.section(cfg, runs, files, modality, doc, kind_names, out)
    if any(r.modality == modality and r.role == "diffusion" for r in runs):
        diffusion_section(doc, cfg, runs, files, folders, modality, out, kind_names)
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


def diffusion_section(doc, cfg, runs, files, folders, modality: str, out: Path, kind_names) -> None:
    smoothings, temps = cfg["teacher_smoothing"], cfg["temperatures"]
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
    chooser = next((r for r in runs if r.modality == modality and r.role == "classes"), None)
    doc["diffusion_chosen"] = (
        f"chosen once, before any index was measured, on the mean soft predictions of the noLS teachers "
        f"of every seed index ({files[chooser.name]['result'].get('reason', '')})"
        if chooser
        else "given in the configuration"
    )
    path = out / f"{modality}_diffusion_vs_T.png"
    figures.plot_diffusion(dcells, smoothings, temps, kind, path)
    doc["figures"]["diffusion_vs_T"] = path.name
    doc["diffusion_cells"] = dcells
    doc["diffusion_kind"] = kind
    grid = projection_grid(
        runs, folders, modality, smoothings, temps, out / f"{modality}_projection_seed0.png", kind
    )
    doc["figures"]["projection"] = grid.name if grid else None


def diffusion_markdown(doc: Dict[str, Any], smoothings, temps, kind: str | None) -> List[str]:
    cells = doc["diffusion_cells"]
    lines = [
        f"Classes (a, b similar to a, c dissimilar): {', '.join(map(str, doc['diffusion_classes']))}. "
        "eta > 1: class a spreads toward b more than toward c; J_ab falls when a and b diffuse into "
        "each other (docs/diffusion.md). Mean ± 95% interval over seeds (no verdicts); each seed index "
        f"measures its models on its own sample. The three classes were {doc['diffusion_chosen']}: every "
        "diffusion number here is conditional on that choice (other classes may give other numbers).",
        "",
        "| model | " + " | ".join(metric_info(k).label for k in DIFFUSION) + " |",
        "|---|" + "---|" * len(DIFFUSION),
    ]
    for a in smoothings:
        for t in [None, *(temps if kind is not None else [])]:
            cell = ("teacher", a, None) if t is None else (kind, a, t)
            label = f"teacher {teacher_name(a)}" if t is None else f"student of {teacher_name(a)}, T={t:g}"
            numbers = " | ".join(fmt(stats.summary(cells[k].get(cell, {}).values()), 3) for k in DIFFUSION)
            lines.append(f"| {label} | {numbers} |")
    return lines


def head_markdown(cfg, modality: str, doc: Dict[str, Any]) -> List[str]:
    """The section's top: adequacy warnings, the answer, what the intervals hold."""
    variance = (
        "students' seeds only (the teachers are fixed: `fixed_teachers: true`)"
        if cfg[modality]["fixed_teachers"]
        else "teachers' and students' seeds (each seed trains its own teachers)"
    )
    lines = [f"## {modality.capitalize()}", ""]
    if doc["warnings"]:
        lines += ["**Warning: the models are not adequate for an answer.**", ""]
        lines += [f"- {w}" for w in doc["warnings"]] + [""]
    lines += [f"**Answer.** {doc['answer']}", ""]
    cells = "Cells: mean ± 95% t interval over seeds (n), intervals holding the variance of the"
    notes = [f"{cells} {variance}."]
    if doc["family_size"]:  # one seed: no comparison, no family
        notes.append(
            f"The {metric_info(doc['primary_metric']).label} comparisons form one family of "
            f"{doc['family_size']}: the Holm-adjusted verdicts (docs/study.md) keep the chance of any false "
            "verdict among them at 5%; the answer reads only those."
        )
    dof = readings.dof_note(cfg["seeds"])
    notes += [dof] if dof else []
    notes += list(doc["left_out"].values())
    return lines + [" ".join(notes), ""]


def section_markdown(cfg, modality: str, doc: Dict[str, Any]) -> List[str]:
    smoothings, temps, primary = cfg["teacher_smoothing"], cfg["temperatures"], doc["primary_metric"]
    figure = doc["figures"].get("metric_vs_T")
    lines = [
        *head_markdown(cfg, modality, doc),
        f"### {metric_info(primary).label} (primary metric)",
        "",
        *table_markdown(doc["tables"][primary], smoothings),
        "",
        *([f"![{primary} vs T]({figure})", ""] if figure else []),
        "### Comparisons, paired by seed (verdicts for the primary metric only)",
        "",
        *comparison_markdown(doc["comparisons"][primary], primary, True, bool(doc["warnings"])),
        "",
    ]
    for name in [m for m in doc["tables"] if m != primary]:
        lines += [
            f"### {metric_info(name).label} ({metric_info(name).what}; intervals, no verdicts)",
            "",
            *table_markdown(doc["tables"][name], smoothings),
            "",
            "<details><summary>paired differences</summary>",
            "",
            *comparison_markdown(doc["comparisons"][name], name, False),
            "",
            "</details>",
            "",
        ]
    if doc.get("methods"):
        from lskd_plugins.study import method_report

        lines += method_report.markdown(doc["methods"], doc, smoothings)
    if "diffusion" in doc:
        lines += [
            "### Systematic diffusion (validation)",
            "",
            *diffusion_markdown(doc, smoothings, temps, doc["diffusion_kind"]),
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
        "format": "lskd-study-v3",
        "seeds": cfg["seeds"],
        "fixed_teachers": cfg["fixed_teachers"],
        "temperatures": cfg["temperatures"],
        "teacher_smoothing": cfg["teacher_smoothing"],
        "legend": readings.LEGEND,
        "modalities": {},
    }
    lines = [
        "# lskd study: label smoothing x knowledge distillation",
        "",
        f"{cfg['seeds']} seed(s); teachers' label smoothing eps "
        f"{', '.join(f'{a:g}' for a in cfg['teacher_smoothing'])}; "
        f"KD temperatures {', '.join(f'{t:g}' for t in cfg['temperatures'])}. Comparisons are paired by seed "
        "(docs/study.md): better / worse when the 95% interval excludes 0, otherwise not resolved; the "
        "answers read the Holm-adjusted verdicts.",
        "",
        readings.LEGEND,
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
