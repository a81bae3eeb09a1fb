"""``lskd image-eval``: top-1/top-5 (%), NLL and 15-bin ECE of a checkpoint on an ImageFolder split.

The checkpoint alone rebuilds the model and its evaluation transform (model name, classes and
timm data config are stored in it), so only the data folder is needed besides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

from lskd_plugins.errors import LskdError
from lskd_plugins.image import data as image_data
from lskd_plugins.image.checkpoint import load_model
from lskd_plugins.image.distributed import ShardSampler, resolve_device
from lskd_plugins.image.metrics import ClassificationMetrics


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
) -> Dict[str, float]:
    """Metrics of ``model`` over ``loader`` (summed over ranks with ``all_reduce``)."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics()
    for images, target in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        metrics.update(logits.float(), target)
    model.train(was_training)
    return metrics.reduce(all_reduce).result()


def check_class_names(ckpt_classes: List[str], data_classes: List[str], ckpt_path, folder) -> None:
    if list(ckpt_classes) != list(data_classes):
        raise LskdError(
            f"checkpoint {ckpt_path} has {len(ckpt_classes)} classes but {folder} has "
            f"{len(data_classes)} class folders"
            + ("" if len(ckpt_classes) != len(data_classes) else " with different names")
            + "; use the data the model was trained on"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="an lskd image checkpoint (checkpoint_*.pth)")
    parser.add_argument("--data", required=True, help="ImageFolder root holding the split folder")
    parser.add_argument("--split", default="val", help="sub-folder of --data to evaluate (default: val)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4, help="data-loader processes (0: load in-process)")
    parser.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda, cuda:N")
    parser.add_argument(
        "--amp", action="store_true", help="mixed precision (float16 on GPU, bfloat16 on CPU)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate a strided subset of N images")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, map_location="cpu")
    folder = image_data.split_dir(args.data, args.split)
    check_class_names(ckpt["class_names"], image_data.class_names(folder), args.checkpoint, folder)
    if not ckpt.get("data_config"):
        raise LskdError(f"{args.checkpoint} has no data_config; it was not written by `lskd image-train`")
    transform = image_data.build_transform(ckpt["data_config"], "none", training=False)
    dataset = image_data.strided_subset(image_data.image_folder(folder, transform), args.limit)
    loader = image_data.build_loader(
        dataset, args.batch_size, args.workers, ShardSampler(len(dataset)), pin_memory=device.type == "cuda"
    )
    result = evaluate(model.to(device), loader, device, amp=args.amp, progress=True)
    report = {
        **result,
        "label": ckpt.get("label", ""),
        "model": ckpt["model_name"],
        "checkpoint": str(args.checkpoint),
        "epoch": ckpt.get("epoch"),
        "split": args.split,
        "data": str(args.data),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0
