"""The study's configuration: the top-level keys (``TOP``) and each modality's section, validated
before any training.

A configuration is a YAML mapping (``recipes/study/*.yaml``) or the defaults below; ``lskd study``'s
flags override it. ``load_config`` returns a plain dict with every key filled in, or stops with one
line ``lskd: error: ...`` naming the key (unknown key, impossible value, missing data path).
Each modality's section lives with its modality (``lskd_plugins/study/modalities/<name>.py``:
``SECTION``); ``top_table`` adds one top-level key per registered modality. ``docs/study.md``
repeats ``schema_markdown()``'s text, which is the reference (a test keeps them equal).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from lskd_plugins.errors import LskdError
from lskd_plugins.strict_yaml import check_list, is_int, load_yaml
from lskd_plugins.study.cost import valid_cost
from lskd_plugins.study.messages import closest, tried
from lskd_plugins.study.seeds import MAX_INDEX

Check = Callable[[Any], bool]
METHOD_KEYS = ("kd_methods", "dkd_alpha", "dkd_beta")  # top level, and a modality's own (null: the top's)


def _methods(v: Any) -> bool:
    from lskd_plugins.study.kinds import METHODS

    return (
        isinstance(v, list) and bool(v) and len(set(map(str, v))) == len(v) and all(m in METHODS for m in v)
    )


def section_methods() -> Dict[str, Tuple[Any, Check, str, str]]:
    """A modality section's own kd_methods / dkd_alpha / dkd_beta (null: the top level's)."""
    return {
        "kd_methods": (
            None,
            lambda v: v is None or _methods(v),
            "null or a list of kd, logit_std, dkd",
            "this modality's own kd_methods (null: the top-level value)",
        ),
        "dkd_alpha": (
            None,
            lambda v: v is None or (_num(v) and v >= 0),
            "null or a number >= 0",
            "(null: top level)",
        ),
        "dkd_beta": (
            None,
            lambda v: v is None or (_num(v) and v >= 0),
            "null or a number >= 0",
            "(null: top level)",
        ),
    }


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
    "seeds": (
        3,
        lambda v: is_int(v) and v >= 1,
        "an integer >= 1",
        "number of seed indices first_seed..first_seed+n-1 (--seeds); each index and role gives a "
        "run's --seed (student i * 2^20, teacher 2^30 + i * 2^20; docs/study.md)",
    ),
    "first_seed": (
        0,
        lambda v: is_int(v) and v >= 0,
        "an integer >= 0",
        "the first seed index (--first-seed); the last index may be at most 1023",
    ),
    "fixed_teachers": (
        False,
        lambda v: isinstance(v, bool),
        "true or false",
        "true: the teachers train once (the first seed index) and only the students vary their "
        "seeds; intervals then hold the students' seed-to-seed variance only",
    ),
    "temperatures": (
        [1, 2, 3, 64],
        lambda v: isinstance(v, list) and v and all(_num(t) and t > 0 for t in v),
        "a list of numbers > 0",
        "KD temperatures T (--temps)",
    ),
    "kd_methods": (
        ["kd"],
        lambda v: _methods(v),
        "a list of kd, logit_std, dkd",
        "KD methods of the students that take a teacher's distribution (image logit KD, word, seqword; "
        "not seq): kd, logit_std (z-scored logits), dkd (decoupled KD); each modality may override",
    ),
    "dkd_alpha": (1.0, lambda v: _num(v) and v >= 0, "a number >= 0", "dkd: weight of the target-class term"),
    "dkd_beta": (8.0, lambda v: _num(v) and v >= 0, "a number >= 0", "dkd: weight of the non-target term"),
    "teacher_smoothing": (
        [0.0, 0.1],
        lambda v: isinstance(v, list) and v and all(_num(a) and 0 <= a < 1 for a in v),
        "a list of numbers in [0, 1)",
        "label smoothing of the teachers; 0 is the noLS teacher every other one is compared with "
        "(--teacher-smoothing)",
    ),
    "jobs": (1, lambda v: is_int(v) and v >= 1, "an integer >= 1", "runs at once (--jobs)"),
    "threads_per_job": (
        0,
        lambda v: is_int(v) and v >= 0,
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
    "devices_per_run": (
        1,
        lambda v: is_int(v) and v >= 1,
        "an integer >= 1",
        "devices of one run: N > 1 makes each run one distributed job (image-train under torchrun, "
        "fairseq-train --distributed-world-size N; gloo on the CPU); jobs counts runs, each on N GPUs",
    ),
    "cost": (
        {},
        valid_cost,
        "{modality: {role or KD kind: hours >= 0}}",
        "estimated GPU-hours per run, e.g. {image: {teacher: 14, logit: 24}}; --dry-run prints the runs "
        "and the GPU-hours (lskd_plugins/study/cost.py)",
    ),
}


def _modalities():
    from lskd_plugins.study import modalities

    return modalities.MODALITIES


def top_table() -> Dict[str, Tuple[Any, Check, str, str]]:
    """The top-level keys: ``TOP`` and one section per registered modality."""
    sections = {
        name: (None, lambda v: v is None or isinstance(v, dict), "a mapping", mod.doc)
        for name, mod in _modalities().items()
    }
    return {**TOP, **sections}


def fill(table: Dict[str, tuple], given: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``given`` with defaults filled in; one line for an unknown key or an impossible value."""
    unknown = sorted(set(given) - set(table))
    if unknown:
        near = closest(str(unknown[0]), table)
        hint = f" (did you mean {near!r}?)" if near else ""
        known = ", ".join(table)
        raise LskdError(f"{where.rstrip(': .')}: unknown key {unknown[0]!r}{hint}; known keys: {known}")
    out = {}
    for key, (default, check, must, _doc) in table.items():
        value = given.get(key, copy.deepcopy(default))
        if isinstance(value, list):  # no list of the study takes an empty item or a value twice
            check_list(value, f"{where}{key}")
        if not check(value):
            raise LskdError(f"{where}{key} must be {must}, got {value!r}")
        out[key] = value
    return out


