"""The KD loss of the study, shared by the fairseq criterion and the image trainer.

    L = (1 - kd_alpha) * CE_eps(y, p_s) + kd_alpha * T^2 * KL(p_t^T || p_s^T)

Plain torch tensors in, a dict of summed loss parts out: no fairseq, no timm. Logits may be
``(N, V)`` or ``(B, L, V)``; positions whose target equals ``ignore_index`` contribute nothing.
The softmaxes are computed in float32 for half-precision inputs (as fairseq does); at most three
N x V float tensors are alive at once (student log-probs at T=1, at T when T != 1, and the
teacher's log-probs at T): the KL's temporaries are made in row chunks of a few MB.

Label-smoothing conventions (``smoothing_convention``):
- ``"fairseq"``: the true class gets exactly 1 - eps, the other V - 1 classes eps / (V - 1)
  (fairseq's ``label_smoothed_cross_entropy``; ``kd_alpha=0`` reproduces it bit for bit).
- ``"uniform"``: target (1 - eps) * onehot + eps / V over all V classes, the true one included
  (the paper's definition and timm's ``--smoothing``).
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Union

import torch

TeacherLogits = Union[torch.Tensor, Sequence[torch.Tensor]]
CONVENTIONS = ("fairseq", "uniform")
_KL_CHUNK_ELEMENTS = 1 << 22  # 16 MB of float32 per KL temporary


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (N, V), upcast to float32 when half precision (double stays double)."""
    x = x.reshape(-1, x.size(-1))
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def teacher_log_probs(teacher_logits: TeacherLogits, temperature: float = 1.0) -> torch.Tensor:
    """Log of the teacher distribution at temperature T, flattened to (N, V), float32.

    A sequence of logits is an ensemble, averaged in probability space:
    log mean_i softmax(z_i / T).
    """
    if isinstance(teacher_logits, torch.Tensor):
        return torch.log_softmax(_flat(teacher_logits) / temperature, dim=-1)
    members = list(teacher_logits)
    if not members:
        raise ValueError("teacher_logits: empty ensemble")
    if len(members) == 1:
        return teacher_log_probs(members[0], temperature)
    stacked = torch.stack([torch.log_softmax(_flat(z) / temperature, dim=-1) for z in members])
    return torch.logsumexp(stacked, dim=0) - math.log(len(members))


def teacher_nll_per_token(teacher_logits: TeacherLogits, target: torch.Tensor) -> torch.Tensor:
    """-log p_t(y) at T = 1 per position, without materialising another N x V tensor."""
    members = [teacher_logits] if isinstance(teacher_logits, torch.Tensor) else list(teacher_logits)
    tgt = target.reshape(-1, 1)
    per_member = []
    for z in members:
        z = _flat(z)
        safe = tgt.clamp(min=0, max=z.size(-1) - 1)
        per_member.append(z.gather(-1, safe).squeeze(-1) - torch.logsumexp(z, dim=-1))
    log_p = torch.logsumexp(torch.stack(per_member), dim=0) - math.log(len(members))
    return -log_p


