"""The diffusion analysis, one loop for every modality: checkpoints + data in, records out.

``analyse_checkpoints(source, paths, ...)`` walks the steps once: load the first model, choose the
three classes (by name, or from a reference model's mean soft predictions), then for each
checkpoint capture train and validation features, compute the numbers (``core.analyse_captured``)
and give it a unique label. A *source* knows one modality: ``image_source.ImageSource`` (timm
classifiers on an ImageFolder root) and ``nmt_source.NmtSource`` (fairseq translation models on a
data-bin; classes are target tokens). A source provides ``load(path, option)``, ``class_index(model)``,
``confusion(model)``, ``capture(model, selection, split, desc)``, ``templates(model, ids)``,
``too_few(name, n, split)``, ``record_extra(model)`` and ``modality``/``unit``/``units``.

``analyse_image_checkpoints`` and ``analyse_nmt_checkpoints`` are the library entry points (thin
wrappers that build the source).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch

from lskd_plugins.diffusion.core import (  # noqa: F401  (SplitProjection, positions: their old home)
    SPLITS,
    ModelProjection,
    SplitProjection,
    analyse_captured,
    positions,
)
from lskd_plugins.diffusion.select import Selection, choose_classes, select_by_names
from lskd_plugins.errors import LskdError

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_device(device: str | None = None) -> torch.device:
    if device:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise LskdError(f"bad --device {device!r}: {err}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise LskdError(f"--device {device} asked for CUDA but no GPU is available; use --device cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checkpoint_list(paths: Sequence, labels: Sequence[str] | None) -> List[str]:
    """The checkpoint paths as strings; one-line errors for none, or a --labels count mismatch."""
    paths = [str(p) for p in paths]
    if not paths:
        raise LskdError("no checkpoints given")
    if labels is not None and len(labels) != len(paths):
        raise LskdError(f"--labels has {len(labels)} entries for {len(paths)} checkpoints")
    return paths


def summary_line(record: dict, label: str) -> str:
    """One progress line per analysed model: its validation eta, Fisher J_ab and leakage."""
    v = record["valid"]
    return (
        f"diffusion: {label}: eta={v['eta']:.3f} J_ab={v['fisher_ab']:.3f} "
        f"leakage_ab={v['leakage_ab']:.3f} (valid)"
    )


def relabel(
    records: List[dict], projections: List[ModelProjection], raw_labels: List[str], paths: Sequence[str]
) -> Tuple[List[dict], List[ModelProjection]]:
    """Give every record and projection its unique display label."""
    for rec, proj, lab in zip(records, projections, dedupe_labels(raw_labels, paths)):
        rec["label"] = proj.label = lab
    return records, projections


def dedupe_labels(labels: List[str], paths: Sequence[str]) -> List[str]:
    """Make labels unique: append the checkpoint's folder name where they clash, then a number."""
    counts = Counter(labels)
    out = []
    for lab, p in zip(labels, paths):
        if counts[lab] > 1:
            lab = f"{lab} [{Path(p).parent.name or Path(p).stem}]"
        out.append(lab)
    counts, seen = Counter(out), Counter()
    final = []
    for lab in out:
        seen[lab] += 1
        final.append(f"{lab} #{seen[lab]}" if counts[lab] > 1 else lab)
    return final


# ------------------------------------------------------------------------------------ the loop


def choose_selection(source, first, paths: List[str], classes, reference: str | None, log: Log) -> Selection:
    """The three classes: by name, or the reference model's most confused pair and a far class."""
    if classes:
        selection = select_by_names(classes, source.class_index(first), source.unit)
    else:
        ref_path = reference or paths[0]
        ref = first if ref_path == paths[0] else source.load(ref_path, "--reference")
        log(f"diffusion: choosing {source.units} with {ref_path}")
        matrix, names, ids = source.confusion(ref)
        selection = choose_classes(matrix, names, ids=ids, reference=f"{ref.label} ({ref_path})")
    a, b, c = selection.names
    log(f"diffusion: {source.units} a={a} b={b} c={c}: {selection.reason}")
    return selection


