"""Figures of the diffusion analysis (matplotlib Agg).

- ``plot_projection_grid(projections, rows, cols, path, ...)``: one panel per (model, split), in a
  grid whose rows and columns the caller chooses (``lskd diffusion``: models in columns, train
  above validation, wrapped after ``MAX_COLUMNS``; the study: teacher smoothing x temperature).
- ``plot_numbers``: eta and J_ab of every model (eta = 1, isotropic spread, drawn as a line).

Every panel is drawn in the same orientation (``orientation``): after the PCA (or in Mueller et
al.'s plane) the 2-D coordinates are moved so that the centroid of c (the dissimilar class) is the
origin, rotated so that class a's centroid lies on the +x axis, and mirrored where needed so that
class b's centroid has a positive y: c at the origin, a to the right, b above. The training
centroids fix the transform of a model, so its train and validation panels share it. Rotations
and mirrors keep every distance: only the arbitrary signs and angle of the PCA are removed.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import List, Sequence

import numpy as np

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # a, b (similar pair), c (dissimilar)
MARKERS = ("o", "^", "s")  # distinct shapes, so overlapping classes stay visible in grey print too
ROW_TITLES = {"train": "train", "valid": "validation"}
MAX_COLUMNS = 5  # 5 panels of 3.3 in at 110 dpi: about 1900 px wide
PANEL_IN = 3.3
DPI = 110
AXIS_TITLES = {
    "paper": ("PCA plane, x: centroid c toward a", "PCA plane, y: toward b"),
    "plane": ("template plane, x: centroid c toward a", "template plane, y: toward b"),
}


def _pyplot():
    import matplotlib

    # fairseq/hydra may leave the root logger at DEBUG; keep matplotlib's font search quiet
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path) -> None:
    """PNG written atomically (files.py's temp file + rename), then the figure closed."""
    from lskd_plugins.files import _replace  # the module's one atomic-rename step (no public bytes writer)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        _pyplot().close(fig)


def orientation(centroids: np.ndarray) -> tuple:
    """(origin, 2x2 matrix) that puts centroid c at 0, a on +x and b at y > 0 (see module doc)."""
    mu = np.asarray(centroids, dtype=np.float64)
    finite = np.isfinite(mu).all(axis=1)
    origin = mu[2] if finite[2] else (mu[finite].mean(axis=0) if finite.any() else np.zeros(2))
    rot = np.eye(2)
    if finite[0] and np.linalg.norm(mu[0] - origin) > 0:
        ux, uy = (mu[0] - origin) / np.linalg.norm(mu[0] - origin)
        rot = np.array([[ux, uy], [-uy, ux]])  # rotates (ux, uy) onto (1, 0)
    if finite[1] and ((mu[1] - origin) @ rot.T)[1] < 0:
        rot = np.diag([1.0, -1.0]) @ rot
    return origin, rot


def orient(points: np.ndarray, transform: tuple) -> np.ndarray:
    origin, rot = transform
    return (np.asarray(points, dtype=np.float64) - origin) @ rot.T


def oriented(proj, kind: str) -> dict:
    """{split: (points, centroids)} of one model in the common orientation (training centroids)."""
    fit = "train" if "train" in proj.splits else next(iter(proj.splits))
    transform = orientation(getattr(proj.splits[fit], f"{kind}_centroids"))
    return {
        s: (orient(getattr(sp, f"{kind}_xy"), transform), orient(getattr(sp, f"{kind}_centroids"), transform))
        for s, sp in proj.splits.items()
    }


def window(views: dict) -> tuple:
    """A square (centre, half-width) holding 99% of a model's points of every split, and its centroids."""
    pts = [p for p, _ in views.values() if len(p)] + [
        c[np.isfinite(c).all(axis=1)] for _, c in views.values()
    ]
    allpts = np.vstack(pts)
    lo, hi = np.nanpercentile(allpts, 0.5, axis=0), np.nanpercentile(allpts, 99.5, axis=0)
    return (lo + hi) / 2, 0.55 * max(float(np.max(hi - lo)), 1e-9)


def legend_handles(names: Sequence[str]) -> list:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker=MARKERS[k], linestyle="", color=COLOURS[k], label=f"{role}: {names[k]}")
        for k, role in enumerate(("a", "b (similar to a)", "c (dissimilar)"))
    ]
    star = dict(markersize=14, markerfacecolor="white", markeredgecolor="black")
    handles.append(Line2D([], [], marker="*", linestyle="", label="class centroid", **star))
    return handles


