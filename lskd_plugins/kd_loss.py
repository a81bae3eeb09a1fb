"""The KD loss of the study, shared by the fairseq criterion and the image trainer.

    L = (1 - kd_alpha) * CE_eps(y, p_s) + kd_alpha * T^2 * D

with D, per position, one of three methods (``method``; docs/kd_loss.md):

- ``"kd"`` (default): KL(softmax(z_t / T) || softmax(z_s / T));
- ``"logit_std"`` (Sun et al., CVPR 2024): the same KL of Z(z_t) / T and Z(z_s) / T, with
  Z(z) = (z - mean(z)) / (std(z) + 1e-7) over the V classes (unbiased std);
- ``"dkd"`` (Zhao et al., CVPR 2022): dkd_alpha * KL(b_t || b_s) + dkd_beta * KL(n_t || n_s),
  b = (p(y), 1 - p(y)) and n the distribution over the V - 1 non-target classes, p = softmax(z / T).

Plain torch tensors in, a dict of summed loss parts out: no fairseq, no timm. Logits may be
``(N, V)`` or ``(B, L, V)``; positions whose target equals ``ignore_index`` contribute nothing.

With a teacher, the loss is ONE custom autograd function (``_ChunkedKD``, the idea of the fused
chunked distillation losses of Liger-Kernel): the forward walks the non-padding rows in chunks of
a few MB, computes the CE, the KD term and their gradient with respect to the student's logits
chunk by chunk (for every method), and keeps only that gradient (one N x V tensor in the logits'
dtype) for the backward. No student log-probabilities at T=1 or T, no z-scores, no teacher
log-probabilities and no KL temporaries outlive their chunk; padding rows are never computed. The
teacher is a ``TeacherSource``: full logits (``LogitsTeacher``), decoder features plus the output
projection applied chunk by chunk (``ProjectedFeatureTeacher``, logit KD from projected decoder
features, formerly ``FeatureTeacher``: the teacher's N x V logits never exist; also what the exact
teacher cache gives, its features read from disk), or a top-k cache with a flat tail
(``TopkTeacher``, see ``lskd_plugins.nmt.teacher_cache``; ``kd`` only). The arithmetic is float32 for half
inputs (float64 stays float64); the KL is summed element-wise (not as two dot products, whose
float32 cancellation costs ~2% of the KL at T=64 with V=10k).

The gradient stored is the closed form d/dz_s L = (1 - a) (p_s - q) + a * s_T / T * G, q the
smoothed target (sums to 1), s_T = T^2 or 1, G = d D / d(z_s / T): p_s^T - p_t^T for ``kd``; the
same in z-score space, taken back through Z's Jacobian, for ``logit_std``; for ``dkd``
dkd_alpha * (p_s^T - b_t(y) e_y - b_t(not y) n_s) + dkd_beta * (n_s - n_t) (n zero at y). First
derivatives only (no double backward). ``dkd``'s log b and log n go through logsumexp
(log(1 - p(y)) = logsumexp of the non-target log-probs), so a confident teacher gives no inf/NaN.

Label-smoothing conventions (``smoothing_convention``):
- ``"fairseq"``: the true class gets exactly 1 - eps, the other V - 1 classes eps / (V - 1)
  (fairseq's ``label_smoothed_cross_entropy``; ``kd_alpha=0`` reproduces it bit for bit).
- ``"uniform"``: target (1 - eps) * onehot + eps / V over all V classes, the true one included
  (the paper's definition and timm's ``--smoothing``).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple, Union

import torch

CONVENTIONS = ("fairseq", "uniform")
METHODS = ("kd", "logit_std", "dkd")  # the KD term D (module docstring)
STD_EPS = 1e-7  # logit_std: Z(z) = (z - mean) / (std + STD_EPS), as in Sun et al.'s code
_KL_CHUNK_ELEMENTS = 1 << 20  # 4 MB of float32 per chunk temporary (a few are alive at once)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (N, V), upcast to float32 when half precision (double stays double)."""
    x = x.reshape(-1, x.size(-1))
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _members(teacher_logits) -> List[torch.Tensor]:
    members = [teacher_logits] if isinstance(teacher_logits, torch.Tensor) else list(teacher_logits)
    if not members:
        raise ValueError("teacher_logits: empty ensemble")
    return members


