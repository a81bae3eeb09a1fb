"""Projections of penultimate features onto three class templates (method.md section 4).

Pure numpy functions. Conventions:
- ``h`` are features, shape [N, D]; ``augment(h)`` appends a constant 1, shape [N, D+1].
- ``templates`` are the final layer's weight rows of the three classes with their own bias
  appended, shape [3, D+1], so that ``augment(h) @ templates.T`` are the three logits.

The paper's projection: an orthonormal basis ``Q`` [D+1, 3] of the span of the three templates
(QR), coordinates ``z = Q^T augment(h)`` (3-D), then a 2-D PCA fitted on the training points
(and the class centroids). Because every template lies in span(Q), ``z`` keeps the three logits
exactly: ``z @ (Q^T t_k) = t_k . augment(h)``.

Mueller et al.'s projection: the affine plane *through* the three template points; 2-D
coordinates of each point's orthogonal projection onto that plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lskd_plugins.errors import LskdError


def augment(h: np.ndarray) -> np.ndarray:
    """Append the constant 1 that the bias multiplies: [N, D] -> [N, D+1]."""
    h = np.asarray(h, dtype=np.float64)
    return np.concatenate([h, np.ones((h.shape[0], 1), dtype=h.dtype)], axis=1)


def augment_templates(weight_rows: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Weight rows [3, D] with their own bias appended -> [3, D+1] (bias 0 when absent)."""
    w = np.asarray(weight_rows, dtype=np.float64)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    return np.concatenate([w, b[:, None]], axis=1)


def template_basis(templates: np.ndarray) -> np.ndarray:
    """Orthonormal basis [D+1, 3] of the span of the template rows (reduced QR).

    Signs are fixed so that each template has a non-negative coordinate on the basis vector
    that QR built from it (R's diagonal >= 0), making the basis deterministic.
    """
    t = np.asarray(templates, dtype=np.float64)
    q, r = np.linalg.qr(t.T, mode="reduced")
    diag = np.diag(r)
    scale = np.abs(diag).max() if diag.size else 0.0
    if diag.size != t.shape[0] or np.any(np.abs(diag) <= 1e-10 * max(scale, 1e-300)):
        raise LskdError(
            "the three class templates are linearly dependent (identical or zero weight rows); "
            "choose three different classes of a trained model"
        )
    signs = np.where(diag < 0, -1.0, 1.0)
    return q * signs[None, :]


def project(h_aug: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """3-D coordinates z = Q^T h of augmented features: [N, D+1] -> [N, 3]."""
    return np.asarray(h_aug, dtype=np.float64) @ basis


@dataclass
class PCA2D:
    """A 2-D PCA (mean and two principal directions, rows of ``components``)."""

    mean: np.ndarray
    components: np.ndarray  # [2, d]
    explained_variance_ratio: np.ndarray  # [2]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


def fit_pca_2d(points: np.ndarray) -> PCA2D:
    """PCA to two dimensions by SVD; each direction's sign is fixed (largest |loading| > 0)."""
    x = np.asarray(points, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:2].copy()
    for i in range(comps.shape[0]):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    var = s**2
    total = var.sum()
    ratio = var[:2] / total if total > 0 else np.zeros(2)
    if comps.shape[0] < 2:  # fewer than 2 informative directions (degenerate input)
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
        ratio = np.concatenate([ratio, np.zeros(2 - ratio.shape[0])])
    return PCA2D(mean=mean, components=comps, explained_variance_ratio=ratio)


@dataclass
class TemplatePlane:
    """Mueller et al.'s plane through the three template points: origin + orthonormal [2, D+1]."""

    origin: np.ndarray
    axes: np.ndarray

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """2-D coordinates of the orthogonal projection of points onto the plane."""
        return (np.asarray(x, dtype=np.float64) - self.origin) @ self.axes.T


def template_plane(templates: np.ndarray) -> TemplatePlane:
    """The affine plane through t_a, t_b, t_c, origin at their mean, first axis along t_b - t_a."""
    t = np.asarray(templates, dtype=np.float64)
    q, r = np.linalg.qr(np.stack([t[1] - t[0], t[2] - t[0]], axis=1), mode="reduced")
    if np.any(np.abs(np.diag(r)) <= 1e-12 * max(np.abs(r).max(), 1e-300)):
        raise LskdError("the three class templates are collinear; no plane passes through them")
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
    return TemplatePlane(origin=t.mean(axis=0), axes=q.T)
