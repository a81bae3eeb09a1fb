"""Where a study keeps its runs: one home for the file names, the run folders and the run names
(the engine, the report and ``benchmarks/cache_bleu.py`` read them from here).

    OUTPUT/runs/<modality>/<name>-<key[:10]>/
        run.json      its settings, key, spec and command (written before it starts)
        log.txt       everything it printed
        result.json   its metrics and key (written last, atomically): a run is finished when this
                      file carries its key
        train/        lskd image-train's output     seqkd/      lskd seqkd's output
        eval/         lskd bleu's output            diffusion/  lskd diffusion's output
        (fairseq-train's checkpoints lie in the run folder itself)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

RUNS_DIR = "runs"
RUN_JSON, RESULT_JSON, LOG_TXT = "run.json", "result.json", "log.txt"
TRAIN_DIR, SEQKD_DIR, EVAL_DIR, DIFFUSION_DIR = "train", "seqkd", "eval", "diffusion"
FOLDER_KEY_CHARS = 10


def number(x: float) -> str:
    """A number as it appears in run names and labels: 0.1, 2, 64."""
    return f"{x:g}"


def run_name(
    modality: str,
    role: str,
    seed: int,
    kind_prefix: str | None = None,
    teacher_smoothing: float | None = None,
    temperature: float | None = None,
    method: str | None = None,
) -> str:
    """The one place a run's name is made from its fields, e.g. ``image/logit_eps0.1_T2_s1``:
    ``<modality>/<what>[-<method>][_eps<teacher smoothing>][_T<temperature>]_s<seed index>``, what
    being the role, or for a student its kind's ``run_prefix``; the KD method is named when it is
    not the default (``kd``), so that ``word_eps0.1_T2_s0`` and ``word-dkd_eps0.1_T2_s0`` sit side by side."""
    from lskd_plugins.study.kinds import DEFAULT_METHOD

    what = kind_prefix if role == "student" and kind_prefix else role
    parts = [what if method in (None, DEFAULT_METHOD) else f"{what}-{method}"]
    if teacher_smoothing is not None:
        parts.append(f"eps{number(teacher_smoothing)}")
    if temperature is not None:
        parts.append(f"T{number(temperature)}")
    parts.append(f"s{seed}")
    return f"{modality}/" + "_".join(parts)


def short_name(name: str) -> str:
    """The name without its modality (``logit_eps0.1_T2_s1``): a label inside one modality."""
    return name.split("/", 1)[1]


def run_folder(name: str, key: str) -> str:
    """Relative to the study folder; the key is part of it, so a changed setting never meets the
    files of the old one."""
    return f"{RUNS_DIR}/{name}-{key[:FOLDER_KEY_CHARS]}"


def read_run(folder: str | Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(run.json, result.json) of one run folder."""
    folder = Path(folder)
    return json.loads((folder / RUN_JSON).read_text()), json.loads((folder / RESULT_JSON).read_text())


def finished_runs(study: str | Path, modality: str) -> Iterator[Tuple[Path, Dict[str, Any], Dict[str, Any]]]:
    """(folder, run.json, result.json) of every finished run of one modality in a study folder
    (result.json carrying the run's key), in name order; unfinished and stale folders are skipped."""
    for run_json in sorted((Path(study) / RUNS_DIR / modality).glob(f"*/{RUN_JSON}")):
        if not (run_json.parent / RESULT_JSON).is_file():
            continue
        try:
            settings, result = read_run(run_json.parent)
        except ValueError:
            continue
        if result.get("key") == settings.get("key"):
            yield run_json.parent, settings, result