def draw_panel(ax, points: np.ndarray, cents: np.ndarray, y: np.ndarray, centre, half) -> None:
    """Points of a, b, c with their own colour and marker; centroids as outlined stars."""
    for k in range(3):
        sel = y == k
        ax.scatter(
            points[sel, 0],
            points[sel, 1],
            s=16,
            alpha=0.6,
            marker=MARKERS[k],
            color=COLOURS[k],
            linewidths=0,
            rasterized=True,
        )
    for k in range(3):
        if np.all(np.isfinite(cents[k])):
            ax.scatter(
                *cents[k], marker="*", s=320, color=COLOURS[k], edgecolors="black", linewidths=1.2, zorder=5
            )
    ax.axhline(0, color="grey", lw=0.5, zorder=0)
    ax.axvline(0, color="grey", lw=0.5, zorder=0)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.2)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.3g}"


def panel_title(numbers: dict) -> str:
    leak = numbers.get("leakage_ab")
    leak_text = "n/a" if leak is None or not np.isfinite(leak) else f"{100 * leak:.0f}%"
    return f"\u03b7={_fmt(numbers.get('eta'))}  J={_fmt(numbers.get('fisher_ab'))}  leak={leak_text}"


def describe(kind: str) -> str:
    what = (
        "PCA (fitted on train) of the coordinates in the span of the three class templates"
        if kind == "paper"
        else "coordinates in the plane through the three class templates (Mueller et al.)"
    )
    return (
        f"Penultimate features: {what}; every panel turned so that centroid c is at 0, a on +x and b above. "
        "\u03b7: spread of a toward b \u00f7 toward c (1 = isotropic); J: Fisher separation of a and b; "
        "leak: share of a nearer b's centroid than its own."
    )


def figure(rows: int, cols: int, header: str, n_legend: int):
    """A figure of rows x cols square panels under a wrapped header and a one-row legend."""
    plt = _pyplot()
    width_in = PANEL_IN * cols + 1.0
    lines = textwrap.wrap(header, int(width_in * 15)) if header else []
    legend_in = 0.12 + 0.17 * len(lines)
    header_in = legend_in + 0.28 * (-(-n_legend // min(n_legend, max(2, 2 * cols)))) + 0.1
    height_in = header_in + (PANEL_IN + 0.3) * rows + 0.45
    fig, axes = plt.subplots(rows, cols, figsize=(width_in, height_in), squeeze=False)
    fig.subplots_adjust(
        left=0.85 / width_in,
        right=1 - 0.1 / width_in,
        bottom=0.5 / height_in,
        top=1 - (header_in + 0.4) / height_in,
        wspace=0.3,
        hspace=0.35,
    )
    if lines:
        fig.suptitle("\n".join(lines), fontsize=9, y=1 - 0.06 / height_in, va="top")
    return fig, axes, 1 - legend_in / height_in


def plot_projection_grid(
    projections: Sequence,
    rows: int | Sequence[str],
    cols: int | Sequence[str],
    path: str | Path,
    *,
    split: str | Sequence[str] = "valid",
    kind: str = "paper",
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    header: str | None = None,
) -> Path:
    """Draw ``projections`` (row-major, None = empty panel) in a ``rows`` x ``cols`` grid; write PNG.

    ``rows`` / ``cols`` are counts, or the row / column labels themselves (then their number is
    the count): ``plot_projection_grid(grid, ["teacher alpha=0", "teacher alpha=0.1"], ["teacher",
    "T=1", "T=2", "T=3", "T=64"], path)``. ``split`` is the split drawn in every panel, or one per
    panel; ``titles`` one per panel (default: the model's label); ``row_labels`` / ``col_labels``
    go left of each row / above each column; ``header`` (default: what the axes are) above the
    shared legend. ``kind``: "paper" (the PCA) or "plane" (Mueller et al.).
    """
    if not isinstance(rows, int):
        row_labels, rows = list(rows), len(rows)
    if not isinstance(cols, int):
        col_labels, cols = list(cols), len(cols)
    panels = list(projections)
    if len(panels) > rows * cols:
        raise ValueError(f"{len(panels)} panels do not fit a {rows} x {cols} grid")
    splits = [split] * len(panels) if isinstance(split, str) else list(split)
    names = next(p for p in panels if p is not None).class_names
    handles = legend_handles(names)
    fig, axes, legend_top = figure(rows, cols, describe(kind) if header is None else header, len(handles))
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(len(handles), max(2, 2 * cols)),
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, legend_top),
    )
    views = {id(p): oriented(p, kind) for p in panels if p is not None}
    for i, ax in enumerate(axes.flat):
        proj = panels[i] if i < len(panels) else None
        if proj is None:
            ax.set_axis_off()
            continue
        points, cents = views[id(proj)][splits[i]]
        draw_panel(ax, points, cents, proj.splits[splits[i]].y, *window(views[id(proj)]))
        ax.set_title(titles[i] if titles else textwrap.fill(proj.label, 42), fontsize=9)
    label_axes(axes, kind, row_labels, col_labels)
    save(fig, path)
    return Path(path)


