"""ImageFolder data, timm transforms and loaders for the image trainer and evaluator.

A data root holds ``train/`` and ``val/``, each with one folder per class (torchvision's
ImageFolder layout; the class index is the sorted folder name; hidden folders are not classes:
``image/folders.py`` is the rule, shared with every image reader and the study's data hash).
Transforms come from timm's ``create_transform`` with the model's resolved data config; ``--aug``
picks a preset:

- ``none``: the evaluation transform also for training (resize, centre crop, normalise);
- ``cifar``: pad-and-random-crop (padding = size/8) and horizontal flip, the usual CIFAR recipe;
- ``imagenet``: RandomResizedCrop(scale 0.08-1) and flip (torchvision's ImageNet reference);
- ``cub``: the paper's CUB recipe: RandomResizedCrop(scale 0.2-1, ratio 0.8-1.25), flip,
  rotation 45, grayscale p=0.2, colour jitter 0.2 (brightness, contrast, saturation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as tv_transforms
from torchvision.datasets import ImageFolder

from lskd_plugins.errors import LskdError
from lskd_plugins.image import folders

AUG_PRESETS = ("none", "cifar", "imagenet", "cub")
BAD_IMAGE_POLICIES = ("skip", "error")
# Evaluation crop fraction per preset: 224/256 for ImageNet-style data, full image for small ones.
DEFAULT_CROP_PCT = {"none": 1.0, "cifar": 1.0, "imagenet": 0.875, "cub": 0.875}


def split_dir(root: os.PathLike | str, split: str) -> Path:
    """ROOT/SPLIT, or an error saying what the folder must contain."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise LskdError(
            f"--data {root} is a file, not a folder; give an ImageFolder root with train/ and val/"
        )
    if not root.is_dir():
        raise LskdError(
            f"--data {root}: no such directory (expected an ImageFolder root with train/ and val/)"
        )
    path = root / split
    if path.exists() and not path.is_dir():
        raise LskdError(f"--data {root}: {path} is a file, not a folder of class folders")
    if not path.is_dir():
        raise LskdError(
            f"--data {root} has no {split}/ folder; expected {root}/{split}/<class>/<image> "
            "(see `lskd digits` and data_prep/ to build one)"
        )
    return path


def class_names(folder: Path) -> List[str]:
    """The class folders of a split (``image/folders.py``: hidden folders are not classes)."""
    classes = folders.class_folders(folder)
    if not classes:
        raise LskdError(f"{folder} has no class folders; expected {folder}/<class>/<image>")
    return classes


@dataclass(frozen=True)
class BadImage:
    """An image file PIL could not decode (truncated, corrupt, not an image): skipped or refused."""

    path: str
    reason: str


class CheckedImageFolder(ImageFolder):
    """ImageFolder that returns a ``BadImage`` instead of raising inside a loader worker, so the main
    process applies the ``--bad-images`` policy with one line (a worker's exception is a traceback).
    Classes and images are listed by ``image/folders.py`` (hidden names skipped, link loops refused)."""

    def find_classes(self, directory):
        classes = class_names(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        return folders.image_samples(directory, class_to_idx)

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unreadable files
            from PIL import UnidentifiedImageError

            if isinstance(err, UnidentifiedImageError):
                return BadImage(self.samples[index][0], "not an image file PIL can read")
            return BadImage(self.samples[index][0], f"{type(err).__name__}: {err}".splitlines()[0])


def collate_checked(batch):
    """(images, targets, [BadImage, ...]): the readable examples stacked, the unreadable ones listed."""
    from torch.utils.data import default_collate

    good = [b for b in batch if not isinstance(b, BadImage)]
    bad = [b for b in batch if isinstance(b, BadImage)]
    if not good:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), bad
    images, targets = default_collate(good)
    return images, targets, bad


class BadImageCounter:
    """Applies ``--bad-images``: ``error`` stops at the first unreadable file, ``skip`` counts them."""

    def __init__(self, policy: str = "skip"):
        self.policy, self.files = policy, {}

    def add(self, bad: List[BadImage]) -> None:
        for item in bad:
            if self.policy == "error":
                raise LskdError(
                    f"cannot read image {item.path} ({item.reason}); remove or replace it, "
                    "or pass --bad-images skip to leave unreadable images out"
                )
            self.files.setdefault(item.path, item.reason)

    def warning(self, where: str) -> str | None:
        if not self.files:
            return None
        path, reason = next(iter(self.files.items()))
        return (
            f"warning: skipped {len(self.files)} unreadable image(s) in {where} (first: {path}: {reason}); "
            "--bad-images error refuses them"
        )


def image_folder(folder: Path, transform, expected_classes: List[str] | None = None) -> ImageFolder:
    """ImageFolder with one-line errors for empty or mismatched class folders."""
    from lskd_plugins.image.checkpoint import first_difference

    classes = class_names(folder)
    if expected_classes is not None and classes != list(expected_classes):
        raise LskdError(
            f"{folder} has classes that differ from the training classes "
            f"({first_difference(classes, list(expected_classes))}); every split needs the same class folders"
        )
    return CheckedImageFolder(str(folder), transform=transform)


def strided_subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first of every len/limit examples: a deterministic subset that keeps all classes."""
    n = len(dataset)
    if not limit or limit >= n:
        return dataset
    return Subset(dataset, [i * n // limit for i in range(limit)])


def build_transform(data_config: Dict[str, Any], aug: str, training: bool):
    """timm transform for the resolved data config; ``aug`` only matters when training."""
    from timm.data import create_transform

    if aug not in AUG_PRESETS:
        raise LskdError(f"--aug {aug!r}: choose one of {', '.join(AUG_PRESETS)}")
    size = int(data_config["input_size"][-1])
    common = dict(
        interpolation=data_config["interpolation"],
        mean=data_config["mean"],
        std=data_config["std"],
    )
    eval_tf = create_transform(
        data_config["input_size"],
        is_training=False,
        crop_pct=data_config["crop_pct"],
        crop_mode=data_config.get("crop_mode"),
        **common,
    )
    if not training or aug == "none":
        return eval_tf
    if aug == "cifar":
        # Bring any source size to the model's size first (a no-op for 32x32 CIFAR at 32).
        return tv_transforms.Compose(
            [
                tv_transforms.Resize(size, interpolation=eval_tf.transforms[0].interpolation),
                tv_transforms.CenterCrop(size),
                tv_transforms.RandomCrop(size, padding=max(1, size // 8)),
                tv_transforms.RandomHorizontalFlip(),
                *eval_tf.transforms[-2:],  # ToTensor (MaybeToTensor) + Normalize
            ]
        )
    if aug == "imagenet":
        return create_transform(data_config["input_size"], is_training=True, color_jitter=None, **common)
    # cub: timm's train transform plus the rotation timm does not offer.
    primary, secondary, final = create_transform(
        data_config["input_size"],
        is_training=True,
        scale=(0.2, 1.0),
        ratio=(0.8, 1.25),
        color_jitter=0.2,
        grayscale_prob=0.2,
        separate=True,
        **common,
    )
    return tv_transforms.Compose(
        [*primary.transforms, tv_transforms.RandomRotation(45), *secondary.transforms, *final.transforms]
    )


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    sampler: torch.utils.data.Sampler,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        generator=generator,
        pin_memory=pin_memory,
        collate_fn=collate_checked,
        persistent_workers=False,  # workers are re-seeded from ``generator`` every epoch
    )


def dataset_summary(dataset: Dataset) -> Tuple[int, int]:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    return len(dataset), len(base.classes)
