"""Seeds and statistics, exactly ``method.md`` section 7.

Every run of one seed shares that seed's data order and initialisation across the grid, so two
cells A and B are compared **paired by seed**: d_s = metric(A, s) - metric(B, s), reported as
mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) with a verdict: "better" / "worse" when the interval
excludes 0, "not resolved" otherwise; one seed gives numbers and no verdict. Verdicts are given
for the primary metric only (top-1, sacreBLEU); the others get intervals.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

from lskd_plugins.study import kinds as kind_table
from lskd_plugins.study.adequacy import teacher_name

BETTER, WORSE, UNRESOLVED = "better", "worse", "not resolved"
MAX_SEEDS = 100000


def t_quantile(n: int) -> float:
    """t_{0.975, n-1} (n >= 2)."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def summary(values: Sequence[float]) -> Dict[str, Any]:
    """n, mean, sd and the 95% half-width of a cell (half-width None for one value)."""
    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "half": None}
    mean = sum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "half": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return {"n": n, "mean": mean, "sd": sd, "half": t_quantile(n) * sd / math.sqrt(n)}


def verdict(mean: float | None, half: float | None, n: int) -> str | None:
    if n < 2 or mean is None or half is None:
        return None
    if mean - half > 0:
        return BETTER
    if mean + half < 0:
        return WORSE
    return UNRESOLVED


def seeds_needed(mean: float, sd: float | None) -> int | None:
    """Smallest n whose t interval t_{0.975,n-1} * sd / sqrt(n) is narrower than |mean| (about
    (2.1 sd / m)^2, computed exactly); None when there is no difference to resolve."""
    if mean is None or sd is None or mean == 0:
        return None
    if sd == 0:
        return 2
    n = max(2, int((1.96 * sd / abs(mean)) ** 2))  # the normal bound is a lower bound
    while n < MAX_SEEDS and t_quantile(n) * sd / math.sqrt(n) >= abs(mean):
        n += 1
    return n


