"""Library entry points: models + data in, plain records (and projections for the plots) out.

- ``analyse_captured(train, valid, templates, ...)``: the modality-agnostic core.
- ``analyse_image_checkpoints(paths, data_dir, ...)``: lskd image checkpoints on an ImageFolder.
- ``analyse_nmt_checkpoints(paths, data_bin, ...)``: fairseq translation checkpoints on a data-bin.

A record is a JSON-ready dict: label, checkpoint, classes, selection, and one dict of numbers per
split ("train", "valid"). A projection (``ModelProjection``) holds the 2-D points to draw.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from lskd_plugins.diffusion.capture import (
    Captured,
    capture_fairseq,
    capture_timm,
    fairseq_templates,
    timm_templates,
)
from lskd_plugins.diffusion.metrics import centroids, geometry_numbers, probability_numbers
from lskd_plugins.diffusion.projection import augment, fit_pca_2d, project, template_basis, template_plane
from lskd_plugins.diffusion.select import (
    Selection,
    choose_classes,
    mean_probability_matrix,
    select_by_names,
)
from lskd_plugins.errors import LskdError

SPLITS = ("train", "valid")
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    import sys

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


# ------------------------------------------------------------------------------------ the core


@dataclass
class SplitProjection:
    paper_xy: np.ndarray  # [N, 2] PCA of the 3-D template coordinates
    paper_centroids: np.ndarray  # [3, 2]
    plane_xy: np.ndarray  # [N, 2] Mueller et al.'s template plane
    plane_centroids: np.ndarray  # [3, 2]
    y: np.ndarray  # [N] positions 0, 1, 2 = a, b, c


@dataclass
class ModelProjection:
    label: str
    class_names: List[str]
    splits: Dict[str, SplitProjection]
    plane_templates: np.ndarray  # [3, 2] the template points in the plane's coordinates
    pca_explained_variance: List[float]


def positions(labels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Map class/token ids to positions 0, 1, 2 (a, b, c); -1 for anything else."""
    pos = np.full(len(labels), -1, dtype=np.int64)
    for k, cid in enumerate(class_ids):
        pos[np.asarray(labels) == cid] = k
    return pos


def analyse_captured(
    captured: Dict[str, Captured],
    templates: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    label: str,
    checkpoint: str = "",
    modality: str = "",
    selection: Selection | None = None,
) -> Tuple[dict, ModelProjection]:
    """Numbers and 2-D projections of one model from its captured train/valid features.

    ``captured[split].probs`` must be the probabilities of ``class_ids`` in that order.
    """
    basis = template_basis(templates)
    plane = template_plane(templates)
    z = {}
    ys = {}
    record = {
        "label": label,
        "checkpoint": str(checkpoint),
        "modality": modality,
        "classes": {
            "a": class_names[0],
            "b": class_names[1],
            "c": class_names[2],
            "ids": [int(i) for i in class_ids],
        },
        "selection": selection.as_dict() if selection is not None else None,
        "template_coordinates": (templates @ basis).tolist(),
        "feature_dim": int(templates.shape[1] - 1),
    }
    for split, cap in captured.items():
        y = positions(cap.labels, class_ids)
        if np.any(y < 0):
            raise ValueError(f"{split}: labels outside the three chosen classes")
        if list(cap.prob_ids) != [int(i) for i in class_ids]:
            raise ValueError(f"{split}: probabilities are not those of the chosen classes in order")
        ys[split] = y
        z[split] = project(augment(cap.features), basis)
        numbers = geometry_numbers(z[split], y)
        numbers.update(probability_numbers(cap.probs, y, cap.correct))
        numbers["feature_norm"] = (
            float(np.linalg.norm(cap.features, axis=1).mean()) if len(y) else float("nan")
        )
        record[split] = numbers
    fit_on = "train" if "train" in z else next(iter(z))
    mu_fit = centroids(z[fit_on], ys[fit_on])
    pca = fit_pca_2d(np.vstack([z[fit_on], mu_fit[~np.isnan(mu_fit).any(axis=1)]]))
    record["pca_explained_variance"] = pca.explained_variance_ratio.tolist()
    splits = {}
    for split in z:
        mu = centroids(z[split], ys[split])
        h_aug = augment(captured[split].features)
        plane_xy = plane.coordinates(h_aug)
        splits[split] = SplitProjection(
            paper_xy=pca.transform(z[split]),
            paper_centroids=pca.transform(mu),
            plane_xy=plane_xy,
            plane_centroids=centroids(plane_xy, ys[split]),
            y=ys[split],
        )
    proj = ModelProjection(
        label=label,
        class_names=list(class_names),
        splits=splits,
        plane_templates=plane.coordinates(templates),
        pca_explained_variance=pca.explained_variance_ratio.tolist(),
    )
    return record, proj


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