def kl_per_position(student_lprobs: torch.Tensor, teacher_lprobs: torch.Tensor) -> torch.Tensor:
    """KL(p_t || p_s) per row of (N, V) log-probs, element-wise then summed.

    Element-wise (not as two dot products, whose float32 cancellation costs ~2% of the KL at
    T=64 with V=10k), in row chunks so the temporaries stay a few MB whatever N is.
    """
    rows = max(1, _KL_CHUNK_ELEMENTS // max(1, student_lprobs.size(-1)))
    parts = [
        torch.nn.functional.kl_div(s, t, reduction="none", log_target=True).sum(-1)
        for s, t in zip(student_lprobs.split(rows), teacher_lprobs.split(rows))
    ]
    return torch.cat(parts) if parts else student_lprobs.new_zeros(0)


def label_smoothed_nll(
    lprobs: torch.Tensor,
    target: torch.Tensor,
    epsilon: float,
    ignore_index: int | None = None,
    convention: str = "fairseq",
):
    """Summed (smoothed loss, nll) over non-ignored positions; lprobs is (N, V) log-probs.

    Same arithmetic, in the same order, as fairseq's ``label_smoothed_nll_loss``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"smoothing convention must be one of {CONVENTIONS}, got {convention!r}")
    target = target.reshape(-1, 1)
    if ignore_index is not None:
        pad_mask = target.eq(ignore_index)
        safe_target = target.masked_fill(pad_mask, 0)
    else:
        pad_mask, safe_target = None, target
    nll_loss = -lprobs.gather(dim=-1, index=safe_target)
    smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
    if pad_mask is not None:
        nll_loss = nll_loss.masked_fill(pad_mask, 0.0)
        smooth_loss = smooth_loss.masked_fill(pad_mask, 0.0)
    nll_loss = nll_loss.sum()
    smooth_loss = smooth_loss.sum()
    vocab = lprobs.size(-1)
    if convention == "fairseq":
        eps_i = epsilon / (vocab - 1)
        loss = (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss
    else:
        eps_i = epsilon / vocab
        loss = (1.0 - epsilon) * nll_loss + eps_i * smooth_loss
    return loss, nll_loss


def kd_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits: TeacherLogits | None = None,
    *,
    kd_alpha: float,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    scale_by_t2: bool = True,
    smoothing_convention: str = "fairseq",
) -> Dict[str, torch.Tensor]:
    """The study's KD loss, summed over non-ignored positions.

    Returns a dict of scalar tensors: ``loss`` (the objective, differentiable),
    ``ce_loss`` (label-smoothed CE with eps=label_smoothing), ``nll_loss`` (plain NLL at T=1),
    ``kd_loss`` (KL(p_t^T || p_s^T) summed, without the T^2 factor), ``teacher_nll``
    (-log p_t(y) at T=1, summed) and ``ntokens`` (the number of positions counted).
    With ``kd_alpha == 0`` the teacher is not needed and ``loss == ce_loss`` exactly.
    """
    if not temperature > 0:
        raise ValueError(f"KD temperature must be > 0, got {temperature}")
    if not 0.0 <= kd_alpha <= 1.0:
        raise ValueError(f"kd_alpha must lie in [0, 1], got {kd_alpha}")
    if kd_alpha > 0 and teacher_logits is None:
        raise ValueError("kd_alpha > 0 needs teacher_logits")
    flat_target = target.reshape(-1)
    mask = flat_target.ne(ignore_index) if ignore_index is not None else None
    s_logits = _flat(student_logits)
    if s_logits.size(0) != flat_target.numel():
        raise ValueError(
            f"student logits hold {s_logits.size(0)} positions but target holds {flat_target.numel()}"
        )

    lprobs = torch.log_softmax(s_logits, dim=-1)
    ce_loss, nll_loss = label_smoothed_nll(
        lprobs, flat_target, label_smoothing, ignore_index, smoothing_convention
    )
    ntokens = mask.sum() if mask is not None else torch.tensor(flat_target.numel(), device=s_logits.device)
    zero = lprobs.new_zeros(())
    out = {"ce_loss": ce_loss, "nll_loss": nll_loss, "ntokens": ntokens}

    if teacher_logits is None:
        out.update(
            loss=ce_loss if kd_alpha == 0 else ce_loss * (1.0 - kd_alpha), kd_loss=zero, teacher_nll=zero
        )
        return out

    with torch.no_grad():
        t_lprobs = teacher_log_probs(teacher_logits, temperature)
        if t_lprobs.shape != lprobs.shape:
            raise ValueError(f"teacher log-probs {tuple(t_lprobs.shape)} != student {tuple(lprobs.shape)}")
        t_nll = teacher_nll_per_token(teacher_logits, flat_target)
    s_lprobs_t = lprobs if temperature == 1.0 else torch.log_softmax(s_logits / temperature, dim=-1)
    kl = kl_per_position(s_lprobs_t, t_lprobs)
    if mask is not None:
        kl = kl.masked_fill(~mask, 0.0)
        t_nll = t_nll.masked_fill(~mask, 0.0)
    kl = kl.sum()
    scale = temperature**2 if scale_by_t2 else 1.0
    if kd_alpha == 0:
        loss = ce_loss
    else:
        loss = (1.0 - kd_alpha) * ce_loss + kd_alpha * scale * kl
    out.update(loss=loss, kd_loss=kl, teacher_nll=t_nll.sum())
    return out
