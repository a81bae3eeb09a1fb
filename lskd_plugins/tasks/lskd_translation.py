"""``--task lskd_translation``: fairseq's translation task plus an online teacher for word-level KD.

    fairseq-train DATA --user-dir lskd_plugins --task lskd_translation \\
        --teacher-path teacher.pt[:teacher2.pt...] --criterion lskd_kd ...

Where the teacher lives, and why:
- It is loaded once, in ``build_criterion`` (only fairseq-train/validate build a criterion), and
  only when the criterion needs it (``lskd_kd`` with ``--kd-alpha`` > 0). ``setup_task`` and
  ``build_model`` never touch it: they run again whenever a student checkpoint is loaded
  (fairseq-generate, ``lskd bleu``, the diffusion analysis), where the teacher is not needed.
- Its dictionaries are checked against the student's before training starts (``nmt/teacher.py``
  loads and checks it, for this task and for ``lskd cache-teacher`` alike).
- It is a plain attribute of the task, not a submodule of the model or criterion, so it never
  reaches the student's checkpoint, the optimizer or ``criterion.state_dict()``; it stays in
  eval mode without gradients and moves to the student's device and dtype (fp16/bf16 included)
  at its first use.
- Several paths separated by ':' are an ensemble, averaged in probability space by the loss.
"""

import logging
from dataclasses import dataclass, field
from typing import List, Sequence

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd_plugins.errors import LskdError
from lskd_plugins.fairseq_io import split_paths
from lskd_plugins.nmt.teacher import (  # noqa: F401  (kept importable from the task, as before)
    check_teacher_dictionaries,
    dictionary_mismatch,
    first_difference,
    load_teacher,
)
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
    teacher_cache: str = field(
        default="",
        metadata={
            "help": "a folder made by 'lskd cache-teacher' for this data-bin: distil from the "
            "teacher's cached outputs (no teacher in memory) instead of --teacher-path"
        },
    )
    teacher_data: str = field(
        default="",
        metadata={
            "help": "the teacher's data-bin (its dict.*.txt), where the path recorded in the "
            "teacher's checkpoint does not resolve from here (default: that recorded path)"
        },
    )