def analyse_model(source, model, path: str, selection: Selection, label: str) -> Tuple[dict, ModelProjection]:
    """Capture one model's train and validation features and compute its record and projection."""
    captured = {}
    for split in SPLITS:
        cap = source.capture(model, selection, split, f"{label} {split}")
        for name, cid in zip(selection.names, selection.ids):
            n = int(np.sum(cap.labels == cid))
            if n < 2:
                raise LskdError(source.too_few(name, n, split))
        captured[split] = cap
    record, proj = analyse_captured(
        captured,
        source.templates(model, selection.ids),
        selection.ids,
        selection.names,
        label,
        checkpoint=path,
        modality=source.modality,
        selection=selection,
    )
    record.update(source.record_extra(model))
    return record, proj


def analyse_checkpoints(
    source,
    paths: Sequence,
    classes: str | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    reference: str | None = None,
    log: Log = _stderr,
) -> Tuple[List[dict], List[ModelProjection]]:
    """Diffusion records and projections of every checkpoint, in order, with unique labels."""
    paths = checkpoint_list(paths, labels)
    first = source.load(paths[0])
    selection = choose_selection(source, first, paths, classes, reference, log)
    raw_labels, records, projections = [], [], []
    for i, path in enumerate(paths):
        model = first if i == 0 else source.load(path)
        raw_labels.append(labels[i] if labels else model.label)
        record, proj = analyse_model(source, model, path, selection, raw_labels[-1])
        records.append(record)
        projections.append(proj)
        log(summary_line(record, raw_labels[-1]))
        del model
    return relabel(records, projections, raw_labels, paths)


# ---------------------------------------------------------------------------- library entry points


def analyse_image_checkpoints(
    paths: Sequence[str],
    data_dir: os.PathLike | str,
    classes: str | Sequence[str] | None = None,
    per_class: int = 100,
    labels: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    reference: str | None = None,
    select_per_class: int | None = None,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    log: Log = _stderr,
    model_name: str | None = None,
    num_classes: int | None = None,
    class_file: str | None = None,
    bad_images: str = "skip",
) -> Tuple[List[dict], List[ModelProjection]]:
    """Diffusion records of image classifiers on ``data_dir``/{train,val} (3 classes).

    lskd image checkpoints by default; ``model_name``/``num_classes``/``class_file`` read timm ones;
    ``bad_images``: "skip" (count) or "error" for unreadable image files (image/data.py's policy)."""
    from lskd_plugins.diffusion.image_source import ImageSource, TimmOptions

    if per_class < 2:
        raise LskdError("--per-class must be at least 2")
    checkpoint_list(paths, labels)
    source = ImageSource(
        data_dir,
        per_class=per_class,
        select_per_class=select_per_class,
        batch_size=batch_size,
        workers=workers,
        seed=seed,
        device=default_device(device),
        progress=progress,
        log=log,
        timm_options=TimmOptions(model_name, num_classes, class_file),
        bad_images=bad_images,
    )
    return analyse_checkpoints(source, paths, classes, labels, reference, log)


def analyse_nmt_checkpoints(
    paths: Sequence[str],
    data_bin: os.PathLike | str,
    tokens: str | Sequence[str] | None = None,
    max_sentences: int = 2000,
    per_token: int = 500,
    labels: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    reference: str | None = None,
    candidates: int = 50,
    train_subset: str = "train",
    valid_subset: str = "valid",
    progress: bool = True,
    log: Log = _stderr,
    seed: int | None = None,
) -> Tuple[List[dict], List[ModelProjection]]:
    """Diffusion records of fairseq translation checkpoints; classes are target tokens; ``seed``:
    a seeded sample of ``max_sentences`` sentences per split instead of the first ones."""
    from lskd_plugins.diffusion.nmt_source import NmtSource

    checkpoint_list(paths, labels)
    source = NmtSource(
        data_bin,
        max_sentences=max_sentences,
        per_token=per_token,
        batch_size=batch_size,
        candidates=candidates,
        train_subset=train_subset,
        valid_subset=valid_subset,
        device=default_device(device),
        progress=progress,
        log=log,
        seed=seed,
    )
    return analyse_checkpoints(source, paths, tokens, labels, reference, log)
