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
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from lskd_plugins.errors import (
    MAX_IMG_SIZE,
    LskdError,
    LskdFailure,
    int_at_least,
    int_between,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    smoothing_float,
    unit_float,
)
from lskd_plugins.files import (
    OWNER_FILE,
    claim_output,
    refuse_overlap,
    torch_save_atomic,
    write_text_atomic,
)
from lskd_plugins.image import data as image_data
from lskd_plugins.image import distributed as dist_utils
from lskd_plugins.image import init_guard, run_log
from lskd_plugins.image.checkpoint import FORMAT, first_difference, read_checkpoint, read_state_dict
from lskd_plugins.image.evaluate import autocast, evaluate
from lskd_plugins.image.task import LabelSmoothingKDTask, load_teacher
from lskd_plugins.kd_loss import METHODS, check_method_flags, describe_method
from lskd_plugins.progress import Progress

LAST, BEST, SUMMARY, METRICS = "checkpoint_last.pth", "checkpoint_best.pth", "summary.json", "metrics.csv"
SCHEDULES = ("step", "cosine", "multistep", "constant", "none")
# Arguments that may differ between a run and its resumption without changing the result.
RESUME_FREE_ARGS = {
    "resume",
    "workers",
    "device",
    "stop_after",
    "output",
    "data",
    "quiet",
    "no_progress",
    "overwrite",
    "bad_images",
    "log_tensorboard",
    "log_wandb",
    "wandb_project",
}
# ... of which these change the augmentation's random stream (workers draw their own seeds).
RESUME_RANDOMNESS_ARGS = {"workers"}


def helped(text: str) -> str:
    """Help text that states the option's default (the project's convention)."""
    return text + " (default: %(default)s)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser.add_argument_group("data and model"))
    _add_optimisation_arguments(
        parser.add_argument_group("optimisation (defaults: the paper's ImageNet teacher)")
    )
    _add_distillation_arguments(parser.add_argument_group("label smoothing and distillation"))
    _add_running_arguments(parser.add_argument_group("running, output and logging"))


def _add_data_arguments(g) -> None:
    g.add_argument(
        "--data", required=True, help="ImageFolder root with train/ and val/ (one folder per class)"
    )
    g.add_argument("--output", required=True, help="run folder: checkpoints, metrics.csv, summary.json")
    g.add_argument(
        "--overwrite", action="store_true", help=helped("replace the results of another run in --output")
    )
    g.add_argument("--model", default="resnet18", help=helped("timm model name"))
    g.add_argument(
        "--img-size",
        type=int_between(1, MAX_IMG_SIZE),
        default=None,
        help=helped("input size; none: the model's"),
    )
    g.add_argument(
        "--crop-pct",
        type=positive_float,
        default=None,
        help=helped("eval centre-crop fraction in (0, 1]; none: 0.875 for --aug imagenet/cub, else 1.0"),
    )
    g.add_argument(
        "--aug", choices=image_data.AUG_PRESETS, default="imagenet", help=helped("augmentation preset")
    )
    g.add_argument("--pretrained", action="store_true", help=helped("start from timm's pretrained weights"))
    g.add_argument(
        "--pretrained-checkpoint",
        default=None,
        help=helped("initialise from a file: an lskd or timm checkpoint, a state dict or .safetensors"),
    )
    g.add_argument(
        "--limit-train", type=positive_int, default=None, help=helped("a strided subset of N train images")
    )
    g.add_argument(
        "--limit-val", type=positive_int, default=None, help=helped("a strided subset of N val images")
    )
    g.add_argument(
        "--bad-images",
        choices=image_data.BAD_IMAGE_POLICIES,
        default="skip",
        help=helped(
            "unreadable images: skip them (counted in summary.json and the log) or stop with an error"
        ),
    )


