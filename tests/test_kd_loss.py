"""The shared KD loss against direct reference computations."""

import math
import re

import pytest
import torch
from kd_reference import reference_grad, reference_kd, softmax64

import lskd_plugins.kd_loss as kd_module
from lskd_plugins.kd_loss import (
    ProjectedFeatureTeacher,
    TopkTeacher,
    kd_loss,
    kd_loss_per_position,
    teacher_log_probs,
)

PAD = 1


def reference(student, teacher, target, *, alpha, T, eps, pad, t2=True, convention="fairseq"):
    """The shared float64 reference (tests/kd_reference.py) as plain floats."""
    ref = reference_kd(student, teacher, target, pad, alpha=alpha, T=T, eps=eps, t2=t2, convention=convention)
    return {k: float(v) for k, v in ref.items()}


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


# -- the chunked autograd function ------------------------------------------------------------------
@pytest.mark.parametrize(
    "T,convention,n_teachers", [(1.0, "fairseq", 1), (3.0, "uniform", 1), (2.0, "fairseq", 2)]
)
def test_chunked_value_and_gradient_equal_reference_float64(monkeypatch, T, convention, n_teachers):
    monkeypatch.setattr(kd_module, "_KL_CHUNK_ELEMENTS", 13 * 4)  # 4 rows per chunk: several chunks
    student, teacher, target = make_batch(seed=21, B=4, L=6, V=13, n_teachers=n_teachers)
    s = student.double().requires_grad_(True)
    teacher = [t.double() for t in teacher] if n_teachers > 1 else teacher.double()
    kw = dict(alpha=0.6, T=T, eps=0.1, convention=convention)
    out = kd_loss(
        s,
        target,
        teacher,
        kd_alpha=0.6,
        temperature=T,
        label_smoothing=0.1,
        ignore_index=PAD,
        smoothing_convention=convention,
    )
    out["loss"].backward()
    ref = reference_kd(student, teacher, target, PAD, **kw)
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-12)
    assert out["kd_loss"].item() == pytest.approx(ref["kl"].item(), rel=1e-10)
    grad = reference_grad(student, teacher, target, PAD, **kw)
    assert torch.allclose(s.grad, grad, rtol=1e-10, atol=1e-12)
    assert s.grad.reshape(-1, 13)[target.reshape(-1).eq(PAD)].abs().max() == 0  # padding: no gradient


def test_backward_keeps_one_gradient_tensor_not_log_probs():
    """What autograd keeps from the loss for the backward: the N x V gradient only (no log-probs
    at 1 or T, no teacher tensors); saved tensors counted with torch's saved-tensor hooks."""
    g = torch.Generator().manual_seed(0)
    N, V = 64, 500
    logits = torch.randn(N, V, generator=g, requires_grad=True)
    teacher = torch.randn(N, V, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = kd_loss(logits * 1.0, y, teacher, kd_alpha=0.9, temperature=2.0, label_smoothing=0.1)
    # the multiplication saves a scalar; the KD function saves exactly one N x V tensor
    assert sum(n for n in saved if n > 1) == N * V
    out["loss"].backward()
    assert logits.grad.shape == (N, V)


def test_feature_teacher_projects_chunk_by_chunk_and_equals_full_logits(monkeypatch):
    monkeypatch.setattr(kd_module, "_KL_CHUNK_ELEMENTS", 11 * 3)
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 5, 4, generator=g, dtype=torch.double)
    proj = torch.nn.Linear(4, 11).double()
    calls = []

    def projection(x):
        calls.append(x.size(0))
        return proj(x)

    student, _, target = make_batch(seed=6, B=3, L=5, V=11)
    student = student.double()
    full = kd_loss(student, target, proj(features).detach(), kd_alpha=0.9, temperature=2.0, ignore_index=PAD)
    chunked = kd_loss(
        student,
        target,
        ProjectedFeatureTeacher([features], [projection], 11),
        kd_alpha=0.9,
        temperature=2.0,
        ignore_index=PAD,
    )
    assert chunked["loss"].item() == pytest.approx(full["loss"].item(), rel=1e-12)
    assert max(calls) <= 3  # never more than one chunk of rows projected at once
    assert sum(calls) == 2 * (target.ne(PAD).sum().item())  # log-probs and NLL, padding rows skipped


