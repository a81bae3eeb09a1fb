"""``--criterion lskd_kd``: word-level knowledge distillation for fairseq translation students.

Per non-padding target token:

    (1 - kd_alpha) * LS-CE_eps(y, p_s) + kd_alpha * T^2 * D

with D of ``--kd-method``: ``kd`` KL(p_t^T || p_s^T) (default), ``logit_std`` the same KL of the
z-scored logits, ``dkd`` dkd_alpha * KL(b_t || b_s) + dkd_beta * KL(n_t || n_s) (``--dkd-alpha``,
``--dkd-beta``; docs/kd_loss.md).

The math is ``lskd_plugins.kd_loss.kd_loss`` with fairseq's smoothing convention (true class
1 - eps, the others eps / (V - 1)), so ``--kd-alpha 0`` is fairseq's
``label_smoothed_cross_entropy`` bit for bit and needs no teacher. The teacher's logits come from
the task (``lskd_translation``), which owns the teacher outside this module's parameters: the
teacher is never in the student's checkpoint, optimizer or ``criterion.state_dict()``.

Logged (base 2, like fairseq's own losses): ``loss``, ``nll_loss`` (student NLL per token),
``ce_loss`` (the label-smoothed CE part per token), ``kd_loss`` (the KD term D per token, without
the T^2 factor), ``teacher_nll_loss`` (teacher NLL per token at T = 1), ``ppl``, ``teacher_ppl``.
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from lskd_plugins.errors import LskdError
from lskd_plugins.kd_loss import check_method_flags, describe_method, kd_loss, kd_loss_per_position

logger = logging.getLogger(__name__)


@dataclass
class LskdKdConfig(FairseqDataclass):
    kd_alpha: float = field(
        default=0.9,
        metadata={
            "help": "weight of the KD term (the paper's NMT recipe: 0.9); 0 = plain "
            "label-smoothed cross-entropy, no teacher needed; 1 = KD term only"
        },
    )
    kd_temperature: float = field(
        default=1.0, metadata={"help": "distillation temperature T (> 0); the paper's advice: T = 1"}
    )
    label_smoothing: float = field(
        default=0.1,
        metadata={"help": "the student's own label-smoothing eps in the CE term (fairseq convention)"},
    )
    no_kd_t2_scaling: bool = field(default=False, metadata={"help": "do not multiply the KD term by T^2"})
    kd_method: str = field(
        default="kd",
        metadata={
            "help": "the KD term {kd,logit_std,dkd}: kd = KL at T; logit_std = KL of z-scored logits "
            "(Sun et al. 2024); dkd = decoupled KD (Zhao et al. 2022) with --dkd-alpha/--dkd-beta"
        },
    )
    dkd_alpha: Optional[float] = field(  # noqa: UP045 (fairseq reads typing.Optional, not X | None)
        default=None,
        metadata={"help": "--kd-method dkd: weight of the target-class KL (default 1.0)"},
    )
    dkd_beta: Optional[float] = field(  # noqa: UP045
        default=None,
        metadata={"help": "--kd-method dkd: weight of the non-target KL (default 8.0)"},
    )
    report_accuracy: bool = field(default=False, metadata={"help": "report accuracy metric"})
    ignore_prefix_size: int = field(default=0, metadata={"help": "Ignore first N tokens"})
    sentence_avg: bool = II("optimization.sentence_avg")


def check_kd_options(
    kd_alpha: float, kd_temperature: float, label_smoothing: float, ignore_prefix_size: int = 0
):
    """One-line errors for out-of-range options (before any training starts); NaN fails every test."""
    if not 0.0 <= kd_alpha <= 1.0:
        raise LskdError(f"--kd-alpha must lie in [0, 1], got {kd_alpha}")
    if not (kd_temperature > 0 and math.isfinite(kd_temperature)):
        raise LskdError(f"--kd-temperature must be a finite number > 0, got {kd_temperature}")
    if not 0.0 <= label_smoothing < 1.0:
        raise LskdError(f"--label-smoothing must lie in [0, 1), got {label_smoothing}")
    if not ignore_prefix_size >= 0:
        raise LskdError(f"--ignore-prefix-size must be >= 0, got {ignore_prefix_size}")


def refuse_topk_cache(task, kd_method: str) -> None:
    """logit_std and dkd need the teacher's logits: a --teacher-cache of the top-k store has none."""
    folder = getattr(getattr(task, "cfg", None), "teacher_cache", None)
    if kd_method != "kd" and folder:
        from lskd_plugins.nmt.teacher_cache import refuse_method

        refuse_method(folder, kd_method)