def _add_optimisation_arguments(g) -> None:
    g.add_argument("--epochs", type=positive_int, default=90, help=helped("epochs"))
    g.add_argument("--batch-size", type=positive_int, default=256, help=helped("images per process and step"))
    g.add_argument(
        "--opt", default="momentum", help=helped("timm optimiser name (momentum: SGD, no Nesterov)")
    )
    g.add_argument("--lr", type=positive_float, default=0.1, help=helped("learning rate"))
    g.add_argument("--momentum", type=unit_float, default=0.9, help=helped("optimiser momentum"))
    g.add_argument(
        "--weight-decay", type=nonneg_float, default=1e-4, help=helped("applied to all parameters")
    )
    g.add_argument("--sched", choices=SCHEDULES, default="step", help=helped("timm learning-rate schedule"))
    g.add_argument(
        "--decay-epochs", type=positive_float, default=30, help=helped("step: epochs between decays")
    )
    g.add_argument(
        "--decay-milestones",
        type=positive_int,
        nargs="+",
        default=[30, 60, 90],
        help=helped("multistep epochs"),
    )
    g.add_argument(
        "--decay-rate", type=positive_float, default=0.1, help=helped("learning-rate factor per decay")
    )
    g.add_argument("--warmup-epochs", type=nonneg_int, default=0, help=helped("linear warm-up epochs"))
    g.add_argument(
        "--warmup-lr", type=nonneg_float, default=1e-5, help=helped("learning rate at the warm-up's start")
    )
    g.add_argument("--min-lr", type=nonneg_float, default=0.0, help=helped("cosine: final learning rate"))
    g.add_argument(
        "--amp", action="store_true", help=helped("mixed precision (float16 on GPU, bfloat16 on CPU)")
    )
    g.add_argument("--seed", type=nonneg_int, default=0, help=helped("seed of every random generator"))


