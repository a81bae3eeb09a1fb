"""Writing diffusion results: OUT/diffusion.json, OUT/diffusion.md, OUT/projection*.png, OUT/numbers.png.

Every file is written atomically (``lskd_plugins.files``): a killed run never leaves a half file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from lskd_plugins.files import write_text_atomic

FORMAT = "lskd-diffusion-v1"

# (column title, key in a split's numbers, format); "pct" = fraction shown as a percentage
COLUMNS = (
    ("n a/b/c", "n", "n"),
    ("top-1", "accuracy", "pct"),
    ("s_a", ("spread", "a"), ".3g"),
    ("s_b", ("spread", "b"), ".3g"),
    ("s_c", ("spread", "c"), ".3g"),
    ("d_ab", "d_ab", ".3g"),
    ("d_ac", "d_ac", ".3g"),
    ("J_ab", "fisher_ab", ".3g"),
    ("J_ac", "fisher_ac", ".3g"),
    ("eta", "eta", ".3f"),
    ("eta_b", "eta_b", ".3f"),
    ("leak a->b", "leakage_ab", "pct"),
    ("leak b->a", "leakage_ba", "pct"),
    ("p(b|a)", "p_b_given_a", ".3g"),
    ("p(c|a)", "p_c_given_a", ".3g"),
    ("p(b|a)/p(c|a)", "p_ratio_a", ".3g"),
)


def clean(obj):
    """JSON-ready: numpy to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def _cell(numbers: dict, key, fmt: str) -> str:
    value = numbers
    for k in key if isinstance(key, tuple) else (key,):
        value = value.get(k) if isinstance(value, dict) else None
    if fmt == "n":
        return "/".join(str(value.get(k, 0)) for k in "abc") if isinstance(value, dict) else ""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if fmt == "pct":
        return f"{100 * value:.1f}%"
    return format(value, fmt)


def markdown(records: Sequence[dict]) -> str:
    first = records[0]
    cls = first["classes"]
    sel = first.get("selection") or {}
    unit = "tokens" if first.get("modality") == "nmt" else "classes"
    lines = [
        "# Systematic diffusion",
        "",
        f"{unit.capitalize()}: a = **{cls['a']}**, b = **{cls['b']}** (similar to a), c = "
        f"**{cls['c']}** (dissimilar).",
        f"Chosen: {sel.get('reason', 'n/a')}",
        "",
        "Computed on the 3-D coordinates of the bias-augmented penultimate features in the span of the three "
        "bias-augmented class templates. eta > 1: class a spreads toward b more than toward c; "
        "J_ab falls and leakage rises when a and b diffuse into each other. "
        "Probabilities are the model's full softmax at T=1. See docs/diffusion.md.",
        "",
    ]
    header = ["model", "split"] + [c[0].replace("|", "\\|") for c in COLUMNS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(COLUMNS)) + "|")
    for rec in records:
        for split in ("train", "valid"):
            if split not in rec:
                continue
            cells = [rec["label"].replace("|", "/"), split] + [
                _cell(rec[split], key, fmt) for _, key, fmt in COLUMNS
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Checkpoints:", ""] + [f"- {r['label']}: `{r['checkpoint']}`" for r in records]
    return "\n".join(lines) + "\n"


def write_outputs(records: List[dict], projections: Sequence, out_dir: str | Path) -> Dict[str, Path]:
    """Write diffusion.json, diffusion.md, projection.png (paper), projection_plane.png (Mueller et al.)
    and numbers.png (eta and J_ab per model)."""
    from lskd_plugins.diffusion.plots import plot_all

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = records[0]
    doc = {
        "format": FORMAT,
        "modality": first.get("modality"),
        "classes": first.get("classes"),
        "selection": first.get("selection"),
        "spread_along_direction": "std",
        "records": records,
    }
    paths = {"json": out / "diffusion.json", "markdown": out / "diffusion.md"}
    write_text_atomic(paths["json"], json.dumps(clean(doc), indent=1, allow_nan=False) + "\n")
    write_text_atomic(paths["markdown"], markdown(records))
    paths["png"], paths["plane_png"], paths["numbers_png"] = plot_all(records, projections, out)
    return paths
