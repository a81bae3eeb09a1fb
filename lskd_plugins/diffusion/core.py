"""The modality-agnostic core: captured features of one model in, its numbers and 2-D views out.

``analyse_captured`` is pure (numpy only): it never loads a model or reads data, so images,
translation and any future modality share it, and tests feed it synthetic points. Everything a
modality knows (how to load a checkpoint, capture features, find the class templates, name the
run) lives in its source (``image_source.py``, ``nmt_source.py``); ``analyse.py`` walks the steps.

A record is a JSON-ready dict: label, checkpoint, classes, selection, and one dict of numbers per
split ("train", "valid"). A projection (``ModelProjection``) holds the 2-D points to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from lskd_plugins.diffusion.capture import Captured
from lskd_plugins.diffusion.metrics import centroids, geometry_numbers, probability_numbers
from lskd_plugins.diffusion.projection import (
    PCA2D,
    TemplatePlane,
    augment,
    fit_pca_2d,
    project,
    template_basis,
    template_plane,
)
from lskd_plugins.diffusion.select import Selection

SPLITS = ("train", "valid")


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


def record_header(
    templates: np.ndarray,
    basis: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    label: str,
    checkpoint: str,
    modality: str,
    selection: Selection | None,
) -> dict:
    """The parts of a record that do not depend on the captured points."""
    return {
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


def split_numbers(cap: Captured, z: np.ndarray, y: np.ndarray) -> dict:
    """Geometry (on z) and probability numbers of one split."""
    numbers = geometry_numbers(z, y)
    numbers.update(probability_numbers(cap.probs, y, cap.correct))
    numbers["feature_norm"] = float(np.linalg.norm(cap.features, axis=1).mean()) if len(y) else float("nan")
    return numbers


def check_captured(split: str, cap: Captured, class_ids: Sequence[int]) -> np.ndarray:
    """Positions 0/1/2 of the captured labels; a programming error when they do not fit the classes."""
    y = positions(cap.labels, class_ids)
    if np.any(y < 0):
        raise ValueError(f"{split}: labels outside the three chosen classes")
    if list(cap.prob_ids) != [int(i) for i in class_ids]:
        raise ValueError(f"{split}: probabilities are not those of the chosen classes in order")
    return y


def fit_view(z: Dict[str, np.ndarray], ys: Dict[str, np.ndarray]) -> PCA2D:
    """The 2-D PCA, fitted on the training points and the training centroids."""
    fit_on = "train" if "train" in z else next(iter(z))
    mu_fit = centroids(z[fit_on], ys[fit_on])
    return fit_pca_2d(np.vstack([z[fit_on], mu_fit[~np.isnan(mu_fit).any(axis=1)]]))


def split_projection(pca: PCA2D, plane: TemplatePlane, cap: Captured, z, y) -> SplitProjection:
    plane_xy = plane.coordinates(augment(cap.features))
    return SplitProjection(
        paper_xy=pca.transform(z),
        paper_centroids=pca.transform(centroids(z, y)),
        plane_xy=plane_xy,
        plane_centroids=centroids(plane_xy, y),
        y=y,
    )


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
    record = record_header(templates, basis, class_ids, class_names, label, checkpoint, modality, selection)
    z, ys = {}, {}
    for split, cap in captured.items():
        ys[split] = check_captured(split, cap, class_ids)
        z[split] = project(augment(cap.features), basis)
        record[split] = split_numbers(cap, z[split], ys[split])
    pca = fit_view(z, ys)
    record["pca_explained_variance"] = pca.explained_variance_ratio.tolist()
    proj = ModelProjection(
        label=label,
        class_names=list(class_names),
        splits={s: split_projection(pca, plane, captured[s], z[s], ys[s]) for s in z},
        plane_templates=plane.coordinates(templates),
        pca_explained_variance=pca.explained_variance_ratio.tolist(),
    )
    return record, proj