def check_mapping(value: Any, spec: Dict[str, Tuple[Check, str]], where: str) -> None:
    """A mapping inside a section (``synth``, ``diffusion``): known keys only, each value as ``spec``
    (key -> (check, what must hold)) says; ``where`` is the key's dotted name."""
    if not isinstance(value, dict):
        return
    unknown = sorted(set(value) - set(spec), key=str)
    if unknown:
        raise LskdError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(spec)}")
    for key, (check, must) in spec.items():
        if key in value and not check(value[key]):
            raise LskdError(f"{where}.{key} must be {must}, got {value[key]!r}")


def read_yaml(path: str | os.PathLike) -> Dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise LskdError(f"configuration file not found: {p}")
    try:
        doc = load_yaml(p.read_text(encoding="utf-8"), str(p))  # a key given twice is refused
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
    cfg = fill(top_table(), doc, f"{where}: ")
    names = list(_modalities())
    if all(cfg[name] is None for name in names):
        raise LskdError(f"{where}: nothing to study: give a section for at least one of {', '.join(names)}")
    for name, mod in _modalities().items():
        if cfg[name] is not None:
            cfg[name] = fill(mod.section, cfg[name], f"{where}: {name}.")
            if cfg[name]["fixed_teachers"] is None:
                cfg[name]["fixed_teachers"] = cfg["fixed_teachers"]
            mod.validate(cfg[name], f"{where}: {name}.")
    cfg["temperatures"] = [float(t) for t in cfg["temperatures"]]
    cfg["teacher_smoothing"] = [float(a) for a in cfg["teacher_smoothing"]]
    resolve_methods(cfg, names, where)
    last = cfg["first_seed"] + cfg["seeds"] - 1
    if last > MAX_INDEX:
        raise LskdError(
            f"{where}: first_seed {cfg['first_seed']} + seeds {cfg['seeds']} reach seed index {last}; "
            f"the largest index is {MAX_INDEX} (seeds 2^20 apart below 2^31); lower first_seed or seeds"
        )
    if 0.0 not in cfg["teacher_smoothing"]:
        raise LskdError(
            f"{where}: teacher_smoothing {cfg['teacher_smoothing']} has no 0: 0 is the teacher every "
            "comparison is made against (LS - noLS); add 0 to the list"
        )
    return cfg


