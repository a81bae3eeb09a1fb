"""Every checkpoint of an NMT sweep -> one table in the paper's layout (Markdown + JSON).

The recipes name their runs (``recipes/nmt/common.sh``): ``teacher_a<ALPHA>``,
``word_a<ALPHA>_T<T>`` (word-level KD), ``seq_a<ALPHA>`` (sequence-level KD, CE student) and
``seqword_a<ALPHA>_T<T>`` (sequence-level + word-level KD). Each run's checkpoint is scored with
``lskd bleu``'s code (``bleu.evaluate_checkpoint``), its files kept in ``<run>/eval/`` and reused
while newer than the checkpoint (and decoded with the same beam). The table has one column per
teacher alpha (0 = "noLS teacher") and rows: teacher, word-level KD at each T, sequence-level KD,
sequence-level + word-level KD at each T, as the paper's NMT table (rows T, columns noLS / LS).
The best student score is bold.

    python -m lskd_plugins.nmt.sweep_table --save runs/nmt --data DATA_BIN --out runs/nmt/results
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from lskd_plugins.errors import LskdError, run_script
from lskd_plugins.files import write_text_atomic

RUN_NAME = re.compile(r"^(teacher|word|seq|seqword)_a([0-9.]+)(?:_T([0-9.]+))?$")
KIND_ORDER = {"teacher": 0, "word": 1, "seq": 2, "seqword": 3}


@dataclass(frozen=True)
class Run:
    name: str
    kind: str  # teacher | word | seq | seqword
    alpha: str  # as the run name spells it ("0.0", "0.1")
    temperature: float | None
    checkpoint: Path

    @property
    def row_key(self) -> tuple:
        return (KIND_ORDER[self.kind], self.temperature or 0.0)


def parse_run_name(name: str) -> tuple | None:
    """'word_a0.1_T2' -> ('word', '0.1', 2.0); None for names that are not runs of a sweep."""
    m = RUN_NAME.match(name)
    if not m:
        return None
    kind, alpha, temp = m.group(1), m.group(2), m.group(3)
    if (kind in ("word", "seqword")) != (temp is not None):
        return None
    return kind, alpha, (float(temp) if temp is not None else None)


def find_runs(save: Path, checkpoint: str = "checkpoint_best.pt") -> List[Run]:
    runs = []
    for d in sorted(p for p in Path(save).iterdir() if p.is_dir()):
        parsed = parse_run_name(d.name)
        if parsed and (d / checkpoint).is_file():
            runs.append(Run(d.name, parsed[0], parsed[1], parsed[2], d / checkpoint))
    return sorted(runs, key=lambda r: (r.row_key, float(r.alpha)))


def row_label(kind: str, temperature: float | None) -> str:
    t = None if temperature is None else f"{temperature:g}"
    return {
        "teacher": "teacher",
        "word": f"word-level KD, T={t}",
        "seq": "sequence-level KD",
        "seqword": f"seq-level + word-level KD, T={t}",
    }[kind]


def column_label(alpha: str) -> str:
    return f"noLS teacher (α={alpha})" if float(alpha) == 0 else f"LS teacher (α={alpha})"


def build_table(runs: Sequence[Run], results: Dict[str, dict], subset: str) -> dict:
    """The JSON table: columns (alphas), rows (kind, T) with each cell's scores or None."""
    alphas = sorted({r.alpha for r in runs}, key=float)
    rows: Dict[tuple, dict] = {}
    for run in runs:
        key = run.row_key
        row = rows.setdefault(
            key,
            {
                "label": row_label(run.kind, run.temperature),
                "kind": run.kind,
                "T": run.temperature,
                "cells": {a: None for a in alphas},
            },
        )
        res = results.get(run.name)
        if res is not None:
            row["cells"][run.alpha] = {
                "sacrebleu": res["sacrebleu"]["score"],
                "chrf": res["chrf"]["score"],
                "tokenized_bleu": res["tokenized_bleu"]["score"],
                "run": run.name,
                "checkpoint": str(run.checkpoint),
            }
    ordered = [rows[k] for k in sorted(rows)]
    best = None
    for row in ordered:
        if row["kind"] == "teacher":
            continue
        for alpha, cell in row["cells"].items():
            if cell and (best is None or cell["sacrebleu"] > best["sacrebleu"]):
                best = {"label": row["label"], "alpha": alpha, "sacrebleu": cell["sacrebleu"]}
    any_result = next(iter(results.values()), None)
    return {
        "subset": subset,
        "columns": [{"alpha": a, "label": column_label(a)} for a in alphas],
        "rows": ordered,
        "best_student": best,
        "signatures": None
        if any_result is None
        else {
            "sacrebleu": any_result["sacrebleu"]["signature"],
            "chrf": any_result["chrf"]["signature"],
            "tokenized_bleu": any_result["tokenized_bleu"]["tokenizer"],
        },
    }


