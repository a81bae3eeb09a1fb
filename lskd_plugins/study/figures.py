"""The study's figures: a metric vs T per KD kind, and the diffusion numbers vs T.

Students: mean with its 95% interval as an error bar; teachers: a dashed line with the interval as a
band; the no-KD baseline: a dotted line with its band. Every bar and band is clipped to the metric's
range (``RANGES``: 0-100 for top-1, top-5, BLEU and chrF; ECE in 0-1; NLL >= 0): a t interval from
two seeds can run far past 100%, which no model can score. A clipped end is marked with a caret
(``^``/``v``) at the limit, and the legend says so. ``read_back`` lists what was drawn (read from
the plotted artists), for the tests.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from lskd_plugins.study import stats
from lskd_plugins.study.adequacy import teacher_name
from lskd_plugins.study.readings import kind_label

RANGES: Dict[str, Tuple[float | None, float | None]] = {
    "top1": (0.0, 100.0),
    "top5": (0.0, 100.0),
    "bleu": (0.0, 100.0),
    "chrf": (0.0, 100.0),
    "tokenized_bleu": (0.0, 100.0),
    "ece": (0.0, 1.0),
    "nll": (0.0, None),
    "leakage_ab": (0.0, None),
    "fisher_ab": (0.0, None),
    "eta": (0.0, None),
}
LABELS = {
    "top1": "top-1 (%)",
    "top5": "top-5 (%)",
    "nll": "NLL",
    "ece": "ECE",
    "bleu": "sacreBLEU",
    "chrf": "chrF",
    "tokenized_bleu": "tokenized BLEU",
    "eta": "eta (directional diffusion)",
    "fisher_ab": "Fisher J_ab",
    "leakage_ab": "leakage a->b",
}
DIFFUSION = ("eta", "fisher_ab", "leakage_ab")
COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple")
MARKERS = ("o", "s", "^", "D")  # one per teacher: equal values stay visible
METHOD_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")  # one per KD method
DODGE = 0.12  # x offset between the teachers' students at one T
BAND_ALPHA = 0.12


def clip(mean: float | None, half: float | None, metric: str) -> Tuple[float, float, bool]:
    """(low, high, clipped): the interval mean +- half cut to the metric's range."""
    if mean is None or not math.isfinite(mean):
        return float("nan"), float("nan"), False
    lo, hi = mean - (half or 0.0), mean + (half or 0.0)
    floor, ceiling = RANGES.get(metric, (None, None))
    clipped = False
    if floor is not None and lo < floor:
        lo, clipped = floor, True
    if ceiling is not None and hi > ceiling:
        hi, clipped = ceiling, True
    return lo, hi, clipped


def column_title(eps: float) -> str:
    return "noLS teacher" if eps == 0 else f"LS teacher (eps={eps:g})"


def pyplot():
    """matplotlib without a display, and quiet: fairseq may leave the root logger at DEBUG."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def errorbar(ax, xs, ss: Sequence[Dict[str, Any]], metric: str, colour, label: str, index: int = 0) -> bool:
    """Students' means with clipped 95% error bars; returns whether any bar was clipped."""
    ys, below, above, marks = [], [], [], []
    for x, s in zip(xs, ss):
        lo, hi, clipped = clip(s["mean"], s["half"], metric)
        y = s["mean"] if s["mean"] is not None else float("nan")
        ys.append(y)
        below.append(0.0 if math.isnan(lo) else y - lo)
        above.append(0.0 if math.isnan(hi) else hi - y)
        if clipped:  # a caret where the interval was cut
            floor, ceiling = RANGES[metric]
            if floor is not None and y - s["half"] < floor:
                marks.append((x, lo, "v"))
            if ceiling is not None and y + s["half"] > ceiling:
                marks.append((x, hi, "^"))
    marker = MARKERS[index % len(MARKERS)]
    ax.errorbar(xs, ys, yerr=[below, above], fmt=f"{marker}-", color=colour, capsize=4, label=label)
    for x, y, m in marks:
        ax.plot([x], [y], marker=m, color=colour, ms=7, ls="none", zorder=4)
    return bool(marks)


def reference(ax, s: Dict[str, Any], metric: str, colour, label: str, style: str, lw: float = 1.2) -> bool:
    """A horizontal reference (a teacher, the baseline) with its interval band, clipped; drawn over
    the grid so that a line equal to another one still shows. Returns whether the band was clipped."""
    if s["mean"] is None:
        return False
    band = s["half"] is not None  # one seed (a fixed teacher): a line, no band, and its label says none
    text = (
        f"{label} (band: 95% CI): {s['mean']:.2f} ± {s['half']:.2f}" if band else f"{label}: {s['mean']:.2f}"
    )
    ax.axhline(s["mean"], color=colour, ls=style, lw=lw, label=text, zorder=3)
    if not band:
        return False
    lo, hi, clipped = clip(s["mean"], s["half"], metric)
    ax.axhspan(lo, hi, color=colour, alpha=BAND_ALPHA, lw=0, zorder=1)
    return clipped