def test_reduce_false_per_position_sums_to_the_reduced_loss():
    student, teacher, target = make_batch(seed=8)
    kw = dict(kd_alpha=0.7, temperature=2.0, label_smoothing=0.1, ignore_index=PAD)
    summed = kd_loss(student.double(), target, teacher.double(), **kw)
    per = kd_loss_per_position(student.double(), target, teacher.double(), **kw)
    assert per["loss"].shape == (target.numel(),)
    assert per["loss"][target.reshape(-1).eq(PAD)].abs().max() == 0
    for key in ("loss", "ce_loss", "nll_loss", "kd_loss", "teacher_nll"):
        assert per[key].sum().item() == pytest.approx(summed[key].item(), rel=1e-12), key


# -- the cached teacher: top-k plus a flat tail ---------------------------------------------------
TEMPS = (1.0, 2.0, 3.0, 64.0)


def flat_tail_teacher(N=12, V=17, seed=0):
    """Logits with one peak per row and every other logit equal: an exactly flat tail (an LS teacher)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.full((N, V), -1.0, dtype=torch.double) + torch.randn(N, 1, generator=g, dtype=torch.double)
    z[torch.arange(N), torch.randint(0, V, (N,), generator=g)] += 2.0 + 3.0 * torch.rand(
        N, generator=g, dtype=torch.double
    )
    return z


def cached(logits, k, temps=TEMPS, dtype=None):
    ids, lp1, log_z = kd_module.topk_entries(logits, k, temps)
    return TopkTeacher(ids, lp1 if dtype is None else lp1.to(dtype), log_z, temps, logits.size(-1))


def flat_tail_probs(logits, k, T):
    """The reference's flat-tail distribution: exact top-k probabilities, the rest spread evenly."""
    p = softmax64(logits / T)
    top = p.topk(k, -1)
    tail = (1 - top.values.sum(-1, keepdim=True)).clamp(min=0) / max(1, p.size(-1) - k)
    return tail.expand_as(p).clone().scatter_(-1, top.indices, top.values)


@pytest.mark.parametrize("k", [1, 2, 5, 16, 17])
@pytest.mark.parametrize("T", [1.0, 2.0, 64.0, 5.0])
def test_flat_tail_teacher_is_exact_for_every_k(k, T):
    """T = 5 is not cached: the flat-tail extrapolation from T = 1 is exact for a flat tail too."""
    z = flat_tail_teacher()
    g = torch.Generator().manual_seed(1)
    student = torch.randn(z.shape, generator=g, dtype=torch.double)
    y = torch.randint(0, z.size(-1), (z.size(0),), generator=g)
    kw = dict(kd_alpha=0.9, temperature=T, label_smoothing=0.1)
    online = kd_loss(student, y, z, **kw)
    cache = kd_loss(student, y, cached(z, k), **kw)
    for key in ("loss", "kd_loss", "teacher_nll"):
        assert cache[key].item() == pytest.approx(online[key].item(), rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("T", [1.0, 2.0, 64.0])
def test_k_equals_v_matches_online_within_fp16_storage(T):
    """Stored float16 log-probs (as lskd cache-teacher writes them): relative error 2^-11 of each
    log-prob, i.e. at most ~0.1% of the KL and 1e-3 of each gradient entry here."""
    g = torch.Generator().manual_seed(2)
    N, V = 40, 30
    z = torch.randn(N, V, generator=g) * 3
    student = torch.randn(N, V, generator=g, requires_grad=True)
    y = torch.randint(0, V, (N,), generator=g)
    kw = dict(kd_alpha=0.9, temperature=T, label_smoothing=0.1)
    online = kd_loss(student, y, z, **kw)
    (g_online,) = torch.autograd.grad(online["loss"], student)
    cache = kd_loss(student, y, cached(z, V, dtype=torch.float16), **kw)
    (g_cache,) = torch.autograd.grad(cache["loss"], student)
    assert cache["kd_loss"].item() == pytest.approx(online["kd_loss"].item(), rel=2e-3, abs=1e-6)
    assert cache["loss"].item() == pytest.approx(online["loss"].item(), rel=1e-3)
    assert torch.allclose(g_cache, g_online, atol=1e-3)


def test_truncated_cache_keeps_the_tail_mass_and_matches_the_flat_tail_reference():
    """A teacher with a non-flat tail: the cached loss is the KL to the flat-tail distribution
    (checked against the float64 reference with that distribution), and its tail keeps its mass."""
    g = torch.Generator().manual_seed(3)
    N, V, k = 20, 50, 8
    z = torch.randn(N, V, generator=g, dtype=torch.double) * 2
    student = torch.randn(N, V, generator=g, dtype=torch.double)
    y = torch.randint(0, V, (N,), generator=g)
    teacher = cached(z, k)
    lp = teacher.log_probs(torch.arange(N), 2.0)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(N, dtype=torch.double), atol=1e-12)
    out = kd_loss(student, y, teacher, kd_alpha=1.0, temperature=2.0)
    probs = (flat_tail_probs(z, k, 2.0), flat_tail_probs(z, k, 1.0))
    ref = reference_kd(student, None, y, alpha=1.0, T=2.0, teacher_probs=probs)
    assert out["kd_loss"].item() == pytest.approx(ref["kl"].item(), rel=1e-10)


