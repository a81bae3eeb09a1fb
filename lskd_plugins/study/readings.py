"""The report's readings in the paper's terms (issue 17 item 4), as pure functions.

Each comparison (a dict with ``group``, ``kind``, ``smoothing``, ``temperature``, ``t_ref``,
``mean``, ``lo``, ``hi``, ``verdict`` and, after ``multiple.adjust``, ``verdict_adjusted``) gets a
``reading``: what it says in words. The answer of a modality starts with one sentence a reader can
act on, drawn from the comparisons resolved after Holm's adjustment only, then the evidence; when
none is resolved, a fixed sentence says so and how many seeds would be needed; when an adequacy
check failed, the answer recommends nothing.

Teacher label smoothing is written epsilon ("LS eps=0.1", "noLS"): the paper and method.md write
alpha for it, which lskd keeps for the KD weight (``--kd-alpha``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from lskd_plugins.study.adequacy import teacher_name
from lskd_plugins.study.multiple import BETTER, WORSE, seeds_to_resolve_adjusted


def kind_label(name: str | None) -> str:
    """A KD kind's label from the kinds table (``lskd_plugins.study.kinds``); the name if unknown."""
    from lskd_plugins.study.kinds import KINDS

    return KINDS[name].label if name in KINDS else str(name)


LEGEND = (
    'Teacher label smoothing is written eps ("LS eps=0.1", "noLS" = eps 0): the paper and '
    "method.md call it alpha, a name lskd keeps for the KD weight (--kd-alpha)."
)
PAPER = "the paper's prediction (a negative interaction: the LS teacher's standing worsens as T grows)"


def _t(t: float | None) -> str:
    return "" if t is None else f"T={t:g}"


def _kind(c: Dict[str, Any]) -> str:
    """The kind's label, with the KD method when it is not plain KD (the KD-method comparisons)."""
    from lskd_plugins.study.kinds import DEFAULT_METHOD, METHODS

    m = c.get("method")
    return kind_label(c.get("kind")) + ("" if m in (None, DEFAULT_METHOD) else f" under {METHODS[m].label}")


def _where(c: Dict[str, Any]) -> str:
    kind = _kind(c)
    return kind + (f", {_t(c['temperature'])}" if c.get("temperature") is not None else "")


def _ls(c: Dict[str, Any]) -> str:
    return f"the {teacher_name(c['smoothing'])} teacher"


def reading_ls(c: Dict[str, Any], v: str | None) -> str:
    if v == BETTER:
        return f"{_ls(c)} gives the better student ({_where(c)})"
    if v == WORSE:
        return f"the noLS teacher gives the better student ({_where(c)})"
    other = teacher_name(c["smoothing"])
    return f"not resolved which teacher, {other} or noLS, gives the better student ({_where(c)})"


def reading_temperature(c: Dict[str, Any], v: str | None) -> str:
    k, one, kind = _t(c["temperature"]), _t(c["t_ref"]), _kind(c)
    if v == BETTER:
        return f"with {_ls(c)}, {k} is better than {one} ({kind})"
    if v == WORSE:
        return f"with {_ls(c)}, {one} is better than {k} ({kind})"
    return f"with {_ls(c)}, not resolved whether {k} or {one} is better ({kind})"


def agrees_with_paper(c: Dict[str, Any], v: str | None) -> bool | None:
    """True: a resolved negative interaction; False: a resolved positive one; None: not resolved."""
    return {WORSE: True, BETTER: False}.get(v)


def reading_interaction(c: Dict[str, Any], v: str | None) -> str:
    gain = "gain" if c["mean"] >= 0 else "lose"
    text = (
        f"{_ls(c)}'s students {gain} {abs(c['mean']):.2f} more at {_t(c['temperature'])} than at "
        f"{_t(c['t_ref'])}, relative to the noLS teacher's ({_kind(c)})"
    )
    agree = agrees_with_paper(c, v)
    if agree is True:
        return text + f"; this agrees with {PAPER}"
    if agree is False:
        return text + f"; this contradicts {PAPER}"
    return text + f"; not resolved, so it neither confirms nor contradicts {PAPER}"


def reading_kd(c: Dict[str, Any], v: str | None) -> str:
    what = f"KD from {_ls(c)} ({_where(c)})"
    if v == BETTER:
        return f"{what} beats the no-KD baseline"
    if v == WORSE:
        return f"the no-KD baseline beats {what}"
    return f"not resolved whether {what} beats the no-KD baseline"


def reading_method(c: Dict[str, Any], v: str | None) -> str:
    from lskd_plugins.study.kinds import METHODS

    m, where = METHODS[c["method"]].label, f"{kind_label(c['kind'])}, {_ls(c)}{_at(c)}"
    if v == BETTER:
        return f"{m} gives the better student than KD ({where})"
    if v == WORSE:
        return f"KD gives the better student than {m} ({where})"
    return f"not resolved whether {m} or KD gives the better student ({where})"


def reading_method_ls(c: Dict[str, Any], v: str | None) -> str:
    from lskd_plugins.study.kinds import METHODS

    m, where = METHODS[c["method"]].label, f"{kind_label(c['kind'])}{_at(c)}"
    if v == BETTER:
        return f"{_ls(c)} fares better against the noLS teacher under {m} than under KD ({where})"
    if v == WORSE:
        return f"{_ls(c)} fares worse against the noLS teacher under {m} than under KD ({where})"
    return f"not resolved whether {m} changes {_ls(c)}'s standing against the noLS teacher ({where})"