def paired(a: Dict[int, float], b: Dict[int, float], with_verdict: bool = True) -> Dict[str, Any]:
    """A - B over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds if a[s] is not None and b[s] is not None]
    s = summary(diffs)
    out = {**s, "seeds": seeds, "diffs": diffs}
    out["lo"] = None if s["half"] is None else s["mean"] - s["half"]
    out["hi"] = None if s["half"] is None else s["mean"] + s["half"]
    out["verdict"] = verdict(s["mean"], s["half"], s["n"]) if with_verdict else None
    out["seeds_to_resolve"] = seeds_needed(s["mean"], s["sd"]) if s["n"] >= 2 else None
    return out


def interaction(
    ls_k: Dict[int, float], no_k: Dict[int, float], ls_1: Dict[int, float], no_1: Dict[int, float]
) -> Dict[int, float]:
    """Per seed: (LS - noLS at T=k) - (LS - noLS at T=1)."""
    seeds = set(ls_k) & set(no_k) & set(ls_1) & set(no_1)
    return {s: (ls_k[s] - no_k[s]) - (ls_1[s] - no_1[s]) for s in sorted(seeds)}


def no_ls_smoothing(smoothings: Sequence[float]) -> float | None:
    """The noLS teacher that LS - noLS comparisons read: eps 0, or None (no such comparisons)."""
    return 0.0 if 0.0 in smoothings else None


def comparisons(
    cells: Dict[tuple, Dict[int, float]],
    baseline: Dict[int, float],
    smoothings: Sequence[float],
    temps: Sequence[float],
    kinds: Sequence[str],
    with_verdict: bool,
) -> List[Dict[str, Any]]:
    """The fixed comparisons of section 7 for one metric. ``cells[(kind, teacher smoothing, T)] =
    {seed: value}`` (T is None for the kinds that take no temperature: sequence-level students).
    Each comparison names its ``group``, ``kind``, ``smoothing`` (the teacher's eps), ``temperature``
    and ``t_ref`` (the reference T of "T=k - T=1" and of the interaction), for ``readings``."""
    out: List[Dict[str, Any]] = []
    no = no_ls_smoothing(smoothings)
    t1 = 1.0 if 1.0 in temps else min(temps)

    def add(group: str, label: str, where: tuple, diffs=None, a=None, b=None) -> None:
        res = paired(*((diffs, dict.fromkeys(diffs, 0.0)) if diffs is not None else (a, b)), with_verdict)
        if res["n"]:
            fields = dict(zip(("kind", "smoothing", "temperature", "t_ref"), where))
            out.append({"group": group, "label": label, **fields, **res})

    for kind in kinds:
        k = kind_table.kind(kind)
        ts = list(temps) if k.takes_temperature else [None]
        higher = [t for t in ts if t is not None and t != t1]
        for a in [x for x in smoothings if x != no and no is not None]:
            ls = teacher_name(a)
            for t in ts:
                label = f"{k.label}: {ls} - noLS teacher{'' if t is None else f' at T={t:g}'}"
                pair = {"a": cells.get((kind, a, t), {}), "b": cells.get((kind, no, t), {})}
                add("LS - noLS", label, (kind, a, t, None), **pair)
            for t in higher:
                four = [
                    cells.get(c, {}) for c in ((kind, a, t), (kind, no, t), (kind, a, t1), (kind, no, t1))
                ]
                label = f"{k.label}: ({ls} - noLS at T={t:g}) - (same at T={t1:g})"
                add("interaction", label, (kind, a, t, t1), diffs=interaction(*four))
        for a in smoothings:
            who = f"{k.label}: {teacher_name(a)} teacher"
            for t in higher:
                pair = {"a": cells.get((kind, a, t), {}), "b": cells.get((kind, a, t1), {})}
                add("T=k - T=1", f"{who}, T={t:g} - T={t1:g}", (kind, a, t, t1), **pair)
            for t in ts:
                label = f"{who}{'' if t is None else f', T={t:g}'} - no-KD baseline"
                add("KD - no KD", label, (kind, a, t, None), a=cells.get((kind, a, t), {}), b=baseline)
    return out


# ----------------------------------------------------------------------------------- KD methods
METHOD_GROUPS = ("method - KD", "method x LS", "LS - noLS", "interaction")


def method_cells(cells: Dict[tuple, Dict[int, float]], method: str) -> Dict[tuple, Dict[int, float]]:
    """The cells (kind, teacher smoothing, T) of one KD method's students: plain ``kd`` students are
    keyed (kind, eps, T), another method's (kind, eps, T, method) (``report.collect``)."""
    if method == kind_table.DEFAULT_METHOD:
        return {c: v for c, v in cells.items() if len(c) == 3}
    return {c[:3]: v for c, v in cells.items() if len(c) == 4 and c[3] == method}


def method_comparisons(
    cells: Dict[tuple, Dict[int, float]],
    smoothings: Sequence[float],
    temps: Sequence[float],
    kinds: Sequence[str],
    methods: Sequence[str],
    with_verdict: bool,
) -> List[Dict[str, Any]]:
    """The KD-method comparisons of one metric, paired by seed index (a method's student and the kd
    student of one index share the student's seed). For each method other than kd, each kind that
    takes a teacher's distribution, each teacher and T: ``method - KD``; at each LS teacher and T,
    ``method x LS`` = (LS - noLS under the method) - (LS - noLS under kd); and the method's own
    ``LS - noLS`` gaps and ``interaction``s, defined as in ``comparisons`` (kd's are there)."""
    out: List[Dict[str, Any]] = []
    dist = [k for k in kinds if kind_table.kind(k).distribution]
    kd = method_cells(cells, kind_table.DEFAULT_METHOD)
    no = no_ls_smoothing(smoothings)
    for m in [m for m in methods if m != kind_table.DEFAULT_METHOD]:
        own, name = method_cells(cells, m), kind_table.method(m).label
        for kind in dist:
            k = kind_table.kind(kind)
            for a in smoothings:
                for t in list(temps) if k.takes_temperature else [None]:
                    where = f"{teacher_name(a)} teacher" + ("" if t is None else f", T={t:g}")
                    res = paired(own.get((kind, a, t), {}), kd.get((kind, a, t), {}), with_verdict)
                    _add(out, "method - KD", f"{k.label}: {name} - KD, {where}", (kind, a, t, m), res)
                    if a == no or no is None:
                        continue
                    four = [c.get((kind, x, t), {}) for c in (own, kd) for x in (a, no)]
                    diffs = interaction(*four)
                    res = paired(diffs, dict.fromkeys(diffs, 0.0), with_verdict)
                    label = f"{k.label}: ({teacher_name(a)} - noLS under {name}) - (same under KD)"
                    _add(
                        out,
                        "method x LS",
                        label + ("" if t is None else f" at T={t:g}"),
                        (kind, a, t, m),
                        res,
                    )
        for c in comparisons(own, {}, smoothings, temps, dist, with_verdict):
            if c["group"] in ("LS - noLS", "interaction"):
                out.append({**c, "label": f"{name}, {c['label']}", "method": m})
    return sorted(out, key=lambda c: METHOD_GROUPS.index(c["group"]))  # stable: methods stay in order


def _add(out: List[Dict[str, Any]], group: str, label: str, where: tuple, res: Dict[str, Any]) -> None:
    if res["n"]:
        fields = dict(zip(("kind", "smoothing", "temperature", "method"), where))
        out.append({"group": group, "label": label, **fields, "t_ref": None, **res})