def label_axes(axes, kind: str, row_labels, col_labels) -> None:
    """Axis titles on the outer panels; row labels (bold) left of the first column; column labels on top."""
    xtitle, ytitle = AXIS_TITLES[kind]
    rows, cols = axes.shape
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            if not ax.axison:
                continue
            below_empty = r + 1 < rows and not axes[r + 1, c].axison
            if r == rows - 1 or below_empty:
                ax.set_xlabel(xtitle, fontsize=8)
            if c == 0:
                label = f"{row_labels[r]}\n" if row_labels else ""
                ax.set_ylabel(f"{label}{ytitle}", fontsize=8)
                if row_labels:
                    ax.yaxis.label.set_fontweight("bold")
            if r == 0 and col_labels and c < len(col_labels):
                ax.set_title(f"{col_labels[c]}\n{ax.get_title()}", fontsize=9)


def cli_layout(records: Sequence[dict], projections: Sequence) -> tuple:
    """The CLI grid: models in columns (at most MAX_COLUMNS, then wrapped), train above validation."""
    n = len(projections)
    cols = min(n, MAX_COLUMNS)
    blocks = -(-n // cols)
    splits = [s for s in ("train", "valid") if s in projections[0].splits]
    panels, panel_splits, titles, row_labels = [], [], [], []
    for b in range(blocks):
        for s_i, split in enumerate(splits):
            row_labels.append(ROW_TITLES.get(split, split))
            for c in range(cols):
                k = b * cols + c
                have = k < n
                panels.append(projections[k] if have else None)
                panel_splits.append(split)
                head = f"{textwrap.fill(projections[k].label, 40)}\n" if have and s_i == 0 else ""
                titles.append(head + panel_title(records[k].get(split, {})) if have else "")
    grid = dict(
        rows=blocks * len(splits), cols=cols, split=panel_splits, titles=titles, row_labels=row_labels
    )
    return panels, grid


def plot_all(records: Sequence[dict], projections: Sequence, out_dir: str | Path) -> List[Path]:
    out_dir = Path(out_dir)
    panels, grid = cli_layout(records, projections)
    return [
        plot_projection_grid(panels, path=out_dir / "projection.png", kind="paper", **grid),
        plot_projection_grid(panels, path=out_dir / "projection_plane.png", kind="plane", **grid),
        plot_numbers(records, out_dir / "numbers.png"),
    ]


def plot_numbers(records: Sequence[dict], path: str | Path) -> Path:
    """numbers.png: eta and J_ab of every model, train and validation (``numbers_figure``)."""
    save(numbers_figure(records), path)
    return Path(path)


def numbers_figure(records: Sequence[dict]):
    """eta and J_ab of every model, train and validation; the eta = 1 line marks isotropic spread."""
    from matplotlib.ticker import NullFormatter

    plt = _pyplot()
    labels = [textwrap.shorten(r["label"], 48) for r in records]
    height = 1.6 + 0.35 * len(records)
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    y = np.arange(len(records))
    styles = {
        "train": dict(marker="o", mfc="none", color="#555555"),
        "valid": dict(marker="s", color="#d62728"),
    }
    for ax, key, title in (
        (axes[0], "eta", "η: spread of a toward b ÷ toward c"),
        (axes[1], "fisher_ab", "J_ab: Fisher separation of a and b"),
    ):
        for split, style in styles.items():
            vals = [r.get(split, {}).get(key) for r in records]
            vals = [np.nan if v is None else v for v in vals]
            ax.plot(vals, y, linestyle="", markersize=7, label=ROW_TITLES[split], **style)
        ax.set_xlabel(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].axvline(1.0, color="black", linestyle="--", lw=1, label="η = 1 (isotropic)")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("model", fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    return fig
