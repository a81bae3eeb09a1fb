"""Projections of the diffusion analysis: template basis, coordinates, PCA, Mueller's plane."""

import numpy as np
import pytest

from lskd_plugins.diffusion.projection import (
    augment,
    augment_templates,
    fit_pca_2d,
    project,
    template_basis,
    template_plane,
)
from lskd_plugins.errors import LskdError


@pytest.fixture
def templates():
    rng = np.random.default_rng(0)
    return augment_templates(rng.normal(size=(3, 16)), rng.normal(size=3))


def test_augment_appends_one_and_bias():
    h = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(augment(h), [[0, 1, 2, 1], [3, 4, 5, 1]])
    w = np.ones((3, 2))
    assert np.array_equal(augment_templates(w, np.array([1.0, 2.0, 3.0]))[:, -1], [1, 2, 3])
    assert np.array_equal(augment_templates(w, None)[:, -1], [0, 0, 0])


def test_basis_is_orthonormal_and_spans_the_templates(templates):
    q = template_basis(templates)
    assert q.shape == (17, 3)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)
    # each template is reconstructed exactly from its own 3 coordinates
    coords = project(templates, q)
    np.testing.assert_allclose(coords @ q.T, templates, atol=1e-12)
    # QR order: t_a lies on the first basis vector, t_b in the first two (non-negative diagonal)
    assert abs(coords[0, 1]) < 1e-12 and abs(coords[0, 2]) < 1e-12 and abs(coords[1, 2]) < 1e-12
    assert coords[0, 0] > 0 and coords[1, 1] > 0 and coords[2, 2] > 0
    np.testing.assert_allclose(np.linalg.norm(coords, axis=1), np.linalg.norm(templates, axis=1))


def test_coordinates_keep_the_three_logits(templates):
    rng = np.random.default_rng(1)
    h = rng.normal(size=(50, 16))
    q = template_basis(templates)
    z = project(augment(h), q)
    logits = augment(h) @ templates.T
    np.testing.assert_allclose(z @ project(templates, q).T, logits, atol=1e-10)


def test_dependent_templates_are_a_user_error():
    t = np.ones((3, 5))
    with pytest.raises(LskdError, match="linearly dependent"):
        template_basis(t)


def test_pca_matches_sklearn_and_reconstructs_planar_points():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(3, 2)))[0]
    pts = rng.normal(size=(200, 2)) * [3.0, 1.0] @ basis.T + [1.0, -2.0, 0.5]
    pca = fit_pca_2d(pts)
    xy = pca.transform(pts)
    np.testing.assert_allclose(xy @ pca.components + pca.mean, pts, atol=1e-10)
    ref = PCA(2).fit(pts)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_, atol=1e-10)
    np.testing.assert_allclose(np.abs(pca.components), np.abs(ref.components_), atol=1e-8)


def test_template_plane_passes_through_the_templates(templates):
    plane = template_plane(templates)
    np.testing.assert_allclose(plane.axes @ plane.axes.T, np.eye(2), atol=1e-12)
    xy = plane.coordinates(templates)
    # distances between the templates are kept, so they lie in the plane
    for i in range(3):
        for j in range(3):
            assert np.linalg.norm(xy[i] - xy[j]) == pytest.approx(np.linalg.norm(templates[i] - templates[j]))
    # the first axis runs from t_a to t_b; moving off the plane does not change coordinates
    assert abs(xy[1, 1] - xy[0, 1]) < 1e-10 and xy[1, 0] > xy[0, 0]
    normal = np.random.default_rng(3).normal(size=templates.shape[1])
    normal -= plane.axes.T @ (plane.axes @ normal)
    np.testing.assert_allclose(plane.coordinates(templates + 5 * normal), xy, atol=1e-10)
