"""Self-describing image checkpoints: everything needed to rebuild the model is inside.

Layout of ``checkpoint_last.pth`` / ``checkpoint_best.pth`` (a plain dict, torch.save):
    format        "lskd-image-v1"
    model_name    timm model name, e.g. "resnet18"
    model_kwargs  optional extra timm.create_model arguments (e.g. img_size for ViTs)
    num_classes   int
    class_names   list of str (ImageFolder order)
    data_config   timm data config of the model: input_size, mean, std, interpolation, crop_pct
    args          dict of the training arguments (smoothing, kd_temperature, teacher, ...)
    label         human-readable role, e.g. "teacher alpha=0.1" or "student T=3 from LS teacher"
    state_dict    the model's weights (never the teacher's)
    epoch         epochs completed
    + training state for resuming: optimizer, scheduler, scaler, best_top1, history
      (no RNG state: every epoch re-seeds from (seed, epoch, rank), which makes resuming exact)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from lskd_plugins.errors import LskdError

FORMAT = "lskd-image-v1"
REQUIRED = ("model_name", "num_classes", "class_names", "state_dict")


def read_checkpoint(path: os.PathLike | str, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load the checkpoint dict, with a one-line error naming the file when it is not usable."""
    path = Path(path)
    if not path.is_file():
        raise LskdError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # corrupt, truncated, not a torch file
        raise LskdError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise LskdError(
            f"{path} is not an lskd image checkpoint (missing {', '.join(missing)}); "
            "train it with `lskd image-train`"
        )
    return ckpt


def build_model(meta: Dict[str, Any]) -> torch.nn.Module:
    import timm

    kwargs = dict(meta.get("model_kwargs") or {})
    return timm.create_model(
        meta["model_name"], pretrained=False, num_classes=int(meta["num_classes"]), **kwargs
    )


def load_model(
    path: os.PathLike | str, map_location: str | torch.device = "cpu"
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Rebuild the model from a checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path, map_location)
    model = build_model(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