# -------------------------------------------------------------------------------------- images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
VALID_SPLIT_NAMES = ("val", "validation", "valid", "test")


def image_split_dirs(data_dir: os.PathLike | str) -> Dict[str, Path]:
    """{'train': root/train, 'valid': root/val (or validation, valid, test)}."""
    root = Path(data_dir)
    if not root.is_dir():
        raise LskdError(f"image data folder not found: {root}")
    if not (root / "train").is_dir():
        raise LskdError(f"{root} has no train/ folder; expected an ImageFolder root with train/ and val/")
    for name in VALID_SPLIT_NAMES:
        if (root / name).is_dir():
            return {"train": root / "train", "valid": root / name}
    raise LskdError(f"{root} has no val/ folder (nor validation/, valid/, test/); expected train/ and val/")


def sample_images(
    split_dir: Path, class_names: Sequence[str], class_ids: Sequence[int], per_class: int, seed: int = 0
) -> List[Tuple[str, int]]:
    """Up to ``per_class`` files per class, a seeded random sample (the same for every model)."""
    items = []
    missing = [n for n in class_names if not (split_dir / n).is_dir()]
    if missing:
        raise LskdError(
            f"{split_dir} has no folder for class {', '.join(missing)}; is it the data the "
            "checkpoints were trained on?"
        )
    for name, cid in zip(class_names, class_ids):
        files = sorted(str(p) for p in (split_dir / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise LskdError(f"no images in {split_dir / name}")
        rng = random.Random(f"{seed}:{name}")
        chosen = sorted(rng.sample(files, min(per_class, len(files))))
        items.extend((f, int(cid)) for f in chosen)
    return items


class ImageList(torch.utils.data.Dataset):
    def __init__(self, items: List[Tuple[str, int]], transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


def eval_transform(model: torch.nn.Module, meta: dict):
    """timm's evaluation transform from the checkpoint's data_config (resolved from the model if absent)."""
    import timm.data

    cfg = dict(timm.data.resolve_data_config({}, model=model))
    cfg.update(meta.get("data_config") or {})
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return timm.data.create_transform(**{k: cfg[k] for k in keys if k in cfg}, is_training=False)


def _image_loader(items, transform, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(
        ImageList(items, transform), batch_size=batch_size, shuffle=False, num_workers=workers
    )


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
) -> Tuple[List[dict], List[ModelProjection]]:
    """Diffusion records of lskd image checkpoints on ``data_dir``/{train,val} (3 classes)."""
    from lskd_plugins.image.checkpoint import load_model

    paths = checkpoint_list(paths, labels)
    if per_class < 2:
        raise LskdError("--per-class must be at least 2")
    dev = default_device(device)
    dirs = image_split_dirs(data_dir)

    def load(path):
        model, meta = load_model(path)
        return model.to(dev), meta

    first_model, first_meta = load(paths[0])
    class_names = [str(c) for c in first_meta["class_names"]]
    index = {n: i for i, n in enumerate(class_names)}
    if classes:
        selection = select_by_names(classes, index, "class")
    else:
        ref_path = reference or paths[0]
        ref_model, ref_meta = (first_model, first_meta) if ref_path == paths[0] else load(ref_path)
        if [str(c) for c in ref_meta["class_names"]] != class_names:
            raise LskdError(f"reference {ref_path} has different classes from {paths[0]}")
        n_sel = select_per_class or min(per_class, 50)
        items = sample_images(dirs["valid"], class_names, range(len(class_names)), n_sel, seed)
        log(f"diffusion: choosing classes with {ref_path} on {len(items)} {dirs['valid'].name} images")
        cap = capture_timm(
            ref_model,
            _image_loader(items, eval_transform(ref_model, ref_meta), batch_size, workers),
            prob_ids=range(len(class_names)),
            desc="choose classes",
            progress=progress,
            keep_features=False,
        )
        m = mean_probability_matrix(cap.probs, cap.labels, len(class_names))
        ref_label = ref_meta.get("label") or Path(ref_path).stem
        selection = choose_classes(m, class_names, reference=f"{ref_label} ({ref_path})")
        if ref_model is not first_model:
            del ref_model
    log(
        f"diffusion: classes a={selection.names[0]} b={selection.names[1]} c={selection.names[2]}: "
        f"{selection.reason}"
    )

    raw_labels = []
    records, projections = [], []
    samples = {s: sample_images(dirs[s], selection.names, selection.ids, per_class, seed) for s in SPLITS}
    for i, path in enumerate(paths):
        model, meta = (first_model, first_meta) if i == 0 else load(path)
        if [str(c) for c in meta["class_names"]] != class_names:
            raise LskdError(
                f"{path} has different classes from {paths[0]}; compare models of the same data set"
            )
        raw_labels.append(labels[i] if labels else (meta.get("label") or Path(path).stem))
        transform = eval_transform(model, meta)
        captured = {
            s: capture_timm(
                model,
                _image_loader(samples[s], transform, batch_size, workers),
                prob_ids=selection.ids,
                desc=f"{raw_labels[-1]} {s}",
                progress=progress,
            )
            for s in SPLITS
        }
        record, proj = analyse_captured(
            captured,
            timm_templates(model, selection.ids),
            selection.ids,
            selection.names,
            raw_labels[-1],
            checkpoint=path,
            modality="image",
            selection=selection,
        )
        record["model_name"] = meta.get("model_name")
        record["args"] = meta.get("args")
        records.append(record)
        projections.append(proj)
        log(summary_line(record, raw_labels[-1]))
        del model
    return relabel(records, projections, raw_labels, paths)


# --------------------------------------------------------------------------------- translation


def nmt_label(cfg, path: str) -> str:
    """A readable role from a fairseq checkpoint's config, else the file name.

    ``lskd_kd`` with kd_alpha > 0 -> "student T=3 kd_alpha=0.9 eps=0.1 from <teacher folder>";
    anything else -> "teacher alpha=<label_smoothing>".
    """
    crit = getattr(cfg, "criterion", None)
    if crit is None:
        return Path(path).stem

    def get(node, name, default=None):
        try:
            value = getattr(node, name, default)
        except Exception:  # omegaconf missing values
            value = default
        return default if value is None else value

    name = str(get(crit, "_name", "") or "")
    ls = float(get(crit, "label_smoothing", 0.0) or 0.0)
    alpha = get(crit, "kd_alpha", None)
    if "kd" in name and (alpha is None or float(alpha) > 0):
        parts = [f"student T={float(get(crit, 'kd_temperature', 1.0)):g}"]
        if alpha is not None:
            parts.append(f"kd_alpha={float(alpha):g}")
        if ls:
            parts.append(f"eps={ls:g}")
        teacher = str(get(getattr(cfg, "task", None), "teacher_path", "") or "")
        if teacher:
            first = Path(teacher.split(":")[0])
            parts.append(f"from {first.parent.name or first.stem}")
        return " ".join(parts)
    return f"teacher alpha={ls:g}"


def is_word(symbol: str) -> bool:
    """A whole-word target symbol (letters only; not a BPE continuation, not a special symbol)."""
    s = symbol.lstrip("\u2581")
    return (
        bool(s)
        and s.isalpha()
        and not symbol.endswith("@@")
        and not (symbol.startswith("<") and symbol.endswith(">"))
    )


def nmt_batches(dataset, n_sentences: int, batch_size: int) -> List[dict]:
    """The first ``n_sentences`` sentences of a fairseq LanguagePairDataset, collated in order."""
    n = min(n_sentences, len(dataset))
    return [
        dataset.collater([dataset[j] for j in range(i, min(i + batch_size, n))])
        for i in range(0, n, batch_size)
    ]


def cap_per_class(cap: Captured, per_class: int) -> Captured:
    """Keep the first ``per_class`` rows of each label (occurrence order)."""
    keep = np.zeros(len(cap.labels), dtype=bool)
    for lab in np.unique(cap.labels):
        idx = np.flatnonzero(cap.labels == lab)[:per_class]
        keep[idx] = True
    return Captured(cap.features[keep], cap.labels[keep], cap.probs[keep], cap.correct[keep], cap.prob_ids)


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
) -> Tuple[List[dict], List[ModelProjection]]:
    """Diffusion records of fairseq translation checkpoints; classes are target tokens."""
    from lskd_plugins.fairseq_io import load_ensemble

    paths = checkpoint_list(paths, labels)
    data_bin = Path(data_bin)
    if not data_bin.is_dir():
        raise LskdError(f"data-bin folder not found: {data_bin}")
    dev = default_device(device)
    overrides = {"data": str(data_bin)}

    def load(path):
        models, cfg, task = load_ensemble([path], arg_overrides=overrides)
        return models[0].to(dev).eval(), cfg, task

    first_model, first_cfg, task = load(paths[0])
    tgt_dict = task.target_dictionary
    batches = {}
    for split, subset in (("train", train_subset), ("valid", valid_subset)):
        try:
            task.load_dataset(subset)
        except Exception as err:
            raise LskdError(
                f"cannot load the {subset!r} split of {data_bin}: {type(err).__name__}: {err}"
            ) from None
        batches[split] = nmt_batches(task.dataset(subset), max_sentences, batch_size)
    pad = tgt_dict.pad()

    if tokens:
        index = {tgt_dict[i]: i for i in range(tgt_dict.nspecial, len(tgt_dict))}
        selection = select_by_names(tokens, index, "target token")
    else:
        counts = Counter()
        for b in batches["valid"]:
            counts.update(t for t in b["target"].flatten().tolist() if t != pad)
        cand = [t for t, _ in counts.most_common() if t >= tgt_dict.nspecial and is_word(tgt_dict[t])][
            :candidates
        ]
        if len(cand) < 3:
            raise LskdError(
                f"fewer than three word tokens in the first {max_sentences} {valid_subset} sentences; "
                "give --tokens"
            )
        ref_path = reference or paths[0]
        ref_model = first_model if ref_path == paths[0] else load(ref_path)[0]
        log(f"diffusion: choosing tokens among the {len(cand)} most frequent target words with {ref_path}")
        cap = capture_fairseq(
            ref_model,
            batches["valid"],
            cand,
            cand,
            pad=pad,
            desc="choose tokens",
            progress=progress,
            keep_features=False,
        )
        m = mean_probability_matrix(cap.probs, positions(cap.labels, cand), len(cand))
        selection = choose_classes(
            m,
            [tgt_dict[t] for t in cand],
            ids=cand,
            reference=f"{nmt_label(first_cfg, ref_path)} ({ref_path})",
        )
    log(
        f"diffusion: tokens a={selection.names[0]} b={selection.names[1]} c={selection.names[2]}: "
        f"{selection.reason}"
    )

    raw_labels, records, projections = [], [], []
    for i, path in enumerate(paths):
        model, cfg, _ = (first_model, first_cfg, task) if i == 0 else load(path)
        raw_labels.append(labels[i] if labels else nmt_label(cfg, path))
        n_out = (
            model.decoder.output_projection.weight.shape[0]
            if hasattr(model.decoder, "output_projection")
            else None
        )
        if n_out is not None and n_out != len(tgt_dict):
            raise LskdError(
                f"{path} has {n_out} output rows but {data_bin} has {len(tgt_dict)} target symbols; "
                "use the data-bin it was trained on"
            )
        captured = {}
        for split in SPLITS:
            cap = capture_fairseq(
                model,
                batches[split],
                selection.ids,
                selection.ids,
                pad=pad,
                desc=f"{raw_labels[-1]} {split}",
                progress=progress,
            )
            cap = cap_per_class(cap, per_token)
            for name, tid in zip(selection.names, selection.ids):
                n = int(np.sum(cap.labels == tid))
                if n < 2:
                    raise LskdError(
                        f"target token {name!r} occurs {n} time(s) in the first {max_sentences} "
                        f"{split} sentences; "
                        "raise --max-sentences or choose a more frequent token"
                    )
            captured[split] = cap
        record, proj = analyse_captured(
            captured,
            fairseq_templates(model, selection.ids),
            selection.ids,
            selection.names,
            raw_labels[-1],
            checkpoint=path,
            modality="nmt",
            selection=selection,
        )
        records.append(record)
        projections.append(proj)
        log(summary_line(record, raw_labels[-1]))
        del model
    return relabel(records, projections, raw_labels, paths)
