"""The shared KD loss against direct reference computations."""

import math

import pytest
import torch

from lskd_plugins.kd_loss import kd_loss, teacher_log_probs

PAD = 1


def reference(student, teacher, target, *, alpha, T, eps, pad, t2=True, convention="fairseq"):
    """Explicit softmax / log / sums, one position at a time."""
    total = {"loss": 0.0, "ce": 0.0, "nll": 0.0, "kl": 0.0, "tnll": 0.0, "n": 0}
    s = student.double().reshape(-1, student.size(-1))
    teachers = teacher if isinstance(teacher, (list, tuple)) else [teacher]
    ts = [t.double().reshape(-1, t.size(-1)) for t in teachers]
    y = target.reshape(-1)
    V = s.size(-1)
    for i in range(s.size(0)):
        if y[i].item() == pad:
            continue
        ps1 = torch.exp(s[i]) / torch.exp(s[i]).sum()
        psT = torch.exp(s[i] / T) / torch.exp(s[i] / T).sum()
        ptT = sum(torch.exp(t[i] / T) / torch.exp(t[i] / T).sum() for t in ts) / len(ts)
        pt1 = sum(torch.exp(t[i]) / torch.exp(t[i]).sum() for t in ts) / len(ts)
        if convention == "fairseq":
            q = torch.full((V,), eps / (V - 1), dtype=torch.double)
            q[y[i]] = 1 - eps
        else:
            q = torch.full((V,), eps / V, dtype=torch.double)
            q[y[i]] += 1 - eps
        ce = -(q * torch.log(ps1)).sum()
        kl = (ptT * (torch.log(ptT) - torch.log(psT))).sum()
        total["ce"] += ce.item()
        total["nll"] += -math.log(ps1[y[i]].item())
        total["kl"] += kl.item()
        total["tnll"] += -math.log(pt1[y[i]].item())
        total["loss"] += ((1 - alpha) * ce + alpha * (T**2 if t2 else 1.0) * kl).item()
        total["n"] += 1
    return total


def make_batch(seed=0, B=3, L=5, V=11, n_teachers=1):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, L, V, generator=g) * 2
    teachers = [torch.randn(B, L, V, generator=g) * 3 for _ in range(n_teachers)]
    target = torch.randint(2, V, (B, L), generator=g)
    target[0, -2:] = PAD
    target[2, -1] = PAD
    return student, teachers if n_teachers > 1 else teachers[0], target


