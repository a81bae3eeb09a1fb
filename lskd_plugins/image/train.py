"""``lskd image-train``: train an LS teacher or a KD student with timm, on CPU, one GPU or many.

Teacher:  ``lskd image-train --data D --model resnet50 --smoothing 0.1 --output runs/t_ls``
Student:  ``lskd image-train --data D --model resnet18 --teacher-checkpoint runs/t_ls/checkpoint_best.pth
           --kd-temperature 3 --output runs/s_ls_T3``
Several GPUs: ``torchrun --nproc_per_node=N --no-python lskd image-train ...`` (``--batch-size``
is per process). The loss is ``lskd_plugins.kd_loss.kd_loss`` (uniform smoothing convention) via
``LabelSmoothingKDTask``; models, transforms, optimiser and schedule come from timm's factories.

Files in ``--output``: ``checkpoint_last.pth`` (every epoch, with the training state),
``checkpoint_best.pth`` (best val top-1, weights only), ``metrics.csv`` (one row per epoch) and,
when the run is complete, ``summary.json`` (final-epoch val metrics, label and arguments).
Every epoch re-seeds all random generators from (seed, epoch, rank), so a run killed at any point
and restarted with ``--resume`` ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from lskd_plugins.errors import LskdError
from lskd_plugins.files import torch_save_atomic, write_text_atomic
from lskd_plugins.image import data as image_data
from lskd_plugins.image import distributed as dist_utils
from lskd_plugins.image.checkpoint import FORMAT, load_model, read_checkpoint
from lskd_plugins.image.evaluate import autocast, evaluate
from lskd_plugins.image.task import LabelSmoothingKDTask, make_teacher

LAST, BEST, SUMMARY, METRICS = "checkpoint_last.pth", "checkpoint_best.pth", "summary.json", "metrics.csv"
SCHEDULES = ("step", "cosine", "multistep", "constant", "none")
# Arguments that may differ between a run and its resumption without changing the result.
RESUME_FREE_ARGS = {"resume", "workers", "device", "stop_after", "output", "data", "quiet"}
# ... of which these change the augmentation's random stream (workers draw their own seeds).
RESUME_RANDOMNESS_ARGS = {"workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data and model")
    g.add_argument(
        "--data", required=True, help="ImageFolder root with train/ and val/ (one folder per class)"
    )
    g.add_argument("--output", required=True, help="run folder: checkpoints, metrics.csv, summary.json")
    g.add_argument("--model", default="resnet18", help="timm model name (default: resnet18)")
    g.add_argument("--img-size", type=int, default=None, help="input size (default: the model's, e.g. 224)")
    g.add_argument(
        "--crop-pct",
        type=float,
        default=None,
        help="eval centre-crop fraction (default: 0.875 for --aug imagenet/cub, else 1.0)",
    )
    g.add_argument(
        "--aug",
        choices=image_data.AUG_PRESETS,
        default="imagenet",
        help="training augmentation preset (default: imagenet); see docs/image.md",
    )
    g.add_argument(
        "--pretrained",
        action="store_true",
        help="start from timm's pretrained weights (needs them cached or internet)",
    )
    g.add_argument(
        "--pretrained-checkpoint",
        default=None,
        help="initialise from a file: an lskd checkpoint, a timm/torchvision state_dict or "
        ".safetensors; a classifier of another size is re-initialised",
    )
    g.add_argument("--limit-train", type=int, default=None, help="use a strided subset of N training images")
    g.add_argument("--limit-val", type=int, default=None, help="use a strided subset of N val images")

    g = parser.add_argument_group("optimisation (defaults: the paper's ImageNet teacher)")
    g.add_argument("--epochs", type=int, default=90)
    g.add_argument("--batch-size", type=int, default=256, help="images per process and step")
    g.add_argument(
        "--opt",
        default="momentum",
        help="timm optimiser name (default: momentum = SGD with momentum, no Nesterov)",
    )
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument(
        "--weight-decay", type=float, default=1e-4, help="applied to all parameters, as in the paper"
    )
    g.add_argument(
        "--sched",
        choices=SCHEDULES,
        default="step",
        help="timm schedule: step (x decay-rate every decay-epochs), cosine, ... (default: step)",
    )
    g.add_argument("--decay-epochs", type=float, default=30, help="step: epochs between decays (default 30)")
    g.add_argument("--decay-milestones", type=int, nargs="+", default=[30, 60, 90], help="multistep epochs")
    g.add_argument("--decay-rate", type=float, default=0.1)
    g.add_argument("--warmup-epochs", type=int, default=0, help="linear warm-up epochs (paper's students: 5)")
    g.add_argument("--warmup-lr", type=float, default=1e-5, help="learning rate at the start of the warm-up")
    g.add_argument("--min-lr", type=float, default=0.0, help="cosine: final learning rate")
    g.add_argument(
        "--amp", action="store_true", help="mixed precision (float16 + grad scaling on GPU, bfloat16 on CPU)"
    )
    g.add_argument("--seed", type=int, default=0)

    g = parser.add_argument_group("label smoothing and distillation")
    g.add_argument(
        "--smoothing",
        type=float,
        default=0.0,
        help="label smoothing: the teacher's alpha, or the student's eps on its CE term "
        "(target (1-a)*onehot + a/K)",
    )
    g.add_argument(
        "--teacher-checkpoint",
        default=None,
        help="distil from this lskd checkpoint (its own file names its model and classes)",
    )
    g.add_argument("--kd-temperature", type=float, default=1.0, help="KD temperature T (default 1)")
    g.add_argument(
        "--kd-beta",
        type=float,
        default=1.0,
        help="weight of T^2*KL; 1 - beta goes to cross-entropy with --smoothing (default 1: pure KD)",
    )

    g = parser.add_argument_group("running")
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue from OUTPUT/checkpoint_last.pth (or the given file); starts fresh if absent",
    )
    g.add_argument("--workers", type=int, default=4, help="data-loader processes per rank (0: in-process)")
    g.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda")
    g.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="stop after N epochs of this invocation (time-limited jobs; rerun with --resume)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- small pure helpers
def role_label(smoothing: float, teacher_smoothing: float | None, temperature: float) -> str:
    """'teacher alpha=0.1' or 'student T=3 from LS teacher' (LS: the teacher's alpha > 0)."""
    if teacher_smoothing is None:
        return f"teacher alpha={smoothing:g}"
    kind = "LS" if teacher_smoothing > 0 else "noLS"
    return f"student T={temperature:g} from {kind} teacher"


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of every generator at the start of ``epoch`` on ``rank`` (distinct, reproducible)."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def json_args(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command" and not callable(v)
    }


