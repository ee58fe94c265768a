"""XQDA against a brute-force construction from explicit pairs, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from classical.xqda import XQDA


def brute_force_two_views(Xg, Xp, yg, yp, reg=1e-3, n_components=None):
    """The spec, literally: explicit pair lists, QR when d > n + m, SVD of solve(S_I, S_E)."""
    n, m = len(Xg), len(Xp)
    d = Xg.shape[1]
    Q = None
    if d > n + m:
        Q, R = np.linalg.qr(np.concatenate([Xg, Xp]).T)
        Xg, Xp = R[:, :n].T, R[:, n:].T
    intra = [Xg[i] - Xp[j] for i in range(n) for j in range(m) if yg[i] == yp[j]]
    extra = [Xg[i] - Xp[j] for i in range(n) for j in range(m) if yg[i] != yp[j]]
    S_I = sum(np.outer(v, v) for v in intra) / len(intra)
    S_E = sum(np.outer(v, v) for v in extra) / len(extra)
    S_I = S_I + reg * np.eye(S_I.shape[0])
    U, s, _ = np.linalg.svd(np.linalg.solve(S_I, S_E))
    r = int(np.sum(s > 1))
    dim = max(1, r) if n_components is None else min(n_components, max(1, r))
    V = U[:, :dim]
    M = np.linalg.inv(V.T @ S_I @ V) - np.linalg.inv(V.T @ S_E @ V)
    W = V if Q is None else Q @ V
    return W, M, s, dim


def explicit_distances(W, M, Xq, Xg):
    out = np.empty((len(Xq), len(Xg)))
    for i, x in enumerate(Xq):
        for j, z in enumerate(Xg):
            diff = (x - z) @ W
            out[i, j] = diff @ M @ diff
    return out


def _two_view_data(rng, n_ids=6, d=5, per_view=2):
    centres = rng.normal(size=(n_ids, d)) * 2
    shift = rng.normal(size=d)
    yg = np.repeat(np.arange(n_ids), per_view)
    yp = np.repeat(np.arange(n_ids), per_view)
    Xg = centres[yg] + 0.5 * rng.normal(size=(len(yg), d))
    Xp = centres[yp] + shift + 0.5 * rng.normal(size=(len(yp), d))
    return Xg, Xp, yg, yp


@pytest.mark.parametrize("d", [5, 40])  # direct branch, and the QR branch (d > n + m = 24)
def test_fit_views_matches_brute_force(d):
    rng = np.random.default_rng(d)
    Xg, Xp, yg, yp = _two_view_data(rng, d=d)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    W, M, s, dim = brute_force_two_views(Xg, Xp, yg, yp)
    assert model.n_components_ == dim
    np.testing.assert_allclose(model.spectrum_[: len(s)], s, rtol=1e-8, atol=1e-10)
    Xq = rng.normal(size=(4, d))
    expected = explicit_distances(W, M, Xq, Xg)
    np.testing.assert_allclose(model.pairwise_distances(Xq, Xg), expected, rtol=1e-8, atol=1e-9)


def test_fit_with_two_cameras_equals_fit_views():
    rng = np.random.default_rng(1)
    Xg, Xp, yg, yp = _two_view_data(rng, d=8)
    a = XQDA().fit_views(Xg, Xp, yg, yp)
    X = np.concatenate([Xg, Xp])
    b = XQDA().fit(X, np.concatenate([yg, yp]), np.r_[np.zeros(len(yg)), np.ones(len(yp))])
    np.testing.assert_allclose(
        a.pairwise_distances(Xg, Xp), b.pairwise_distances(Xg, Xp), rtol=1e-10
    )


def test_multi_camera_covariances_match_explicit_pairs():
    """fit() over 3 cameras equals the brute-force mean over all cross-camera pairs."""
    rng = np.random.default_rng(2)
    n, d = 30, 6
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 5, n)
    cams = rng.integers(0, 3, n)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if cams[i] != cams[j]]
    intra = [X[i] - X[j] for i, j in pairs if y[i] == y[j]]
    extra = [X[i] - X[j] for i, j in pairs if y[i] != y[j]]
    S_I = sum(np.outer(v, v) for v in intra) / len(intra) + 1e-3 * np.eye(d)
    S_E = sum(np.outer(v, v) for v in extra) / len(extra)
    U, s, _ = np.linalg.svd(np.linalg.solve(S_I, S_E))
    dim = max(1, int(np.sum(s > 1)))
    V = U[:, :dim]
    M = np.linalg.inv(V.T @ S_I @ V) - np.linalg.inv(V.T @ S_E @ V)
    model = XQDA().fit(X, y, cams)
    np.testing.assert_allclose(model.spectrum_, s, rtol=1e-9)
    Xq = rng.normal(size=(3, d))
    np.testing.assert_allclose(
        model.pairwise_distances(Xq, X), explicit_distances(V, M, Xq, X), rtol=1e-8, atol=1e-10
    )


def test_requested_dimension_is_capped_and_eig_solver():
    rng = np.random.default_rng(3)
    Xg, Xp, yg, yp = _two_view_data(rng, d=6)
    full = XQDA().fit_views(Xg, Xp, yg, yp)
    capped = XQDA(n_components=100).fit_views(Xg, Xp, yg, yp)
    assert capped.n_components_ == full.n_components_
    one = XQDA(n_components=1).fit_views(Xg, Xp, yg, yp)
    assert one.components_.shape == (6, 1) and one.metric_.shape == (1, 1)
    eig = XQDA(solver="eig").fit_views(Xg, Xp, yg, yp)
    # Generalised eigenvalues of (S_E, S_I), descending.
    assert np.all(np.diff(eig.spectrum_) <= 1e-12)
    assert eig.n_components_ == max(1, int(np.sum(eig.spectrum_ > 1)))


def test_large_branch_gives_same_distances(monkeypatch):
    """The eigh(A A') route used above FULL_SVD_LIMIT spans the same subspace as the SVD."""
    rng = np.random.default_rng(4)
    Xg, Xp, yg, yp = _two_view_data(rng, n_ids=10, d=12)
    exact = XQDA().fit_views(Xg, Xp, yg, yp)
    monkeypatch.setattr("classical.xqda.FULL_SVD_LIMIT", 0)
    fast = XQDA().fit_views(Xg, Xp, yg, yp)
    assert fast.n_components_ == exact.n_components_
    np.testing.assert_allclose(
        fast.pairwise_distances(Xg, Xp), exact.pairwise_distances(Xg, Xp), rtol=1e-7, atol=1e-9
    )


def test_embedding_reproduces_distances_and_symmetry():
    rng = np.random.default_rng(5)
    Xg, Xp, yg, yp = _two_view_data(rng, d=7)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    D = model.pairwise_distances(Xg, Xg)
    np.testing.assert_allclose(D, D.T, atol=1e-9)
    np.testing.assert_allclose(np.diag(D), 0, atol=1e-9)
    eigvals = scipy.linalg.eigvalsh(model.metric_)
    assert model.n_clipped_ == int(np.sum(eigvals < 0))
    if model.n_clipped_ == 0:
        E = model.embedding(Xg)
        sq = ((E[:, None, :] - E[None, :, :]) ** 2).sum(-1)
        np.testing.assert_allclose(sq, D, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, X, y, c: m.fit(X, y, np.zeros(len(y))), "single camera"),
        (lambda m, X, y, c: m.fit(X, np.zeros(len(y)), c), "two identities"),
        (lambda m, X, y, c: m.fit(np.where(np.eye(*X.shape) > 0, np.nan, X), y, c), "NaN"),
        (lambda m, X, y, c: m.fit(X[:, :, None], y, c), "2-D"),
        (lambda m, X, y, c: m.fit(X, y[:-1], c), "y must be 1-D"),
    ],
)
def test_bad_inputs(call, message):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(12, 4))
    y = np.repeat(np.arange(4), 3)
    cams = np.tile([0, 1, 2], 4)
    with pytest.raises(ValueError, match=message):
        call(XQDA(), X, y, cams)


def test_unfitted_and_wrong_width():
    with pytest.raises(RuntimeError, match="not fitted"):
        XQDA().transform(np.zeros((1, 3)))
    rng = np.random.default_rng(7)
    Xg, Xp, yg, yp = _two_view_data(rng, d=5)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    with pytest.raises(ValueError, match="5"):
        model.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="solver"):
        XQDA(solver="qr").fit_views(Xg, Xp, yg, yp)
