"""What a study costs: the configuration's ``cost:`` (estimated GPU-hours per run, by modality and
by role or KD kind) times the runs of its grid, printed by ``lskd study CONFIG --dry-run``.

    cost: {image: {teacher: 14, baseline: 14, logit: 24, diffusion: 0.1}}

A run is priced by its KD kind (``logit``, ``word``, ``seq``, ``seqword``) when it has one, else by
its role (``teacher``, ``baseline``, ``seqkd``, ``diffusion``), else by ``student`` (a student) or
``diffusion`` (the choice of the diffusion classes or tokens, role ``classes``); runs without a
price are counted and named as not estimated. The figures and their sources are in each paper
configuration's header and in docs/study.md ("What a study costs").
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List

KEYS = ("teacher", "baseline", "student", "logit", "word", "seq", "seqword", "seqkd", "diffusion", "classes")


def valid_cost(v: Any) -> bool:
    """{modality: {role or kind: GPU-hours >= 0}}."""
    return isinstance(v, dict) and all(
        isinstance(m, dict)
        and all(
            k in KEYS and isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
            for k, x in m.items()
        )
        for m in v.values()
    )


def price(cost: Dict[str, Dict[str, float]], run) -> float | None:
    table = cost.get(run.modality) or {}
    fallback = {"student": "student", "classes": "diffusion"}.get(run.role)  # classes: a diffusion step
    for key in (run.kind, run.role, fallback):
        if key and key in table:
            return float(table[key])
    return None


def cost_text(cfg: Dict[str, Any], runs: List[Any]) -> str:
    """One line: the number of runs, the GPU-hours of each sort and their total."""
    counts = Counter((r.modality, r.kind or r.role) for r in runs)
    cost = cfg.get("cost") or {}
    parts, total, unpriced = [], 0.0, []
    for (modality, what), n in sorted(counts.items()):
        sample = next(r for r in runs if (r.modality, r.kind or r.role) == (modality, what))
        hours = price(cost, sample)
        if hours is None:
            unpriced.append(f"{modality} {what} ({n})")
            continue
        total += n * hours
        parts.append(f"{modality} {what} {n} x {hours:g} = {n * hours:g}")
    text = f"study (dry run): {len(runs)} runs"
    if not cost:
        return text + "; GPU-hours: not estimated (no cost: in the configuration)"
    text += f"; GPU-hours: {'; '.join(parts)}; total {total:,.0f} GPU-hours"
    text += " (estimates: cost: in the configuration)"
    if unpriced:
        text += f"; not estimated: {', '.join(unpriced)}"
    return text
