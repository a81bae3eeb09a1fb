"""The paper's projection grid: one column per model, rows train / validation (matplotlib Agg)."""

from __future__ import annotations

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

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    n = len(projections)
    rows = [s for s in ("train", "valid") if s in projections[0].splits]
    fig, axes = plt.subplots(len(rows), n, figsize=(3.4 * n + 0.6, 3.3 * len(rows) + 1.0), squeeze=False)
    names = projections[0].class_names
    for col, (rec, proj) in enumerate(zip(records, projections)):
        # one scale per column so train and validation of a model compare directly
        pts = [getattr(proj.splits[s], f"{kind}_xy") for s in rows]
        allpts = np.vstack([p for p in pts if len(p)] or [np.zeros((1, 2))])
        lo, hi = np.nanpercentile(allpts, 0.5, axis=0), np.nanpercentile(allpts, 99.5, axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-9)
        for row, split in enumerate(rows):
            ax = axes[row, col]
            sp = proj.splits[split]
            xy = getattr(sp, f"{kind}_xy")
            mu = getattr(sp, f"{kind}_centroids")
            for k in range(3):
                sel = sp.y == k
                ax.scatter(xy[sel, 0], xy[sel, 1], s=7, alpha=0.45, color=COLOURS[k], linewidths=0, rasterized=True)
            for k in range(3):
                if np.all(np.isfinite(mu[k])):
                    ax.scatter(mu[k, 0], mu[k, 1], marker="*", s=320, color=COLOURS[k], edgecolors="black", linewidths=1.2, zorder=5)
            if kind == "plane":
                t = proj.plane_templates
                ax.scatter(t[:, 0], t[:, 1], marker="X", s=90, c=list(COLOURS), edgecolors="black", zorder=6)
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.2)
            title = panel_title(rec.get(split, {}))
            if row == 0:
                title = f"{proj.label}\n{title}"
            ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(ROW_TITLES.get(split, split), fontsize=11, fontweight="bold")
    handles = [Line2D([], [], marker="o", linestyle="", color=COLOURS[k], label=f"{role}: {names[k]}")
               for k, role in enumerate(("a", "b (similar to a)", "c (dissimilar)"))]
    handles.append(Line2D([], [], marker="*", linestyle="", markersize=14, markerfacecolor="white",
                          markeredgecolor="black", label="class centroid"))
    if kind == "plane":
        handles.append(Line2D([], [], marker="X", linestyle="", markersize=9, markerfacecolor="white",
                              markeredgecolor="black", label="class template"))
    what = ("PCA of the 3-D template-span coordinates (fitted on train)" if kind == "paper"
            else "plane through the three templates (Mueller et al.)")
    fig.suptitle(f"Penultimate features: {what}.  \u03b7: spread of a toward b / toward c; "
                 f"J: Fisher separation a-b; leak: share of a nearer b's centroid", fontsize=9, y=0.995)
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.965))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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