@register_task("lskd_translation", dataclass=LskdTranslationConfig)
class LskdTranslationTask(TranslationTask):
    cfg: LskdTranslationConfig

    def __init__(self, cfg: LskdTranslationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._teachers: List[torch.nn.Module] | None = None  # not a module: never saved
        self._teacher_placement = None
        self._cache = None  # TeacherCache of --teacher-cache
        self._cache_checked = False
        self._init_checked = False

    def build_criterion(self, cfg, from_checkpoint=False):
        check_joined_launcher()
        criterion = super().build_criterion(cfg, from_checkpoint)
        if self.cfg.teacher_path and self.cfg.teacher_cache:
            raise LskdError(
                "--teacher-path and --teacher-cache both given: distil either from the teacher "
                "(--teacher-path) or from its cache (--teacher-cache), not both"
            )
        if getattr(criterion, "needs_teacher", False):
            self._load_teacher_on_every_rank()
        elif self.cfg.teacher_path or self.cfg.teacher_cache:
            logger.warning(
                f"lskd: --teacher-path/--teacher-cache is not used by criterion {type(criterion).__name__} "
                "(lskd_kd with --kd-alpha > 0 uses it)"
            )
        return criterion

    def _load_teacher_on_every_rank(self) -> None:
        """Every rank loads its own teacher (or opens the cache); a failure on one rank, or another
        teacher on one rank, stops all of them."""
        if self.cfg.teacher_cache:
            cache = on_every_rank(self.load_cache, "opening the teacher cache")
            same_on_every_rank(
                lambda: f"teacher cache of teacher sha256 {cache.header['teacher']['sha256'][:16]}",
                "the teacher cache (--teacher-cache)",
                "give every rank the same cache folder",
            )
            return
        teachers = on_every_rank(self.load_teachers, "loading the teacher")
        same_on_every_rank(
            lambda: f"teacher sha256 {fingerprint(teachers or ())[:16]}",
            "the teacher (--teacher-path)",
            "give every rank the same teacher checkpoint",
        )

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        if update_num == 0 and not self._init_checked:
            self._init_checked = True
            self.warn_if_student_starts_as_teacher(model)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)

    def warn_if_student_starts_as_teacher(self, model: torch.nn.Module) -> None:
        """The guard of ``lskd_plugins/fingerprint.py``, before the first update (after any
        --restore-file): one warning line on rank 0 when the student's weights are a teacher's
        initial ones. fairseq's trainer has just re-seeded torch with --seed + 0, so
        ``torch.initial_seed()`` is the student's --seed."""
        from lskd_plugins import fingerprint
        from lskd_plugins.nmt.teacher import starts_from_teacher

        if not (self._teachers and fingerprint.enabled() and fingerprint.is_rank_zero()):
            return
        seed = torch.initial_seed()
        for teacher in self._teachers:
            if starts_from_teacher(model, teacher, self.src_dict, self.tgt_dict, seed):
                fingerprint.warn(teacher.lskd_origin.path, seed)

    def load_cache(self):
        """Open --teacher-cache (memory-mapped); its data is checked when the subset is loaded."""
        from lskd_plugins.nmt.teacher_cache import TeacherCache

        if self._cache is None:
            if ":" in str(self.cfg.data):
                raise LskdError("--teacher-cache needs a single data-bin (not DATA1:DATA2 epoch shards)")
            subset = getattr(self.cfg, "train_subset", "train")
            self._cache = TeacherCache(self.cfg.teacher_cache, subset if isinstance(subset, str) else "train")
            header = self._cache.header
            logger.info(
                f"lskd: teacher cache {self.cfg.teacher_cache}: {TeacherCache.describe_header(header)}, "
                f"teacher {header['teacher']['path']} (not loaded)"
            )
        return self._cache

    def use_cache(self, folder: str, subset: str) -> None:
        """Distil from a cache of ``subset`` already built (benchmarks, tests) instead of --teacher-cache."""
        from lskd_plugins.nmt.teacher_cache import TeacherCache

        self.cfg.teacher_cache = str(folder)
        self._cache, self._cache_checked = TeacherCache(folder, subset), False

    def _checked_cache(self):
        """The cache, once its data identity has been compared with the loaded subset's."""
        from lskd_plugins.nmt.teacher_cache import data_identity

        cache = self.load_cache()
        if not self._cache_checked:
            subset = cache.header["data"]["subset"]
            if subset not in self.datasets:
                self.load_dataset(subset, combine=True, epoch=1)
            identity = data_identity(
                self.cfg.data,
                subset,
                self.cfg.source_lang,
                self.cfg.target_lang,
                self.datasets[subset],
                self.tgt_dict,
            )
            cache.check_data(identity)
            self._cache_checked = True
        return cache

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
                path,
                self.src_dict,
                self.tgt_dict,
                self.cfg.source_lang,
                self.cfg.target_lang,
                self.cfg.teacher_data,
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

    def teacher_source(self, sample, student: torch.nn.Module, prefix: int = 0):
        """The teacher of ``sample`` for ``kd_loss``, its targets' first ``prefix`` columns dropped.

        Online: the teachers' decoder features (no gradients), projected to the vocabulary chunk by
        chunk inside the loss. Cached: the batch's rows of --teacher-cache, looked up by sentence
        id; at validation (student in eval mode) a cache gives None: the validation loss is then
        the label-smoothed CE alone, the cache covering the training subset only.
        """
        from lskd_plugins.kd_loss import ProjectedFeatureTeacher

        target = sample["target"][:, prefix:]
        if self.cfg.teacher_cache:
            if not student.training:
                return None
            return self._checked_cache().teacher_for(sample["id"], target, self.tgt_dict.pad(), prefix)
        teachers = self.load_teachers()
        self._place_teachers(student)
        features = []
        with torch.no_grad():
            for teacher in teachers:
                if teacher.training:
                    teacher.eval()
                x = teacher(**sample["net_input"], features_only=True)[0]
                features.append(x[:, prefix:].contiguous())
        return ProjectedFeatureTeacher(features, [t.output_layer for t in teachers], len(self.tgt_dict))