def _add_distillation_arguments(g) -> None:
    g.add_argument(
        "--smoothing",
        type=smoothing_float,
        default=0.0,
        help=helped("label smoothing: the teacher's alpha, or the student's eps on its CE term"),
    )
    g.add_argument(
        "--teacher-checkpoint",
        default=None,
        help=helped(
            "distil from this file: an lskd checkpoint, a timm checkpoint, a state dict, .safetensors"
        ),
    )
    g.add_argument("--teacher-model", default=None, help=helped("timm model of a timm teacher file"))
    g.add_argument(
        "--teacher-num-classes", type=int_at_least(2), default=None, help=helped("its class count")
    )
    g.add_argument(
        "--teacher-class-file", default=None, help=helped("its class names, one per line in output order")
    )
    g.add_argument(
        "--teacher-pretrained",
        action="store_true",
        help=helped("timm's pretrained weights of --teacher-model"),
    )
    g.add_argument("--kd-temperature", type=positive_float, default=1.0, help=helped("KD temperature T"))
    g.add_argument(
        "--kd-alpha",
        type=unit_float,
        default=1.0,
        help=helped("weight of T^2*KL; 1 - alpha goes to the CE term"),
    )
    g.add_argument(
        "--kd-beta", dest="kd_alpha", type=unit_float, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    g.add_argument(
        "--kd-method",
        choices=METHODS,
        default="kd",
        help=helped("the KD term: kd, logit_std (z-scored logits) or dkd (decoupled KD); docs/kd_loss.md"),
    )
    g.add_argument(
        "--dkd-alpha",
        type=nonneg_float,
        default=None,
        help="--kd-method dkd: target-class weight (default: 1.0)",
    )
    g.add_argument(
        "--dkd-beta",
        type=nonneg_float,
        default=None,
        help="--kd-method dkd: non-target weight (default: 8.0)",
    )


def _add_running_arguments(g) -> None:
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help=helped("continue from OUTPUT/checkpoint_last.pth (or the given file); starts fresh if absent"),
    )
    g.add_argument("--workers", type=nonneg_int, default=4, help=helped("data-loader processes per rank"))
    g.add_argument("--device", default="auto", help=helped("auto (GPU if visible), cpu, cuda"))
    g.add_argument(
        "--stop-after",
        type=positive_int,
        default=None,
        metavar="N",
        help=helped("stop after N epochs of this call"),
    )
    g.add_argument("--no-progress", action="store_true", help=helped("no progress display"))
    g.add_argument(
        "--quiet", dest="no_progress", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    g.add_argument(
        "--log-tensorboard", default=None, metavar="DIR", help=helped("also log metrics.csv's scalars here")
    )
    g.add_argument(
        "--log-wandb", action="store_true", help=helped("also log them to wandb (offline unless WANDB_MODE)")
    )
    g.add_argument("--wandb-project", default="lskd", help=helped("wandb project name"))


# ----------------------------------------------------------------------------- small pure helpers
def role_label(smoothing: float, teacher_smoothing: float | None, temperature: float) -> str:
    """'teacher alpha=0.1' or 'student T=3 from LS teacher' (LS: the teacher's alpha > 0; a teacher
    whose smoothing is unknown -- NaN, e.g. from timm -- is 'external')."""
    if teacher_smoothing is None:
        return f"teacher alpha={smoothing:g}"
    kind = "LS" if teacher_smoothing > 0 else "noLS" if teacher_smoothing == 0 else "external"
    return f"student T={temperature:g} from {kind} teacher"


def teacher_smoothing(meta: Dict[str, Any] | None) -> float | None:
    """The teacher's alpha for ``role_label``: None without a teacher, NaN when its file does not say."""
    if meta is None:
        return None
    return math.nan if meta.get("smoothing") is None else float(meta["smoothing"])


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
    state, _ = read_state_dict(path, "--pretrained-checkpoint")
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


def check_args(args: argparse.Namespace) -> None:
    """Checks that involve several options (single values are range-checked by argparse)."""
    if args.crop_pct is not None and args.crop_pct > 1:
        raise LskdError(f"--crop-pct must lie in (0, 1], got {args.crop_pct}")
    has_teacher = bool(args.teacher_checkpoint or args.teacher_pretrained)
    if not has_teacher and (args.kd_temperature != 1.0 or args.kd_alpha != 1.0):
        raise LskdError(
            "--kd-temperature/--kd-alpha need --teacher-checkpoint (without it this trains a teacher)"
        )
    if not has_teacher and (
        args.kd_method != "kd" or args.dkd_alpha is not None or args.dkd_beta is not None
    ):
        raise LskdError("--kd-method/--dkd-alpha/--dkd-beta need --teacher-checkpoint")
    method = check_method_flags(args.kd_method, args.dkd_alpha, args.dkd_beta)
    if method["method"] == "dkd":  # the values used, in the checkpoint's and summary's args
        args.dkd_alpha, args.dkd_beta = method["dkd_alpha"], method["dkd_beta"]
    if not has_teacher and (args.teacher_model or args.teacher_num_classes or args.teacher_class_file):
        raise LskdError(
            "--teacher-model/--teacher-num-classes/--teacher-class-file need --teacher-checkpoint"
        )
    if args.pretrained and args.pretrained_checkpoint:
        raise LskdError("use either --pretrained (timm's weights) or --pretrained-checkpoint FILE, not both")


def owner_of(args: argparse.Namespace) -> Dict[str, Any]:
    """The output folder's owner: the command and every argument that changes its results."""
    settings = {k: v for k, v in json_args(args).items() if k not in RESUME_FREE_ARGS}
    return json.loads(json.dumps({"command": "lskd image-train", **settings}, default=str))


# ----------------------------------------------------------------------------- builders
@dataclass
class Data:
    """The run's datasets, the per-epoch re-seeded training shuffle and the loaders."""

    train_set: Any
    val_set: Any
    train_sampler: Any
    generator: torch.Generator
    train_loader: Any
    val_loader: Any


def build_data(args, ctx, train_dir: Path, val_dir: Path, class_names: List[str], data_config) -> Data:
    """Training shuffle: a DistributedSampler (also in one process) re-seeded every epoch."""
    train_set = image_data.image_folder(train_dir, image_data.build_transform(data_config, args.aug, True))
    val_set = image_data.image_folder(
        val_dir, image_data.build_transform(data_config, args.aug, False), class_names
    )
    train_set = image_data.strided_subset(train_set, args.limit_train)
    val_set = image_data.strided_subset(val_set, args.limit_val)
    sampler = torch.utils.data.DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed
    )
    generator, pin = torch.Generator(), ctx.device.type == "cuda"
    train_loader = image_data.build_loader(
        train_set,
        args.batch_size,
        args.workers,
        sampler,
        drop_last=len(sampler) > args.batch_size,  # a trailing batch of 1 breaks BatchNorm
        generator=generator,
        pin_memory=pin,
    )
    val_sampler = dist_utils.ShardSampler(len(val_set), ctx.rank, ctx.world_size)
    val_loader = image_data.build_loader(val_set, args.batch_size, args.workers, val_sampler, pin_memory=pin)
    return Data(train_set, val_set, sampler, generator, train_loader, val_loader)