def resolve_methods(cfg: Dict[str, Any], names: List[str], where: str) -> None:
    """kd_methods, dkd_alpha, dkd_beta: a section's own, else the top level's; dkd needs a KD term."""
    for sec, what in [(cfg, ""), *((cfg[n], f"{n}.") for n in names if cfg[n] is not None)]:
        for key in METHOD_KEYS if sec is not cfg else ():
            if key in sec and sec[key] is None:
                sec[key] = cfg[key]
        if "dkd" in sec.get("kd_methods", ()) and sec["dkd_alpha"] == 0 and sec["dkd_beta"] == 0:
            raise LskdError(
                f"{where}: {what}dkd_alpha and {what}dkd_beta are both 0: dkd would have no KD term"
            )


def substitute(value: str, cfg: Dict[str, Any], data: str | None = None) -> str:
    return value.replace("{output}", str(cfg["output"])).replace("{data}", str(data or ""))


def check_data(cfg: Dict[str, Any], dry_run: bool) -> List[str]:
    """Data before any training: a missing path (with no ``prepare`` to make it), and data that
    exist but lack what the runs read (``Modality.check_data``: class folders, splits), stop here
    with one line (a teacher_init study folder: ``lskd_plugins/study/chain.py``). A dry run checks
    what exists and returns a note for each path that does not exist yet (the paper configs on a
    machine without their data), instead of an error."""
    from lskd_plugins.study.modalities.base import PREPARED_STAMP

    notes: List[str] = []

    def absent(what: str, path: str, fix: str) -> None:
        if not dry_run:
            raise LskdError(f"{what}: {tried(path)} not found ({fix})")
        notes.append(f"{what}: {path} does not exist yet; not checked")

    for name, mod in _modalities().items():
        sec = cfg[name]
        if sec is None:
            continue
        init = sec.get("teacher_init") or {}
        for smoothing, path in init.items() if isinstance(init, dict) and not dry_run else ():
            path = substitute(str(path), cfg)  # before anything is written (a dry run: chain.py notes it)
            if not Path(path).is_file():
                absent(f"{name}.teacher_init {smoothing}", path, "give the teacher's checkpoint file")
        if sec["data"] == mod.embedded:
            continue
        data = substitute(sec["data"], cfg)
        if sec["prepare"]:
            for inp in sec["prepare"].get("inputs", []):
                inp = substitute(inp, cfg, data)
                if not Path(inp).exists():
                    absent(f"{name}.prepare.inputs", inp, "fix the path in the config")
            if not Path(data, PREPARED_STAMP).is_file():
                notes.append(f"{name}.data: {data} is made by {name}.prepare first; checked after that")
                continue
        elif not Path(data).exists():
            absent(f"{name}.data", data, "give the path of the prepared data")
            continue
        if not Path(data).is_dir():
            raise LskdError(f"{name}.data: {tried(data)} is not a folder; give the path of the prepared data")
        mod.check_data(data)
    return notes


def check_runnable(cfg: Dict[str, Any], where: str) -> None:
    """What the runs need that building the grid does not (a translation model's ``arch``): one line
    before any run's options are parsed, after the data checks (``where``: the config file)."""
    if cfg.get("translation") is not None:
        from lskd_plugins.study.modalities.translation import check_arch

        check_arch(cfg["translation"], f"{where}: translation")


def schema_markdown() -> str:
    """The reference table of every key (docs/study.md holds a copy; a test keeps them equal)."""
    lines = []
    tables = [("top level", top_table())]
    tables += [(f"{name}:", mod.section) for name, mod in _modalities().items()]
    for title, table in tables:
        lines += [f"### {title}", "", "| key | default | meaning |", "|---|---|---|"]
        for key, (default, _c, must, doc) in table.items():
            lines.append(f"| `{key}` | `{default!r}` | {doc} ({must}) |")
        lines.append("")
    return "\n".join(lines)
