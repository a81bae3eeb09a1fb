"""``--criterion lskd_kd``: word-level knowledge distillation for fairseq translation students.

Per non-padding target token:

    (1 - kd_alpha) * LS-CE_eps(y, p_s) + kd_alpha * T^2 * KL(p_t^T || p_s^T)

The math is ``lskd_plugins.kd_loss.kd_loss`` with fairseq's smoothing convention (true class
1 - eps, the others eps / (V - 1)), so ``--kd-alpha 0`` is fairseq's
``label_smoothed_cross_entropy`` bit for bit and needs no teacher. The teacher's logits come from
the task (``lskd_translation``), which owns the teacher outside this module's parameters: the
teacher is never in the student's checkpoint, optimizer or ``criterion.state_dict()``.

Logged (base 2, like fairseq's own losses): ``loss``, ``nll_loss`` (student NLL per token),
``ce_loss`` (the label-smoothed CE part per token), ``kd_loss`` (the KL term per token, without
the T^2 factor), ``teacher_nll_loss`` (teacher NLL per token at T = 1), ``ppl``, ``teacher_ppl``.
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from lskd_plugins.errors import LskdError
from lskd_plugins.kd_loss import kd_loss


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
    report_accuracy: bool = field(default=False, metadata={"help": "report accuracy metric"})
    ignore_prefix_size: int = field(default=0, metadata={"help": "Ignore first N tokens"})
    sentence_avg: bool = II("optimization.sentence_avg")


def check_kd_options(kd_alpha: float, kd_temperature: float, label_smoothing: float) -> None:
    """One-line errors for out-of-range options (before any training starts)."""
    if not 0.0 <= kd_alpha <= 1.0:
        raise LskdError(f"--kd-alpha must lie in [0, 1], got {kd_alpha}")
    if not kd_temperature > 0:
        raise LskdError(f"--kd-temperature must be > 0, got {kd_temperature}")
    if not 0.0 <= label_smoothing < 1.0:
        raise LskdError(f"--label-smoothing must lie in [0, 1), got {label_smoothing}")


@register_criterion("lskd_kd", dataclass=LskdKdConfig)
class LskdKdCriterion(FairseqCriterion):
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
    ):
        super().__init__(task)
        check_kd_options(kd_alpha, kd_temperature, label_smoothing)
        self.sentence_avg = sentence_avg
        self.kd_alpha = float(kd_alpha)
        self.temperature = float(kd_temperature)
        self.eps = float(label_smoothing)
        self.scale_by_t2 = not no_kd_t2_scaling
        self.ignore_prefix_size = ignore_prefix_size
        self.report_accuracy = report_accuracy
        if self.needs_teacher and not callable(getattr(task, "teacher_logits", None)):
            raise LskdError(
                f"--criterion lskd_kd with --kd-alpha {kd_alpha} needs a teacher: use "
                "--task lskd_translation --teacher-path CKPT (or --kd-alpha 0 for plain "
                "label-smoothed training)"
            )

    @property
    def needs_teacher(self) -> bool:
        return self.kd_alpha > 0

    def _strip_prefix(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.ignore_prefix_size :].contiguous() if self.ignore_prefix_size > 0 else x

    def forward(self, model, sample, reduce=True):
        """Returns (loss, sample_size, logging_output) like every fairseq criterion."""
        if not reduce:
            raise NotImplementedError("lskd_kd returns summed losses only (reduce=True)")
        net_output = model(**sample["net_input"])
        logits = self._strip_prefix(net_output[0])
        target = self._strip_prefix(model.get_targets(sample, net_output))
        teacher = None
        if self.needs_teacher:
            teacher = [self._strip_prefix(z) for z in self.task.teacher_logits(sample, model)]
            if teacher[0].shape != logits.shape:
                raise LskdError(
                    f"teacher output {tuple(teacher[0].shape)} does not match the student's "
                    f"{tuple(logits.shape)}: teacher and student must share the target dictionary"
                )
        parts = kd_loss(
            logits,
            target,
            teacher,
            kd_alpha=self.kd_alpha,
            temperature=self.temperature,
            label_smoothing=self.eps,
            ignore_index=self.padding_idx,
            scale_by_t2=self.scale_by_t2,
            smoothing_convention="fairseq",
        )
        loss = parts["loss"]
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "nll_loss": parts["nll_loss"].data,
            "ce_loss": parts["ce_loss"].data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if teacher is not None:
            logging_output["kd_loss"] = parts["kd_loss"].data
            logging_output["teacher_nll_loss"] = parts["teacher_nll"].data
        if self.report_accuracy:
            mask = target.ne(self.padding_idx)
            n_correct = logits.argmax(-1).masked_select(mask).eq(target.masked_select(mask)).sum()
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(mask.sum().data)
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