def style(ax, temps, metric: str, title: str, ylabel: str | None = None) -> None:
    ax.set_xticks(range(len(temps)), [f"T={t:g}" for t in temps])
    ax.set_xlabel("KD temperature")
    ax.set_ylabel(ylabel or LABELS.get(metric, metric))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    low, high = ax.get_ylim()  # room above and below, so a teacher's line never sits on the frame
    pad = 0.06 * (high - low)
    floor, ceiling = RANGES.get(metric, (None, None))
    low, high = low - pad, high + pad
    if floor is not None:
        low = max(low, floor - pad)
    if ceiling is not None:
        high = min(high, ceiling + pad)
    ax.set_ylim(low, high)


def read_artists(fig) -> List[Dict[str, Any]]:
    """What each panel shows, read back from the artists: error-bar extents, band extents and the
    figure's legend labels."""
    out, legend = [], [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    for ax in fig.axes:
        bars = []
        for container in ax.containers:
            for segs in container.lines[2]:
                bars += [(float(a[1]), float(b[1])) for a, b in segs.get_segments()]
        bands = [_y_extent(p) for p in ax.patches]
        ylim = tuple(ax.get_ylim())
        out.append({"title": ax.get_title(), "bars": bars, "bands": bands, "ylim": ylim, "legend": legend})
    return out


def _y_extent(patch) -> Tuple[float, float]:
    """A band's low and high y (matplotlib >= 3.9 draws axhspan as a Rectangle, earlier a Polygon)."""
    if hasattr(patch, "get_height"):
        y, h = float(patch.get_y()), float(patch.get_height())
        return min(y, y + h), max(y, y + h)
    ys = patch.get_xy()[:, 1]
    return float(min(ys)), float(max(ys))


def save(fig, legend_ax, path: Path, clipped: bool, metric: str, read_back: list | None) -> Path:
    """One legend for all panels, below them (never over the data); ``legend_ax``: the panel whose
    lines it lists, or a list of panels (each label once)."""
    plt = pyplot()
    handles, labels = [], []
    for ax in legend_ax if isinstance(legend_ax, (list, tuple)) else [legend_ax]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:  # a line drawn in several panels is listed once
                handles.append(h)
                labels.append(lab)
    legend_ax = legend_ax[0] if isinstance(legend_ax, (list, tuple)) else legend_ax
    if clipped:
        floor, ceiling = RANGES[metric]
        rng = f"{floor:g}-{ceiling:g}" if ceiling is not None else f">= {floor:g}"
        (mark,) = legend_ax.plot([], [], marker="^", color="0.3", ls="none")
        handles.append(mark)
        labels.append(f"^ / v: interval clipped at the metric's range ({rng})")
    fig.tight_layout()
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False
    )
    if read_back is not None:
        read_back.extend(read_artists(fig))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_metric(
    data: Dict[str, Any],
    smoothings: Sequence[float],
    temps: Sequence[float],
    kinds: Sequence[str],
    metric: str,
    title: str,
    path: Path,
    baseline_label: str = "no-KD baseline",
    read_back: list | None = None,
    ylabel: str | None = None,
    warning: str | None = None,
) -> Path:
    """Students' metric vs T (error bars), teachers dashed and the baseline dotted, with bands.
    ``data``: cells[(kind, eps, T)], teachers[eps], baseline: {seed: value}."""
    plt = pyplot()
    from lskd_plugins.study.kinds import kind as kind_of

    tkinds = [k for k in kinds if kind_of(k).takes_temperature] or list(kinds)
    fig, axes = plt.subplots(
        1, len(tkinds), figsize=(max(7.5, 5.6 * len(tkinds)), 4.3), dpi=110, squeeze=False
    )
    xs = list(range(len(temps)))
    clipped = False
    for ax, kind in zip(axes[0], tkinds):
        for i, (eps, col) in enumerate(zip(smoothings, COLOURS)):
            ss = [stats.summary(data["cells"].get((kind, eps, t), {}).values()) for t in temps]
            label = f"student of the {column_title(eps)} (mean ± 95% CI)"
            clipped |= errorbar(ax, [x + (i - 0.5) * DODGE for x in xs], ss, metric, col, label, i)
            teacher = stats.summary(data["teachers"].get(eps, {}).values())
            clipped |= reference(ax, teacher, metric, col, f"teacher {teacher_name(eps)}", "--")
        base = stats.summary(data["baseline"].values())
        clipped |= reference(ax, base, metric, "0.3", baseline_label, ":", lw=2.2)
        style(ax, temps, metric, f"{title}: {kind_label(kind)}", ylabel)
    warn_on(axes[0][0], warning)
    return save(fig, axes[0][0], path, clipped, metric, read_back)


