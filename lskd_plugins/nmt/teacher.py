"""A fairseq translation teacher from its checkpoint: the one loader for every tool that distils.

``fairseq-train --task lskd_translation --teacher-path`` (the task), ``lskd cache-teacher`` and the
benchmarks load teachers through ``load_teacher``. It lives here, not in the task module, so that
``nmt/teacher_cache.py`` (which the task uses for ``--teacher-cache``) needs nothing of the task:
no import circle. What it checks, each problem one line naming the file:
- the file is a fairseq checkpoint (``lskd_plugins.checkpoints`` describes anything else);
- the teacher's dictionaries equal the student's, symbol by symbol (``check_teacher_dictionaries``).

Each loaded teacher carries ``lskd_origin`` (its path, saved ``--seed`` and model configuration):
``starts_from_teacher`` rebuilds its initial weights from them for the guard of
``lskd_plugins/fingerprint.py`` (a student that starts from its teacher's initial weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Sequence

import torch
from fairseq import checkpoint_utils, utils
from fairseq.data import Dictionary
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd_plugins import fingerprint as fp
from lskd_plugins import symbols
from lskd_plugins.checkpoints import first_line
from lskd_plugins.errors import LskdError
from lskd_plugins.fairseq_io import check_readable, wrong_kind_error


def first_difference(teacher: Sequence[str], student: Sequence[str]) -> str | None:
    """None when the symbol lists are equal, else where and how they first differ (symbols.py)."""
    return symbols.first_difference(teacher, student, ("teacher", "student"))


def dictionary_mismatch(side: str, teacher: Dictionary, student: Dictionary) -> str | None:
    """A sentence describing a mismatch of one side's dictionaries, or None when they are equal."""
    diff = first_difference(teacher.symbols, student.symbols)
    if diff is None:
        return None
    return f"{side} dictionary: teacher {len(teacher)} symbols, student {len(student)} symbols; {diff}"


def _candidate_roots(recorded: str, checkpoint: str, override: str) -> List[str]:
    """Where the teacher's data-bin may be: --teacher-data, the recorded path, and the recorded
    relative path resolved from the checkpoint's folder and its parents (a teacher trained in
    another working directory)."""
    if override:
        return [override]
    roots = [recorded] if recorded else []
    if recorded and not os.path.isabs(recorded):
        folder = os.path.dirname(os.path.abspath(checkpoint))
        while True:
            roots.append(os.path.join(folder, recorded))
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return roots


def _teacher_dictionaries(task_cfg, src: str, tgt: str, checkpoint: str, override: str = ""):
    """The teacher's own (src, tgt) dictionaries, or (None, places looked at)."""
    data = task_cfg.get("data") if hasattr(task_cfg, "get") else getattr(task_cfg, "data", None)
    recorded = utils.split_paths(data)[0] if data else ""
    src = (task_cfg.get("source_lang") if hasattr(task_cfg, "get") else None) or src
    tgt = (task_cfg.get("target_lang") if hasattr(task_cfg, "get") else None) or tgt
    roots = _candidate_roots(recorded, checkpoint, override)
    for root in roots:
        files = [os.path.join(root, f"dict.{lang}.txt") for lang in (src, tgt)]
        if all(os.path.isfile(f) for f in files):
            return tuple(Dictionary.load(f) for f in files), roots
    return None, roots


def check_teacher_dictionaries(
    path: str,
    state: dict,
    src_dict: Dictionary,
    tgt_dict: Dictionary,
    src: str,
    tgt: str,
    teacher_data: str = "",
) -> None:
    """Stop with one line when the teacher at ``path`` was trained on other dictionaries.

    Compares symbol by symbol with the teacher's own dictionaries (``--teacher-data``, or the
    data-bin named in its checkpoint, from here or from the checkpoint's folder). Where none is
    found the symbols cannot be compared: that is an error too (a silent size-only check would
    accept a permuted dictionary), naming the fix.
    """
    how_to_fix = (
        "train the teacher on the student's data-bin, or binarize the student's data with "
        "fairseq-preprocess --srcdict/--tgtdict set to the teacher's dictionaries"
    )
    teacher_dicts, looked = _teacher_dictionaries(state["cfg"]["task"], src, tgt, path, teacher_data)
    if teacher_dicts is None:
        where = looked[0] if looked else "(none recorded)"
        raise LskdError(
            f"teacher {path}: its dictionaries cannot be compared with the student's: no "
            f"dict.{src}.txt/dict.{tgt}.txt in its data-bin {where} (looked from here and from the "
            "checkpoint's folders); pass --teacher-data DIR naming the teacher's data-bin"
        )
    problems = [
        m
        for m in (
            dictionary_mismatch("source", teacher_dicts[0], src_dict),
            dictionary_mismatch("target", teacher_dicts[1], tgt_dict),
        )
        if m
    ]
    if problems:
        raise LskdError(
            f"teacher {path} does not share the student's dictionaries: "
            f"{'; '.join(problems)}. Fix: {how_to_fix}"
        )