@pytest.mark.parametrize("T", [1.0, 2.0, 64.0])
def test_flat_tail_floor_is_r_times_kl_of_uniform_to_the_tail(T):
    """The cached KL of a teacher against itself (exact KL 0) is r * KL(uniform || p_tail / r):
    the part of the flat tail's error no student removes (benchmarks/teacher_cache.py's floor/tok)."""
    g = torch.Generator().manual_seed(4)
    N, V, k = 16, 40, 5
    z = torch.randn(N, V, generator=g, dtype=torch.double) * 2
    y = torch.randint(0, V, (N,), generator=g)
    kd = kd_loss_per_position(z, y, cached(z, k), kd_alpha=1.0, temperature=T)["kd_loss"]
    exact = kd_loss_per_position(z, y, z, kd_alpha=1.0, temperature=T)["kd_loss"]
    p = softmax64(z / T)
    in_tail = torch.ones_like(p, dtype=torch.bool).scatter(-1, p.topk(k, -1).indices, False)
    r = (p * in_tail).sum(-1)
    p_hat = p / r.unsqueeze(-1)
    m = V - k
    kl_uniform_to_tail = ((-math.log(m) - p_hat.log()) * in_tail).sum(-1) / m
    assert exact.abs().max() < 1e-12
    assert torch.allclose(kd, r * kl_uniform_to_tail, rtol=1e-9, atol=1e-12)  # the part is the KL, no T^2
    assert (kd > 0).all()  # a non-flat tail always costs something


# -- the KD methods: logit_std and dkd -----------------------------------------------------------
NEW_METHODS = ("logit_std", "dkd")


def method_kw(method):
    return dict(method=method, dkd_alpha=0.7, dkd_beta=3.0) if method == "dkd" else dict(method=method)


@pytest.mark.parametrize("method", NEW_METHODS)
@pytest.mark.parametrize("T", [1.0, 2.0, 64.0])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("n_teachers", [1, 2])
def test_method_value_and_gradient_equal_float64_reference(monkeypatch, method, T, eps, n_teachers):
    """Chunked (4 rows a chunk, padding inside), float64: every part and the gradient equal the
    independent formulas of tests/kd_reference.py to rounding."""
    monkeypatch.setattr(kd_module, "_KL_CHUNK_ELEMENTS", 13 * 4)
    student, teacher, target = make_batch(seed=31, B=4, L=6, V=13, n_teachers=n_teachers)
    teacher = [t.double() for t in teacher] if n_teachers > 1 else teacher.double()
    convention = "uniform" if T == 2.0 else "fairseq"
    s = student.double().requires_grad_(True)
    mk = method_kw(method)
    out = kd_loss(
        s,
        target,
        teacher,
        kd_alpha=0.6,
        temperature=T,
        label_smoothing=eps,
        ignore_index=PAD,
        smoothing_convention=convention,
        **mk,
    )
    out["loss"].backward()
    kw = dict(alpha=0.6, T=T, eps=eps, convention=convention, **mk)
    ref = reference_kd(student, teacher, target, PAD, **kw)
    assert out["ntokens"].item() == ref["n"]
    for key, ref_key in (("loss", "loss"), ("ce_loss", "ce"), ("nll_loss", "nll"), ("teacher_nll", "tnll")):
        assert out[key].item() == pytest.approx(ref[ref_key].item(), rel=1e-10), key
    assert out["kd_loss"].item() == pytest.approx(ref["kl"].item(), rel=1e-9, abs=1e-15)
    assert ref["kl"].item() > 0
    grad = reference_grad(student, teacher, target, PAD, **kw)
    assert torch.allclose(s.grad, grad, rtol=1e-8, atol=1e-12)
    assert s.grad.reshape(-1, 13)[target.reshape(-1).eq(PAD)].abs().max() == 0


