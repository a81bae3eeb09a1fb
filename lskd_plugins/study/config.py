"""The study's configuration: every key in one place (``SCHEMA``), validated before any training.

A configuration is a YAML mapping (``recipes/study/*.yaml``) or the defaults below; ``lskd study``'s
flags override it. ``load_config`` returns a plain dict with every key filled in, or stops with one
line ``lskd: error: ...`` naming the key (unknown key, impossible value, missing data path).
``docs/study.md`` is generated from nothing: it repeats ``SCHEMA``'s text, which is the reference.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from lskd_plugins.errors import LskdError

Check = Callable[[Any], bool]

KINDS = {"word", "seq", "seqword"}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_prepare(v: Any) -> bool:
    return isinstance(v, dict) and set(v) <= {"inputs", "command"} and isinstance(v.get("command"), list)


# key: (default, check, what must hold, documentation)
# the same key in both sections: a modality may fix its teachers while the other does not
SECTION_FIXED_TEACHERS = (
    None,
    lambda v: v is None or isinstance(v, bool),
    "true, false or null",
    "this modality's own fixed_teachers (null: the top-level value)",
)

TOP: Dict[str, Tuple[Any, Check, str, str]] = {
    "output": (None, lambda v: v is None or isinstance(v, str), "a folder", "study folder (--output)"),
    "seeds": (3, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", "seeds 0..n-1 (--seeds)"),
    "first_seed": (
        0,
        lambda v: isinstance(v, int) and v >= 0,
        "an integer >= 0",
        "the first seed (--first-seed)",
    ),
    "fixed_teachers": (
        False,
        lambda v: isinstance(v, bool),
        "true or false",
        "true: the teachers train once (seed 0) and only the students vary their seeds; intervals "
        "then hold the students' seed-to-seed variance only",
    ),
    "temperatures": (
        [1, 2, 3, 64],
        lambda v: isinstance(v, list) and v and all(_num(t) and t > 0 for t in v),
        "a list of numbers > 0",
        "KD temperatures T (--temps)",
    ),
    "teacher_smoothing": (
        [0.0, 0.1],
        lambda v: isinstance(v, list) and v and all(_num(a) and 0 <= a < 1 for a in v),
        "a list of numbers in [0, 1)",
        "label smoothing of the teachers; 0 is the noLS teacher every other one is compared with (--alphas)",
    ),
    "jobs": (1, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", "runs at once (--jobs)"),
    "threads_per_job": (
        0,
        lambda v: isinstance(v, int) and v >= 0,
        "an integer >= 0",
        "torch threads per run; 0: the CPU cores split between the jobs",
    ),
    "launcher": (
        "local",
        lambda v: v in ("local", "slurm", "submitit-local"),
        "local, slurm or submitit-local",
        "local: processes on this machine; slurm: one SLURM job per run through submitit; "
        "submitit-local: submitit's local executor (tests)",
    ),
    "slurm": (
        {},
        lambda v: isinstance(v, dict),
        "a mapping",
        "submitit executor parameters, e.g. {slurm_partition: gpu, gpus_per_node: 1, timeout_min: 600}",
    ),
    "device": ("auto", lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda", "device of every run"),
    "progress": (True, lambda v: isinstance(v, bool), "true or false", "the overall progress line"),
    "image": (None, lambda v: v is None or isinstance(v, dict), "a mapping", "the image study (or null)"),
    "translation": (
        None,
        lambda v: v is None or isinstance(v, dict),
        "a mapping",
        "the translation study (or null)",
    ),
}

IMAGE: Dict[str, Tuple[Any, Check, str, str]] = {
    "data": (
        "digits",
        lambda v: isinstance(v, str),
        "a path or 'digits'",
        "ImageFolder root with train/ and val/; 'digits': scikit-learn's 8x8 digits (embedded)",
    ),
    "prepare": (
        None,
        lambda v: v is None or _is_prepare(v),
        "{inputs: [...], command: [...]}",
        "a command that writes `data` when it is missing (e.g. data_prep/prepare_cifar.py); "
        "`inputs` must exist; {data} and {output} are replaced",
    ),
    "teacher_model": ("resnet10t", _str, "a timm model name", "timm model of the teachers"),
    "student_model": (
        None,
        lambda v: v is None or isinstance(v, str),
        "a timm model name",
        "timm model of the students and the no-KD baseline (default: teacher_model)",
    ),
    "fixed_teachers": SECTION_FIXED_TEACHERS,
    "teacher_init": (
        {},
        _dict,
        "a mapping smoothing -> checkpoint",
        "teachers start from these checkpoints, one per teacher smoothing (CUB: the ImageNet teachers)",
    ),
    "common": ({}, _dict, "a mapping", "lskd image-train options of every run, e.g. {img-size: 16}"),
    "teacher": ({}, _dict, "a mapping", "lskd image-train options of the teachers only"),
    "student": ({}, _dict, "a mapping", "lskd image-train options of the students and the baseline"),
    "kd_alpha": (
        1.0,
        lambda v: _num(v) and 0 < v <= 1,
        "a number in (0, 1]",
        "weight of the KD term (the paper's image recipe: 1, pure KD)",
    ),
    "student_smoothing": (
        0.0,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of the students' CE term and of the no-KD baseline",
    ),
    "diffusion": (
        {"classes": None, "per_class": 100},
        lambda v: v is False or isinstance(v, dict),
        "false or {classes, per_class}",
        "diffusion analysis of every seed's models",
    ),
}

TRANSLATION: Dict[str, Tuple[Any, Check, str, str]] = {
    "data": (
        "synth",
        _str,
        "a path or 'synth'",
        "fairseq data-bin (joined dictionary); 'synth': the embedded corpus of lskd synth-mt",
    ),
    "synth": (
        {"size": 4000, "valid": 200, "test": 200, "seed": 1},
        _dict,
        "a mapping",
        "lskd synth-mt options when data is 'synth'",
    ),
    "prepare": (
        None,
        lambda v: v is None or _is_prepare(v),
        "{inputs: [...], command: [...]}",
        "a command that writes the data-bin `data` when it is missing (lskd prepare-mt)",
    ),
    "fixed_teachers": SECTION_FIXED_TEACHERS,
    "kinds": (
        ["word", "seq", "seqword"],
        lambda v: isinstance(v, list) and set(v) <= KINDS,
        "a list of word, seq, seqword",
        "KD kinds: word-level, sequence-level, sequence + word-level ([]: teachers and baseline only)",
    ),
    "common": ({}, _dict, "a mapping", "fairseq-train options of every run"),
    "teacher": ({}, _dict, "a mapping", "fairseq-train options of the teachers only (e.g. the arch)"),
    "student": ({}, _dict, "a mapping", "fairseq-train options of the students and the baseline"),
    "kd_alpha": (0.9, lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]", "weight of the KD term"),
    "student_smoothing": (
        0.1,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of word-level students' CE term and of the no-KD baseline",
    ),
    "seq_smoothing": (
        0.0,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of sequence-level students (ordinary CE: 0)",
    ),
    "checkpoint": (
        "checkpoint_best.pt",
        _str,
        "a file name",
        "the checkpoint students distil from and BLEU scores",
    ),
    "beam": (4, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", "beam of seqkd and BLEU"),
    "max_len_b": (200, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", "longest hypothesis"),
    "decode_max_tokens": (
        4096,
        lambda v: isinstance(v, int) and v >= 1,
        "an integer >= 1",
        "tokens per decoding batch",
    ),
    "teacher_cache": (
        False,
        lambda v: isinstance(v, bool),
        "true or false",
        "word-level students of one teacher share one exact teacher cache (lskd cache-teacher)",
    ),
    "diffusion": (
        {"tokens": None, "max_sentences": 500, "per_token": 200},
        lambda v: v is False or isinstance(v, dict),
        "false or {tokens, max_sentences, per_token}",
        "diffusion analysis of every seed's teachers and word-level students",
    ),
}

SECTIONS = {"image": IMAGE, "translation": TRANSLATION}


def fill(table: Dict[str, tuple], given: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``given`` with defaults filled in; one line for an unknown key or an impossible value."""
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise LskdError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(table)}")
    out = {}
    for key, (default, check, must, _doc) in table.items():
        value = given.get(key, copy.deepcopy(default))
        if not check(value):
            raise LskdError(f"{where}{key} must be {must}, got {value!r}")
        out[key] = value
    return out


