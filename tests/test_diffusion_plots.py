"""The diffusion figures: one orientation in every panel, a caller-chosen grid, at most ~2000 px wide."""

import numpy as np
import pytest

from lskd_plugins.diffusion.core import ModelProjection, SplitProjection
from lskd_plugins.diffusion.plots import (
    MAX_COLUMNS,
    cli_layout,
    numbers_figure,
    orient,
    orientation,
    plot_numbers,
    plot_projection_grid,
)


@pytest.mark.parametrize("seed", range(6))
def test_orientation_puts_c_at_origin_a_on_plus_x_b_above_and_keeps_distances(seed):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(3, 2)) * 5
    pts = rng.normal(size=(20, 2)) * 3
    t = orientation(mu)
    m = orient(mu, t)
    assert np.allclose(m[2], 0)
    assert m[0, 0] > 0 and abs(m[0, 1]) < 1e-9
    assert m[1, 1] > 0
    # a rotation (and perhaps a mirror): every pairwise distance is kept
    p = orient(pts, t)
    d_before = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d_after = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.testing.assert_allclose(d_after, d_before, atol=1e-9)


def fake_projection(label: str, seed: int) -> ModelProjection:
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("train", "valid"):
        y = np.repeat([0, 1, 2], 8)
        xy = rng.normal(size=(24, 2)) + np.array([[3, 0], [0, 3], [-3, -3]])[y]
        cents = np.stack([xy[y == k].mean(axis=0) for k in range(3)])
        splits[split] = SplitProjection(xy, cents, xy * 2, cents * 2, y)
    return ModelProjection(label, ["cat", "dog", "plane"], splits, np.eye(3)[:, :2], [0.6, 0.3])


def png_size(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.size, np.asarray(img.convert("RGB"))


def test_grid_of_the_callers_shape_is_at_most_2000_px_wide(tmp_path):
    projs = [fake_projection(f"m{i}", i) for i in range(10)]
    # the study's shape: rows = teacher smoothing, columns = teacher then T = 1, 2, 3, 64
    path = plot_projection_grid(projs, 2, 5, tmp_path / "grid.png", row_labels=["alpha=0", "alpha=0.1"])
    (w, h), arr = png_size(path)
    assert 1000 < w <= 2000 and h > 500
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 50
    # rows and columns may be given as their labels (the study's call)
    rows, cols = ["alpha=0", "alpha=0.1"], ["t", "1", "2", "3"]
    path = plot_projection_grid(projs[:6] + [None], rows, cols, tmp_path / "l.png")
    (w2, _), _ = png_size(path)
    assert 1000 < w2 < w
    with pytest.raises(ValueError, match="do not fit"):
        plot_projection_grid(projs, 3, 3, tmp_path / "x.png")


def test_cli_layout_wraps_models_after_max_columns_train_above_validation():
    projs = [fake_projection(f"m{i}", i) for i in range(7)]
    records = [{"label": p.label, "train": {"eta": 1.0}, "valid": {"eta": 2.0}} for p in projs]
    panels, grid = cli_layout(records, projs)
    assert grid["cols"] == MAX_COLUMNS and grid["rows"] == 4
    assert len(panels) == grid["rows"] * grid["cols"]
    assert grid["split"][:MAX_COLUMNS] == ["train"] * MAX_COLUMNS
    assert grid["split"][MAX_COLUMNS : 2 * MAX_COLUMNS] == ["valid"] * MAX_COLUMNS
    assert panels[2 * MAX_COLUMNS] is projs[MAX_COLUMNS]  # the sixth model opens the second block
    assert panels[-1] is None  # 7 models in a 5-column grid leave empty panels


def test_numbers_figure_draws_the_eta_1_line_and_both_splits(tmp_path):
    records = [
        {
            "label": f"m{i}",
            "train": {"eta": 1.0 + i, "fisher_ab": 5.0},
            "valid": {"eta": 1.5, "fisher_ab": 2.0},
        }
        for i in range(3)
    ]
    fig = numbers_figure(records)
    eta_ax = fig.axes[0]
    assert eta_ax.get_xlabel().startswith("\u03b7")
    refs = [ln for ln in eta_ax.get_lines() if list(ln.get_xdata()) == [1.0, 1.0]]
    assert len(refs) == 1 and refs[0].get_linestyle() == "--"
    series = {ln.get_label(): list(ln.get_xdata()) for ln in eta_ax.get_lines() if ln not in refs}
    assert series == {"train": [1.0, 2.0, 3.0], "validation": [1.5, 1.5, 1.5]}
    # equal values stay visible: train and validation differ in marker and fill
    train, valid = (ln for ln in eta_ax.get_lines() if ln not in refs)
    assert train.get_marker() != valid.get_marker()
    (w, _), arr = png_size(plot_numbers(records, tmp_path / "n.png"))
    assert w <= 2000 and arr.std() > 10