def build_student(args, num_classes: int, fresh: bool, log) -> Tuple[nn.Module, Dict[str, Any], Dict]:
    """(student, extra create_model kwargs, resolved timm data config); same weights on every rank."""
    from timm.data import resolve_data_config

    seed_everything(args.seed)
    student, model_kwargs = create_student(args.model, num_classes, args.pretrained, args.img_size)
    if args.pretrained_checkpoint and fresh:
        log(load_initial_weights(student, args.pretrained_checkpoint))
    crop_pct = args.crop_pct if args.crop_pct is not None else image_data.DEFAULT_CROP_PCT[args.aug]
    overrides: Dict[str, Any] = {"crop_pct": crop_pct}
    if args.img_size:
        overrides["input_size"] = (3, args.img_size, args.img_size)
    return student, model_kwargs, resolve_data_config(overrides, model=student)


def build_optimisation(args, student: nn.Module, device: torch.device):
    """(optimizer, scheduler or None, grad scaler) from timm's factories."""
    from timm.optim import create_optimizer_v2, list_optimizers
    from timm.scheduler import create_scheduler_v2

    if args.opt.lower().removeprefix("lookahead_") not in list_optimizers():
        raise LskdError(f"--opt {args.opt!r} is not a timm optimiser (e.g. momentum, sgd, adamw)")
    optimizer = create_optimizer_v2(
        student,
        opt=args.opt,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        filter_bias_and_bn=False,
    )
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=args.sched,
        num_epochs=args.epochs,
        decay_epochs=args.decay_epochs,
        decay_milestones=args.decay_milestones,
        decay_rate=args.decay_rate,
        warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr,
        min_lr=args.min_lr,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    return optimizer, scheduler, scaler


def resume_path(args: argparse.Namespace, out: Path) -> Path | None:
    """The checkpoint to resume from (--resume [FILE]), None for a fresh run."""
    last = out / LAST
    if args.overwrite or not args.resume:
        return None
    if args.resume != "auto":
        return Path(args.resume)
    return last if last.is_file() else None


def refuse_restart(args: argparse.Namespace, out: Path) -> None:
    """A fresh run over this run's own finished epochs needs --resume or --overwrite."""
    if not args.resume and not args.overwrite and (out / LAST).is_file():
        raise LskdError(
            f"{out} already holds {LAST}; pass --resume to continue that run, --overwrite to replace it, "
            "or choose another --output"
        )


def check_resume_compatible(
    ckpt: Dict[str, Any], args, path: Path, class_names, world_size: int, log
) -> None:
    old, new = ckpt.get("args") or {}, json_args(args)
    changed = sorted(k for k in new if k not in RESUME_FREE_ARGS and k in old and old[k] != new[k])
    if changed:
        diffs = "; ".join(f"--{k.replace('_', '-')} {old[k]} -> {new[k]}" for k in changed[:4])
        raise LskdError(f"--resume {path}: the checkpoint was trained with other arguments ({diffs})")
    for k in sorted(RESUME_RANDOMNESS_ARGS):
        if k in old and old[k] != new[k]:
            log(
                f"warning: --{k} was {old[k]}, now {new[k]}: the random augmentation stream changes, "
                "so the result will differ from an uninterrupted run"
            )
    if ckpt.get("world_size", world_size) != world_size:
        log(
            f"warning: the run had {ckpt['world_size']} process(es), now {world_size}: "
            "shuffling and the global batch change, so the result will differ from an uninterrupted run"
        )
    if list(ckpt["class_names"]) != list(class_names):
        raise LskdError(
            f"--resume {path}: the checkpoint's classes differ from {args.data}/train "
            f"({first_difference(list(ckpt['class_names']), list(class_names), ('checkpoint', 'data'))})"
        )
    if "optimizer" not in ckpt:
        raise LskdError(f"--resume {path} holds weights only (use checkpoint_last.pth)")


