"""``lskd digits --output DIR``: scikit-learn's bundled 8x8 digits written as an ImageFolder.

The embedded data set for runs without any download: 1,797 grey 8x8 images of the digits 0-9,
written as RGB PNGs to ``DIR/{train,val}/{0..9}/NNNN.png`` with a stratified, seeded split
(the same files for the same --val-fraction and --seed). ``--scale 4`` writes 32x32 images
(nearest-neighbour) for viewers; the trainer resizes to ``--img-size`` anyway.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import numpy as np

from lskd_plugins.errors import LskdError, int_between, nonneg_int, unit_float
from lskd_plugins.image.staging import prepare_staged

STAMP = ".lskd-digits.json"


def digits_split(val_fraction: float, seed: int):
    """(train_images, train_labels, val_images, val_labels); images are uint8 (N, 8, 8) in 0..255."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    indices = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, random_state=seed, stratify=bunch.target
    )
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return (
        images[train_idx],
        bunch.target[train_idx],
        images[val_idx],
        bunch.target[val_idx],
        train_idx,
        val_idx,
    )


def write_digits(
    out: Path, val_fraction: float = 0.2, seed: int = 0, scale: int = 1, overwrite: bool = False
) -> Dict[str, int]:
    """Write the ImageFolder; returns image counts per split. Idempotent for the same settings; built
    in a temporary folder renamed at the end, so a killed run leaves nothing half-written."""
    if not 0.0 < val_fraction < 1.0:
        raise LskdError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if scale < 1:
        raise LskdError(f"--scale must be >= 1, got {scale}")
    settings = {"val_fraction": val_fraction, "seed": seed, "scale": scale}
    return prepare_staged(
        out,
        STAMP,
        settings,
        lambda tmp: _write_images(tmp, val_fraction, seed, scale),
        overwrite,
        inputs=[digits_source()],
    )


def digits_source() -> Path:
    """The folder scikit-learn reads the digits from (an input: --overwrite must never replace it)."""
    from importlib.resources import files

    return Path(str(files("sklearn.datasets") / "data"))


def _write_images(out: Path, val_fraction: float, seed: int, scale: int) -> Dict[str, int]:
    from PIL import Image

    tr_x, tr_y, va_x, va_y, tr_i, va_i = digits_split(val_fraction, seed)
    counts = {}
    for split, xs, ys, ids in (("train", tr_x, tr_y, tr_i), ("val", va_x, va_y, va_i)):
        for label in range(10):
            (out / split / str(label)).mkdir(parents=True, exist_ok=True)
        for x, y, i in zip(xs, ys, ids):
            img = Image.fromarray(x).convert("RGB")
            if scale > 1:
                img = img.resize((8 * scale, 8 * scale), Image.NEAREST)
            img.save(out / split / str(int(y)) / f"{int(i):04d}.png")
        counts[split] = int(len(xs))
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--output", default=None, help="output folder, required (gets train/ and val/)")
    add("--out", dest="output", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    add(
        "--overwrite",
        action="store_true",
        help="replace a folder prepared with other settings (default: off)",
    )
    add(
        "--val-fraction",
        type=unit_float,
        default=0.2,
        help="held-out share per class in (0, 1) (default: %(default)s)",
    )
    add("--seed", type=nonneg_int, default=0, help="seed of the stratified split (default: %(default)s)")
    add(
        "--scale",
        type=int_between(1, 64),
        default=1,
        help="upscale factor: 1 -> 8x8 PNGs, 4 -> 32x32 (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    if args.output is None:
        raise LskdError("lskd digits: --output FOLDER is required")
    counts = write_digits(Path(args.output), args.val_fraction, args.seed, args.scale, args.overwrite)
    print(f"digits: {counts['train']} train / {counts['val']} val images, classes 0-9, in {args.output}")
    return 0
