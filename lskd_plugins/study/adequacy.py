"""Adequacy checks: are a modality's models trained well enough for its comparisons to mean anything?

Pure functions over the runs' own numbers (means over seeds of the primary metric per cell, and the
translation runs' decoding statistics read from ``lskd bleu``'s files). Each failed check gives one
sentence that names the check and its numbers; the report puts them at the top of the modality's
section, in ``report.json`` (``modalities.<m>.warnings``) and in the answer, which then recommends
nothing. The thresholds are the named constants below (docs/study.md, "Adequacy checks").
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

# image: a teacher must reach chance + this many top-1 points (chance = 100 / classes)
TEACHER_MARGIN_TOP1 = 10.0
# image: a student (every KD cell and the no-KD baseline) must reach chance + this many points
STUDENT_MARGIN_TOP1 = 2.0
# translation: a teacher below this sacreBLEU translates nothing a student could learn from
TEACHER_MIN_BLEU = 5.0
# translation: a student below this sacreBLEU is at chance level
STUDENT_MIN_BLEU = 1.0
# translation: hypotheses' length / references' length (sacreBLEU's sys_len / ref_len) must lie here
LENGTH_RATIO = (0.5, 2.0)
# translation: a hypothesis "loops" when one token is repeated this many times in a row ...
REPEAT_RUN = 4
# ... and a run decodes degenerately when more than this share of its hypotheses loop
MAX_REPEAT_SHARE = 0.2
# both: "every KD student below the no-KD baseline by a wide margin" (top-1 points, BLEU)
WIDE_MARGIN = {"top1": 10.0, "bleu": 5.0}


def teacher_name(eps: float) -> str:
    """The teacher's label smoothing written epsilon, as the report writes it."""
    return "noLS" if eps == 0 else f"LS eps={eps:g}"


def mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(xs) / len(xs) if xs else None


def loops(line: str, run: int = REPEAT_RUN) -> bool:
    """True when one whitespace token occurs ``run`` or more times in a row ("white white white white")."""
    count, previous = 0, None
    for token in line.split():
        count = count + 1 if token == previous else 1
        previous = token
        if count >= run:
            return True
    return False


def decoding_stats(name: str, bleu_json: Mapping, hypotheses: Sequence[str] | None) -> Dict:
    """One translation run's decoding numbers: sacreBLEU's sys_len / ref_len and the share of
    hypotheses that loop (None when the hypotheses file is absent)."""
    sb = bleu_json.get("sacrebleu", {})
    looping = None if hypotheses is None else sum(loops(h) for h in hypotheses)
    return {
        "name": name,
        "sys_len": sb.get("sys_len"),
        "ref_len": sb.get("ref_len"),
        "hypotheses": None if hypotheses is None else len(hypotheses),
        "looping": looping,
    }


def _seeds(values: Mapping[float, Sequence]) -> int:
    return max((len([v for v in vs if v is not None]) for vs in values.values()), default=0)


def check_teachers(metric: str, teachers: Mapping[float, Sequence], num_classes: int | None) -> List[str]:
    """Teachers not clearly above chance (image: top-1 < chance + margin; translation: BLEU near 0)."""
    means = {eps: mean(vs) for eps, vs in teachers.items()}
    if metric == "top1":
        if not num_classes:
            return []
        chance = 100.0 / num_classes
        bar = chance + TEACHER_MARGIN_TOP1
        low = {e: m for e, m in means.items() if m is not None and m < bar}
        what = (
            f"below {bar:.1f}% (chance with {num_classes} classes, {chance:.1f}%, "
            f"+ {TEACHER_MARGIN_TOP1:g} points)"
        )
        unit, check = "%", "Teachers not clearly above chance"
    elif metric == "bleu":
        low = {e: m for e, m in means.items() if m is not None and m < TEACHER_MIN_BLEU}
        what = f"below {TEACHER_MIN_BLEU:g} sacreBLEU"
        unit, check = " BLEU", "Teachers' BLEU near 0"
    else:
        return []
    if not low:
        return []
    parts = ", ".join(f"{teacher_name(e)} {m:.1f}{unit}" for e, m in sorted(low.items()))
    return [f"{check}: {parts} (means over {_seeds(teachers)} seed(s)), {what}."]


