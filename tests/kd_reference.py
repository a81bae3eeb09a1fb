"""THE float64 reference of the study's KD loss, written out directly (one copy for every test).

    L = (1 - alpha) * CE_eps(y, p_s) + alpha * T^2 * KL(p_t^T || p_s^T), summed over non-pad tokens

Explicit exp / sum / log in float64, no log_softmax and no library KD code. The teacher is given as
logits (one tensor or a list: an ensemble averaged in probability space) or, for cached teachers,
directly as probabilities at T and at 1 (``teacher_probs=(p_T, p_1)``).
"""

from __future__ import annotations

import torch


def softmax64(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z.double() - z.double().max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


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
):
    """Sums over non-pad positions: dict of float64 scalars loss, ce, nll, kl, tnll and int n."""
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
        ptT = sum(softmax64(t / T) for t in ts) / len(ts)
        pt1 = sum(softmax64(t) for t in ts) / len(ts)
    else:
        ptT, pt1 = (p.double().reshape(-1, V)[keep] for p in teacher_probs)
    ps1, psT = softmax64(s), softmax64(s / T)
    ce = -(smoothed_target(y, V, eps, convention) * torch.log(ps1)).sum()
    nll = -torch.log(ps1[rows, y]).sum()
    terms = torch.where(ptT > 0, ptT * (torch.log(ptT) - torch.log(psT)), torch.zeros_like(ptT))
    kl = terms.sum()
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
    s, teacher, y, keep, V, *, alpha, T, eps=0.0, t2=True, convention="fairseq", teacher_probs=None
):
    safe_y = y.clamp(min=0)
    if teacher_probs is None:
        ts = teacher if isinstance(teacher, (list, tuple)) else [teacher]
        ptT = sum(softmax64(t.reshape(-1, V) / T) for t in ts) / len(ts)
    else:
        ptT = teacher_probs[0].double().reshape(-1, V)
    ps1 = torch.exp(s) / torch.exp(s).sum(-1, keepdim=True)
    psT = torch.exp(s / T) / torch.exp(s / T).sum(-1, keepdim=True)
    ce = -(smoothed_target(safe_y, V, eps, convention) * torch.log(ps1)).sum(-1)
    terms = torch.where(
        ptT > 0, ptT * (torch.log(ptT.clamp(min=1e-300)) - torch.log(psT)), torch.zeros_like(psT)
    )
    per_row = (1 - alpha) * ce + alpha * (T**2 if t2 else 1.0) * terms.sum(-1)
    return (per_row * keep).sum()
