"""Choosing the three classes (a, b similar; c dissimilar): from names or automatically.

Automatic choice (method.md section 5): from a reference model's mean soft predictions,
M[i, j] = mean p(j | x of class i); S = (M + M^T) / 2 is a symmetrised confusion matrix.
(a, b) = the off-diagonal maximum of S (a is the one whose inputs give the other more mass);
c = the class with the lowest mutual probability S[a, c] + S[b, c].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np

from lskd_plugins.errors import LskdError


@dataclass
class Selection:
    ids: List[int]  # [a, b, c] as class ids / token ids
    names: List[str]
    method: str  # "names" or "auto"
    reason: str
    reference: str | None = None
    scores: Dict[str, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def parse_names(spec: str | Sequence[str]) -> List[str]:
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [s for s in names if s]
    if len(names) != 3 or len(set(names)) != 3:
        raise LskdError(
            "need exactly three different names a,b,c (a and b similar, c dissimilar), got "
            f"{','.join(names) or 'none'}"
        )
    return names


def lookup_names(names: Sequence[str], index: Dict[str, int], what: str = "class") -> List[int]:
    """Map names to ids; the error names every unknown one and shows some known ones."""
    unknown = [n for n in names if n not in index]
    if unknown:
        known = list(index)
        shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise LskdError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known: {shown}"
        )
    return [int(index[n]) for n in names]


def select_by_names(spec: str | Sequence[str], index: Dict[str, int], what: str = "class") -> Selection:
    names = parse_names(spec)
    ids = lookup_names(names, index, what)
    return Selection(
        ids=ids,
        names=names,
        method="names",
        reason=f"given by the user: similar pair {names[0]}/{names[1]}, dissimilar {names[2]}",
    )


def mean_probability_matrix(probs: np.ndarray, labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """M[i, j] = mean of probs[:, j] over rows whose label is i (label = column index).

    Rows of classes without examples are NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    n = p.shape[1] if n is None else n
    m = np.full((n, p.shape[1]), np.nan)
    for i in range(n):
        if np.any(y == i):
            m[i] = p[y == i].mean(axis=0)
    return m


def choose_classes(
    mean_probs: np.ndarray,
    names: Sequence[str],
    ids: Sequence[int] | None = None,
    reference: str = "reference model",
) -> Selection:
    """Most confused pair (a, b) and the class c farthest from both, from M (square, K x K).

    ``names[i]``/``ids[i]`` describe row/column i (ids default to 0..K-1).
    """
    m = np.asarray(mean_probs, dtype=np.float64)
    k = m.shape[0]
    ids = list(range(k)) if ids is None else [int(i) for i in ids]
    valid = ~np.isnan(m).any(axis=1)
    if valid.sum() < 3:
        raise LskdError(
            "need examples of at least three classes to choose them automatically (have "
            f"{int(valid.sum())}); "
            "give them by name instead"
        )
    s = (m + m.T) / 2.0
    pair = np.where(np.outer(valid, valid) & ~np.eye(k, dtype=bool), s, -np.inf)
    i, j = np.unravel_index(np.argmax(pair), pair.shape)
    a, b = (i, j) if m[i, j] >= m[j, i] else (j, i)
    far = s[a] + s[b]
    far = np.where(valid, far, np.inf)
    far[[a, b]] = np.inf
    c = int(np.argmin(far))
    scores = {
        "p_b_given_a": float(m[a, b]),
        "p_a_given_b": float(m[b, a]),
        "p_c_given_a": float(m[a, c]),
        "p_c_given_b": float(m[b, c]),
        "p_a_given_c": float(m[c, a]),
        "p_b_given_c": float(m[c, b]),
    }
    reason = (
        f"most confused pair under {reference}'s mean soft predictions: {names[a]}/{names[b]} "
        f"(mean p({names[b]}|{names[a]})={m[a, b]:.4g}, p({names[a]}|{names[b]})={m[b, a]:.4g}); "
        f"farthest from both: {names[c]} (mutual probability {s[a, c] + s[b, c]:.3g})"
    )
    return Selection(
        ids=[ids[a], ids[b], ids[c]],
        names=[names[a], names[b], names[c]],
        method="auto",
        reason=reason,
        reference=reference,
        scores=scores,
    )