def prepare_output(args, ctx, out: Path, class_names: List[str], log) -> Dict[str, Any] | None:
    """Before any work: the output folder is this run's (or free), writable, not an input; the
    resume checkpoint (if any) fits these arguments. Returns that checkpoint or None."""
    inputs = [args.data, args.teacher_checkpoint, args.teacher_class_file, args.pretrained_checkpoint]
    refuse_overlap(out, inputs, "--output")
    if args.log_tensorboard:
        refuse_overlap(args.log_tensorboard, [args.data], "--log-tensorboard")
    run_log.check_log_targets(args.log_tensorboard if ctx.is_main else None, args.log_wandb and ctx.is_main)
    if out.exists() and not out.is_dir():
        raise LskdError(f"--output {out} is a file, not a folder; give a folder path")
    path = resume_path(args, out)
    ckpt = read_checkpoint(path, option="--resume") if path else None
    if ckpt is not None:
        check_resume_compatible(ckpt, args, path, class_names, ctx.world_size, log)
    if ckpt is not None:
        log(f"resuming {path} after epoch {int(ckpt['epoch'])}")
    return ckpt


def claim_run_folder(args, ctx, out: Path, resuming_own: bool) -> None:
    """Make ``out`` this run's (after the inputs proved usable, so a failed start claims nothing)."""
    if ctx.is_main:
        if resuming_own and not (out / OWNER_FILE).exists():
            # A run folder of an earlier lskd (no owner file) that this resume fits: adopt it.
            write_text_atomic(out / OWNER_FILE, json.dumps(owner_of(args), indent=1, sort_keys=True) + "\n")
        claim_output(out, owner_of(args), overwrite=args.overwrite, option="--output")
    refuse_restart(args, out)


def main_log(line: str) -> None:
    """Rank 0's lines: warnings on stderr, everything else on stdout."""
    print(line, file=sys.stderr if str(line).startswith(("warning:", "lskd: warning")) else sys.stdout)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batch_norm_batches(args, student: nn.Module, data: Data) -> None:
    """Batch norm in training mode needs two images per batch: refuse a run that would make one of 1."""
    if not has_batch_norm(student):
        return
    per_rank = len(data.train_sampler)
    smallest = min(args.batch_size, per_rank)
    if not data.train_loader.drop_last and per_rank % args.batch_size:
        smallest = per_rank % args.batch_size
    if smallest < 2:
        raise LskdError(
            f"--batch-size {args.batch_size}: {args.model} has batch norm, which needs at least 2 images "
            f"in every training batch, but a batch of this run holds {smallest} ({per_rank} training "
            "image(s) per process); give --batch-size 2 or more (and at least 2 training images per process)"
        )


