"""The image side of the diffusion analysis: timm classifiers on an ImageFolder root.

The data layout and its rules (``train/`` and ``val/``, one folder per class, sorted class names)
are ``lskd_plugins.image.data``'s, the same as the image trainer's. Every model sees the same
seeded sample of files; each model's own data config makes its evaluation transform.

Unreadable images (corrupt or truncated files) follow the image commands' ``--bad-images`` policy
(``image/data.py``): ``skip`` (the default) leaves them out and counts them (``skipped_images`` in
each record and a warning line), ``error`` stops at the first with one line. Skipping is the
default because the numbers are means over a sample: one bad file in a thousand should not stop
the analysis.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from lskd_plugins.diffusion.capture import Captured, capture_timm, timm_templates
from lskd_plugins.diffusion.inputs import IMAGE_EXPECTED, checkpoint_kind, peek_checkpoint
from lskd_plugins.diffusion.select import mean_probability_matrix
from lskd_plugins.errors import LskdError
from lskd_plugins.image.data import BadImageCounter, collate_checked
from lskd_plugins.symbols import first_difference


@dataclass
class ImageModel:
    """A loaded classifier and what the analysis needs to know about it."""

    model: torch.nn.Module
    class_names: List[str]
    label: str
    data_config: dict
    extra: dict = field(default_factory=dict)  # record fields: model_name, args


@dataclass
class TimmOptions:
    """--model / --num-classes / --class-file: how to read a timm checkpoint that names none of them."""

    model_name: str | None = None
    num_classes: int | None = None
    class_file: str | None = None


# load_classifier names image-train's teacher options; this command's are these
OPTION_NAMES = {
    "--teacher-model": "--model",
    "--teacher-num-classes": "--num-classes",
    "--class-files": "--class-file",
}


def our_option_names(message: str) -> str:
    for theirs, ours in OPTION_NAMES.items():
        message = message.replace(theirs, ours)
    return message


def load_image_model(
    path: str, timm_options: TimmOptions, device: torch.device, option: str = "--checkpoints"
) -> ImageModel:
    """An lskd or timm checkpoint through ``image.checkpoint.load_classifier`` (the loader of
    image-train's teacher and image-eval); a fairseq checkpoint is named as such."""
    from lskd_plugins.image.checkpoint import load_classifier

    try:
        loaded = load_classifier(
            path,
            model_name=timm_options.model_name,
            num_classes=timm_options.num_classes,
            class_file=timm_options.class_file,
            option=option,
        )
    except LskdError as err:
        kind = checkpoint_kind(peek_checkpoint(path, option))
        if kind.startswith("a fairseq"):
            raise LskdError(f"{option} {path} is {kind}; {IMAGE_EXPECTED}") from None
        raise LskdError(our_option_names(err.message)) from None
    meta = dict(loaded.meta or {}, model_name=loaded.model_name)
    label = meta.get("label") or Path(path).stem
    extra = {"model_name": loaded.model_name, "args": meta.get("args")}
    names = loaded.class_names and [str(c) for c in loaded.class_names]
    return ImageModel(loaded.model.to(device).eval(), names, label, loaded.data_config or {}, extra)


def eval_transform(m: ImageModel):
    """timm's evaluation transform from the model's data config (resolved from the model if absent)."""
    import timm.data

    from lskd_plugins.image.data import build_transform

    cfg = dict(timm.data.resolve_data_config({}, model=m.model))
    cfg.update(m.data_config or {})
    return build_transform(cfg, "none", training=False)


def sample_files(
    folder: Path, names: Sequence[str], ids: Sequence[int], per_class: int, seed: int
) -> List[Tuple[str, int]]:
    """Up to ``per_class`` files per class, a seeded random sample (the same for every model).

    Files are listed by image-train's rule (``image/folders.py``: image extensions, hidden names
    skipped, torchvision's sorted walk), class by class.
    """
    from lskd_plugins.image.folders import class_images

    items = []
    for name, cid in zip(names, ids):
        files = class_images(folder, name)
        rng = random.Random(f"{seed}:{name}")
        items.extend((f, int(cid)) for f in sorted(rng.sample(files, min(per_class, len(files)))))
    return items


class ImageList(torch.utils.data.Dataset):
    """(path, label) items; an unreadable file gives image/data.py's ``BadImage`` instead of raising."""

    def __init__(self, items: List[Tuple[str, int]], transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        from lskd_plugins.image.data import BadImage

        path, label = self.items[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB")), label
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for corrupt or truncated files
            return BadImage(path, f"{type(err).__name__}: {err}".splitlines()[0])


def readable_batches(loader, counter):
    """(images, labels) of each batch's readable images; the unreadable go to the policy's counter."""
    for images, labels, bad in loader:
        counter.add(bad)
        if len(labels):
            yield images, labels


class ImageSource:
    """Loads image checkpoints and captures their penultimate features on ROOT/train and ROOT/val."""

    modality, unit, units = "image", "class", "classes"

    def __init__(
        self,
        data_dir,
        per_class: int = 100,
        select_per_class: int | None = None,
        batch_size: int = 64,
        workers: int = 0,
        seed: int = 0,
        device: torch.device | None = None,
        progress: bool = True,
        log=print,
        timm_options: TimmOptions | None = None,
        bad_images: str = "skip",
    ):
        from lskd_plugins.image.data import class_names, split_dir

        self.dirs = {"train": split_dir(data_dir, "train"), "valid": split_dir(data_dir, "val")}
        self.folder_classes = {s: class_names(d) for s, d in self.dirs.items()}
        self.per_class, self.select_per_class, self.seed = per_class, select_per_class, seed
        self.batch_size, self.workers, self.progress, self.log = batch_size, workers, progress, log
        self.device = device or torch.device("cpu")
        self.timm_options = timm_options or TimmOptions()
        self.samples: Dict[tuple, list] = {}
        self.counters = {key: BadImageCounter(bad_images) for key in ("train", "valid", "choice")}

    def load(self, path: str, option: str = "--checkpoints") -> ImageModel:
        m = load_image_model(path, self.timm_options, self.device, option)
        if m.class_names is None:  # a timm checkpoint without class names: the folders' order
            m.class_names = self.folder_classes["train"]
        self.check_classes(path, m, option)
        return m

    def check_classes(self, path: str, m: ImageModel, option: str) -> None:
        """The model's classes must be the data's class folders, in the same order."""
        for split, folder in self.dirs.items():
            diff = first_difference(m.class_names, self.folder_classes[split], ("model", "data"))
            if diff:
                raise LskdError(
                    f"{option} {path} has {len(m.class_names)} classes that are not the "
                    f"{len(self.folder_classes[split])} class folders of {folder} ({diff}); "
                    "use the data the model was trained on (or --class-file in its output order)"
                )

    def class_index(self, m: ImageModel) -> Dict[str, int]:
        return {n: i for i, n in enumerate(m.class_names)}

    def loader(self, m: ImageModel, items, counter):
        loader = torch.utils.data.DataLoader(
            ImageList(items, eval_transform(m)),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=collate_checked,
        )
        return readable_batches(loader, counter), len(loader)

    def capture_items(self, m, items, prob_ids, split, desc, keep_features=True, key=None) -> Captured:
        """Capture on ``items``; unreadable files are counted under ``key`` (default: the split)."""
        counter = self.counters[key or split]
        before = len(counter.files)
        batches, total = self.loader(m, items, counter)
        cap = capture_timm(m.model, batches, prob_ids, desc, self.progress, keep_features, total)
        if len(counter.files) > before:  # the first model to meet them says so; the others see the same
            print(f"lskd: {counter.warning(str(self.dirs[split]))}", file=sys.stderr)  # warnings: stderr
        return cap

    def confusion(self, m: ImageModel) -> Tuple[np.ndarray, List[str], List[int]]:
        """Mean soft predictions M[i, j] on a validation sample of every class (automatic choice)."""
        k = len(m.class_names)
        n_sel = self.select_per_class or min(self.per_class, 50)
        items = sample_files(self.dirs["valid"], m.class_names, range(k), n_sel, self.seed)
        self.log(f"diffusion: choosing classes on {len(items)} {self.dirs['valid'].name} images")
        cap = self.capture_items(m, items, range(k), "valid", "choose classes", False, key="choice")
        return mean_probability_matrix(cap.probs, cap.labels, k), list(m.class_names), list(range(k))

    def capture(self, m: ImageModel, selection, split: str, desc: str) -> Captured:
        key = (split, tuple(selection.ids))
        if key not in self.samples:
            folder = self.dirs[split]
            self.samples[key] = sample_files(
                folder, selection.names, selection.ids, self.per_class, self.seed
            )
        return self.capture_items(m, self.samples[key], selection.ids, split, desc)

    def too_few(self, name: str, n: int, split: str) -> str:
        return (
            f"class {name!r} has {n} readable image(s) in {self.dirs[split]}; the analysis needs at least 2 "
            "per class and split"
        )

    def templates(self, m: ImageModel, ids: Sequence[int]) -> np.ndarray:
        return timm_templates(m.model, ids)

    def record_extra(self, m: ImageModel) -> dict:
        skipped = {s: len(self.counters[s].files) for s in self.dirs}
        return dict(m.extra, skipped_images=skipped)