def create_student(
    model_name: str, num_classes: int, pretrained: bool, img_size: int | None
) -> Tuple[nn.Module, Dict[str, Any]]:
    """timm model and the extra create_model arguments it needs again when rebuilt from a checkpoint.

    Models with a fixed input size (ViTs) are rebuilt for ``--img-size``; CNNs take any size.
    """
    import timm

    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('.')[0][:6]}*")[:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise LskdError(f"--model {model_name!r} is not a timm model{hint}")

    def build(**kwargs):
        try:
            return timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes, **kwargs)
        except Exception as err:
            if not pretrained:
                raise
            raise LskdError(
                f"--pretrained: cannot load timm's weights for {model_name} ({type(err).__name__}: {err}); "
                "without internet pass a weights file with --pretrained-checkpoint FILE"
            ) from None

    model = build()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if img_size and cfg.get("fixed_input_size") and tuple(cfg.get("input_size", ()))[-1:] != (img_size,):
        kwargs = {"img_size": img_size}
        return build(**kwargs), kwargs
    return model, {}


def classifier_prefixes(model: nn.Module) -> List[str]:
    names = model.pretrained_cfg.get("classifier", "fc") if hasattr(model, "pretrained_cfg") else "fc"
    return [names] if isinstance(names, str) else list(names)