@pytest.mark.parametrize("T", [1.0, 2.0, 64.0])
@pytest.mark.parametrize("convention", ["fairseq", "uniform"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference_with_padding(T, convention, dtype):
    student, teacher, target = make_batch()
    out = kd_loss(
        student.to(dtype),
        target,
        teacher.to(dtype),
        kd_alpha=0.9,
        temperature=T,
        label_smoothing=0.1,
        ignore_index=PAD,
        smoothing_convention=convention,
    )
    ref = reference(student, teacher, target, alpha=0.9, T=T, eps=0.1, pad=PAD, convention=convention)
    # float64 must agree to rounding; float32 to its precision (at T=64 the KL is ~1e-4 per
    # token and is multiplied by T^2 = 4096, so its float32 rounding shows at ~1e-4 relative).
    rel = 1e-10 if dtype == torch.float64 else (1e-4 if T == 64.0 else 1e-5)
    assert out["ntokens"].item() == ref["n"] == 12
    assert out["loss"].item() == pytest.approx(ref["loss"], rel=rel)
    assert out["ce_loss"].item() == pytest.approx(ref["ce"], rel=rel)
    assert out["nll_loss"].item() == pytest.approx(ref["nll"], rel=rel)
    assert out["kd_loss"].item() == pytest.approx(
        ref["kl"], rel=max(rel, 1e-4 if dtype == torch.float32 else rel)
    )
    assert out["teacher_nll"].item() == pytest.approx(ref["tnll"], rel=rel)


def test_kl_precision_at_high_temperature_large_vocab():
    """float32 KL at T=64, V=10k stays within 0.1% of the float64 value (T^2 amplifies errors)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(64, 10000, generator=g) * 3, torch.randn(64, 10000, generator=g) * 3
    y = torch.randint(0, 10000, (64,), generator=g)
    k32 = kd_loss(s, y, t, kd_alpha=1.0, temperature=64.0)["kd_loss"].item()
    k64 = kd_loss(s.double(), y, t.double(), kd_alpha=1.0, temperature=64.0)["kd_loss"].item()
    assert k32 == pytest.approx(k64, rel=1e-3)


def test_chunked_kl_equals_unchunked(monkeypatch):
    import lskd_plugins.kd_loss as mod

    student, teacher, target = make_batch(seed=9, B=4, L=7, V=13)
    whole = kd_loss(student, target, teacher, kd_alpha=1.0, temperature=2.0, ignore_index=PAD)
    monkeypatch.setattr(mod, "_KL_CHUNK_ELEMENTS", 13 * 3)  # 3 rows per chunk
    chunked = kd_loss(student, target, teacher, kd_alpha=1.0, temperature=2.0, ignore_index=PAD)
    assert torch.allclose(whole["kd_loss"], chunked["kd_loss"], rtol=1e-6)


def test_t2_switch_and_pure_kd():
    student, teacher, target = make_batch(seed=3)
    on = kd_loss(student, target, teacher, kd_alpha=1.0, temperature=3.0, ignore_index=PAD)
    off = kd_loss(
        student, target, teacher, kd_alpha=1.0, temperature=3.0, ignore_index=PAD, scale_by_t2=False
    )
    assert on["loss"].item() == pytest.approx(9.0 * off["loss"].item(), rel=1e-6)
    assert off["loss"].item() == pytest.approx(off["kd_loss"].item(), rel=1e-6)


def test_ensemble_is_averaged_in_probability_space():
    student, teachers, target = make_batch(seed=5, n_teachers=2)
    out = kd_loss(student, target, teachers, kd_alpha=0.5, temperature=2.0, ignore_index=PAD)
    ref = reference(student, teachers, target, alpha=0.5, T=2.0, eps=0.0, pad=PAD)
    assert out["loss"].item() == pytest.approx(ref["loss"], rel=1e-5)
    assert out["teacher_nll"].item() == pytest.approx(ref["tnll"], rel=1e-5)
    lp = teacher_log_probs(teachers, 2.0)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.size(0)), atol=1e-5)


def test_kl_is_zero_when_student_equals_teacher():
    student, _, target = make_batch(seed=7)
    for T in (1.0, 2.0, 64.0):
        out = kd_loss(student, target, student.clone(), kd_alpha=1.0, temperature=T, ignore_index=PAD)
        assert abs(out["kd_loss"].item()) < 1e-5
        assert abs(out["loss"].item()) < 1e-5 * T**2


def test_alpha_zero_needs_no_teacher_and_is_plain_ce():
    student, teacher, target = make_batch(seed=2)
    with_t = kd_loss(student, target, teacher, kd_alpha=0.0, label_smoothing=0.1, ignore_index=PAD)
    without = kd_loss(student, target, None, kd_alpha=0.0, label_smoothing=0.1, ignore_index=PAD)
    assert torch.equal(with_t["loss"], without["loss"])
    assert torch.equal(without["loss"], without["ce_loss"])


def test_gradcheck_double():
    g = torch.Generator().manual_seed(11)
    student = torch.randn(2, 3, 5, generator=g, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(2, 3, 5, generator=g, dtype=torch.double)
    target = torch.tensor([[2, 3, PAD], [4, 0, 2]])

    def f(s):
        return kd_loss(
            s, target, teacher, kd_alpha=0.7, temperature=2.0, label_smoothing=0.1, ignore_index=PAD
        )["loss"]

    loss = f(student)
    loss.backward()
    # Closed form: d/dz_s of (1-a)*CE_eps + a*T^2*KL = (1-a)(p_s - q) + a*T*(p_s^T - p_t^T).
    s, t = student.detach(), teacher
    ps1, psT, ptT = s.softmax(-1), (s / 2).softmax(-1), (t / 2).softmax(-1)
    q = torch.full_like(s, 0.1 / 4)
    q.scatter_(-1, target.clamp(min=0).unsqueeze(-1), 0.9)
    expected = 0.3 * (ps1 - q) + 0.7 * 2.0 * (psT - ptT)
    expected[target.eq(PAD)] = 0
    assert torch.allclose(student.grad, expected, atol=1e-5)
    # And the numerical check of autograd, in double precision, both conventions and T=64.
    assert torch.autograd.gradcheck(f, (student.detach().clone().requires_grad_(True),))
    for conv, T in (("uniform", 1.0), ("fairseq", 64.0)):
        assert torch.autograd.gradcheck(
            lambda s, conv=conv, T=T: kd_loss(
                s,
                target,
                teacher,
                kd_alpha=0.5,
                temperature=T,
                label_smoothing=0.2,
                ignore_index=PAD,
                smoothing_convention=conv,
            )["loss"],
            (student.detach().clone().requires_grad_(True),),
        )


def test_half_precision_inputs_are_upcast():
    student, teacher, target = make_batch(seed=4)
    full = kd_loss(student, target, teacher, kd_alpha=0.9, temperature=2.0, ignore_index=PAD)
    half = kd_loss(student.half(), target, teacher.half(), kd_alpha=0.9, temperature=2.0, ignore_index=PAD)
    assert half["loss"].dtype == torch.float32
    assert half["loss"].item() == pytest.approx(full["loss"].item(), rel=1e-2)


def test_bad_temperature_and_alpha():
    student, teacher, target = make_batch()
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(student, target, teacher, kd_alpha=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="kd_alpha"):
        kd_loss(student, target, teacher, kd_alpha=1.5)
    with pytest.raises(ValueError, match="teacher"):
        kd_loss(student, target, None, kd_alpha=0.5)
