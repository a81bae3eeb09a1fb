"""``--task lskd_translation``: fairseq's translation task plus an online teacher for word-level KD.

    fairseq-train DATA --user-dir lskd_plugins --task lskd_translation \\
        --teacher-path teacher.pt[:teacher2.pt...] --criterion lskd_kd ...

Where the teacher lives, and why:
- It is loaded once, in ``build_criterion`` (only fairseq-train/validate build a criterion), and
  only when the criterion needs it (``lskd_kd`` with ``--kd-alpha`` > 0). ``setup_task`` and
  ``build_model`` never touch it: they run again whenever a student checkpoint is loaded
  (fairseq-generate, ``lskd bleu``, the diffusion analysis), where the teacher is not needed.
- Its dictionaries are checked against the student's before training starts.
- It is a plain attribute of the task, not a submodule of the model or criterion, so it never
  reaches the student's checkpoint, the optimizer or ``criterion.state_dict()``; it stays in
  eval mode without gradients and moves to the student's device and dtype (fp16/bf16 included)
  at its first use.
- Several paths separated by ':' are an ensemble, averaged in probability space by the loss.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import List, Sequence

import torch
from fairseq import checkpoint_utils, utils
from fairseq.data import Dictionary
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd_plugins.errors import LskdError
from lskd_plugins.fairseq_io import check_readable, split_paths
from lskd_plugins.ranks import check_joined_launcher, fingerprint, on_every_rank, same_on_every_rank

logger = logging.getLogger(__name__)


@dataclass
class LskdTranslationConfig(TranslationConfig):
    teacher_path: str = field(
        default="",
        metadata={
            "help": "teacher checkpoint for word-level KD; several joined by ':' are an "
            "ensemble averaged in probability space. Loaded only by training, only when "
            "the criterion uses a teacher (lskd_kd with --kd-alpha > 0)"
        },
    )


def _show(symbol: str | None) -> str:
    return "<none>" if symbol is None else repr(symbol)


def first_difference(teacher: Sequence[str], student: Sequence[str]) -> str | None:
    """None when the symbol lists are equal, else where and how they first differ."""
    for i in range(max(len(teacher), len(student))):
        t = teacher[i] if i < len(teacher) else None
        s = student[i] if i < len(student) else None
        if t != s:
            return f"first difference at index {i}: teacher {_show(t)}, student {_show(s)}"
    return None


def dictionary_mismatch(side: str, teacher: Dictionary, student: Dictionary) -> str | None:
    """A sentence describing a mismatch of one side's dictionaries, or None when they are equal."""
    diff = first_difference(teacher.symbols, student.symbols)
    if diff is None:
        return None
    return f"{side} dictionary: teacher {len(teacher)} symbols, student {len(student)} symbols; {diff}"


def _teacher_dictionaries(task_cfg, src: str, tgt: str):
    """The teacher's own (src, tgt) dictionaries from its data-bin, or None where it is gone."""
    data = task_cfg.get("data") if hasattr(task_cfg, "get") else getattr(task_cfg, "data", None)
    if not data:
        return None
    root = utils.split_paths(data)[0]
    src = task_cfg.get("source_lang") or src
    tgt = task_cfg.get("target_lang") or tgt
    files = [os.path.join(root, f"dict.{lang}.txt") for lang in (src, tgt)]
    if not all(os.path.isfile(f) for f in files):
        return None
    return tuple(Dictionary.load(f) for f in files)


def _embedding_rows(model_state: dict, key: str) -> int | None:
    weight = model_state.get(key)
    return int(weight.size(0)) if torch.is_tensor(weight) and weight.dim() == 2 else None