PRIORITY = ("LS - noLS", "interaction", "T=k - T=1", "KD - no KD")  # the study's question first
READERS = {
    "LS - noLS": reading_ls,
    "T=k - T=1": reading_temperature,
    "interaction": reading_interaction,
    "KD - no KD": reading_kd,
    "method - KD": reading_method,
    "method x LS": reading_method_ls,
}


def reading(c: Dict[str, Any], key: str = "verdict") -> str:
    """The comparison in words, from its ``key`` verdict ("verdict" or "verdict_adjusted")."""
    v = c.get(key)
    text = READERS[c["group"]](c, v)
    return text if v is not None else f"one seed, no verdict: {text.replace('not resolved', 'not known')}"


def action(c: Dict[str, Any], unit: str) -> str:
    """One sentence a reader can act on, from a comparison resolved after adjustment."""
    v, size = c["verdict_adjusted"], f"{abs(c['mean']):.2f}" + (f" {unit}" if unit else "")
    kind, group = kind_label(c["kind"]), c["group"]
    if group == "LS - noLS":
        winner = teacher_name(c["smoothing"]) if v == BETTER else "noLS"
        at = f" at {_t(c['temperature'])}" if c.get("temperature") is not None else ""
        return f"For {kind}{at}, distil from the {winner} teacher: its student scores {size} higher."
    if group == "T=k - T=1":
        hi, lo = (c["temperature"], c["t_ref"]) if v == BETTER else (c["t_ref"], c["temperature"])
        return f"With {_ls(c)} ({kind}), use T={hi:g} rather than T={lo:g}: {size} higher."
    if group == "KD - no KD":
        if v == BETTER:
            return f"Distil: {kind} from {_ls(c)}{_at(c)} beats the no-KD baseline by {size}."
        return f"Do not distil with {kind} from {_ls(c)}{_at(c)}: the no-KD baseline is {size} higher."
    k, one = _t(c["temperature"]), _t(c["t_ref"])
    if v == WORSE:
        return (
            f"With {_ls(c)} ({kind}), prefer the lower temperature: its students' standing against the "
            f"noLS teacher's falls by {size} from {one} to {k}, as the paper predicts."
        )
    return (
        f"With {_ls(c)} ({kind}), a higher temperature helps: its students' standing against the noLS "
        f"teacher's rises by {size} from {one} to {k}, contrary to the paper's prediction."
    )


def _at(c: Dict[str, Any]) -> str:
    return f" at {_t(c['temperature'])}" if c.get("temperature") is not None else ""


def dof_note(n_seeds: int) -> str | None:
    if n_seeds == 2:
        return (
            "With 2 seeds each interval rests on one degree of freedom (t_{0.975,1} = 12.7): only very "
            "consistent differences can be resolved."
        )
    return None


def _evidence(c: Dict[str, Any], digits: int = 2) -> str:
    return f"{c['reading_adjusted']} ({c['mean']:+.{digits}f} [{c['lo']:+.{digits}f}, {c['hi']:+.{digits}f}])"


def answer(
    comps: List[Dict[str, Any]],
    metric: str,
    unit: str,
    n_seeds: int,
    family: int,
    warnings: Sequence[str] = (),
) -> str:
    """The modality's answer, from the adjusted verdicts only (``comps`` already ``adjust``-ed)."""
    if warnings:
        return (
            "The budget is too small for an answer: "
            + " ".join(warnings)
            + " No recommendation; the comparisons below are listed for the record only, marked "
            "'inadequate models'."
        )
    if n_seeds < 2:
        return f"One seed: numbers only, no verdicts (set `seeds` >= 2 to compare {metric})."
    if not comps:
        return "No comparison could be formed."
    for c in comps:
        c["reading_adjusted"] = reading(c, "verdict_adjusted")
    resolved = [c for c in comps if c.get("verdict_adjusted") in (BETTER, WORSE)]
    family_text = f"the family of {family} {metric} comparisons, Holm-adjusted"
    if resolved:
        first = min(resolved, key=lambda c: (c["p_adjusted"], PRIORITY.index(c["group"]), -abs(c["mean"])))
        evidence = "; ".join(_evidence(c) for c in resolved)
        return (
            f"{action(first, unit)} Evidence ({len(resolved)} of {family_text}, resolved): {evidence}. "
            "Every other comparison is not resolved."
        )
    return nothing_resolved(comps, metric, n_seeds, family)


def nothing_resolved(comps: List[Dict[str, Any]], metric: str, n_seeds: int, family: int) -> str:
    """The fixed sentence, with the seeds the clearest difference (largest |mean| / sd) would need."""
    usable = [c for c in comps if c.get("sd") is not None and c.get("mean")]
    text = (
        f"Nothing is resolved at this budget ({n_seeds} seeds; the family of {family} {metric} "
        "comparisons, Holm-adjusted): no recommendation."
    )
    if usable:
        clear = max(usable, key=lambda c: abs(c["mean"]) / c["sd"] if c["sd"] else float("inf"))
        need = seeds_to_resolve_adjusted(clear["mean"], clear["sd"], family)
        text += (
            f" About {need} seeds would be needed to resolve the clearest difference, {clear['label']} "
            f"= {clear['mean']:+.2f} with paired sd {clear['sd']:.2f} (t interval at Holm's strictest "
            f"level, t_{{1-0.025/{family}, n-1}} sd / sqrt(n) < |mean|)."
        )
    raw = sum(c.get("verdict") in (BETTER, WORSE) for c in comps)
    if raw:
        text += (
            f" {raw} comparison(s) are resolved before the adjustment; with {family} comparisons about "
            f"{0.05 * family:.1f} would be expected by chance alone."
        )
    return text