# ----------------------------------------------------------------------------- the run
class Run:
    """One training run: ``__init__`` checks and builds (in that order), ``fit`` trains."""

    def __init__(self, args: argparse.Namespace, ctx: dist_utils.DistContext):
        self.args, self.ctx, self.out = args, ctx, Path(args.output)
        self.log = main_log if ctx.is_main else (lambda *a, **k: None)
        check_args(args)
        train_dir = image_data.split_dir(args.data, "train")
        val_dir = image_data.split_dir(args.data, "val")
        self.class_names = image_data.class_names(train_dir)
        if len(self.class_names) < 2:
            raise LskdError(f"{train_dir} has {len(self.class_names)} class folder; need at least 2")
        resume_ckpt = prepare_output(args, ctx, self.out, self.class_names, self.log)
        teacher, self.teacher_meta = load_teacher(args, self.class_names, train_dir, ctx.device)
        self.label = role_label(args.smoothing, teacher_smoothing(self.teacher_meta), args.kd_temperature)
        if self.teacher_meta and not self.teacher_meta["classes_named"]:
            self.log(
                f"note: the teacher names no classes; its outputs are taken in the order of {train_dir}'s "
                "sorted class folders (--teacher-class-file checks the order)"
            )
        student, self.model_kwargs, self.data_config = build_student(
            args, len(self.class_names), resume_ckpt is None, self.log
        )
        self.init_fingerprint = init_guard.initial_fingerprint(student, resume_ckpt)
        if resume_ckpt is None:  # before the first update: a student that starts as its teacher did
            init_guard.check(student, self.init_fingerprint, args, ctx.is_main)
        self.data = build_data(args, ctx, train_dir, val_dir, self.class_names, self.data_config)
        check_batch_norm_batches(args, student, self.data)
        self.student = student.to(ctx.device)
        self.optimizer, self.scheduler, self.scaler = build_optimisation(args, self.student, ctx.device)
        self.task = LabelSmoothingKDTask(
            self.student,
            teacher,
            smoothing=args.smoothing,
            kd_alpha=args.kd_alpha,
            temperature=args.kd_temperature,
            **check_method_flags(args.kd_method, args.dkd_alpha, args.dkd_beta),
            student_mean=self.data_config["mean"],
            student_std=self.data_config["std"],
            device=ctx.device,
        ).to(ctx.device)
        if ctx.distributed:
            self.task.prepare_distributed(
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        # Every input proved usable: only now the folder becomes this run's (a failed start claims nothing).
        claim_run_folder(
            args, ctx, self.out, resume_ckpt is not None and resume_path(args, self.out) == self.out / LAST
        )
        self.bad = {
            "train": image_data.BadImageCounter(args.bad_images),
            "val": image_data.BadImageCounter(args.bad_images),
        }
        self.start_epoch, self.best_top1, self.best_epoch, self.history = 0, -math.inf, -1, []
        if resume_ckpt is not None:
            self._load_training_state(resume_ckpt)

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
            "init_fingerprint": self.init_fingerprint,
        }
        if with_training_state:
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["scheduler"] = self.scheduler.state_dict() if self.scheduler is not None else None
            ckpt["scaler"] = self.scaler.state_dict() if self.scaler.is_enabled() else None
        return ckpt

    # -------------------------------------------------------------------- loops
    def train_step(self, images: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        """One optimiser step; returns [n, loss sum, nll sum, kd sum, correct] (float64)."""
        images = images.to(self.ctx.device, non_blocking=True)
        target = target.to(self.ctx.device, non_blocking=True)
        with autocast(self.ctx.device, self.args.amp):
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
        parts = [loss.item(), out["nll_loss"].item(), out["kd_loss"].item()]  # batch means
        return torch.tensor([n, *(v * n for v in parts), correct], dtype=torch.float64)

    def train_one_epoch(self, epoch: int, progress: Progress) -> Dict[str, float]:
        self.task.train()
        sums = torch.zeros(5, dtype=torch.float64)  # images, loss, nll, kd, correct
        for images, target, bad in self.data.train_loader:
            self.bad["train"].add(bad)
            if target.numel() == 1 and bad and has_batch_norm(self.student):
                raise LskdFailure(
                    f"a training batch kept 1 readable image after skipping {len(bad)} unreadable one(s) "
                    f"(first: {bad[0].path}); {self.args.model}'s batch norm needs 2: remove the unreadable "
                    "images (--bad-images error names each)"
                )
            if target.numel():
                step = self.train_step(images, target, epoch)
                sums += step
                progress.set_postfix(f"epoch {epoch + 1}, loss {step[1] / step[0]:.3f}")
            progress.update(1)
        sums = dist_utils.all_reduce_sum(self.ctx, sums)
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
            self.data.val_loader,
            ctx.device,
            amp=self.args.amp,
            all_reduce=reduce,
            bad_images=self.bad["val"],
        )

    def run_epoch(self, epoch: int, progress: Progress, metrics_log) -> Dict[str, float]:
        """Train and validate one epoch from a seed of its own; save and log it; return val metrics."""
        args, ctx = self.args, self.ctx
        seed = epoch_seed(args.seed, epoch, ctx.rank)
        seed_everything(seed)
        self.data.train_sampler.set_epoch(epoch)
        self.data.generator.manual_seed(seed)
        t0, lr = time.time(), self.optimizer.param_groups[0]["lr"]
        train_stats = self.train_one_epoch(epoch, progress)
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
            metrics_log.write(self.history)
        self.log(epoch_line(row, args.epochs))
        for split, counter in self.bad.items():
            if counter.warning(split):
                self.log(counter.warning(split))
        return val

    def fit(self) -> Dict[str, Any] | None:
        """The epoch loop; returns the summary, or None when --stop-after ended it early."""
        args, ctx = self.args, self.ctx
        self.log(
            f"{self.label}: {args.model} on {len(self.data.train_set)} train / {len(self.data.val_set)} val "
            f"images, {len(self.class_names)} classes, {ctx.world_size} process(es) on {ctx.device}"
        )
        if self.teacher_meta:
            method = check_method_flags(args.kd_method, args.dkd_alpha, args.dkd_beta)
            self.log(f"KD {describe_method(method)}, kd_alpha {args.kd_alpha}, T {args.kd_temperature}")
        if self.scheduler is not None:
            self.scheduler.step(self.start_epoch)
        val = self.history[-1] if self.history else None
        last = (
            args.epochs if args.stop_after is None else min(args.epochs, self.start_epoch + args.stop_after)
        )
        steps = len(self.data.train_loader)
        metrics_log = self.metrics_log()
        progress = Progress(
            steps * (last - self.start_epoch),
            "train",
            unit="batch",
            enabled=not args.no_progress and ctx.is_main,
        )
        try:
            for epoch in range(self.start_epoch, last):
                val = self.run_epoch(epoch, progress, metrics_log)
                dist_utils.barrier(ctx)
        finally:
            progress.close()
            metrics_log.close()
        if last < args.epochs:
            self.log(f"stopped after {last - self.start_epoch} epoch(s) (--stop-after); rerun with --resume")
            return None
        return self.finish(val)

    def metrics_log(self) -> run_log.MetricsLog:
        args = self.args
        if not self.ctx.is_main:
            return run_log.MetricsLog(self.out / METRICS)  # written by rank 0 only; never called
        wandb_run = None
        if args.log_wandb:
            wandb_run = dict(
                project=args.wandb_project, name=self.label, config=json_args(args), folder=self.out
            )
        return run_log.MetricsLog(self.out / METRICS, args.log_tensorboard, wandb_run)

    def finish(self, val: Dict[str, Any] | None) -> Dict[str, Any]:
        """The summary of the final epoch: printed first, then written (rank 0)."""
        if val is None or "top1" not in val:  # resumed a finished run whose summary was lost
            val = self.validate()
        final = {k: val.get(k, val.get(f"val_{k}")) for k in ("top1", "top5", "nll", "ece")}
        summary = {
            **final,
            "label": self.label,
            "model": self.args.model,
            "num_classes": len(self.class_names),
            "epochs": self.args.epochs,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "n_train": len(self.data.train_set),
            "n_val": len(self.data.val_set),
            "bad_images": {split: len(counter.files) for split, counter in self.bad.items()},
            "world_size": self.ctx.world_size,
            "teacher": self.teacher_meta,
            "args": json_args(self.args),
        }
        self.log(
            f"{self.label}: top1 {final['top1']:.2f} top5 {final['top5']:.2f} "
            f"nll {final['nll']:.4f} ece {final['ece']:.4f}"
        )
        if self.ctx.is_main:
            write_text_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
            self.log(f"wrote {self.out / SUMMARY}")
        dist_utils.barrier(self.ctx)
        return summary


def epoch_line(row: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
        f"train top1 {row['train_top1']:.2f} | val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f} "
        f"nll {row['val_nll']:.4f} ece {row['val_ece']:.4f} ({row['time_s']:.1f}s)"
    )


def main(args: argparse.Namespace) -> int:
    ctx = dist_utils.setup(args.device)
    try:
        Run(args, ctx).fit()
    finally:
        dist_utils.cleanup(ctx)
    return 0
