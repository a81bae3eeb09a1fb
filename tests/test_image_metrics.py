"""Image metrics against direct computations; shards combine exactly."""

import math

import pytest
import torch

from lskd_plugins.image.metrics import (
    ClassificationMetrics,
    confidence_bin_sums,
    ece_from_bin_sums,
    topk_correct,
)


def reference_ece(probs, target, n_bins=15):
    """Guo et al.'s ECE written as loops: bins ((b-1)/M, b/M], the first also holding 0."""
    conf, pred = probs.max(dim=1)
    n = len(target)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if not members:
            continue
        acc = sum(int(pred[i] == target[i]) for i in members) / len(members)
        avg_conf = sum(float(conf[i]) for i in members) / len(members)
        total += len(members) / n * abs(acc - avg_conf)
    return total


def data(n=200, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2.5
    target = torch.randint(0, k, (n,), generator=g)
    return logits, target


def test_topk_correct_matches_sorting():
    logits, target = data()
    order = logits.argsort(dim=1, descending=True)
    for k in (1, 5, 10, 50):
        expected = sum(int(target[i] in order[i, :k].tolist()) for i in range(len(target)))
        assert topk_correct(logits, target, k) == expected
    assert topk_correct(logits, target, 50) == len(target)


def test_ece_matches_reference():
    logits, target = data()
    probs = torch.softmax(logits, dim=1)
    assert ece_from_bin_sums(confidence_bin_sums(probs, target)) == pytest.approx(
        reference_ece(probs, target), abs=1e-12
    )


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_overconfidence_is_the_gap():
    # 10 examples at confidence 0.8, 8 of them right: calibrated.
    probs = torch.tensor([[0.8, 0.2]] * 10, dtype=torch.float64)
    target = torch.tensor([0] * 8 + [1] * 2)
    assert ece_from_bin_sums(confidence_bin_sums(probs, target)) == pytest.approx(0.0, abs=1e-12)
    target = torch.tensor([0] * 5 + [1] * 5)  # 50% right at 80% confidence
    assert ece_from_bin_sums(confidence_bin_sums(probs, target)) == pytest.approx(0.3, abs=1e-12)


def test_result_against_direct_formulas():
    logits, target = data(seed=1)
    m = ClassificationMetrics()
    m.update(logits.float(), target)
    r = m.result()
    lp = torch.log_softmax(logits, dim=1)
    assert r["n"] == len(target)
    assert r["top1"] == pytest.approx(100.0 * (logits.argmax(1) == target).double().mean().item())
    assert r["top5"] == pytest.approx(100.0 * topk_correct(logits, target, 5) / len(target))
    assert r["nll"] == pytest.approx(-lp[torch.arange(len(target)), target].mean().item(), rel=1e-5)
    assert r["ece"] == pytest.approx(
        reference_ece(torch.softmax(logits.float(), 1).double(), target), abs=1e-5
    )


def test_batches_and_ranks_combine_exactly():
    logits, target = data(n=97, seed=2)
    whole = ClassificationMetrics()
    whole.update(logits, target)
    rank0, rank1 = ClassificationMetrics(), ClassificationMetrics()
    for i, chunk in enumerate(range(0, 97, 10)):
        (rank0 if i % 2 == 0 else rank1).update(logits[chunk : chunk + 10], target[chunk : chunk + 10])
    combined = rank0.reduce(lambda s: s + rank1.sums).result()
    for key, value in whole.result().items():
        assert combined[key] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_empty_metrics_raise():
    with pytest.raises(ValueError):
        ClassificationMetrics().result()
    assert math.isnan(ece_from_bin_sums(torch.zeros(3, 15, dtype=torch.float64)))
