"""Diffusion numbers on the 3-D template coordinates (method.md section 5).

Classes are positions 0, 1, 2 = a, b, c: (a, b) the semantically similar pair, c the dissimilar
class. Every function is pure numpy and takes coordinates ``z`` [N, d] and labels ``y`` in
{0, 1, 2}.

Spread along a unit direction u is the standard deviation (population, ddof=0) of the
projections (z - mu_a) . u of the class's points. All ratios (eta, Fisher J, leakage) are
unchanged when every coordinate is multiplied by the same positive constant.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

A, B, C = 0, 1, 2
CLASS_KEYS = ("a", "b", "c")


def centroids(z: np.ndarray, y: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Class means [n_classes, d] (NaN rows for classes without points)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    out = np.full((n_classes, z.shape[1]), np.nan)
    for k in range(n_classes):
        if np.any(y == k):
            out[k] = z[y == k].mean(axis=0)
    return out


def within_spread(z: np.ndarray, mu: np.ndarray) -> float:
    """s_k = mean Euclidean distance of the class's points to its centroid."""
    return (
        float(np.linalg.norm(np.asarray(z, dtype=np.float64) - mu, axis=1).mean()) if len(z) else float("nan")
    )


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.full_like(v, np.nan)


def spread_along(z: np.ndarray, mu: np.ndarray, direction: np.ndarray) -> float:
    """Standard deviation of the projections of (z - mu) on a unit direction."""
    proj = (np.asarray(z, dtype=np.float64) - mu) @ direction
    return float(proj.std()) if len(proj) else float("nan")


def directional_diffusion(
    z_a: np.ndarray, mu_a: np.ndarray, mu_b: np.ndarray, mu_c: np.ndarray
) -> Dict[str, float]:
    """eta = spread of class a along a->b over spread along (a->c made orthogonal to a->b).

    About 1 for isotropic spread; > 1 when class a stretches toward the similar class b.
    """
    u = unit(mu_b - mu_a)
    w = (mu_c - mu_a) - ((mu_c - mu_a) @ u) * u
    v = unit(w)
    along = spread_along(z_a, mu_a, u)
    across = spread_along(z_a, mu_a, v)
    eta = along / across if across > 0 else float("nan")
    return {"eta": float(eta), "spread_toward_similar": along, "spread_toward_dissimilar": across}


def fisher(d: float, s1: float, s2: float) -> float:
    """J = d^2 / (s1^2 + s2^2): high when two clusters are far apart relative to their spreads."""
    den = s1**2 + s2**2
    return float(d**2 / den) if den > 0 else float("nan")


def leakage(z_k: np.ndarray, mu_own: np.ndarray, mu_other: np.ndarray) -> float:
    """Fraction of a class's points that are nearer another class's centroid than their own."""
    if not len(z_k):
        return float("nan")
    z_k = np.asarray(z_k, dtype=np.float64)
    d_own = np.linalg.norm(z_k - mu_own, axis=1)
    d_other = np.linalg.norm(z_k - mu_other, axis=1)
    return float(np.mean(d_other < d_own))


def geometry_numbers(z: np.ndarray, y: np.ndarray) -> Dict[str, object]:
    """All geometric measures of section 5 for one model on one split."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    mu = centroids(z, y)
    pts = [z[y == k] for k in range(3)]
    s = [within_spread(pts[k], mu[k]) for k in range(3)]
    d_ab = float(np.linalg.norm(mu[A] - mu[B]))
    d_ac = float(np.linalg.norm(mu[A] - mu[C]))
    d_bc = float(np.linalg.norm(mu[B] - mu[C]))
    eta_a = directional_diffusion(pts[A], mu[A], mu[B], mu[C])
    eta_b = directional_diffusion(pts[B], mu[B], mu[A], mu[C])
    return {
        "n": {k: int(len(p)) for k, p in zip(CLASS_KEYS, pts)},
        "centroids": {k: mu[i].tolist() for i, k in enumerate(CLASS_KEYS)},
        "spread": {k: s[i] for i, k in enumerate(CLASS_KEYS)},
        "d_ab": d_ab,
        "d_ac": d_ac,
        "d_bc": d_bc,
        "fisher_ab": fisher(d_ab, s[A], s[B]),
        "fisher_ac": fisher(d_ac, s[A], s[C]),
        "eta": eta_a["eta"],
        "eta_b": eta_b["eta"],
        "spread_a_toward_b": eta_a["spread_toward_similar"],
        "spread_a_toward_c": eta_a["spread_toward_dissimilar"],
        "leakage_ab": leakage(pts[A], mu[A], mu[B]),
        "leakage_ba": leakage(pts[B], mu[B], mu[A]),
        "leakage_ac": leakage(pts[A], mu[A], mu[C]),
    }


def probability_numbers(
    probs: np.ndarray, y: np.ndarray, correct: np.ndarray | None = None
) -> Dict[str, float]:
    """Probability-space measures from the model's softmax at T = 1.

    ``probs`` [N, 3] are the full-softmax probabilities of classes a, b, c (over all K classes
    or the whole vocabulary, not renormalised over the three); ``correct`` [N] optional, whether
    the model's top-1 over all classes is the gold one.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)

    def mean(rows: np.ndarray, col: int) -> float:
        return float(p[rows, col].mean()) if rows.any() else float("nan")

    is_a, is_b = y == A, y == B
    out = {
        "p_b_given_a": mean(is_a, B),
        "p_c_given_a": mean(is_a, C),
        "p_a_given_b": mean(is_b, A),
        "p_c_given_b": mean(is_b, C),
        "p_own_a": mean(is_a, A),
        "p_own_b": mean(is_b, B),
    }
    out["p_ratio_a"] = out["p_b_given_a"] / out["p_c_given_a"] if out["p_c_given_a"] > 0 else float("nan")
    if correct is not None:
        c = np.asarray(correct, dtype=bool)
        out["accuracy"] = float(c.mean()) if len(c) else float("nan")
    return out