def load_teacher(
    path: str, src_dict: Dictionary, tgt_dict: Dictionary, src: str, tgt: str, teacher_data: str = ""
):
    """One teacher model on CPU, eval mode, no gradients; one-line errors naming ``path``."""
    check_readable([path], "teacher checkpoint")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception:
        raise wrong_kind_error(path, "--teacher-path") from None
    if not isinstance(state, dict) or state.get("cfg") is None or state.get("model") is None:
        raise wrong_kind_error(path, "--teacher-path") from None
    check_teacher_dictionaries(path, state, src_dict, tgt_dict, src, tgt, teacher_data)
    # Built with a plain translation task holding the student's (equal) dictionaries: no need for
    # the teacher's data-bin, and the student task's --eval-bleu generator stays the student's.
    build_task = TranslationTask(TranslationConfig(), src_dict, tgt_dict)
    try:
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], task=build_task, state=state)
    except Exception as err:
        raise LskdError(f"cannot load teacher {path}: {first_line(err)}") from None
    teacher = models[0]
    teacher.eval()
    teacher.requires_grad_(False)
    teacher.lskd_origin = teacher_origin(path, state)  # a plain attribute: never saved or moved
    return teacher


@dataclass(frozen=True)
class TeacherOrigin:
    """What rebuilds a teacher's initial weights: its saved ``--seed`` and model configuration."""

    path: str
    seed: int | None
    model_cfg: Any


def teacher_origin(path: str, state: dict) -> TeacherOrigin:
    cfg = state.get("cfg") or {}
    try:
        seed = cfg["common"]["seed"]
    except (KeyError, TypeError):
        seed = None
    model_cfg = cfg.get("model") if hasattr(cfg, "get") else None
    return TeacherOrigin(str(path), None if seed is None else int(seed), model_cfg)


def initial_fingerprint(
    origin: TeacherOrigin, src_dict: Dictionary, tgt_dict: Dictionary, through: torch.dtype | None = None
) -> str | None:
    """The fingerprint of the teacher's initial weights, rebuilt as fairseq-train built them:
    ``np.random.seed(seed)`` and ``torch.manual_seed(seed)``, then the task's ``build_model`` (on the
    CPU, inside ``fp.isolated_rng``: the run's streams are untouched). None where it cannot be rebuilt."""
    if origin.seed is None or origin.model_cfg is None:
        return None
    task = TranslationTask(TranslationConfig(), src_dict, tgt_dict)
    try:
        with fp.isolated_rng(origin.seed, python_random=False):  # fairseq seeds numpy and torch only
            model = task.build_model(origin.model_cfg)
    except Exception:  # noqa: BLE001  (an architecture that cannot be built here: the fallback)
        return None
    return fp.fingerprint(model.named_parameters(), through)


def starts_from_teacher(
    student: torch.nn.Module, teacher: torch.nn.Module, src_dict, tgt_dict, student_seed: int
) -> bool:
    """Whether ``student``'s weights (before its first update) are ``teacher``'s initial ones."""
    origin = getattr(teacher, "lskd_origin", None)
    if origin is None or origin.seed is None:
        return False
    dtype = fp.parameter_dtype(student)
    through = dtype if dtype not in (None, torch.float32) else None
    rebuilt = initial_fingerprint(origin, src_dict, tgt_dict, through)
    if rebuilt is not None:
        return rebuilt == fp.fingerprint(student.named_parameters())
    return origin.seed == student_seed and fp.shapes(student.named_parameters()) == fp.shapes(
        teacher.named_parameters()
    )
