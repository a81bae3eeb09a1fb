"""The image training task: its loss is the shared kd_loss, checked against direct formulas."""

import math

import pytest
import torch
from kd_reference import reference_kd
from torch import nn

import lskd_plugins.image.task as task_module
from lskd_plugins.image.task import LabelSmoothingKDTask, make_teacher
from lskd_plugins.image.train import epoch_seed, role_label
from lskd_plugins.kd_loss import kd_loss

K = 7
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PooledLinear(nn.Module):
    """A tiny 'image model': global average pool + linear; records the last input it saw."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3, K)
        self.last_input = None

    def forward(self, x):
        self.last_input = x.detach().clone()
        return self.fc(x.mean(dim=(2, 3))) * 3


def batch(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, K, (n,), generator=g)


def direct_smoothed_ce(logits, target, alpha):
    """mean_i -sum_k q_ik log p_ik with q = (1 - alpha) onehot + alpha / K (the shared float64 reference)."""
    ref = reference_kd(logits, logits, target, alpha=0.0, T=1.0, eps=alpha, convention="uniform")
    return ref["ce"].item() / len(target)


def direct_kl(student, teacher, T):
    """mean_i KL(p_t^T || p_s^T) (the shared float64 reference)."""
    no_labels = torch.zeros(len(student), dtype=torch.long)
    return reference_kd(student, teacher, no_labels, alpha=1.0, T=T)["kl"].item() / len(student)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_teacher_loss_is_uniform_label_smoothing(alpha):
    x, y = batch()
    task = LabelSmoothingKDTask(PooledLinear(1), None, smoothing=alpha)
    out = task(x, y)
    logits = out["output"].detach()
    shared = kd_loss(logits, y, None, kd_alpha=0.0, label_smoothing=alpha, smoothing_convention="uniform")
    assert out["loss"].item() == pytest.approx(shared["loss"].item() / len(y), rel=1e-6)
    assert out["loss"].item() == pytest.approx(direct_smoothed_ce(logits, y, alpha), rel=1e-5)
    assert out["kd_loss"].item() == 0.0


@pytest.mark.parametrize("T", [1.0, 3.0, 64.0])
def test_student_pure_kd_is_the_shared_kd_term(T):
    """beta = 1 (the paper's image recipe): loss = T^2 * KL, the same numbers as the NMT criterion's
    kd_loss call on the same logits (its fairseq convention only differs in the CE term, absent here)."""
    x, y = batch()
    x = x.double()  # float64 throughout: at T = 64 the KL is a small difference of large terms
    teacher_model = PooledLinear(2).double()
    teacher = make_teacher(teacher_model, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    task = LabelSmoothingKDTask(
        PooledLinear(1),
        teacher,
        kd_alpha=1.0,
        temperature=T,
        student_mean=IMAGENET_MEAN,
        student_std=IMAGENET_STD,
    ).double()
    out = task(x, y)
    s_logits = out["output"].detach()
    t_logits = teacher_model(x)
    for convention in ("uniform", "fairseq"):
        shared = kd_loss(s_logits, y, t_logits, kd_alpha=1.0, temperature=T, smoothing_convention=convention)
        assert out["loss"].item() == pytest.approx(shared["loss"].item() / len(y), rel=1e-6)
        assert out["kd_loss"].item() == pytest.approx(shared["kd_loss"].item() / len(y), rel=1e-6)
    assert out["loss"].item() == pytest.approx(T * T * direct_kl(s_logits, t_logits, T), rel=1e-5)


def test_student_mixed_loss_with_student_smoothing():
    x, y = batch(seed=3)
    T, beta, eps = 2.0, 0.7, 0.1
    teacher_model = PooledLinear(2)
    teacher = make_teacher(teacher_model, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    task = LabelSmoothingKDTask(
        PooledLinear(1),
        teacher,
        smoothing=eps,
        kd_alpha=beta,
        temperature=T,
        student_mean=IMAGENET_MEAN,
        student_std=IMAGENET_STD,
    )
    out = task(x, y)
    s, t = out["output"].detach(), teacher_model(x)
    expected = (1 - beta) * direct_smoothed_ce(s, y, eps) + beta * T * T * direct_kl(s, t, T)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_forward_calls_the_shared_function(monkeypatch):
    calls = []
    real = task_module.kd_loss

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(task_module, "kd_loss", spy)
    x, y = batch()
    teacher = make_teacher(PooledLinear(2), IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    LabelSmoothingKDTask(PooledLinear(1), teacher, temperature=3.0)(x, y)
    assert len(calls) == 1
    assert calls[0]["smoothing_convention"] == "uniform" and calls[0]["temperature"] == 3.0
    assert calls[0]["kd_alpha"] == 1.0 and calls[0]["scale_by_t2"] is True


def test_teacher_input_renormalised_frozen_and_in_eval_mode():
    x, y = batch()
    teacher_model = nn.Sequential(nn.BatchNorm2d(3), PooledLinear(2))
    teacher = make_teacher(teacher_model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), torch.device("cpu"))
    student = PooledLinear(1)
    task = LabelSmoothingKDTask(
        student, teacher, temperature=2.0, student_mean=IMAGENET_MEAN, student_std=IMAGENET_STD
    )
    task.train()
    assert student.training and not teacher.training and not teacher_model[0].training
    running_mean = teacher_model[0].running_mean.clone()
    out = task(x, y)
    out["loss"].backward()
    # The teacher saw the raw pixels re-normalised with its own statistics.
    s_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (x * s_std + s_mean - 0.5) / 0.5
    seen = teacher_model[0](expected)  # eval-mode BN: deterministic, lets us recompute the input
    assert torch.allclose(teacher_model[1].last_input, seen, atol=1e-6)
    assert torch.equal(teacher_model[0].running_mean, running_mean)  # no BN update in the teacher
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_same_normalisation_passes_input_unchanged():
    x, y = batch()
    teacher_model = PooledLinear(2)
    teacher = make_teacher(teacher_model, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    LabelSmoothingKDTask(PooledLinear(1), teacher, student_mean=IMAGENET_MEAN, student_std=IMAGENET_STD)(x, y)
    assert torch.equal(teacher_model.last_input, x)


def test_labels_and_epoch_seeds():
    assert role_label(0.1, None, 1.0) == "teacher alpha=0.1"
    assert role_label(0.0, None, 1.0) == "teacher alpha=0"
    assert role_label(0.0, 0.1, 3.0) == "student T=3 from LS teacher"
    assert role_label(0.0, 0.0, 64.0) == "student T=64 from noLS teacher"
    seeds = {epoch_seed(0, e, r) for e in range(50) for r in range(8)}
    assert len(seeds) == 400 and all(0 <= s < 2**31 for s in seeds)
    assert not math.isnan(epoch_seed(123, 4, 1))