def read_yaml(path: str | os.PathLike) -> Dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise LskdError(f"configuration file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise LskdError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise LskdError(f"{p}: a study configuration is a mapping of keys, got {type(doc).__name__}")
    return doc


def load_config(doc: Dict[str, Any], where: str = "config") -> Dict[str, Any]:
    """Every key filled in and checked; the data paths of each section checked too."""
    cfg = fill(TOP, doc, f"{where}: ")
    if cfg["image"] is None and cfg["translation"] is None:
        raise LskdError(f"{where}: nothing to study: give an image and/or a translation section")
    for name, table in SECTIONS.items():
        if cfg[name] is not None:
            cfg[name] = fill(table, cfg[name], f"{where}: {name}.")
    temps = [float(t) for t in cfg["temperatures"]]
    if len(set(temps)) != len(temps):
        raise LskdError(f"{where}: temperatures repeat a value: {cfg['temperatures']}")
    cfg["temperatures"] = temps
    for name in SECTIONS:
        if cfg[name] is not None and cfg[name]["fixed_teachers"] is None:
            cfg[name]["fixed_teachers"] = cfg["fixed_teachers"]
    cfg["teacher_smoothing"] = [float(a) for a in cfg["teacher_smoothing"]]
    return cfg


def substitute(value: str, cfg: Dict[str, Any], data: str | None = None) -> str:
    return value.replace("{output}", str(cfg["output"])).replace("{data}", str(data or ""))


def check_data(cfg: Dict[str, Any], dry_run: bool) -> None:
    """A missing data path (with no ``prepare`` to make it) stops here, before any training."""
    for name, embedded in (("image", "digits"), ("translation", "synth")):
        sec = cfg[name]
        if sec is None or sec["data"] == embedded:
            continue
        data = substitute(sec["data"], cfg)
        if sec["prepare"]:
            for inp in sec["prepare"].get("inputs", []):
                inp = substitute(inp, cfg, data)
                if not dry_run and not Path(inp).exists():
                    raise LskdError(f"{name}.prepare.inputs: {inp} not found (fix the path in the config)")
            continue
        if dry_run:
            continue
        if not Path(data).is_dir():
            raise LskdError(f"{name}.data: {data} is not a folder; give the path of the prepared data")
        if name == "image" and not ((Path(data) / "train").is_dir() and (Path(data) / "val").is_dir()):
            raise LskdError(f"image.data: {data} needs train/ and val/ class folders (an ImageFolder root)")
        if name == "translation" and not list(Path(data).glob("dict.*.txt")):
            raise LskdError(f"translation.data: {data} is not a fairseq data-bin (no dict.*.txt)")


def schema_markdown() -> str:
    """The reference table of every key (docs/study.md holds a copy; a test keeps them equal)."""
    lines = []
    for title, table in (("top level", TOP), ("image:", IMAGE), ("translation:", TRANSLATION)):
        lines += [f"### {title}", "", "| key | default | meaning |", "|---|---|---|"]
        for key, (default, _c, must, doc) in table.items():
            lines.append(f"| `{key}` | `{default!r}` | {doc} ({must}) |")
        lines.append("")
    return "\n".join(lines)