@register_criterion("lskd_kd", dataclass=LskdKdConfig)
class LskdKdCriterion(FairseqCriterion):
    """fairseq's criterion shape: ``forward`` = model call + ``compute_loss`` + ``compute_accuracy``.

    Subclasses override the pieces: ``get_logits_and_target`` (what is compared),
    ``get_teacher`` (where the teacher's distribution comes from), ``compute_loss`` (the loss parts)
    or ``compute_accuracy``. ``get_lprobs_and_target`` is fairseq's usual hook (log-probs at T=1).
    """

    def __init__(
        self,
        task,
        sentence_avg,
        kd_alpha=0.9,
        kd_temperature=1.0,
        label_smoothing=0.1,
        no_kd_t2_scaling=False,
        ignore_prefix_size=0,
        report_accuracy=False,
        kd_method="kd",
        dkd_alpha=None,
        dkd_beta=None,
    ):
        super().__init__(task)
        check_kd_options(kd_alpha, kd_temperature, label_smoothing, ignore_prefix_size)
        self.method = check_method_flags(kd_method, dkd_alpha, dkd_beta)
        self.sentence_avg = sentence_avg
        self.kd_alpha = float(kd_alpha)
        self.temperature = float(kd_temperature)
        self.eps = float(label_smoothing)
        self.scale_by_t2 = not no_kd_t2_scaling
        self.ignore_prefix_size = ignore_prefix_size
        self.report_accuracy = report_accuracy
        if self.needs_teacher and not callable(getattr(task, "teacher_source", None)):
            raise LskdError(
                f"--criterion lskd_kd with --kd-alpha {kd_alpha} needs a teacher: use "
                "--task lskd_translation --teacher-path CKPT (or --teacher-cache DIR, or --kd-alpha 0 "
                "for plain label-smoothed training)"
            )
        if self.needs_teacher:
            refuse_topk_cache(task, kd_method)
            logger.info(f"lskd_kd: {describe_method(self.method)}, kd_alpha {kd_alpha}, T {kd_temperature}")

    @property
    def needs_teacher(self) -> bool:
        return self.kd_alpha > 0

    def _strip_prefix(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.ignore_prefix_size :].contiguous() if self.ignore_prefix_size > 0 else x

    def get_logits_and_target(self, model, net_output, sample):
        """(B x L x V student logits, B x L target) with the ignored prefix removed."""
        logits = self._strip_prefix(net_output[0])
        return logits, self._strip_prefix(model.get_targets(sample, net_output))

    def get_lprobs_and_target(self, model, net_output, sample):
        """fairseq's hook: flat (N x V) student log-probs at T = 1 and flat target."""
        logits, target = self.get_logits_and_target(model, net_output, sample)
        lprobs = model.get_normalized_probs((logits,) + tuple(net_output[1:]), log_probs=True)
        return lprobs.view(-1, lprobs.size(-1)), target.view(-1)

    def get_teacher(self, model, sample):
        """The teacher's distribution for ``sample`` (a kd_loss TeacherSource), or None."""
        if not self.needs_teacher:
            return None
        return self.task.teacher_source(sample, model, self.ignore_prefix_size)

    def compute_loss(self, model, net_output, sample, reduce=True):
        """The kd_loss parts: scalars summed over tokens, or per token (B*L,) when not ``reduce``;
        plus ``with_teacher`` (False where no teacher distribution was available: CE only)."""
        logits, target = self.get_logits_and_target(model, net_output, sample)
        teacher = self.get_teacher(model, sample)
        loss_fn = kd_loss if reduce else kd_loss_per_position
        parts = loss_fn(
            logits,
            target,
            teacher,
            kd_alpha=self.kd_alpha if teacher is not None else 0.0,
            temperature=self.temperature,
            label_smoothing=self.eps,
            ignore_index=self.padding_idx,
            scale_by_t2=self.scale_by_t2,
            smoothing_convention="fairseq",
            **self.method,
        )
        parts["with_teacher"] = teacher is not None
        return parts

    def compute_accuracy(self, model, net_output, sample):
        """(n_correct, total) of the argmax over non-padding target tokens."""
        logits, target = self.get_logits_and_target(model, net_output, sample)
        mask = target.ne(self.padding_idx)
        n_correct = logits.argmax(-1).masked_select(mask).eq(target.masked_select(mask)).sum()
        return n_correct, mask.sum()

    def forward(self, model, sample, reduce=True):
        """Returns (loss, sample_size, logging_output) like every fairseq criterion.

        With ``reduce=False`` the loss is per target token (B*L,), zero at padding, and the
        logged parts are their sums.
        """
        net_output = model(**sample["net_input"])
        parts = self.compute_loss(model, net_output, sample, reduce=reduce)
        loss = parts["loss"]
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data.sum(),
            "nll_loss": parts["nll_loss"].data.sum(),
            "ce_loss": parts["ce_loss"].data.sum(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if parts["with_teacher"]:
            logging_output["kd_loss"] = parts["kd_loss"].data.sum()
            logging_output["teacher_nll_loss"] = parts["teacher_nll"].data.sum()
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """Aggregate logging outputs (base 2, per token; ``loss`` per sample_size like fairseq)."""

        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        ntokens = total("ntokens")
        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        metrics.log_scalar("ce_loss", total("ce_loss") / ntokens / math.log(2), ntokens, round=3)
        if any("kd_loss" in log for log in logging_outputs):
            metrics.log_scalar("kd_loss", total("kd_loss") / ntokens / math.log(2), ntokens, round=4)
            metrics.log_scalar(
                "teacher_nll_loss", total("teacher_nll_loss") / ntokens / math.log(2), ntokens, round=3
            )
            metrics.log_derived(
                "teacher_ppl", lambda meters: utils.get_perplexity(meters["teacher_nll_loss"].avg)
            )
        n_total = utils.item(total("total"))
        if n_total > 0:
            metrics.log_scalar("total", n_total)
            metrics.log_scalar("n_correct", utils.item(total("n_correct")))
            metrics.log_derived(
                "accuracy",
                lambda meters: (
                    round(meters["n_correct"].sum * 100.0 / meters["total"].sum, 3)
                    if meters["total"].sum > 0
                    else float("nan")
                ),
            )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
