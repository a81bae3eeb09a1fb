"""The training task: one forward pass, the study's loss, a dict of loss parts.

Written in the style of ``timm.task.LogitDistillationTask`` and reusing timm's
``DistillationTeacher`` (eval mode, no gradients, input re-normalisation), but the loss is the
shared ``lskd_plugins.kd_loss.kd_loss`` with the paper's uniform smoothing convention:

- teacher (no teacher model): ``kd_alpha = 0`` and ``label_smoothing = alpha``, i.e. cross-entropy
  against (1 - alpha) * onehot + alpha / K;
- student: ``kd_alpha`` (the weight of T^2 * D, D the KD term of ``method``: ``kd``
  KL(p_t^T || p_s^T), ``logit_std`` or ``dkd``; docs/kd_loss.md) and ``label_smoothing = eps`` for
  the (1 - kd_alpha) cross-entropy term (paper: kd_alpha = 1, eps = 0).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from timm.task import ClassificationTask, DistillationTeacher, TrainingTask
from torch import nn

from lskd_plugins.kd_loss import kd_loss


def make_teacher(
    model: nn.Module, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> DistillationTeacher:
    """Freeze ``model`` in a timm DistillationTeacher normalising with the teacher's own mean/std.

    timm's DistillationTeacher reads the normalisation from ``model.pretrained_cfg``; the model's
    config is set to the statistics it was trained with (an lskd checkpoint's data_config), so timm
    builds the right buffers itself."""
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.pretrained_cfg = {
        **(getattr(model, "pretrained_cfg", None) or {}),
        "mean": tuple(mean),
        "std": tuple(std),
    }
    return DistillationTeacher(model, device=device)


def load_teacher(args: Any, data_classes: List[str], folder, device: torch.device):
    """(DistillationTeacher, metadata) for image-train's teacher options, or (None, None) without one.

    Any classifier ``load_classifier`` reads (lskd, timm checkpoint, timm pretrained) is checked
    against the data's classes (count, and order where the teacher names them) before use."""
    from timm.data import resolve_data_config

    from lskd_plugins.image.checkpoint import check_classes, load_classifier, num_outputs

    if not (args.teacher_checkpoint or args.teacher_pretrained):
        return None, None
    loaded = load_classifier(
        args.teacher_checkpoint,
        model_name=args.teacher_model,
        num_classes=args.teacher_num_classes,
        class_file=args.teacher_class_file,
        pretrained=args.teacher_pretrained,
    )
    what = f"teacher {args.teacher_checkpoint or loaded.model_name}"
    check_classes(loaded, num_outputs(loaded.model), data_classes, what, folder)
    cfg = loaded.data_config or resolve_data_config({}, model=loaded.model)
    smoothing = (loaded.meta.get("args") or {}).get("smoothing") if loaded.source == "lskd" else None
    meta = {
        "path": str(args.teacher_checkpoint) if args.teacher_checkpoint else None,
        "model": loaded.model_name,
        "source": loaded.source,
        "smoothing": float(smoothing) if smoothing is not None else None,
        "label": loaded.meta.get("label", ""),
        "classes_named": loaded.class_names is not None,
    }
    return make_teacher(loaded.model, cfg["mean"], cfg["std"], device), meta


class LabelSmoothingKDTask(TrainingTask):
    """Cross-entropy with uniform label smoothing, plus the T^2-scaled KD term when a teacher is set
    (``method``: kd, logit_std or dkd with ``dkd_alpha``/``dkd_beta``; ``kd_loss``'s checks).

    ``forward`` returns ``loss`` (mean over the batch, for backward), ``output`` (student logits)
    and the parts of ``kd_loss`` (ce_loss, nll_loss, kd_loss, teacher_nll) as batch means too, detached,
    with ``ntokens`` (the batch size): every number a caller logs is on the loss's scale.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: DistillationTeacher | None = None,
        *,
        smoothing: float = 0.0,
        kd_alpha: float = 1.0,
        temperature: float = 1.0,
        method: str = "kd",
        dkd_alpha: float = 1.0,
        dkd_beta: float = 8.0,
        student_mean: Sequence[float] = (0.485, 0.456, 0.406),
        student_std: Sequence[float] = (0.229, 0.224, 0.225),
        device: torch.device | None = None,
    ):
        super().__init__(device=device, verbose=False)
        self.trainable_module = student
        self.teacher = teacher
        self.smoothing = float(smoothing)
        self.kd_alpha = float(kd_alpha) if teacher is not None else 0.0
        self.temperature = float(temperature)
        self.method = dict(method=method, dkd_alpha=float(dkd_alpha), dkd_beta=float(dkd_beta))
        self.register_buffer(
            "student_mean",
            torch.tensor(student_mean, dtype=torch.float32).view(1, -1, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "student_std", torch.tensor(student_std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        if teacher is not None:
            for p in teacher.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> LabelSmoothingKDTask:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    # timm's: wrap ``trainable_module`` (the student) in DDP; the frozen teacher stays local.
    prepare_distributed = ClassificationTask.prepare_distributed

    def teacher_logits(self, input: torch.Tensor) -> torch.Tensor | None:
        if self.teacher is None or self.kd_alpha == 0:
            return None
        with torch.no_grad():
            teacher_input = self.teacher.normalize_input(input, self.student_mean, self.student_std)
            return self.teacher(teacher_input.detach())

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.trainable_module(input)
        parts = kd_loss(
            logits,
            target,
            self.teacher_logits(input),
            kd_alpha=self.kd_alpha,
            temperature=self.temperature,
            label_smoothing=self.smoothing,
            scale_by_t2=True,
            smoothing_convention="uniform",
            **self.method,
        )
        n = target.numel()
        out = {k: (v.detach() if k == "ntokens" else v.detach() / n) for k, v in parts.items() if k != "loss"}
        out["loss"] = parts["loss"] / n
        out["output"] = logits
        return out