@pytest.mark.parametrize("method", NEW_METHODS)
@pytest.mark.parametrize("T", [1.0, 2.0, 64.0])
def test_method_float32_matches_float64_reference(method, T):
    student, teacher, target = make_batch(seed=32)
    s = student.clone().requires_grad_(True)
    mk = method_kw(method)
    out = kd_loss(
        s, target, teacher, kd_alpha=0.9, temperature=T, label_smoothing=0.1, ignore_index=PAD, **mk
    )
    out["loss"].backward()
    kw = dict(alpha=0.9, T=T, eps=0.1, **mk)
    ref = reference_kd(student, teacher, target, PAD, **kw)
    # At T = 64 the z-scores / T differ by ~1e-2 and the KL (~2e-4 per token, times T^2) shows the
    # float32 rounding of the log-probs at ~2e-4 relative (measured); at T = 1, 2 it is ~1e-7.
    rel = 1e-3 if T == 64.0 else 1e-5
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=rel)
    assert out["kd_loss"].item() == pytest.approx(ref["kl"].item(), rel=rel)
    grad = reference_grad(student, teacher, target, PAD, **kw).float()
    assert torch.allclose(s.grad, grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_method_gradcheck_and_per_position(method):
    """Numerical gradient check of the closed form; reduce=False (autograd) gives the same parts
    and the same gradient."""
    g = torch.Generator().manual_seed(12)
    student = torch.randn(2, 3, 5, generator=g, dtype=torch.double)
    teacher = [torch.randn(2, 3, 5, generator=g, dtype=torch.double) for _ in range(2)]
    target = torch.tensor([[2, 3, PAD], [4, 0, 2]])
    kw = dict(kd_alpha=0.7, temperature=2.0, label_smoothing=0.1, ignore_index=PAD, **method_kw(method))

    def f(s):
        return kd_loss(s, target, teacher, **kw)["loss"]

    assert torch.autograd.gradcheck(f, (student.clone().requires_grad_(True),))
    s1, s2 = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    summed = kd_loss(s1, target, teacher, **kw)
    per = kd_loss_per_position(s2, target, teacher, **kw)
    for key in ("loss", "ce_loss", "nll_loss", "kd_loss", "teacher_nll"):
        assert per[key].sum().item() == pytest.approx(summed[key].item(), rel=1e-12), key
    assert per["loss"][target.reshape(-1).eq(PAD)].abs().max() == 0
    summed["loss"].backward()
    per["loss"].sum().backward()
    assert torch.allclose(s1.grad, s2.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", ["kd", *NEW_METHODS])
def test_t2_switch_for_every_method(method):
    student, teacher, target = make_batch(seed=33)
    kw = dict(kd_alpha=1.0, temperature=3.0, ignore_index=PAD, **method_kw(method))
    on, off = (
        kd_loss(student, target, teacher, **kw),
        kd_loss(student, target, teacher, scale_by_t2=False, **kw),
    )
    assert on["loss"].item() == pytest.approx(9.0 * off["loss"].item(), rel=1e-6)
    assert off["loss"].item() == pytest.approx(off["kd_loss"].item(), rel=1e-6)
    assert on["kd_loss"].item() == off["kd_loss"].item()  # the reported part has no T^2


@pytest.mark.parametrize("method", NEW_METHODS)
def test_method_is_zero_when_student_equals_teacher(method):
    student, _, target = make_batch(seed=34)
    for T in (1.0, 2.0, 64.0):
        out = kd_loss(student, target, student.clone(), kd_alpha=1.0, temperature=T, **method_kw(method))
        assert abs(out["kd_loss"].item()) < 1e-5


def test_logit_std_ignores_the_teachers_scale_and_shift():
    """Z(a z + b) = Z(z) for a > 0: a sharper or shifted teacher is the same teacher to logit_std."""
    student, teacher, target = make_batch(seed=35)
    kw = dict(kd_alpha=1.0, temperature=2.0, ignore_index=PAD, method="logit_std")
    base = kd_loss(student.double(), target, teacher.double(), **kw)["kd_loss"].item()
    scaled = kd_loss(student.double(), target, 5.0 * teacher.double() + 3.0, **kw)["kd_loss"].item()
    assert scaled == pytest.approx(base, rel=1e-6)
    plain = kd_loss(student.double(), target, 5.0 * teacher.double(), kd_alpha=1.0, temperature=2.0)
    assert abs(plain["kd_loss"].item() - base) > 1e-2 * base  # plain KD sees the scale


@pytest.mark.parametrize("method", ["kd", *NEW_METHODS])
def test_confident_teacher_float32_at_t1_is_finite_and_accurate(method):
    """A teacher whose p(y) rounds to 1 in float32 (1 - p(y) = 0 there): no inf or NaN; at a margin
    float64 still resolves (30), the float32 loss equals the float64 reference."""
    g = torch.Generator().manual_seed(36)
    N, V = 16, 11
    y = torch.randint(0, V, (N,), generator=g)
    student = torch.randn(N, V, generator=g)
    for margin in (30.0, 100.0, 1000.0):
        teacher = torch.randn(N, V, generator=g)
        teacher[torch.arange(N), y] += margin
        confident_student = student.clone()
        confident_student[torch.arange(N), y] += margin / 2
        for s0 in (student, confident_student):
            s = s0.clone().requires_grad_(True)
            out = kd_loss(
                s, y, teacher, kd_alpha=0.9, temperature=1.0, label_smoothing=0.1, **method_kw(method)
            )
            out["loss"].backward()
            assert all(torch.isfinite(v).all() for v in out.values()), margin
            assert torch.isfinite(s.grad).all(), margin
            if margin == 30.0:
                ref = reference_kd(s0, teacher, y, alpha=0.9, T=1.0, eps=0.1, **method_kw(method))
                assert out["kd_loss"].item() == pytest.approx(ref["kl"].item(), rel=1e-3)


def test_logit_std_constant_student_row_has_a_finite_gradient():
    student, teacher, target = make_batch(seed=37)
    student[0, 0] = 2.5  # std 0: Z = 0
    s = student.double().requires_grad_(True)
    out = kd_loss(s, target, teacher.double(), kd_alpha=0.5, temperature=2.0, method="logit_std")
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("method", NEW_METHODS)
def test_methods_keep_one_gradient_tensor(method):
    """The chunked memory property holds for every method: autograd keeps one N x V tensor."""
    g = torch.Generator().manual_seed(0)
    N, V = 64, 500
    logits = torch.randn(N, V, generator=g, requires_grad=True)
    teacher = torch.randn(N, V, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = kd_loss(logits * 1.0, y, teacher, kd_alpha=0.9, temperature=2.0, **method_kw(method))
    assert sum(n for n in saved if n > 1) == N * V
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("method", NEW_METHODS)
def test_projected_feature_teacher_serves_every_method(monkeypatch, method):
    monkeypatch.setattr(kd_module, "_KL_CHUNK_ELEMENTS", 11 * 3)
    g = torch.Generator().manual_seed(38)
    features = [torch.randn(3, 5, 4, generator=g, dtype=torch.double) for _ in range(2)]
    projs = [torch.nn.Linear(4, 11).double() for _ in range(2)]
    student, _, target = make_batch(seed=39, B=3, L=5, V=11)
    kw = dict(kd_alpha=0.9, temperature=2.0, ignore_index=PAD, **method_kw(method))
    logits = [p(f).detach() for p, f in zip(projs, features)]
    full = kd_loss(student.double(), target, logits, **kw)
    projected = kd_loss(student.double(), target, ProjectedFeatureTeacher(features, projs, 11), **kw)
    for key in ("loss", "kd_loss", "teacher_nll"):
        assert projected[key].item() == pytest.approx(full[key].item(), rel=1e-12), key


def test_feature_teacher_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="use ProjectedFeatureTeacher"):
        alias = kd_module.FeatureTeacher
    assert alias is ProjectedFeatureTeacher


@pytest.mark.parametrize("method", NEW_METHODS)
def test_topk_teacher_refuses_the_new_methods(method):
    z = flat_tail_teacher()
    y = torch.zeros(z.size(0), dtype=torch.long)
    with pytest.raises(ValueError, match=f"KD method '{method}' needs the teacher's logits; a TopkTeacher"):
        kd_loss(z, y, cached(z, 4), kd_alpha=0.5, method=method)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(method="crd"), "KD method must be one of kd, logit_std, dkd; got 'crd'"),
        (dict(method="dkd", dkd_alpha=-1.0), "dkd_alpha must be a finite number >= 0, got -1.0"),
        (dict(method="dkd", dkd_beta=math.inf), "dkd_beta must be a finite number >= 0, got inf"),
        (dict(method="dkd", dkd_beta=math.nan), "dkd_beta must be a finite number >= 0, got nan"),
        (dict(method="dkd", dkd_alpha=0.0, dkd_beta=0.0), "dkd_alpha and dkd_beta are both 0"),
    ],
)
def test_bad_method_options(kw, message):
    student, teacher, target = make_batch()
    with pytest.raises(ValueError, match=re.escape(message)):
        kd_loss(student, target, teacher, kd_alpha=0.5, **kw)
