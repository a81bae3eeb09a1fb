#!/usr/bin/env python
"""What the teacher cache costs in BLEU: cached vs online word-level KD students, paired by seed.

Reads the translation runs of one or more ``lskd study`` folders (each run's own ``run.json`` and
``result.json``), pairs every word-level student trained from a cache (``teacher_cache:
features``; ``--store topk`` for the older top-k students, keyed ``true``) with the online
student whose settings are otherwise identical (same data hash, options, teacher, T and seed:
the run's key spec minus ``teacher_cache``), and prints per cell (teacher label smoothing, T)
and pooled over all pairs the mean cached - online sacreBLEU difference with its 95% t interval
(``lskd_plugins.study.stats.paired``, method.md section 7).

The two sets of students can live in one study folder: run the same configuration twice,
flipping ``translation.teacher_cache`` the second time (teachers and baselines are reused by key;
the second run rewrites report.md for its own runs, so copy the first report away to keep it):

    lskd study recipes/study/cpu_real.yaml --output runs/cpu_real            # online students
    cp runs/cpu_real/report.md runs/cpu_real/report_online.md
    lskd study recipes/study/cpu_real.yaml --output runs/cpu_real --set translation.teacher_cache=true \
        --set image=null --set translation.diffusion=false    # their cached twins
    python benchmarks/cache_bleu.py runs/cpu_real

or in several folders (``python benchmarks/cache_bleu.py A B``), e.g. a second study whose
teachers were copied in from the first (their run folders are reused by key).

The last line: ``bleu_cached_minus_online=D ci95=[LO,HI] pairs=N inside_1bleu=BOOL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lskd_plugins.study import layout, stats  # noqa: E402

METRIC = "bleu"


def word_students(study: Path) -> List[dict]:
    """The finished word-level students of a study folder: {spec, bleu, folder}."""
    return [
        {"spec": run["spec"], "bleu": res["metrics"][METRIC], "folder": str(folder)}
        for folder, run, res in layout.finished_runs(study, "translation")
        if run["spec"].get("role") == "student" and run["spec"].get("kind") == "word"
    ]


def cell_of(spec: dict) -> Tuple[str, float, float]:
    """What a pair shares, minus the seed: (everything else as JSON, teacher smoothing, T). Runs
    keyed before the seed streams name the smoothing ``alpha`` and have no ``seed_index``."""
    rest = {k: v for k, v in spec.items() if k not in ("teacher_cache", "seed", "seed_index")}
    return (
        json.dumps(rest, sort_keys=True),
        spec.get("teacher_smoothing", spec.get("alpha")),
        spec["temperature"],
    )


def store_of(spec: dict) -> str:
    """'online', or the cache's store: 'features', or 'topk' for the students keyed ``true``
    (the study's top-k cache before the exact one)."""
    value = spec.get("teacher_cache")
    return "online" if not value else "topk" if value is True else str(value)


def pairs(students: List[dict], store: str) -> Dict[Tuple[float, float], Dict[str, Dict[int, float]]]:
    """{(alpha, T): {"online": {seed: bleu}, "cached": {seed: bleu}}} over identical settings,
    the cached students being those of ``store``."""
    groups: Dict[tuple, Dict[str, Dict[int, float]]] = {}
    for s in students:
        how = {"online": "online", store: "cached"}.get(store_of(s["spec"]))
        if how is None:
            continue
        group = groups.setdefault(cell_of(s["spec"]), {"online": {}, "cached": {}})
        group[how][s["spec"].get("seed_index", s["spec"]["seed"])] = s["bleu"]
    out = {}
    for (_settings, alpha, t), g in groups.items():
        if g["online"] and g["cached"]:
            if (alpha, t) in out:
                raise SystemExit(f"cache_bleu: two configurations of the cell alpha={alpha} T={t}; pass one")
            out[(alpha, t)] = g
    return out


def compare(cells: Dict[Tuple[float, float], Dict[str, Dict[int, float]]]) -> dict:
    """Per cell and pooled (every (cell, seed) pair once) paired cached - online differences."""
    rows, pooled_c, pooled_o = [], {}, {}
    for (alpha, t), g in sorted(cells.items()):
        d = stats.paired(g["cached"], g["online"])
        rows.append({"alpha": alpha, "T": t, **d, "online": g["online"], "cached": g["cached"]})
        for seed in d["seeds"]:
            pooled_c[(alpha, t, seed)], pooled_o[(alpha, t, seed)] = g["cached"][seed], g["online"][seed]
    return {"cells": rows, "pooled": stats.paired(pooled_c, pooled_o)}


def interval(d: dict) -> str:
    if d["lo"] is None:
        return f"{d['mean']:+.2f} (n={d['n']}, no interval)"
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] (n={d['n']})"


def report(result: dict) -> None:
    print("| teacher eps | T | online BLEU (per seed) | cached BLEU (per seed) | cached - online, 95% CI |")
    print("|---|---|---|---|---|")
    for r in result["cells"]:
        on = ", ".join(f"{r['online'][s]:.2f}" for s in r["seeds"])
        ca = ", ".join(f"{r['cached'][s]:.2f}" for s in r["seeds"])
        print(f"| {r['alpha']:g} | {r['T']:g} | {on} | {ca} | {interval(r)} |")
    p = result["pooled"]
    print(f"| all | | | | {interval(p)} |")
    inside = p["lo"] is not None and -1 <= p["lo"] and p["hi"] <= 1
    lo, hi = (p["lo"], p["hi"]) if p["lo"] is not None else (float("nan"), float("nan"))
    print(
        f"bleu_cached_minus_online={p['mean']:.3f} ci95=[{lo:.3f},{hi:.3f}] pairs={p['n']} "
        f"inside_1bleu={inside}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("studies", nargs="+", type=Path, help="lskd study output folders")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument(
        "--store",
        default="features",
        help="the cached students compared: features (default) or topk (students keyed teacher_cache: true)",
    )
    args = ap.parse_args(argv)
    students = [s for study in args.studies for s in word_students(study)]
    cells = pairs(students, args.store)
    if not cells:
        print(
            f"cache_bleu: no {args.store}-cached student has an online twin in "
            + ", ".join(map(str, args.studies))
        )
        return 2
    result = compare(cells)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
