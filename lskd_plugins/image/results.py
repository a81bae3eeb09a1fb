"""Collect the ``summary.json`` files of a recipe's runs into the paper's "noLS / LS" table.

    python -m lskd_plugins.image.results RUNS_DIR      # writes RUNS_DIR/results.{json,md}

Teachers are labelled ``teacher alpha=A``; students ``student T=T from LS|noLS teacher``; the
table has one row for the teachers and one per temperature, cells "top-1 noLS / top-1 LS".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List

STUDENT = re.compile(r"student T=([0-9.eE+-]+) from (LS|noLS) teacher")
TEACHER = re.compile(r"teacher alpha=([0-9.eE+-]+)")


def load_summaries(runs: Path) -> List[Dict[str, Any]]:
    out = []
    for path in sorted(runs.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        summary["run"] = path.parent.name
        out.append(summary)
    return out


def paper_table(summaries: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """{'teacher' | 'T=..': {'noLS': top1, 'LS': top1}} from the runs' labels."""
    table: Dict[str, Dict[str, float]] = {}
    for s in summaries:
        label = s.get("label", "")
        m = STUDENT.fullmatch(label)
        if m:
            table.setdefault(f"T={float(m.group(1)):g}", {})[m.group(2)] = s["top1"]
            continue
        m = TEACHER.fullmatch(label)
        if m:
            table.setdefault("teacher", {})["LS" if float(m.group(1)) > 0 else "noLS"] = s["top1"]
    order = sorted((k for k in table if k != "teacher"), key=lambda k: float(k[2:]))
    return {k: table[k] for k in (["teacher"] if "teacher" in table else []) + order}


def markdown(summaries: List[Dict[str, Any]], table: Dict[str, Dict[str, float]]) -> str:
    cell = lambda row, k: f"{row[k]:.2f}" if k in row else "-"  # noqa: E731
    lines = ["| | top-1 noLS teacher / LS teacher |", "|---|---|"]
    lines += [f"| {k} | {cell(row, 'noLS')} / {cell(row, 'LS')} |" for k, row in table.items()]
    lines += ["", "| run | label | model | top-1 | top-5 | NLL | ECE |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {s['run']} | {s.get('label', '')} | {s.get('model', '')} | {s['top1']:.2f} | {s['top5']:.2f} "
        f"| {s['nll']:.4f} | {s['ece']:.4f} |"
        for s in summaries
    ]
    return "\n".join(lines) + "\n"


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="collect a recipe's summary.json files into results.{json,md}")
    p.add_argument("runs", type=Path, help="folder whose sub-folders hold summary.json")
    args = p.parse_args(argv)
    summaries = load_summaries(args.runs)
    if not summaries:
        print(f"no */summary.json under {args.runs}", file=sys.stderr)
        return 1
    table = paper_table(summaries)
    md = markdown(summaries, table)
    (args.runs / "results.json").write_text(json.dumps({"table": table, "runs": summaries}, indent=2) + "\n")
    (args.runs / "results.md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
