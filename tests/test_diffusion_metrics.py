"""Diffusion numbers (method.md section 5) and the choice of classes."""

import numpy as np
import pytest

from lskd_plugins.diffusion.metrics import geometry_numbers, probability_numbers
from lskd_plugins.diffusion.projection import augment, augment_templates, project, template_basis
from lskd_plugins.diffusion.select import (
    choose_classes,
    mean_probability_matrix,
    parse_names,
    select_by_names,
)
from lskd_plugins.errors import LskdError


def clusters(stretch=1.0, n=3000, seed=0):
    """a at 0, b at 4 e_x (similar), c at 4 e_y; class a stretched by `stretch` along a->b."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(3, n, 3))
    a = noise[0] * [stretch, 1.0, 1.0]
    b = noise[1] + [4.0, 0.0, 0.0]
    c = noise[2] + [0.0, 4.0, 0.0]
    return np.vstack([a, b, c]), np.repeat([0, 1, 2], n)


def test_numbers_equal_direct_computation():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(30, 3)) + np.repeat(np.eye(3) * 2, 10, axis=0)
    y = np.repeat([0, 1, 2], 10)
    out = geometry_numbers(z, y)
    mu = [z[y == k].mean(0) for k in range(3)]
    s = [np.mean([np.linalg.norm(p - mu[k]) for p in z[y == k]]) for k in range(3)]
    d_ab = np.linalg.norm(mu[0] - mu[1])
    assert out["d_ab"] == pytest.approx(d_ab)
    assert out["spread"]["c"] == pytest.approx(s[2])
    assert out["fisher_ab"] == pytest.approx(d_ab**2 / (s[0] ** 2 + s[1] ** 2))
    leak = sum(np.linalg.norm(p - mu[1]) < np.linalg.norm(p - mu[0]) for p in z[y == 0]) / 10
    assert out["leakage_ab"] == pytest.approx(leak)
    u = (mu[1] - mu[0]) / d_ab
    w = (mu[2] - mu[0]) - ((mu[2] - mu[0]) @ u) * u
    v = w / np.linalg.norm(w)
    pa = z[y == 0] - mu[0]
    assert out["eta"] == pytest.approx(np.std(pa @ u) / np.std(pa @ v))
    assert out["n"] == {"a": 10, "b": 10, "c": 10}
    np.testing.assert_allclose(out["centroids"]["b"], mu[1])


def test_ratios_do_not_change_when_features_are_scaled():
    z, y = clusters(2.0, n=300)
    base = geometry_numbers(z, y)
    scaled = geometry_numbers(7.5 * z, y)
    for key in ("eta", "eta_b", "fisher_ab", "fisher_ac", "leakage_ab", "leakage_ba", "leakage_ac"):
        assert scaled[key] == pytest.approx(base[key], rel=1e-10), key
    assert scaled["d_ab"] == pytest.approx(7.5 * base["d_ab"])
    # through the whole projection: scaling the augmented features scales z
    rng = np.random.default_rng(1)
    t = augment_templates(rng.normal(size=(3, 8)), rng.normal(size=3))
    h = augment(rng.normal(size=(90, 8)))
    yy = np.repeat([0, 1, 2], 30)
    q = template_basis(t)
    one, three = geometry_numbers(project(h, q), yy), geometry_numbers(project(3.0 * h, q), yy)
    for key in ("eta", "fisher_ab", "leakage_ab"):
        assert three[key] == pytest.approx(one[key], rel=1e-10)


def test_eta_grows_as_class_a_spreads_toward_b_and_leakage_rises():
    stretches = [1.0, 1.5, 2.0, 3.0, 4.0]
    results = [geometry_numbers(*clusters(s)) for s in stretches]
    etas = [r["eta"] for r in results]
    leaks = [r["leakage_ab"] for r in results]
    fishers = [r["fisher_ab"] for r in results]
    assert all(e2 > e1 for e1, e2 in zip(etas, etas[1:])), etas
    assert all(l2 >= l1 for l1, l2 in zip(leaks, leaks[1:])), leaks
    assert leaks[-1] > leaks[0] + 0.2
    assert all(f2 < f1 for f1, f2 in zip(fishers, fishers[1:])), fishers
    assert 0.95 < etas[0] < 1.05  # isotropic
    assert etas[-1] == pytest.approx(4.0, rel=0.06)
    # spreading a toward c instead leaves eta below 1
    z, y = clusters(1.0)
    z[y == 0] *= [1.0, 3.0, 1.0]
    assert geometry_numbers(z, y)["eta"] < 0.4


def test_isotropic_spread_gives_eta_near_one_for_any_seed():
    for seed in range(3):
        assert abs(geometry_numbers(*clusters(1.0, seed=seed))["eta"] - 1) < 0.06


def test_probability_numbers_equal_direct_means():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=12) * 0.9
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    correct = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0], dtype=bool)
    out = probability_numbers(p, y, correct)
    assert out["p_b_given_a"] == pytest.approx(p[:4, 1].mean())
    assert out["p_c_given_a"] == pytest.approx(p[:4, 2].mean())
    assert out["p_a_given_b"] == pytest.approx(p[4:8, 0].mean())
    assert out["p_ratio_a"] == pytest.approx(p[:4, 1].mean() / p[:4, 2].mean())
    assert out["accuracy"] == pytest.approx(8 / 12)


def test_mean_probability_matrix_and_automatic_choice():
    names = ["airplane", "cat", "dog", "frog", "ship"]
    probs = np.array(
        [
            [0.90, 0.01, 0.02, 0.02, 0.05],
            [0.01, 0.70, 0.25, 0.03, 0.01],  # cat -> dog
            [0.01, 0.15, 0.80, 0.03, 0.01],  # dog -> cat
            [0.02, 0.05, 0.05, 0.87, 0.01],
            [0.05, 0.00, 0.01, 0.01, 0.93],
        ]
    )
    labels = np.array([0, 1, 2, 3, 4, 1])
    rows = np.vstack([probs, probs[1:2]])
    m = mean_probability_matrix(rows, labels)
    np.testing.assert_allclose(m, probs)
    sel = choose_classes(m, names, reference="teacher")
    assert sel.names == ["cat", "dog", "ship"]  # cat gives dog more mass than dog gives cat
    assert sel.ids == [1, 2, 4]
    assert sel.method == "auto"
    assert "cat/dog" in sel.reason and "ship" in sel.reason and "teacher" in sel.reason
    assert sel.scores["p_b_given_a"] == pytest.approx(0.25)
    # a class without examples is never chosen
    m2 = m.copy()
    m2[4] = np.nan
    assert choose_classes(m2, names, ids=[10, 11, 12, 13, 14]).ids == [11, 12, 10]


def test_names_parse_and_lookup_errors():
    index = {"airplane": 0, "cat": 1, "dog": 2}
    sel = select_by_names("cat, dog,airplane", index)
    assert sel.ids == [1, 2, 0] and sel.names == ["cat", "dog", "airplane"] and sel.method == "names"
    with pytest.raises(LskdError) as err:
        select_by_names("cat,zebra,airplane", index)
    assert err.value.message == "unknown class zebra; known: airplane, cat, dog"
    with pytest.raises(LskdError, match="exactly three different names"):
        parse_names("cat,cat,dog")
    with pytest.raises(LskdError, match="at least three classes"):
        choose_classes(np.array([[0.9, 0.1, np.nan], [0.2, 0.8, np.nan], [np.nan] * 3]), ["a", "b", "c"])