def render_markdown(table: dict, metrics: Sequence[str] = ("sacrebleu", "chrf", "tokenized_bleu")) -> str:
    names = {"sacrebleu": "sacreBLEU (detokenised)", "chrf": "chrF", "tokenized_bleu": "tokenized BLEU"}
    out = []
    for metric in metrics:
        out.append(f"### {names[metric]}, {table['subset']} set\n")
        header = "| | " + " | ".join(c["label"] for c in table["columns"]) + " |"
        out += [header, "|---" * (len(table["columns"]) + 1) + "|"]
        best_row = table["best_student"]
        best_value = None
        if metric != "sacrebleu":  # bold the best student of this metric
            values = [
                cell[metric]
                for row in table["rows"]
                if row["kind"] != "teacher"
                for cell in row["cells"].values()
                if cell
            ]
            best_value = max(values) if values else None
        for row in table["rows"]:
            cells = []
            for col in table["columns"]:
                cell = row["cells"].get(col["alpha"])
                if cell is None:
                    cells.append("–")
                    continue
                text = f"{cell[metric]:.2f}"
                is_best = row["kind"] != "teacher" and (
                    (
                        metric == "sacrebleu"
                        and best_row
                        and best_row["label"] == row["label"]
                        and best_row["alpha"] == col["alpha"]
                    )
                    or (metric != "sacrebleu" and best_value is not None and cell[metric] == best_value)
                )
                cells.append(f"**{text}**" if is_best else text)
            out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        out.append("")
    sig = table.get("signatures")
    if sig:
        out.append(
            f"sacreBLEU signature: `{sig['sacrebleu']}`; chrF signature: `{sig['chrf']}`; "
            f"tokenized BLEU tokenizer: {sig['tokenized_bleu']}."
        )
    return "\n".join(out) + "\n"


def cached_result(run: Run, subset: str, options) -> dict | None:
    """The run's earlier result when newer than its checkpoint and decoded with the same settings."""
    path = run.checkpoint.parent / "eval" / f"{subset}.bleu.json"
    if not path.is_file() or path.stat().st_mtime < run.checkpoint.stat().st_mtime:
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    same = all(result.get(k) == getattr(options, k) for k in ("beam", "lenpen", "max_len_a", "max_len_b"))
    return result if same else None


def evaluate_sweep(
    save: Path,
    data: Path,
    subset: str,
    options,
    checkpoint: str = "checkpoint_best.pt",
    progress: bool = True,
    log=None,
) -> tuple:
    from lskd_plugins.nmt.bleu import evaluate_checkpoint

    log = log or (lambda msg: print(msg, file=sys.stderr))
    runs = find_runs(save, checkpoint)
    if not runs:
        raise LskdError(
            f"no runs with a {checkpoint} under {save} (expected teacher_a*/, word_a*_T*/, "
            "seq_a*/, seqword_a*_T*/ from recipes/nmt)"
        )
    results: Dict[str, dict] = {}
    for run in runs:
        result = cached_result(run, subset, options)
        if result is None:
            log(f"evaluate: {run.name} ({run.checkpoint})")
            result = evaluate_checkpoint(
                str(run.checkpoint),
                data,
                subset,
                options,
                out=run.checkpoint.parent / "eval",
                progress=progress,
            )
        else:
            log(f"evaluate: {run.name}: reusing {run.checkpoint.parent / 'eval'}")
        results[run.name] = result
    return runs, results


def main(argv: Sequence[str] | None = None) -> int:
    from lskd_plugins.nmt.decode import add_decode_arguments, options_from_args

    p = argparse.ArgumentParser(
        prog="python -m lskd_plugins.nmt.sweep_table",
        description="Score every checkpoint of an NMT sweep and write the paper's table.",
    )
    p.add_argument("--save", required=True, help="the sweep directory (SAVE of recipes/nmt)")
    add_decode_arguments(p, default_subset="test", with_path=False)
    p.add_argument("--checkpoint", default="checkpoint_best.pt", help="checkpoint file name in each run")
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json (default SAVE/results)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    save = Path(args.save)
    if not save.is_dir():
        raise LskdError(f"--save {save} is not a directory")
    runs, results = evaluate_sweep(
        save,
        Path(args.data),
        args.subset,
        options_from_args(args),
        args.checkpoint,
        progress=not args.no_progress,
    )
    table = build_table(runs, results, args.subset)
    table["data"] = str(args.data)
    table["beam"] = args.beam
    md = render_markdown(table)
    out = Path(args.out) if args.out else save / "results"
    for suffix, text in ((".json", json.dumps(table, indent=2, ensure_ascii=False) + "\n"), (".md", md)):
        write_text_atomic(out.with_name(out.name + suffix), text)
    print(md, end="")
    print(f"wrote {out}.md and {out}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_script(main)
