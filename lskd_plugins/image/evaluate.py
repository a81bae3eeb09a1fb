"""``lskd image-eval``: top-1/top-5 (%), NLL and 15-bin ECE of a classifier on an ImageFolder split.

An lskd checkpoint rebuilds the model and its evaluation transform from itself (model name,
classes and timm data config are stored in it). A timm checkpoint or state dict needs ``--model``
(unless timm's ``train.py`` recorded it) and uses the model's own timm data config, which
``--img-size`` / ``--crop-pct`` override.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Callable, Dict

import torch
from torch import nn

from lskd_plugins.errors import LskdError, finite_float, int_at_least, nonneg_int, positive_int
from lskd_plugins.files import check_file_writable, refuse_overlap, write_text_atomic
from lskd_plugins.image import data as image_data
from lskd_plugins.image.checkpoint import check_classes, load_classifier, num_outputs
from lskd_plugins.image.distributed import ShardSampler, resolve_device
from lskd_plugins.image.metrics import ClassificationMetrics
from lskd_plugins.progress import progress_iter


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on GPUs, bfloat16 on the CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    amp: bool = False,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    bad_images: image_data.BadImageCounter | None = None,
) -> Dict[str, float]:
    """Metrics of ``model`` over ``loader`` (summed over ranks with ``all_reduce``).

    Unreadable images go to ``bad_images`` (skipped or refused by its policy)."""
    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics()
    bad_images = bad_images or image_data.BadImageCounter("skip")
    for batch in progress_iter(loader, len(loader), "eval", unit="batch", enabled=progress):
        images, target = batch[0], batch[1]
        if len(batch) > 2:
            bad_images.add(batch[2])
        if target.numel() == 0:
            continue
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        metrics.update(logits.float(), target)
    model.train(was_training)
    return metrics.reduce(all_reduce).result()


BAD_HELP = "unreadable images: skip (counted in the report) or error"


def help_default(text: str) -> str:
    return text + " (default: %(default)s)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--checkpoint", required=True, help="an lskd image checkpoint, a timm checkpoint or a state dict")
    add("--data", required=True, help="ImageFolder root holding the split folder")
    add("--split", default="val", help=help_default("sub-folder of --data to evaluate"))
    add("--model", default=None, help=help_default("timm model of a timm checkpoint or state dict"))
    add("--num-classes", type=int_at_least(2), default=None, help=help_default("its class count"))
    add("--class-file", default=None, help=help_default("its class names, one per line in output order"))
    add("--img-size", type=positive_int, default=None, help=help_default("input size; none: the model's"))
    add("--crop-pct", type=finite_float, default=None, help=help_default("centre-crop fraction in (0, 1]"))
    add("--batch-size", type=positive_int, default=256, help=help_default("images per step"))
    add("--workers", type=nonneg_int, default=4, help=help_default("data-loader processes (0: in-process)"))
    add("--device", default="auto", help=help_default("auto (GPU if visible), cpu, cuda, cuda:N"))
    add("--amp", action="store_true", help=help_default("mixed precision (float16 on GPU, bfloat16 on CPU)"))
    add(
        "--limit", type=positive_int, default=None, help=help_default("evaluate a strided subset of N images")
    )
    add("--bad-images", choices=image_data.BAD_IMAGE_POLICIES, default="skip", help=help_default(BAD_HELP))
    add("--output-file", default=None, help=help_default("also write the JSON to this file"))
    add("--output", dest="output_file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    add("--no-progress", action="store_true", help=help_default("no progress display"))
    add("--quiet", dest="no_progress", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def eval_data_config(loaded, args: argparse.Namespace) -> Dict:
    """The stored config of an lskd checkpoint, else timm's for the model; --img-size/--crop-pct win."""
    from timm.data import resolve_data_config

    overrides = {}
    if args.img_size:
        overrides["input_size"] = (3, args.img_size, args.img_size)
    if args.crop_pct is not None:
        if not 0 < args.crop_pct <= 1:
            raise LskdError(f"--crop-pct must lie in (0, 1], got {args.crop_pct}")
        overrides["crop_pct"] = args.crop_pct
    if loaded.data_config and not overrides:
        return dict(loaded.data_config)
    return resolve_data_config(overrides, model=loaded.model, pretrained_cfg=loaded.data_config)


def report(result: Dict, loaded, args: argparse.Namespace, bad: image_data.BadImageCounter) -> Dict:
    return {
        **result,
        "label": loaded.meta.get("label", ""),
        "model": loaded.model_name,
        "source": loaded.source,
        "checkpoint": str(args.checkpoint),
        "epoch": loaded.meta.get("epoch"),
        "split": args.split,
        "data": str(args.data),
        "bad_images": len(bad.files),
    }


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.output_file:  # before the work: a result that cannot be written is not computed
        refuse_overlap(args.output_file, [args.checkpoint, args.data], "--output-file")
        check_file_writable(args.output_file, "--output-file")
    loaded = load_classifier(
        args.checkpoint,
        model_name=args.model,
        num_classes=args.num_classes,
        class_file=args.class_file,
        option="--checkpoint",
    )
    folder = image_data.split_dir(args.data, args.split)
    check_classes(loaded, num_outputs(loaded.model), image_data.class_names(folder), args.checkpoint, folder)
    transform = image_data.build_transform(eval_data_config(loaded, args), "none", training=False)
    dataset = image_data.strided_subset(image_data.image_folder(folder, transform), args.limit)
    loader = image_data.build_loader(
        dataset, args.batch_size, args.workers, ShardSampler(len(dataset)), pin_memory=device.type == "cuda"
    )
    bad = image_data.BadImageCounter(args.bad_images)
    result = evaluate(
        loaded.model.to(device), loader, device, amp=args.amp, progress=not args.no_progress, bad_images=bad
    )
    if bad.warning(folder):
        print(bad.warning(folder), file=sys.stderr)
    text = json.dumps(report(result, loaded, args, bad), indent=2)
    print(text)
    if args.output_file:
        write_text_atomic(args.output_file, text + "\n")
    return 0
