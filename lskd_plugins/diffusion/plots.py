"""The paper's projection grid: one column per model, rows train / validation (matplotlib Agg)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import List, Sequence

import numpy as np

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # a, b (similar pair), c (dissimilar)
ROW_TITLES = {"train": "train", "valid": "validation"}


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.3g}"


def panel_title(numbers: dict) -> str:
    return (
        f"\u03b7={_fmt(numbers.get('eta'))}  J={_fmt(numbers.get('fisher_ab'))}  "
        f"leak={100 * numbers.get('leakage_ab', float('nan')):.0f}%"
    )


def plot_grid(records: Sequence[dict], projections: Sequence, path: str | Path, kind: str = "paper") -> Path:
    """Write the grid PNG. ``kind`` "paper" (PCA of template coordinates) or "plane" (Mueller et al.)."""
    import matplotlib

    # fairseq/hydra may leave the root logger at DEBUG; keep matplotlib's font search quiet
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    n = len(projections)
    rows = [s for s in ("train", "valid") if s in projections[0].splits]
    names = projections[0].class_names
    handles = [
        Line2D([], [], marker="o", linestyle="", color=COLOURS[k], label=f"{role}: {names[k]}")
        for k, role in enumerate(("a", "b (similar to a)", "c (dissimilar)"))
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            linestyle="",
            markersize=14,
            markerfacecolor="white",
            markeredgecolor="black",
            label="class centroid",
        )
    )
    what = (
        "PCA (fitted on train) of the coordinates in the span of the three class templates"
        if kind == "paper"
        else "coordinates in the plane through the three class templates (Mueller et al.)"
    )
    width_in = 3.3 * n + 0.7
    text = (
        f"Penultimate features: {what}. "
        "\u03b7: spread of a toward b \u00f7 toward c (1 = isotropic); J: Fisher separation of a and b; "
        "leak: share of a nearer b's centroid than its own."
    )
    lines = textwrap.wrap(text, int(width_in * 15))
    ncol = min(len(handles), max(2, 2 * n))
    legend_rows = -(-len(handles) // ncol)
    header_in = 0.12 + 0.17 * len(lines) + 0.28 * legend_rows + 0.1
    panel_in = 3.4
    height_in = header_in + panel_in * len(rows) + 0.1
    fig, axes = plt.subplots(len(rows), n, figsize=(width_in, height_in), squeeze=False)
    fig.subplots_adjust(
        left=0.6 / width_in,
        right=1 - 0.1 / width_in,
        bottom=0.35 / height_in,
        top=1 - (header_in + 0.35) / height_in,
        wspace=0.3,
        hspace=0.35,
    )
    fig.suptitle("\n".join(lines), fontsize=9, y=1 - 0.06 / height_in, va="top")
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=ncol,
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - (0.12 + 0.17 * len(lines)) / height_in),
    )
    for col, (rec, proj) in enumerate(zip(records, projections)):
        # one square window per column, so train and validation of a model compare directly
        pts = [getattr(proj.splits[s], f"{kind}_xy") for s in rows]
        cents = [getattr(proj.splits[s], f"{kind}_centroids") for s in rows]
        allpts = np.vstack([p for p in pts if len(p)] + [c[np.isfinite(c).all(axis=1)] for c in cents])
        lo, hi = np.nanpercentile(allpts, 0.5, axis=0), np.nanpercentile(allpts, 99.5, axis=0)
        half = 0.55 * max(float(np.max(hi - lo)), 1e-9)
        mid = (lo + hi) / 2
        for row, split in enumerate(rows):
            ax = axes[row, col]
            sp = proj.splits[split]
            xy = getattr(sp, f"{kind}_xy")
            mu = getattr(sp, f"{kind}_centroids")
            for k in range(3):
                sel = sp.y == k
                ax.scatter(
                    xy[sel, 0], xy[sel, 1], s=9, alpha=0.5, color=COLOURS[k], linewidths=0, rasterized=True
                )
            for k in range(3):
                if np.all(np.isfinite(mu[k])):
                    ax.scatter(
                        mu[k, 0],
                        mu[k, 1],
                        marker="*",
                        s=320,
                        color=COLOURS[k],
                        edgecolors="black",
                        linewidths=1.2,
                        zorder=5,
                    )
            ax.set_xlim(mid[0] - half, mid[0] + half)
            ax.set_ylim(mid[1] - half, mid[1] + half)
            ax.set_aspect("equal", adjustable="box")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.2)
            title = panel_title(rec.get(split, {}))
            if row == 0:
                title = f"{textwrap.fill(proj.label, 42)}\n{title}"
            ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(ROW_TITLES.get(split, split), fontsize=11, fontweight="bold")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(records: Sequence[dict], projections: Sequence, out_dir: str | Path) -> List[Path]:
    out_dir = Path(out_dir)
    return [
        plot_grid(records, projections, out_dir / "projection.png", "paper"),
        plot_grid(records, projections, out_dir / "projection_plane.png", "plane"),
    ]
