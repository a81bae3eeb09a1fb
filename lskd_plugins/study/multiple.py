"""Multiple comparisons: Holm's step-down adjustment over a family of paired comparisons.

A family is every comparison of one modality's primary metric (docs/study.md, "Multiple
comparisons"). Each comparison's paired t statistic t = mean / (sd / sqrt(n)) gives a two-sided
p-value on n - 1 degrees of freedom (p < 0.05 exactly when the 95% t interval excludes 0, so the
unadjusted verdict is unchanged). Holm: with the m p-values sorted, p_(1) <= ... <= p_(m), the
adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a comparison is resolved after adjustment
when its adjusted p < 0.05, in the direction of its mean. Holm controls the family-wise error rate
at 5% under any dependence between the comparisons (they share runs, so they are dependent).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

ALPHA = 0.05
BETTER, WORSE, UNRESOLVED = "better", "worse", "not resolved"
MAX_SEEDS = 100000


def p_value(mean: float | None, sd: float | None, n: int) -> float | None:
    """Two-sided p of the paired t test of mean = 0 (None below two seeds)."""
    from scipy.stats import t

    if n < 2 or mean is None or sd is None:
        return None
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    stat = abs(mean) / (sd / math.sqrt(n))
    return float(2 * t.sf(stat, n - 1))


def holm(ps: Sequence[float | None]) -> List[float | None]:
    """Holm-adjusted p-values, in the input's order (None stays None and is not in the family)."""
    order = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m = len(order)
    out: List[float | None] = [None] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def adjusted_verdict(mean: float | None, p_adjusted: float | None) -> str | None:
    if p_adjusted is None or mean is None:
        return None
    if p_adjusted < ALPHA:
        return BETTER if mean > 0 else WORSE
    return UNRESOLVED


def adjust(comps: List[Dict[str, Any]]) -> int:
    """Adds ``p``, ``p_adjusted`` and ``verdict_adjusted`` to every comparison of one family (in
    place); returns the family size m (the comparisons with a p-value)."""
    ps = [p_value(c.get("mean"), c.get("sd"), c.get("n", 0)) for c in comps]
    for c, p, q in zip(comps, ps, holm(ps)):
        c["p"], c["p_adjusted"] = p, q
        c["verdict_adjusted"] = adjusted_verdict(c.get("mean"), q)
    return sum(p is not None for p in ps)


def seeds_to_resolve_adjusted(mean: float | None, sd: float | None, family: int) -> int | None:
    """Smallest n at which a paired difference of this mean and sd would be resolved even at Holm's
    strictest step: t_{1 - 0.025/m, n-1} * sd / sqrt(n) < |mean| (m = family size). None when there
    is no difference; 2 when sd is 0."""
    from scipy.stats import t

    if mean is None or sd is None or mean == 0:
        return None
    if sd == 0:
        return 2
    q = 1 - ALPHA / 2 / max(1, family)

    def resolves(n: int) -> bool:  # the half-width falls as n grows: bisect
        return t.ppf(q, n - 1) * sd / math.sqrt(n) < abs(mean)

    lo, hi = 1, 2
    while not resolves(hi):
        if hi >= MAX_SEEDS:
            return MAX_SEEDS
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if resolves(mid) else (mid, hi)
    return hi