def standardize(z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(Z(z), std) of (n, V) logits: Z(z) = (z - mean) / (std + 1e-7) per row, the unbiased std
    over the V classes (``logit_std``'s z-score; std is (n, 1))."""
    std = z.std(-1, keepdim=True)
    return (z - z.mean(-1, keepdim=True)) / (std + STD_EPS), std


def ensemble_log_probs(member_logits: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """log mean_i softmax(z_i / T) of (n, V) logits (one member: a plain log_softmax)."""
    if len(member_logits) == 1:
        return torch.log_softmax(member_logits[0] / temperature, dim=-1)
    stacked = torch.stack([torch.log_softmax(z / temperature, dim=-1) for z in member_logits])
    return torch.logsumexp(stacked, dim=0) - math.log(len(member_logits))


def ensemble_nll(member_logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """-log p_t(y) at T = 1 per row of (n, V) member logits, without another n x V tensor."""
    tgt = target.reshape(-1, 1)
    per_member = []
    for z in member_logits:
        safe = tgt.clamp(min=0, max=z.size(-1) - 1)
        per_member.append(z.gather(-1, safe).squeeze(-1) - torch.logsumexp(z, dim=-1))
    return -(torch.logsumexp(torch.stack(per_member), dim=0) - math.log(len(member_logits)))


def teacher_log_probs(teacher_logits, temperature: float = 1.0) -> torch.Tensor:
    """Log of the teacher distribution at temperature T, flattened to (N, V), float32.

    A sequence of logits is an ensemble, averaged in probability space:
    log mean_i softmax(z_i / T).
    """
    return ensemble_log_probs([_flat(z) for z in _members(teacher_logits)], temperature)


def teacher_nll_per_token(teacher_logits, target: torch.Tensor) -> torch.Tensor:
    """-log p_t(y) at T = 1 per position."""
    return ensemble_nll([_flat(z) for z in _members(teacher_logits)], target)


class TeacherSource:
    """Where the teacher's distribution of a chunk of rows comes from (no autograd anywhere).

    ``log_probs(rows, T)`` returns the (n, V) log-probabilities at T of the flat positions
    ``rows``; ``nll(rows, target)`` returns -log p_t(y) at T = 1 for those rows;
    ``member_logits(rows)`` the (n, V) logits of each ensemble member, for the methods that need
    logits (``methods`` lists the KD methods a source supports).
    """

    num_rows: int
    vocab: int
    methods: Tuple[str, ...] = METHODS

    def log_probs(self, rows: torch.Tensor, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def member_logits(self, rows: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def nll(self, rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LogitsTeacher(TeacherSource):
    """Full teacher logits, one (N, V) tensor per ensemble member (averaged in probability space)."""

    def __init__(self, teacher_logits):
        self.members = [z.reshape(-1, z.size(-1)) for z in _members(teacher_logits)]
        self.num_rows, self.vocab = self.members[0].shape

    def _chunk(self, rows: torch.Tensor) -> List[torch.Tensor]:
        return [_flat(z.index_select(0, rows)) for z in self.members]

    def log_probs(self, rows, temperature):
        return ensemble_log_probs(self._chunk(rows), temperature)

    def nll(self, rows, target):
        return ensemble_nll(self._chunk(rows), target)

    def member_logits(self, rows):
        return self._chunk(rows)


class ProjectedFeatureTeacher(LogitsTeacher):
    """Logit KD from projected decoder features: features (N, D) per member and their output
    projections, applied chunk by chunk (the N x V teacher logits never exist); every method."""

    def __init__(self, features: Sequence[torch.Tensor], projections: Sequence[Callable], vocab: int):
        if len(features) != len(projections) or not features:
            raise ValueError("ProjectedFeatureTeacher: one projection per feature tensor, at least one")
        self.features = [f.reshape(-1, f.size(-1)) for f in features]
        self.projections = list(projections)
        self.num_rows, self.vocab = self.features[0].size(0), vocab

    def _chunk(self, rows):
        with torch.no_grad():
            return [_flat(proj(f.index_select(0, rows))) for f, proj in zip(self.features, self.projections)]


def _flat_tail(lpk: torch.Tensor, vocab: int):
    """Top-k log-probs (n, K) -> (top-k log-probs, log-prob of each of the V - K other tokens).

    The tail mass r = 1 - sum(top-k p) is spread evenly: log(r / (V - K)). Storage rounding can
    make the top-k sum exceed 1: the top-k are then renormalised and the tail is empty (floored
    at the smallest normal float, so that 0 * log 0 stays 0 in the element-wise KL).
    """
    k = lpk.size(-1)
    if k >= vocab:
        return lpk - torch.logsumexp(lpk, -1, keepdim=True), None
    log_mass = torch.logsumexp(lpk, -1, keepdim=True)
    lpk = lpk - log_mass.clamp(min=0)
    tail_mass = (-torch.expm1(log_mass.clamp(max=0))).clamp(min=torch.finfo(lpk.dtype).tiny)
    return lpk, tail_mass.log() - math.log(vocab - k)


def topk_entries(logits: torch.Tensor, k: int, temperatures: Sequence[float]):
    """What a cache stores of (n, V) teacher logits: top-k ids, their log-probs at T = 1, and
    log Z_T = logsumexp(z / T) per temperature (n, len(temperatures)); float32 or float64."""
    z = _flat(logits)
    log_z = torch.stack([torch.logsumexp(z / t, -1) for t in temperatures], -1)
    values, ids = z.topk(k, -1)
    return ids, values - log_z[:, list(temperatures).index(1.0)].unsqueeze(-1), log_z


class TopkTeacher(TeacherSource):
    """A cached teacher: per position the top-k ids and log-probs at T = 1 (any float dtype),
    and the log-partition log Z_T of the full logits at each cached temperature.

    At a cached T: log p_T(i) = (log p_1(i) + log Z_1) / T - log Z_T for the top-k, exact up to
    the storage rounding; the remaining mass is spread evenly over the other V - K tokens (the
    flat tail). At any other T the tail's logits are taken as equal (the flat tail implied by
    the T = 1 tail mass) and the partition recomputed: exact for an exactly flat tail. It holds no
    logits and a lossy tail, so it serves ``kd`` only (``logit_std`` and ``dkd`` are refused).
    """

    methods = ("kd",)

    def __init__(self, ids, lprobs, log_z, temperatures: Sequence[float], vocab: int):
        temps = [float(t) for t in temperatures]
        if 1.0 not in temps:
            raise ValueError("TopkTeacher: the cached temperatures must include T = 1")
        self.ids, self.lprobs, self.log_z = ids.long(), lprobs, log_z
        self.temps, self.vocab, self.num_rows = temps, int(vocab), ids.size(0)

    def topk_at(self, rows: torch.Tensor, temperature: float):
        """(ids, top-k log-probs at T, tail log-prob per token or None) of ``rows``."""
        ids = self.ids.index_select(0, rows)
        lp1 = _flat(self.lprobs.index_select(0, rows))
        if temperature in self.temps:
            log_z = self.log_z.index_select(0, rows).to(lp1.dtype)
            z1, zt = log_z[:, self.temps.index(1.0)], log_z[:, self.temps.index(temperature)]
            lpk = (lp1 + z1.unsqueeze(-1)) / temperature - zt.unsqueeze(-1)
            return (ids, *_flat_tail(lpk, self.vocab))
        lp1, tail1 = _flat_tail(lp1, self.vocab)
        if tail1 is None:
            return ids, lp1 / temperature - torch.logsumexp(lp1 / temperature, -1, keepdim=True), None
        weights = torch.cat([lp1, tail1 + math.log(self.vocab - lp1.size(-1)) * temperature], -1)
        log_z = torch.logsumexp(weights / temperature, -1, keepdim=True)
        return ids, lp1 / temperature - log_z, tail1 / temperature - log_z

    def log_probs(self, rows, temperature):
        ids, lpk, tail = self.topk_at(rows, temperature)
        if tail is None:
            return lpk.new_empty(rows.numel(), self.vocab).scatter_(-1, ids, lpk)
        return tail.expand(-1, self.vocab).clone().scatter_(-1, ids, lpk)

    def nll(self, rows, target):
        ids, lp1, tail = self.topk_at(rows, 1.0)
        hit = ids.eq(target.unsqueeze(-1))
        in_topk = (lp1 * hit).sum(-1)
        if tail is None:
            return -in_topk
        return -torch.where(hit.any(-1), in_topk, tail.squeeze(-1))


def _smoothed_target(vocab: int, eps: float, convention: str):
    """(off, on): the smoothed target's probability of every other class and of the true one."""
    if convention == "fairseq":
        return eps / (vocab - 1), 1.0 - eps
    return eps / vocab, 1.0 - eps + eps / vocab


def _rows_ce(lp1: torch.Tensor, target: torch.Tensor, eps: float, convention: str):
    """Per-row (smoothed CE, nll) of (n, V) log-probs, fairseq's arithmetic."""
    vocab = lp1.size(-1)
    nll = -lp1.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lp1.sum(-1)
    if convention == "fairseq":
        eps_i = eps / (vocab - 1)
        return (1.0 - eps - eps_i) * nll + eps_i * smooth, nll
    return (1.0 - eps) * nll + (eps / vocab) * smooth, nll


class KDMethod(NamedTuple):
    """The KD term D of ``kd_loss``: its name (``METHODS``) and DKD's two weights."""

    name: str = "kd"
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0


def _teacher_rows(teacher: TeacherSource, rows, y, temperature: float, method: str):
    """(teacher log-probs at T as ``method`` sees them, teacher NLL at T = 1) of one chunk."""
    if method == "logit_std":  # each member z-scored, then averaged in probability space at T
        members = teacher.member_logits(rows)
        lp = ensemble_log_probs([standardize(z)[0] for z in members], temperature)
        return lp, ensemble_nll(members, y)
    return teacher.log_probs(rows, temperature), teacher.nll(rows, y)


def _target_split(lp: torch.Tensor, idx: torch.Tensor):
    """DKD's pieces of (n, V) log-probs at T: log p(y), log(1 - p(y)) (logsumexp over the non-targets)
    and the log-probs of the non-target distribution n (their target column set to 0, finite)."""
    lp_y = lp.gather(-1, idx).squeeze(-1)
    lp_not = torch.logsumexp(lp.scatter(-1, idx, float("-inf")), -1)
    return lp_y, lp_not, (lp - lp_not.unsqueeze(-1)).scatter(-1, idx, 0.0)


def _dkd_rows(t_lp, lpT, idx, dkd_alpha: float, dkd_beta: float):
    """Per-row dkd_alpha * KL(b_t || b_s) + dkd_beta * KL(n_t || n_s), differentiable in lpT, and
    (b_t(y), b_t(not y), n_t with 0 at y, log n_s) for the closed-form gradient."""
    t_y, t_not, t_ln = _target_split(t_lp, idx)
    s_y, s_not, s_ln = _target_split(lpT, idx)
    with torch.no_grad():
        b_y, b_not = t_y.exp(), t_not.exp()
        n_t = t_ln.exp().scatter_(-1, idx, 0.0)
    kl_b = b_y * (t_y - s_y) + b_not * (t_not - s_not)
    kl_n = (n_t * (t_ln - s_ln)).sum(-1)  # the target column: 0 * (0 - 0)
    return dkd_alpha * kl_b + dkd_beta * kl_n, (b_y, b_not, n_t, s_ln)


def _rows_terms(s, y, teacher: TeacherSource, rows, temperature: float, eps: float, convention: str, method):
    """The KD math of one chunk of (non-padding) rows: THE implementation, summed or not by callers.

    Returns (ce, nll, d, t_nll, state): the per-row CE_eps, NLL, KD term D of ``method`` (a
    ``KDMethod``) and teacher NLL at T = 1, and what the closed-form gradient of D needs (n x V
    tensors: student log-probs at 1 and at T, teacher probabilities ...). The KL is summed
    element-wise, p_t (log p_t - log p_s), as torch's kl_div does. Differentiable in ``s``.
    """
    lp1 = torch.log_softmax(s, dim=-1)
    ce, nll = _rows_ce(lp1, y, eps, convention)
    zs = std = None
    if method.name == "logit_std":
        zs, std = standardize(s)
        lpT = torch.log_softmax(zs / temperature, dim=-1)
    else:
        lpT = lp1 if temperature == 1.0 else torch.log_softmax(s / temperature, dim=-1)
    with torch.no_grad():
        t_lp, t_nll = _teacher_rows(teacher, rows, y, temperature, method.name)
        t_lp, t_nll = t_lp.to(s.dtype), t_nll.to(s.dtype)
        p_t = t_lp.exp() if method.name != "dkd" else None
    if method.name == "dkd":
        d, extra = _dkd_rows(t_lp, lpT, y.unsqueeze(-1), method.dkd_alpha, method.dkd_beta)
        return ce, nll, d, t_nll, (lp1, lpT, extra)
    kl = t_lp.sub_(lpT).mul_(p_t).sum(-1)  # in place: one n x V temporary less (autograd-safe)
    return ce, nll, kl, t_nll, (lp1, lpT, p_t, zs, std)


class _ChunkedKD(torch.autograd.Function):
    """Loss and its gradient in one chunked pass; see the module docstring."""

    @staticmethod
    def forward(ctx, logits, rows, target, teacher, opts):
        alpha, temperature, eps, convention, scale, chunk_rows, method = opts
        dtype = _compute_dtype(logits)
        grad = torch.zeros_like(logits)
        sums = torch.zeros(4, dtype=dtype, device=logits.device)  # ce, nll, kl, teacher nll
        off, on = _smoothed_target(logits.size(-1), eps, convention)
        c = alpha * scale / temperature
        for chunk, y in zip(rows.split(chunk_rows), target.split(chunk_rows)):
            s = logits.index_select(0, chunk).to(dtype)
            ce, nll, kl, t_nll, state = _rows_terms(
                s, y, teacher, chunk, temperature, eps, convention, method
            )
            if method.name == "kd":
                g = _chunk_grad(*state[:3], y, alpha, c, off, on)
            elif method.name == "logit_std":
                g = _std_grad(*state, y, alpha, c, off, on)
            else:
                g = _dkd_grad(*state, y, alpha, c * method.dkd_alpha, c * method.dkd_beta, off, on)
            grad.index_copy_(0, chunk, g.to(grad.dtype))
            sums += torch.stack([ce.sum(), nll.sum(), kl.sum(), t_nll.sum()])
        ce, nll, kl, t_nll = sums.unbind()
        loss = (1.0 - alpha) * ce + alpha * scale * kl
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(ce, nll, kl, t_nll)
        return loss, ce, nll, kl, t_nll

    @staticmethod
    def backward(ctx, grad_loss, *unused):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None


def _chunk_grad(lp1, lpT, p_t, y, alpha: float, c: float, off: float, on: float) -> torch.Tensor:
    """(1 - alpha) (p_s - q) + c (p_s^T - p_t^T) of one chunk, q the smoothed target (off, on),
    in as few passes over the n x V chunk as possible (it consumes lp1 and lpT in place)."""
    g = lp1.exp_()
    if lpT is lp1:  # T = 1: p_s^T is p_s
        g.mul_(1.0 - alpha + c)
    else:
        g.mul_(1.0 - alpha).add_(lpT.exp_(), alpha=c)
    g.sub_(p_t, alpha=c).sub_((1.0 - alpha) * off)
    idx = y.unsqueeze(-1)
    return g.scatter_add_(-1, idx, g.new_full(idx.shape, -(1.0 - alpha) * (on - off)))


def _add_ce_grad_(g, lp1, y, alpha: float, off: float, on: float) -> torch.Tensor:
    """g += (1 - alpha) (p_s - q), q the smoothed target (off, on); consumes lp1."""
    g.add_(lp1.exp_().sub_(off), alpha=1.0 - alpha)
    idx = y.unsqueeze(-1)
    return g.scatter_add_(-1, idx, g.new_full(idx.shape, -(1.0 - alpha) * (on - off)))


def _std_grad(lp1, lpT, p_t, zs, std, y, alpha: float, c: float, off: float, on: float) -> torch.Tensor:
    """logit_std: g_Z = c (p_s^T - p_t^T) with respect to the z-scores Z(z_s), taken back through
    Z's Jacobian: (g_Z - mean(g_Z) - Z * sum(g_Z Z) (std + eps) / ((V - 1) std)) / (std + eps)."""
    gz = lpT.exp_().sub_(p_t).mul_(c)
    den = std + STD_EPS
    k = torch.where(std > 0, den / ((gz.size(-1) - 1) * std.clamp(min=torch.finfo(std.dtype).tiny)), 0.0)
    proj = (gz * zs).sum(-1, keepdim=True).mul_(k)
    g = gz.sub_(gz.mean(-1, keepdim=True)).sub_(zs.mul_(proj)).div_(den)
    return _add_ce_grad_(g, lp1, y, alpha, off, on)


def _dkd_grad(lp1, lpT, extra, y, alpha: float, ca: float, cb: float, off: float, on: float):
    """dkd: ca (p_s^T - b_t(y) e_y - b_t(not y) n_s) + cb (n_s - n_t) + (1 - alpha)(p_s - q), n with
    0 at y, ca = c * dkd_alpha and cb = c * dkd_beta."""
    b_y, b_not, n_t, s_ln = extra
    idx = y.unsqueeze(-1)
    n_s = s_ln.exp_().scatter_(-1, idx, 0.0)
    g = lpT.exp().mul_(ca)  # a copy: at T = 1 lpT is lp1, used below
    g.add_(n_s.mul_((cb - ca * b_not).unsqueeze(-1))).sub_(n_t, alpha=cb)
    g.scatter_add_(-1, idx, (-ca * b_y).unsqueeze(-1))
    return _add_ce_grad_(g, lp1, y, alpha, off, on)


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


def check_method(method: str, dkd_alpha: float = 1.0, dkd_beta: float = 8.0) -> KDMethod:
    """The KD method and DKD's weights, checked (ValueError naming the bad value)."""
    if method not in METHODS:
        raise ValueError(f"KD method must be one of {', '.join(METHODS)}; got {method!r}")
    for name, value in (("dkd_alpha", dkd_alpha), ("dkd_beta", dkd_beta)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if dkd_alpha == 0 and dkd_beta == 0:
        raise ValueError("dkd_alpha and dkd_beta are both 0: the DKD term would be 0")
    return KDMethod(method, float(dkd_alpha), float(dkd_beta))


DKD_DEFAULTS = {"dkd_alpha": 1.0, "dkd_beta": 8.0}  # kd_loss's defaults (Zhao et al.'s CIFAR beta)


def check_method_flags(kd_method, dkd_alpha=None, dkd_beta=None):
    """The tools' --kd-method/--dkd-alpha/--dkd-beta (None: not given), as one-line ``LskdError``s;
    returns ``kd_loss``'s keywords (method, dkd_alpha, dkd_beta), DKD's defaults filled in."""
    from lskd_plugins.errors import LskdError

    if kd_method not in METHODS:
        raise LskdError(f"--kd-method must be one of {', '.join(METHODS)}; got {kd_method!r}")
    given = {k: v for k, v in (("dkd_alpha", dkd_alpha), ("dkd_beta", dkd_beta)) if v is not None}
    if given and kd_method != "dkd":
        flags = "/".join("--" + k.replace("_", "-") for k in given)
        verb = "apply" if len(given) > 1 else "applies"
        raise LskdError(f"{flags} {verb} to --kd-method dkd only (got --kd-method {kd_method})")
    for key, value in given.items():
        if not (math.isfinite(value) and value >= 0):
            raise LskdError(f"--{key.replace('_', '-')} must be a finite number >= 0, got {value}")
    values = {**DKD_DEFAULTS, **{k: float(v) for k, v in given.items()}}
    if values["dkd_alpha"] == 0 and values["dkd_beta"] == 0:
        raise LskdError("--dkd-alpha and --dkd-beta are both 0: the DKD term would be 0")
    check_method(kd_method, **values)
    return {"method": kd_method, **values}


def describe_method(method: dict) -> str:
    """'method kd', or 'method dkd (dkd_alpha 1.0, dkd_beta 8.0)'."""
    if method["method"] != "dkd":
        return f"method {method['method']}"
    return f"method dkd (dkd_alpha {method['dkd_alpha']}, dkd_beta {method['dkd_beta']})"


def _check_options(kd_alpha, temperature, teacher, convention) -> None:
    if not temperature > 0:
        raise ValueError(f"KD temperature must be > 0, got {temperature}")
    if not 0.0 <= kd_alpha <= 1.0:
        raise ValueError(f"kd_alpha must lie in [0, 1], got {kd_alpha}")
    if kd_alpha > 0 and teacher is None:
        raise ValueError("kd_alpha > 0 needs teacher_logits")
    if convention not in CONVENTIONS:
        raise ValueError(f"smoothing convention must be one of {CONVENTIONS}, got {convention!r}")


def _ce_only(s_logits, flat_target, kd_alpha, label_smoothing, ignore_index, convention, ntokens):
    """No teacher: autograd through fairseq's arithmetic (kd_alpha = 0 is fairseq's loss bit for bit)."""
    lprobs = torch.log_softmax(s_logits, dim=-1)
    ce_loss, nll_loss = label_smoothed_nll(lprobs, flat_target, label_smoothing, ignore_index, convention)
    zero = lprobs.new_zeros(())
    loss = ce_loss if kd_alpha == 0 else ce_loss * (1.0 - kd_alpha)
    return dict(
        loss=loss, ce_loss=ce_loss, nll_loss=nll_loss, ntokens=ntokens, kd_loss=zero, teacher_nll=zero
    )


def as_teacher_source(teacher_logits) -> TeacherSource:
    return teacher_logits if isinstance(teacher_logits, TeacherSource) else LogitsTeacher(teacher_logits)


def _prepare(student_logits, target, teacher_logits, kd_alpha, temperature, ignore_index, convention, method):
    """Checks; (flat logits, flat target, non-padding rows, ntokens, teacher source or None)."""
    _check_options(kd_alpha, temperature, teacher_logits, convention)
    flat_target = target.reshape(-1)
    s_logits = student_logits.reshape(-1, student_logits.size(-1))
    if s_logits.size(0) != flat_target.numel():
        raise ValueError(
            f"student logits hold {s_logits.size(0)} positions but target holds {flat_target.numel()}"
        )
    if ignore_index is not None:
        rows = flat_target.ne(ignore_index).nonzero().squeeze(-1)
    else:
        rows = torch.arange(s_logits.size(0), device=s_logits.device)
    ntokens = torch.tensor(rows.numel(), device=s_logits.device)
    teacher = None if teacher_logits is None else as_teacher_source(teacher_logits)
    if teacher is not None and (teacher.num_rows, teacher.vocab) != tuple(s_logits.shape):
        raise ValueError(
            f"teacher output {(teacher.num_rows, teacher.vocab)} != student {tuple(s_logits.shape)}"
        )
    if teacher is not None and method.name not in teacher.methods:
        raise ValueError(
            f"KD method {method.name!r} needs the teacher's logits; a {type(teacher).__name__} "
            f"supports {', '.join(teacher.methods)} only"
        )
    return s_logits, flat_target, rows, ntokens, teacher


def kd_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits: Union[torch.Tensor, Sequence[torch.Tensor], TeacherSource, None] = None,
    *,
    kd_alpha: float,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    scale_by_t2: bool = True,
    smoothing_convention: str = "fairseq",
    method: str = "kd",
    dkd_alpha: float = 1.0,
    dkd_beta: float = 8.0,
) -> Dict[str, torch.Tensor]:
    """The study's KD loss, summed over non-ignored positions (docs/kd_loss.md).

    ``teacher_logits``: a tensor shaped like the student's logits, a sequence of them (an
    ensemble, averaged in probability space), or a ``TeacherSource``. ``method``: the KD term D,
    ``"kd"``, ``"logit_std"`` or ``"dkd"`` (with ``dkd_alpha``, ``dkd_beta``; module docstring).
    Returns a dict of scalar tensors: ``loss`` (the objective, differentiable), ``ce_loss``
    (label-smoothed CE with eps=label_smoothing), ``nll_loss`` (plain NLL at T=1), ``kd_loss``
    (D summed, without the T^2 factor), ``teacher_nll`` (-log p_t(y) at T=1 of the raw logits,
    summed) and ``ntokens`` (the number of positions counted). With ``kd_alpha == 0`` the
    teacher is not needed and ``loss == ce_loss`` exactly.
    """
    kd_method = check_method(method, dkd_alpha, dkd_beta)
    s_logits, flat_target, rows, ntokens, teacher = _prepare(
        student_logits,
        target,
        teacher_logits,
        kd_alpha,
        temperature,
        ignore_index,
        smoothing_convention,
        kd_method,
    )
    if teacher is None:
        return _ce_only(
            _flat(s_logits),
            flat_target,
            kd_alpha,
            label_smoothing,
            ignore_index,
            smoothing_convention,
            ntokens,
        )
    chunk_rows = max(1, _KL_CHUNK_ELEMENTS // max(1, s_logits.size(-1)))
    scale = temperature**2 if scale_by_t2 else 1.0
    opts = (float(kd_alpha), float(temperature), float(label_smoothing), smoothing_convention, scale)
    opts += (chunk_rows, kd_method)
    loss, ce, nll, kl, t_nll = _ChunkedKD.apply(
        s_logits, rows, flat_target.index_select(0, rows), teacher, opts
    )
    return dict(loss=loss, ce_loss=ce, nll_loss=nll, kd_loss=kl, teacher_nll=t_nll, ntokens=ntokens)


def kd_loss_per_position(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits=None,
    *,
    kd_alpha: float,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    scale_by_t2: bool = True,
    smoothing_convention: str = "fairseq",
    method: str = "kd",
    dkd_alpha: float = 1.0,
    dkd_beta: float = 8.0,
) -> Dict[str, torch.Tensor]:
    """The same loss and parts per position (N,), zero at ignored positions (``reduce=False``).

    Plain autograd over all non-ignored rows at once (memory as the unchunked loss): for analysis
    and for criteria that weight positions, not for the training hot path.
    """
    kd_method = check_method(method, dkd_alpha, dkd_beta)
    s_logits, flat_target, rows, _, teacher = _prepare(
        student_logits,
        target,
        teacher_logits,
        kd_alpha,
        temperature,
        ignore_index,
        smoothing_convention,
        kd_method,
    )
    s = _flat(s_logits.index_select(0, rows))
    y = flat_target.index_select(0, rows)
    zero = s.new_zeros(rows.shape)
    if teacher is None:
        ce, nll = _rows_ce(torch.log_softmax(s, dim=-1), y, label_smoothing, smoothing_convention)
        kl = t_nll = zero
    else:
        ce, nll, kl, t_nll, _ = _rows_terms(
            s, y, teacher, rows, temperature, label_smoothing, smoothing_convention, kd_method
        )
    scale = temperature**2 if scale_by_t2 else 1.0
    loss = (1.0 - kd_alpha) * ce + (kd_alpha * scale * kl if teacher is not None else 0.0)
    parts = dict(loss=loss, ce_loss=ce, nll_loss=nll, kd_loss=kl, teacher_nll=t_nll)
    n = s_logits.size(0)
    return {k: s.new_zeros(n).index_put((rows,), v.to(s.dtype)) for k, v in parts.items()}


def kl_per_position(student_lprobs: torch.Tensor, teacher_lprobs: torch.Tensor) -> torch.Tensor:
    """KL(p_t || p_s) per row of (N, V) log-probs, element-wise, in row chunks (diagnostics)."""
    rows = max(1, _KL_CHUNK_ELEMENTS // max(1, student_lprobs.size(-1)))
    parts = [
        torch.nn.functional.kl_div(s, t, reduction="none", log_target=True).sum(-1)
        for s, t in zip(student_lprobs.split(rows), teacher_lprobs.split(rows))
    ]
    return torch.cat(parts) if parts else student_lprobs.new_zeros(0)


def __getattr__(name: str):
    """``FeatureTeacher``: the old name of ``ProjectedFeatureTeacher`` (deprecated alias)."""
    if name == "FeatureTeacher":
        warnings.warn(
            "lskd_plugins.kd_loss.FeatureTeacher is deprecated: use ProjectedFeatureTeacher",
            DeprecationWarning,
            stacklevel=2,
        )
        return ProjectedFeatureTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
