"""Classification metrics as additive sums, so shards (batches, DDP ranks) combine exactly.

``top1``/``top5`` are percentages, ``nll`` the mean negative log-likelihood in nats, and ``ece``
the expected calibration error with equal-width confidence bins (Guo et al. 2017, 15 bins):
sum_b |B_b|/N * |acc(B_b) - conf(B_b)|, confidence = max softmax probability, bin b holding
confidences in ((b-1)/M, b/M] (the first bin also holds 0).
"""

from __future__ import annotations

from typing import Callable, Dict

import torch

ECE_BINS = 15


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> int:
    """How many targets are among the k highest logits (k is capped at the class count)."""
    k = min(k, logits.size(-1))
    top = logits.topk(k, dim=-1).indices
    return int(top.eq(target.view(-1, 1)).any(dim=-1).sum())


def confidence_bin_sums(probs: torch.Tensor, target: torch.Tensor, n_bins: int = ECE_BINS) -> torch.Tensor:
    """(3, n_bins) float64: per bin the count, the summed confidence and the number correct."""
    conf, pred = probs.max(dim=-1)
    correct = pred.eq(target).double()
    conf = conf.double()
    bins = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    out = torch.zeros(3, n_bins, dtype=torch.float64)
    out[0].index_add_(0, bins.cpu(), torch.ones_like(conf).cpu())
    out[1].index_add_(0, bins.cpu(), conf.cpu())
    out[2].index_add_(0, bins.cpu(), correct.cpu())
    return out


def ece_from_bin_sums(bin_sums: torch.Tensor) -> float:
    count, conf_sum, correct_sum = bin_sums
    total = count.sum()
    if total == 0:
        return float("nan")
    return float((conf_sum - correct_sum).abs().sum() / total)


class ClassificationMetrics:
    """Accumulate logits batch by batch; ``reduce`` sums over ranks; ``result`` gives the dict."""

    def __init__(self, n_bins: int = ECE_BINS):
        self.n_bins = n_bins
        self.sums = torch.zeros(4 + 3 * n_bins, dtype=torch.float64)  # n, top1, top5, nll, bins

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits = logits.detach().double()  # float64 sums: shards and batch sizes agree exactly
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(-1, target.view(-1, 1)).sum()
        batch = torch.tensor(
            [target.numel(), topk_correct(logits, target, 1), topk_correct(logits, target, 5), float(nll)],
            dtype=torch.float64,
        )
        self.sums[:4] += batch
        self.sums[4:] += confidence_bin_sums(log_probs.exp(), target, self.n_bins).reshape(-1)

    def reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> ClassificationMetrics:
        if all_reduce is not None:
            self.sums = all_reduce(self.sums)
        return self

    @property
    def count(self) -> int:
        return int(self.sums[0])

    def result(self) -> Dict[str, float]:
        n = float(self.sums[0])
        if n == 0:
            raise ValueError("no examples were evaluated")
        return {
            "top1": 100.0 * float(self.sums[1]) / n,
            "top5": 100.0 * float(self.sums[2]) / n,
            "nll": float(self.sums[3]) / n,
            "ece": ece_from_bin_sums(self.sums[4:].reshape(3, self.n_bins)),
            "n": int(n),
        }