def check_teacher_dictionaries(
    path: str, state: dict, src_dict: Dictionary, tgt_dict: Dictionary, src: str, tgt: str
) -> None:
    """Stop with one line when the teacher at ``path`` was trained on other dictionaries.

    Compares symbol by symbol with the teacher's own dictionaries (from the data-bin named in its
    checkpoint); where that data-bin is gone, compares the sizes of its embedding matrices.
    """
    how_to_fix = (
        "train the teacher on the student's data-bin, or binarize the student's data with "
        "fairseq-preprocess --srcdict/--tgtdict set to the teacher's dictionaries"
    )
    teacher_dicts = _teacher_dictionaries(state["cfg"]["task"], src, tgt)
    if teacher_dicts is not None:
        problems = [
            m
            for m in (
                dictionary_mismatch("source", teacher_dicts[0], src_dict),
                dictionary_mismatch("target", teacher_dicts[1], tgt_dict),
            )
            if m
        ]
    else:
        problems = []
        for side, key, student in (
            ("source", "encoder.embed_tokens.weight", src_dict),
            ("target", "decoder.embed_tokens.weight", tgt_dict),
        ):
            rows = _embedding_rows(state["model"], key)
            if rows is not None and rows != len(student):
                problems.append(
                    f"{side} dictionary: teacher {rows} symbols ({key} rows), student "
                    f"{len(student)} symbols (the teacher's data-bin is not available to "
                    "name the first differing symbol)"
                )
        if not problems:
            logger.warning(
                f"lskd: teacher {path}: its data-bin is not available; only the embedding "
                "sizes could be checked against the student's dictionaries"
            )
    if problems:
        raise LskdError(
            f"teacher {path} does not share the student's dictionaries: "
            f"{'; '.join(problems)}. Fix: {how_to_fix}"
        )


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def load_teacher(path: str, src_dict: Dictionary, tgt_dict: Dictionary, src: str, tgt: str):
    """One teacher model on CPU, eval mode, no gradients; one-line errors naming ``path``."""
    check_readable([path], "teacher checkpoint")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:
        raise LskdError(f"cannot read teacher checkpoint {path}: {_first_line(err)}") from None
    if state.get("cfg") is None or state.get("model") is None:
        raise LskdError(f"teacher checkpoint {path} is not a fairseq checkpoint (no cfg/model)")
    check_teacher_dictionaries(path, state, src_dict, tgt_dict, src, tgt)
    # Built with a plain translation task holding the student's (equal) dictionaries: no need for
    # the teacher's data-bin, and the student task's --eval-bleu generator stays the student's.
    build_task = TranslationTask(TranslationConfig(), src_dict, tgt_dict)
    try:
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], task=build_task, state=state)
    except Exception as err:
        raise LskdError(f"cannot load teacher {path}: {_first_line(err)}") from None
    teacher = models[0]
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@register_task("lskd_translation", dataclass=LskdTranslationConfig)
class LskdTranslationTask(TranslationTask):
    cfg: LskdTranslationConfig

    def __init__(self, cfg: LskdTranslationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._teachers: List[torch.nn.Module] | None = None  # not a module: never saved
        self._teacher_placement = None

    def build_criterion(self, cfg, from_checkpoint=False):
        check_joined_launcher()
        criterion = super().build_criterion(cfg, from_checkpoint)
        if getattr(criterion, "needs_teacher", False):
            # Every rank loads its own teacher; a failure on one rank, or another teacher on one
            # rank, stops all of them.
            teachers = on_every_rank(self.load_teachers, "loading the teacher")
            same_on_every_rank(
                lambda: f"teacher sha256 {fingerprint(teachers or ())[:16]}",
                "the teacher (--teacher-path)",
                "give every rank the same teacher checkpoint",
            )
        elif self.cfg.teacher_path:
            logger.warning(
                f"lskd: --teacher-path is not used by criterion {type(criterion).__name__} "
                "(lskd_kd with --kd-alpha > 0 uses it)"
            )
        return criterion

    def load_teachers(self) -> List[torch.nn.Module]:
        """Load the teacher(s) named by --teacher-path, once."""
        if self._teachers is not None:
            return self._teachers
        if not self.cfg.teacher_path:
            raise LskdError(
                "--criterion lskd_kd with --kd-alpha > 0 distils from a teacher: pass "
                "--teacher-path CKPT (several joined by ':' for an ensemble), or use "
                "--kd-alpha 0 for plain label-smoothed training"
            )
        teachers = []
        for path in split_paths(self.cfg.teacher_path):
            teacher = load_teacher(
                path, self.src_dict, self.tgt_dict, self.cfg.source_lang, self.cfg.target_lang
            )
            n_params = sum(p.numel() for p in teacher.parameters())
            logger.info(
                f"lskd: teacher {path}: {type(teacher).__name__}, {n_params} parameters "
                "(eval mode, no gradients, not saved with the student)"
            )
            teachers.append(teacher)
        self._teachers = teachers
        return teachers

    def use_teachers(self, teachers: Sequence[torch.nn.Module]) -> None:
        """Distil from teacher models already in memory (benchmarks, tests) instead of --teacher-path."""
        if not teachers:
            raise LskdError("use_teachers: no teacher models given")
        for teacher in teachers:
            teacher.eval()
            teacher.requires_grad_(False)
        self._teachers = list(teachers)
        self._teacher_placement = None

    @property
    def teachers(self) -> List[torch.nn.Module] | None:
        return self._teachers

    def _place_teachers(self, student: torch.nn.Module) -> None:
        """Move the teachers to the student's device and floating dtype (once, or when it changes)."""
        ref = next(student.parameters())
        placement = (ref.device, ref.dtype if ref.is_floating_point() else None)
        if placement == self._teacher_placement:
            return
        for teacher in self._teachers:
            teacher.to(device=placement[0], dtype=placement[1])
        self._teacher_placement = placement

    def teacher_logits(self, sample, student: torch.nn.Module) -> List[torch.Tensor]:
        """The teachers' output logits (B x L x V each) for ``sample``, without gradients."""
        teachers = self.load_teachers()
        self._place_teachers(student)
        with torch.no_grad():
            outputs = []
            for teacher in teachers:
                if teacher.training:
                    teacher.eval()
                outputs.append(teacher(**sample["net_input"])[0])
        return outputs