def load_initial_weights(model: nn.Module, path: str) -> str:
    """Copy weights from ``path`` into ``model``; a classifier of another shape is left fresh.

    Returns a one-line description; raises LskdError when other parameters are missing or mismatched.
    """
    import timm

    p = Path(path)
    if not p.is_file():
        raise LskdError(f"--pretrained-checkpoint {path}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False) if p.suffix != ".safetensors" else None
    except Exception as err:
        raise LskdError(
            f"--pretrained-checkpoint {path}: cannot read it ({type(err).__name__}: {err})"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = obj["state_dict"]
    else:
        try:
            state = timm.models.load_state_dict(str(p), use_ema=True, weights_only=False)
        except Exception as err:
            raise LskdError(
                f"--pretrained-checkpoint {path}: no state_dict in it ({type(err).__name__}: {err})"
            ) from None
    own = model.state_dict()
    heads = classifier_prefixes(model)
    is_head = lambda k: any(k == h or k.startswith(h + ".") for h in heads)  # noqa: E731
    dropped = [k for k, v in state.items() if is_head(k) and (k not in own or own[k].shape != v.shape)]
    state = {k: v for k, v in state.items() if k not in dropped}
    bad_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad_shape:
        raise LskdError(
            f"--pretrained-checkpoint {path} does not fit the model: shape mismatch in "
            f"{', '.join(bad_shape[:4])}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not is_head(k)]
    if missing or unexpected:
        raise LskdError(
            f"--pretrained-checkpoint {path} is for another architecture "
            f"(missing: {', '.join(missing[:4]) or '-'}; unexpected: {', '.join(unexpected[:4]) or '-'})"
        )
    return f"initialised from {path}" + (" (classifier re-initialised)" if dropped else "")


def write_metrics_csv(path: Path, history: List[Dict[str, Any]]) -> None:
    if not history:
        return
    fields = list(history[0].keys())
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def check_args(args: argparse.Namespace) -> None:
    if args.epochs < 1:
        raise LskdError(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch_size < 1:
        raise LskdError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0.0 <= args.smoothing < 1.0:
        raise LskdError(f"--smoothing must lie in [0, 1), got {args.smoothing}")
    if not args.kd_temperature > 0:
        raise LskdError(f"--kd-temperature must be > 0, got {args.kd_temperature}")
    if not 0.0 <= args.kd_beta <= 1.0:
        raise LskdError(f"--kd-beta must lie in [0, 1], got {args.kd_beta}")
    if args.teacher_checkpoint is None and (args.kd_temperature != 1.0 or args.kd_beta != 1.0):
        raise LskdError(
            "--kd-temperature/--kd-beta need --teacher-checkpoint (without it this trains a teacher)"
        )
    if args.pretrained and args.pretrained_checkpoint:
        raise LskdError("use either --pretrained (timm's weights) or --pretrained-checkpoint FILE, not both")


# ----------------------------------------------------------------------------- the run
class Run:
    """State of one training run; ``main`` builds it and calls ``fit``."""

    def __init__(self, args: argparse.Namespace, ctx: dist_utils.DistContext):
        from timm.data import resolve_data_config
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        self.args, self.ctx = args, ctx
        self.out = Path(args.output)
        self.log = print if ctx.is_main else (lambda *a, **k: None)
        check_args(args)
        train_dir = image_data.split_dir(args.data, "train")
        val_dir = image_data.split_dir(args.data, "val")
        self.class_names = image_data.class_names(train_dir)
        num_classes = len(self.class_names)
        if num_classes < 2:
            raise LskdError(f"{train_dir} has {num_classes} class folder; need at least 2")

        self.resume_path = self._resume_path()
        resume_ckpt = read_checkpoint(self.resume_path) if self.resume_path else None
        if resume_ckpt is not None:
            self._check_resume_compatible(resume_ckpt)

        # Teacher: rebuilt from its own checkpoint, checked against this data's classes.
        self.teacher_meta = None
        teacher = None
        if args.teacher_checkpoint:
            t_model, t_ckpt = load_model(args.teacher_checkpoint, map_location="cpu")
            t_classes = list(t_ckpt["class_names"])
            if len(t_classes) != num_classes:
                raise LskdError(
                    f"teacher {args.teacher_checkpoint} predicts {len(t_classes)} classes but "
                    f"{train_dir} has {num_classes} class folders; distil on the data the teacher was "
                    "trained on"
                )
            if t_classes != self.class_names:
                raise LskdError(
                    f"teacher {args.teacher_checkpoint} was trained on classes named differently from the "
                    f"folders of {train_dir} (e.g. {t_classes[:3]} vs {self.class_names[:3]})"
                )
            t_cfg = t_ckpt.get("data_config") or resolve_data_config({}, model=t_model)
            teacher = make_teacher(t_model, t_cfg["mean"], t_cfg["std"], ctx.device)
            self.teacher_meta = {
                "path": str(args.teacher_checkpoint),
                "model": t_ckpt["model_name"],
                "smoothing": float((t_ckpt.get("args") or {}).get("smoothing", 0.0)),
                "label": t_ckpt.get("label", ""),
            }
        self.label = role_label(
            args.smoothing, self.teacher_meta["smoothing"] if self.teacher_meta else None, args.kd_temperature
        )

        # Student, same initial weights on every rank (DDP also broadcasts rank 0's at wrap time).
        seed_everything(args.seed)
        student, self.model_kwargs = create_student(args.model, num_classes, args.pretrained, args.img_size)
        if args.pretrained_checkpoint and resume_ckpt is None:
            self.log(load_initial_weights(student, args.pretrained_checkpoint))
        crop_pct = args.crop_pct if args.crop_pct is not None else image_data.DEFAULT_CROP_PCT[args.aug]
        overrides: Dict[str, Any] = {"crop_pct": crop_pct}
        if args.img_size:
            overrides["input_size"] = (3, args.img_size, args.img_size)
        self.data_config = resolve_data_config(overrides, model=student)

        # Data: the training shuffle is a DistributedSampler (also in one process) re-seeded per epoch.
        train_set = image_data.image_folder(
            train_dir, image_data.build_transform(self.data_config, args.aug, True)
        )
        val_set = image_data.image_folder(
            val_dir, image_data.build_transform(self.data_config, args.aug, False), self.class_names
        )
        self.train_set = image_data.strided_subset(train_set, args.limit_train)
        self.val_set = image_data.strided_subset(val_set, args.limit_val)
        self.train_sampler = torch.utils.data.DistributedSampler(
            self.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed
        )
        per_rank = len(self.train_sampler)
        self.loader_generator = torch.Generator()
        pin = ctx.device.type == "cuda"
        self.train_loader = image_data.build_loader(
            self.train_set,
            args.batch_size,
            args.workers,
            self.train_sampler,
            drop_last=per_rank > args.batch_size,  # a trailing batch of 1 breaks BatchNorm
            generator=self.loader_generator,
            pin_memory=pin,
        )
        self.val_loader = image_data.build_loader(
            self.val_set,
            args.batch_size,
            args.workers,
            dist_utils.ShardSampler(len(self.val_set), ctx.rank, ctx.world_size),
            pin_memory=pin,
        )

        self.student = student.to(ctx.device)
        self.optimizer = create_optimizer_v2(
            self.student,
            opt=args.opt,
            lr=args.lr,
            weight_decay=args.weight_decay,
            momentum=args.momentum,
            filter_bias_and_bn=False,
        )
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched=args.sched,
            num_epochs=args.epochs,
            decay_epochs=args.decay_epochs,
            decay_milestones=args.decay_milestones,
            decay_rate=args.decay_rate,
            warmup_epochs=args.warmup_epochs,
            warmup_lr=args.warmup_lr,
            min_lr=args.min_lr,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.amp and ctx.device.type == "cuda")
        self.task = LabelSmoothingKDTask(
            self.student,
            teacher,
            smoothing=args.smoothing,
            kd_beta=args.kd_beta,
            temperature=args.kd_temperature,
            student_mean=self.data_config["mean"],
            student_std=self.data_config["std"],
            device=ctx.device,
        ).to(ctx.device)
        if ctx.distributed:
            self.task.prepare_distributed(
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )

        self.start_epoch, self.best_top1, self.best_epoch, self.history = 0, -math.inf, -1, []
        if resume_ckpt is not None:
            self._load_training_state(resume_ckpt)

    # -------------------------------------------------------------------- resume
    def _resume_path(self) -> Path | None:
        args = self.args
        last = self.out / LAST
        if args.resume and args.resume != "auto":
            return Path(args.resume)
        if args.resume == "auto":
            return last if last.is_file() else None
        if last.is_file():
            raise LskdError(
                f"{self.out} already holds {LAST}; pass --resume to continue that run or choose "
                "another --output"
            )
        return None

    def _check_resume_compatible(self, ckpt: Dict[str, Any]) -> None:
        old = ckpt.get("args") or {}
        new = json_args(self.args)
        changed = sorted(k for k in new if k not in RESUME_FREE_ARGS and k in old and old[k] != new[k])
        if changed:
            diffs = "; ".join(f"--{k.replace('_', '-')} {old[k]} -> {new[k]}" for k in changed[:4])
            raise LskdError(
                f"--resume {self.resume_path}: the checkpoint was trained with other arguments ({diffs})"
            )
        for k in sorted(RESUME_RANDOMNESS_ARGS):
            if k in old and old[k] != new[k]:
                self.log(
                    f"warning: --{k} was {old[k]}, now {new[k]}: the random augmentation stream changes, "
                    "so the result will differ from an uninterrupted run"
                )
        if ckpt.get("world_size", self.ctx.world_size) != self.ctx.world_size:
            self.log(
                f"warning: the run had {ckpt['world_size']} process(es), now {self.ctx.world_size}: "
                "shuffling and the global batch change, so the result will differ from an uninterrupted run"
            )
        if list(ckpt["class_names"]) != self.class_names:
            raise LskdError(
                f"--resume {self.resume_path}: the checkpoint's classes differ from {self.args.data}/train"
            )
        if "optimizer" not in ckpt:
            raise LskdError(f"--resume {self.resume_path} holds weights only (use checkpoint_last.pth)")

    def _load_training_state(self, ckpt: Dict[str, Any]) -> None:
        self.student.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"])
        self.best_top1 = float(ckpt.get("best_top1", -math.inf))
        self.best_epoch = int(ckpt.get("best_epoch", -1))
        self.history = list(ckpt.get("history", []))
        self.log(f"resumed {self.resume_path} after epoch {self.start_epoch}")

    # -------------------------------------------------------------------- checkpoints
    def checkpoint(self, epoch: int, with_training_state: bool) -> Dict[str, Any]:
        ckpt = {
            "format": FORMAT,
            "model_name": self.args.model,
            "model_kwargs": self.model_kwargs,
            "num_classes": len(self.class_names),
            "class_names": self.class_names,
            "data_config": dict(self.data_config),
            "args": json_args(self.args),
            "label": self.label,
            "teacher": self.teacher_meta,
            "state_dict": self.student.state_dict(),
            "epoch": epoch,
            "world_size": self.ctx.world_size,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }
        if with_training_state:
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["scheduler"] = self.scheduler.state_dict() if self.scheduler is not None else None
            ckpt["scaler"] = self.scaler.state_dict() if self.scaler.is_enabled() else None
        return ckpt

    # -------------------------------------------------------------------- loops
    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        from tqdm import tqdm

        args, ctx = self.args, self.ctx
        self.task.train()
        sums = torch.zeros(5, dtype=torch.float64)  # images, loss, nll, kd, correct
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{args.epochs}",
            leave=False,
            disable=args.quiet or not ctx.is_main,
        )
        for images, target in bar:
            images = images.to(ctx.device, non_blocking=True)
            target = target.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, args.amp):
                out = self.task(images, target)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise LskdError(f"loss is {loss.item()} at epoch {epoch + 1}; lower --lr or disable --amp")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = target.numel()
            correct = out["output"].detach().argmax(-1).eq(target).sum().item()
            sums += torch.tensor(
                [n, loss.item() * n, out["nll_loss"].item(), out["kd_loss"].item(), correct],
                dtype=torch.float64,
            )
            bar.set_postfix(loss=f"{loss.item():.3f}")
        sums = dist_utils.all_reduce_sum(ctx, sums)
        n = max(float(sums[0]), 1.0)
        return {
            "train_loss": float(sums[1]) / n,
            "train_nll": float(sums[2]) / n,
            "train_kd": float(sums[3]) / n,
            "train_top1": 100.0 * float(sums[4]) / n,
        }

    def validate(self) -> Dict[str, float]:
        ctx = self.ctx
        dist_utils.broadcast_buffers(ctx, self.student)
        reduce = (lambda t: dist_utils.all_reduce_sum(ctx, t)) if ctx.distributed else None
        return evaluate(
            self.student,
            self.val_loader,
            ctx.device,
            amp=self.args.amp,
            all_reduce=reduce,
            progress=not self.args.quiet and ctx.is_main,
        )

    def fit(self) -> Dict[str, Any] | None:
        args, ctx = self.args, self.ctx
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log(
            f"{self.label}: {args.model} on {len(self.train_set)} train / {len(self.val_set)} val images, "
            f"{len(self.class_names)} classes, {ctx.world_size} process(es) on {ctx.device}"
        )
        if self.scheduler is not None:
            self.scheduler.step(self.start_epoch)
        val = self.history[-1] if self.history else None
        epochs_run = 0
        for epoch in range(self.start_epoch, args.epochs):
            if args.stop_after is not None and epochs_run >= args.stop_after:
                self.log(
                    f"stopped after {epochs_run} epoch(s) (--stop-after); rerun with --resume to continue"
                )
                return None
            seed = epoch_seed(args.seed, epoch, ctx.rank)
            seed_everything(seed)
            self.train_sampler.set_epoch(epoch)
            self.loader_generator.manual_seed(seed)
            t0 = time.time()
            lr = self.optimizer.param_groups[0]["lr"]
            train_stats = self.train_one_epoch(epoch)
            if self.scheduler is not None:
                self.scheduler.step(epoch + 1)
            val = self.validate()
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                **train_stats,
                **{f"val_{k}": v for k, v in val.items() if k != "n"},
                "time_s": round(time.time() - t0, 3),
            }
            self.history.append(row)
            improved = val["top1"] > self.best_top1
            if improved:
                self.best_top1, self.best_epoch = val["top1"], epoch + 1
            if ctx.is_main:
                if improved:
                    torch_save_atomic(self.checkpoint(epoch + 1, with_training_state=False), self.out / BEST)
                torch_save_atomic(self.checkpoint(epoch + 1, with_training_state=True), self.out / LAST)
                write_metrics_csv(self.out / METRICS, self.history)
            self.log(
                f"epoch {epoch + 1}/{args.epochs} lr {lr:.4g} loss {train_stats['train_loss']:.4f} "
                f"train top1 {train_stats['train_top1']:.2f} | val top1 {val['top1']:.2f} top5 "
                f"{val['top5']:.2f} "
                f"nll {val['nll']:.4f} ece {val['ece']:.4f} ({row['time_s']:.1f}s)"
            )
            epochs_run += 1
            dist_utils.barrier(ctx)
        if val is None or "top1" not in val:  # resumed a finished run whose summary was lost
            val = self.validate()
        final = {k: val.get(k, val.get(f"val_{k}")) for k in ("top1", "top5", "nll", "ece")}
        summary = {
            **final,
            "label": self.label,
            "model": args.model,
            "num_classes": len(self.class_names),
            "epochs": args.epochs,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "n_train": len(self.train_set),
            "n_val": len(self.val_set),
            "world_size": ctx.world_size,
            "teacher": self.teacher_meta,
            "args": json_args(args),
        }
        if ctx.is_main:
            write_text_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
            self.log(
                f"wrote {self.out / SUMMARY}: top1 {final['top1']:.2f} top5 {final['top5']:.2f} "
                f"nll {final['nll']:.4f} ece {final['ece']:.4f}"
            )
        dist_utils.barrier(ctx)
        return summary


def main(args: argparse.Namespace) -> int:
    ctx = dist_utils.setup(args.device)
    try:
        Run(args, ctx).fit()
    finally:
        dist_utils.cleanup(ctx)
    return 0