def check_students(metric: str, students: Mapping[str, Sequence], num_classes: int | None) -> List[str]:
    """Students (every KD cell and the no-KD baseline) that do not beat chance."""
    if metric == "top1":
        if not num_classes:
            return []
        bar = 100.0 / num_classes + STUDENT_MARGIN_TOP1
        what = (
            f"below {bar:.1f}% (chance with {num_classes} classes, {100.0 / num_classes:.1f}%, "
            f"+ {STUDENT_MARGIN_TOP1:g} points)"
        )
        unit = "%"
    elif metric == "bleu":
        bar, what, unit = STUDENT_MIN_BLEU, f"below {STUDENT_MIN_BLEU:g} sacreBLEU", " BLEU"
    else:
        return []
    low = {k: m for k, vs in students.items() if (m := mean(vs)) is not None and m < bar}
    if not low:
        return []
    shown = sorted(low.items(), key=lambda kv: kv[1])
    parts = "; ".join(f"{k}: {m:.1f}{unit}" for k, m in shown[:4]) + ("; ..." if len(shown) > 4 else "")
    return [
        f"Students not beating chance: {len(low)} of {len(students)} student cells {what} "
        f"(means over seeds: {parts})."
    ]


def check_decoding(runs: Sequence[Mapping]) -> List[str]:
    """Degenerate decoding: length ratio outside ``LENGTH_RATIO``, or too many looping hypotheses."""
    out = []
    lo, hi = LENGTH_RATIO
    ratios = {
        r["name"]: r["sys_len"] / r["ref_len"]
        for r in runs
        if r.get("sys_len") is not None and r.get("ref_len")
    }
    bad = {n: q for n, q in ratios.items() if not lo <= q <= hi}
    if bad:
        worst = max(bad, key=lambda n: abs(math.log(bad[n])) if bad[n] > 0 else math.inf)
        w = next(r for r in runs if r["name"] == worst)
        out.append(
            f"Degenerate decoding: in {len(bad)} of {len(ratios)} translation runs the "
            f"hypotheses' length is outside [{lo:g}, {hi:g}] x the references' (worst: {worst}, "
            f"{w['sys_len']} / {w['ref_len']} tokens = {bad[worst]:.2f})."
        )
    shares = {r["name"]: r["looping"] / r["hypotheses"] for r in runs if r.get("hypotheses")}
    loopy = {n: s for n, s in shares.items() if s > MAX_REPEAT_SHARE}
    if loopy:
        worst = max(loopy, key=loopy.get)
        out.append(
            f"Degenerate decoding: in {len(loopy)} of {len(shares)} translation runs more "
            f"than {MAX_REPEAT_SHARE:.0%} of the hypotheses repeat a token {REPEAT_RUN}+ times in a row "
            f"(worst: {worst}, {loopy[worst]:.0%})."
        )
    return out


def check_kd_below_baseline(metric: str, kd: Mapping[str, Sequence], baseline: Sequence) -> List[str]:
    """Every KD student below the no-KD baseline by more than ``WIDE_MARGIN[metric]``."""
    base, margin = mean(baseline), WIDE_MARGIN.get(metric)
    means = {k: m for k, vs in kd.items() if (m := mean(vs)) is not None}
    if base is None or margin is None or not means or max(means.values()) >= base - margin:
        return []
    best = max(means, key=means.get)
    return [
        f"Every KD student is below the no-KD baseline by more than {margin:g} "
        f"({metric}): the best KD cell, {best}, has {means[best]:.1f} against the baseline's {base:.1f}."
    ]


def warnings(
    metric: str,
    teachers: Mapping[float, Sequence],
    kd: Mapping[str, Sequence],
    baseline: Sequence,
    num_classes: int | None = None,
    decoding: Sequence[Mapping] = (),
) -> List[str]:
    """Every failed check of one modality, as sentences (empty: the models are adequate).

    ``metric``: the modality's primary metric ("top1": the image checks, "bleu": the translation
    checks; another metric gets the KD-vs-baseline check only); ``teachers``: {teacher smoothing:
    per-seed primary metric}; ``kd``: {cell label: per-seed values} of the KD students;
    ``baseline``: the no-KD baseline's per-seed values; ``num_classes``: image only; ``decoding``:
    ``decoding_stats`` of the translation runs."""
    students = {**kd, "no-KD baseline": list(baseline)} if baseline else dict(kd)
    return [
        *check_teachers(metric, teachers, num_classes),
        *check_decoding(decoding),
        *check_students(metric, students, num_classes),
        *check_kd_below_baseline(metric, kd, baseline),
    ]