def plot_methods(
    data: Dict[str, Any],
    smoothings: Sequence[float],
    temps: Sequence[float],
    kinds: Sequence[str],
    methods: Sequence[str],
    metric: str,
    path: Path,
    baseline_label: str = "no-KD baseline",
    read_back: list | None = None,
    ylabel: str | None = None,
    warning: str | None = None,
) -> Path:
    """The KD methods side by side: one panel per kind and teacher, in each one error-bar line per
    method (its own colour and marker, dodged), the panel's teacher dashed and the baseline dotted,
    with their bands; one y scale for all panels (the widest). ``data["cells"]``: kd students keyed
    (kind, eps, T), another method's (kind, eps, T, method) (``report.collect``)."""
    plt = pyplot()
    from lskd_plugins.study.kinds import kind as kind_of
    from lskd_plugins.study.kinds import method as method_of
    from lskd_plugins.study.stats import method_cells

    panels = [(k, eps) for k in kinds if kind_of(k).takes_temperature for eps in smoothings]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.3), dpi=110, squeeze=False)
    xs, clipped = list(range(len(temps))), False
    by_method = {m: method_cells(data["cells"], m) for m in methods}
    for ax, (kind, eps) in zip(axes[0], panels):
        for i, m in enumerate(methods):
            ss = [stats.summary(by_method[m].get((kind, eps, t), {}).values()) for t in temps]
            dx = [x + (i - (len(methods) - 1) / 2) * DODGE for x in xs]
            label = f"{method_of(m).label} (mean ± 95% CI)"
            clipped |= errorbar(ax, dx, ss, metric, METHOD_COLOURS[i % len(METHOD_COLOURS)], label, i)
        teacher = stats.summary(data["teachers"].get(eps, {}).values())
        clipped |= reference(ax, teacher, metric, "0.45", f"teacher {teacher_name(eps)}", "--")
        base = stats.summary(data["baseline"].values())
        clipped |= reference(ax, base, metric, "0.2", baseline_label, ":", lw=2.2)
        style(ax, temps, metric, f"{kind_label(kind)}: students of the {column_title(eps)}", ylabel)
    lows, highs = zip(*(ax.get_ylim() for ax in axes[0]))
    for ax in axes[0]:  # one y scale: the panels compare teachers
        ax.set_ylim(min(lows), max(highs))
    warn_on(axes[0][0], warning)
    return save(fig, list(axes[0]), path, clipped, metric, read_back)


def warn_on(ax, warning: str | None) -> None:
    """The adequacy checks failed: say so on the figure too (a figure travels alone)."""
    if warning:
        ax.text(
            0.01,
            0.99,
            warning,
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color="darkred",
            wrap=True,
            zorder=5,
            bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
        )


def plot_diffusion(
    cells_by_key: Dict[str, dict],
    smoothings: Sequence[float],
    temps: Sequence[float],
    kind: str,
    path: Path,
    read_back: list | None = None,
) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(DIFFUSION), figsize=(5.2 * len(DIFFUSION), 4.2), dpi=110)
    xs = list(range(len(temps)))
    clipped = False
    for ax, key in zip(axes, DIFFUSION):
        cells = cells_by_key[key]
        for i, (eps, col) in enumerate(zip(smoothings, COLOURS)):
            ss = [stats.summary(cells.get((kind, eps, t), {}).values()) for t in temps]
            label = f"students of the {column_title(eps)} (mean ± 95% CI)"
            clipped |= errorbar(ax, [x + (i - 0.5) * DODGE for x in xs], ss, key, col, label, i)
            teacher = stats.summary(cells.get(("teacher", eps, None), {}).values())
            clipped |= reference(ax, teacher, key, col, f"teacher {teacher_name(eps)}", "--")
        if key == "eta":
            ax.axhline(1.0, color="0.3", ls="-.", lw=1, label="eta = 1: isotropic spread", zorder=2)
        style(ax, temps, key, LABELS[key])
    return save(fig, axes[0], path, clipped, "eta", read_back)
