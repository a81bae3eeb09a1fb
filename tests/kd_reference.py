"""THE float64 reference of the study's KD loss, written out directly (one copy for every test).

    L = (1 - alpha) * CE_eps(y, p_s) + alpha * T^2 * D, summed over non-pad tokens

D per method (docs/kd_loss.md): ``kd`` KL(p_t^T || p_s^T); ``logit_std`` the same KL of the
z-scored logits Z(z) = (z - mean) / (std + 1e-7) (unbiased std) divided by T, an ensemble's members
z-scored one by one and averaged in probability space; ``dkd`` dkd_alpha * KL(b_t || b_s) +
dkd_beta * KL(n_t || n_s), b = (p(y), 1 - p(y)), n = p over the non-target classes renormalised,
p = softmax(z / T) (an ensemble's averaged p_t).

Explicit exp / sum / log in float64, no log_softmax, no logsumexp and no library KD code (1 - p(y)
is written as it reads). The teacher is given as logits (one tensor or a list: an ensemble averaged
in probability space) or, for cached teachers, directly as probabilities at T and at 1
(``teacher_probs=(p_T, p_1)``, ``kd`` only).
"""

from __future__ import annotations

import torch


def softmax64(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z.double() - z.double().max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def zscore64(z: torch.Tensor) -> torch.Tensor:
    """(z - mean) / (unbiased std + 1e-7) over the last dimension, written out."""
    z = z.double()
    d = z - z.sum(-1, keepdim=True) / z.size(-1)
    std = torch.sqrt((d * d).sum(-1, keepdim=True) / (z.size(-1) - 1))
    return d / (std + 1e-7)


def smoothed_target(y: torch.Tensor, vocab: int, eps: float, convention: str) -> torch.Tensor:
    """fairseq: 1 - eps on y, eps / (V - 1) elsewhere; uniform: (1 - eps) onehot + eps / V."""
    rows = torch.arange(len(y))
    if convention == "fairseq":
        q = torch.full((len(y), vocab), eps / (vocab - 1), dtype=torch.double)
        q[rows, y] = 1 - eps
    else:
        q = torch.full((len(y), vocab), eps / vocab, dtype=torch.double)
        q[rows, y] += 1 - eps
    return q


def _kl_rows(p, q):
    """sum_j p_j (log p_j - log q_j) per row, 0 log 0 = 0."""
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return torch.where(p > 0, p * (torch.log(safe) - torch.log(q)), torch.zeros_like(p)).sum(-1)


def kd_term(s, teachers, y, *, T, method="kd", dkd_alpha=1.0, dkd_beta=8.0, teacher_probs=None):
    """Per-row D of float64 (n, V) student logits ``s`` (differentiable) and member logits."""
    if method == "logit_std":
        ptT = sum(softmax64(zscore64(t) / T) for t in teachers) / len(teachers)
        return _kl_rows(ptT, softmax64(zscore64(s) / T))
    ptT = (
        teacher_probs
        if teacher_probs is not None
        else sum(softmax64(t / T) for t in teachers) / len(teachers)
    )
    psT = softmax64(s / T)
    if method == "kd":
        return _kl_rows(ptT, psT)
    assert method == "dkd", method
    onehot = torch.zeros_like(psT, dtype=torch.bool)
    onehot[torch.arange(len(y)), y] = True
    t_y, s_y = ptT[onehot], psT[onehot]
    b_t = torch.stack([t_y, 1 - t_y], -1)
    b_s = torch.stack([s_y, 1 - s_y], -1)
    others = (~onehot).double()
    n_t = ptT * others / (1 - t_y).unsqueeze(-1)
    n_s = psT * others / (1 - s_y).unsqueeze(-1)
    n_s = torch.where(onehot, torch.ones_like(n_s), n_s)  # 0 * log(1): the target column adds nothing
    return dkd_alpha * _kl_rows(b_t, b_s) + dkd_beta * _kl_rows(n_t, n_s)


def reference_kd(
    student,
    teacher,
    target,
    pad=None,
    *,
    alpha,
    T,
    eps=0.0,
    t2=True,
    convention="fairseq",
    teacher_probs=None,
    method="kd",
    dkd_alpha=1.0,
    dkd_beta=8.0,
):
    """Sums over non-pad positions: dict of float64 scalars loss, ce, nll, kl (D), tnll and int n."""
    V = student.size(-1)
    s = student.detach().double().reshape(-1, V)
    y = target.reshape(-1)
    keep = y.ne(pad) if pad is not None else torch.ones_like(y, dtype=torch.bool)
    s, y = s[keep], y[keep]
    rows = torch.arange(len(y))
    if teacher_probs is None:
        ts = [
            t.detach().double().reshape(-1, V)[keep]
            for t in (teacher if isinstance(teacher, (list, tuple)) else [teacher])
        ]
        ptT, pt1 = None, sum(softmax64(t) for t in ts) / len(ts)
    else:
        ts = None
        ptT, pt1 = (p.double().reshape(-1, V)[keep] for p in teacher_probs)
    ps1 = softmax64(s)
    ce = -(smoothed_target(y, V, eps, convention) * torch.log(ps1)).sum()
    nll = -torch.log(ps1[rows, y]).sum()
    kw = dict(T=T, method=method, dkd_alpha=dkd_alpha, dkd_beta=dkd_beta, teacher_probs=ptT)
    kl = kd_term(s, ts, y, **kw).sum()
    tnll = -torch.log(pt1[rows, y]).sum()
    loss = (1 - alpha) * ce + alpha * (T**2 if t2 else 1.0) * kl
    return {"loss": loss, "ce": ce, "nll": nll, "kl": kl, "tnll": tnll, "n": int(keep.sum())}


def reference_grad(student, teacher, target, pad=None, **kw):
    """d loss / d student logits of ``reference_kd``, by autograd through the float64 formulas."""
    s = student.detach().double().requires_grad_(True)
    V = s.size(-1)
    y = target.reshape(-1)
    keep = (y.ne(pad) if pad is not None else torch.ones_like(y, dtype=torch.bool)).double()
    loss = _reference_loss_differentiable(s.reshape(-1, V), teacher, y, keep, V, **kw)
    loss.backward()
    return s.grad


def _reference_loss_differentiable(
    s,
    teacher,
    y,
    keep,
    V,
    *,
    alpha,
    T,
    eps=0.0,
    t2=True,
    convention="fairseq",
    teacher_probs=None,
    method="kd",
    dkd_alpha=1.0,
    dkd_beta=8.0,
):
    safe_y = y.clamp(min=0)
    ts = None
    if teacher_probs is None:
        ts = [
            t.detach().double().reshape(-1, V)
            for t in (teacher if isinstance(teacher, (list, tuple)) else [teacher])
        ]
        ptT = None
    else:
        ptT = teacher_probs[0].double().reshape(-1, V)
    ps1 = torch.exp(s) / torch.exp(s).sum(-1, keepdim=True)
    ce = -(smoothed_target(safe_y, V, eps, convention) * torch.log(ps1)).sum(-1)
    d = kd_term(s, ts, safe_y, T=T, method=method, dkd_alpha=dkd_alpha, dkd_beta=dkd_beta, teacher_probs=ptT)
    per_row = (1 - alpha) * ce + alpha * (T**2 if t2 else 1.0) * d
    return (per_row * keep).sum()
