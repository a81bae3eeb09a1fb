"""Teachers that start from other teachers (``image.teacher_init``): the CUB chain of the paper.

``teacher_init`` is either

- a study folder (``runs/paper_imagenet``: the ImageNet study's output): each teacher starts from
  that study's finished teacher of the same label smoothing and the same seed index (the i-th
  teacher seed here reads the i-th teacher seed there; a study of fixed teachers has one, read by
  all), its ``train/checkpoint_last.pth``; or
- a mapping teacher smoothing -> checkpoint file (one checkpoint for every seed).

The checkpoint's content (SHA-256) enters the teacher's key, never its path: a retrained ImageNet
teacher gives new CUB keys, the same file elsewhere the same ones. A missing or unfinished teacher
stops the study with one line before any training (a dry run notes it and goes on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from lskd_plugins.errors import LskdError
from lskd_plugins.study import layout

NOT_HASHED = "not hashed (dry run)"
_HASHES: Dict[Tuple[str, int, int], str] = {}
_NOTED: set = set()  # a dry run's notes, each printed once


def checkpoint_sha256(path: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) within this process."""
    from lskd_plugins.study.keys import file_sha256

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def study_teachers(folder: Path, modality: str = "image") -> Dict[float, Dict[int, Path]]:
    """smoothing -> {seed: checkpoint} of the finished teachers in a study folder (the newest
    finished run where several runs of one smoothing and seed are finished)."""
    found: Dict[float, Dict[int, Tuple[float, Path]]] = {}
    for run_dir, settings, _ in layout.finished_runs(folder, modality):
        if settings.get("role") != "teacher":
            continue
        smoothing = settings.get("teacher_smoothing", settings.get("alpha"))
        ckpt = run_dir / layout.TRAIN_DIR / "checkpoint_last.pth"
        if smoothing is None or not ckpt.is_file():
            continue
        when = (run_dir / layout.RESULT_JSON).stat().st_mtime
        seeds = found.setdefault(float(smoothing), {})
        seed = int(settings.get("seed_index", settings["seed"]))  # the index (run.json: seed is the --seed)
        if seed not in seeds or seeds[seed][0] < when:
            seeds[seed] = (when, ckpt)
    return {a: {s: p for s, (_, p) in sorted(seeds.items())} for a, seeds in found.items()}


def from_study(folder: str, smoothing: float, index: int, where: str) -> Path:
    """The checkpoint of the teacher of ``smoothing`` and seed index ``index`` in a study folder."""
    if not (Path(folder) / layout.RUNS_DIR).is_dir():
        raise LskdError(
            f"{where}: {folder} is not a study folder (no {layout.RUNS_DIR}/); run that study first "
            "(e.g. lskd study recipes/study/paper_imagenet.yaml) or name its output folder"
        )
    seeds = study_teachers(Path(folder)).get(float(smoothing), {})
    if not seeds:
        raise LskdError(
            f"{where}: {folder} has no finished teacher of label smoothing {smoothing:g} "
            f"(unfinished or missing); finish that study's teachers first (rerun it: it resumes)"
        )
    ordered: List[Path] = list(seeds.values())
    if len(ordered) == 1:
        return ordered[0]
    if index >= len(ordered):
        raise LskdError(
            f"{where}: {folder} has finished teachers of label smoothing {smoothing:g} for seeds "
            f"{', '.join(map(str, seeds))} only; teacher seed index {index} needs one more "
            "(run more seeds there, or fewer here)"
        )
    return ordered[index]


def teacher_start(sec: Dict[str, Any], smoothing: float, index: int, where: str = "image.teacher_init"):
    """The checkpoint a teacher of ``smoothing`` and seed index ``index`` starts from, or None."""
    init = sec.get("teacher_init")
    if not init:
        return None
    if isinstance(init, str):
        return from_study(init, smoothing, index, where)
    for key, path in init.items():
        if float(key) == float(smoothing):
            if not Path(path).is_file():
                raise LskdError(f"{where} {key}: {path} not found (give the teacher's checkpoint file)")
            return Path(path)
    return None


def start_spec(sec: Dict[str, Any], smoothing: float, index: int, dry_run: bool) -> Dict[str, Any]:
    """What a teacher's key records of its start: ``{"init_sha256": ...}`` (nothing without one)."""
    if not sec.get("teacher_init"):
        return {}
    try:
        path = teacher_start(sec, smoothing, index)
    except LskdError as err:
        if not dry_run:
            raise
        if err.message not in _NOTED:
            _NOTED.add(err.message)
            print(f"study (dry run): note: {err.message}; not checked", flush=True)
        return {"init_sha256": NOT_HASHED}
    return {} if path is None else {"init_sha256": NOT_HASHED if dry_run else checkpoint_sha256(path)}


def describe(path: Path) -> str:
    """One line naming the ImageNet run a checkpoint came from (for logs)."""
    run_json = path.parent.parent / layout.RUN_JSON
    if run_json.is_file():
        settings = json.loads(run_json.read_text())
        return f"{settings.get('name')} (key {settings.get('key')})"
    return str(path)
