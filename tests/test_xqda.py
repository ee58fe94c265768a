"""XQDA against a brute-force construction from explicit pairs, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import classical.xqda as xqda_module
from classical.xqda import XQDA


def brute_force(X, y, cams, reg=1e-3, n_components=None):
    """The spec, literally: explicit cross-camera pair lists, QR when d > n, SVD of solve()."""
    n, d = X.shape
    Q = None
    if d > n:
        Q, R = np.linalg.qr(X.T)
        X = R.T
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if cams[i] != cams[j]]
    intra = [X[i] - X[j] for i, j in pairs if y[i] == y[j]]
    extra = [X[i] - X[j] for i, j in pairs if y[i] != y[j]]
    S_I = sum(np.outer(v, v) for v in intra) / len(intra)
    S_E = sum(np.outer(v, v) for v in extra) / len(extra)
    S_I = S_I + reg * np.eye(S_I.shape[0])
    U, s, _ = np.linalg.svd(np.linalg.solve(S_I, S_E))
    r = int(np.sum(s > 1))
    dim = max(1, r) if n_components is None else min(n_components, max(1, r))
    V = U[:, :dim]
    M = np.linalg.inv(V.T @ S_I @ V) - np.linalg.inv(V.T @ S_E @ V)
    W = V if Q is None else Q @ V
    return W, M, s, dim, S_I, S_E


def explicit_distances(W, M, Xq, Xg):
    out = np.empty((len(Xq), len(Xg)))
    for i, x in enumerate(Xq):
        for j, z in enumerate(Xg):
            diff = (x - z) @ W
            out[i, j] = diff @ M @ diff
    return out


def _views(rng, n_ids=6, d=5, per_view=2):
    centres = rng.normal(size=(n_ids, d)) * 2
    shift = rng.normal(size=d)
    yg = np.repeat(np.arange(n_ids), per_view)
    yp = np.repeat(np.arange(n_ids), per_view)
    Xg = centres[yg] + 0.5 * rng.normal(size=(len(yg), d))
    Xp = centres[yp] + shift + 0.5 * rng.normal(size=(len(yp), d))
    return Xg, Xp, yg, yp


def _multi_camera(rng, n=30, d=6, n_ids=5, n_cams=3):
    centres = rng.normal(size=(n_ids, d)) * 2
    y = rng.integers(0, n_ids, n)
    cams = rng.integers(0, n_cams, n)
    X = centres[y] + rng.normal(size=(n, d)) + 0.3 * cams[:, None]
    return X, y, cams


@pytest.mark.parametrize("d", [5, 40])  # direct branch, and the QR branch (d > n + m = 24)
def test_fit_views_matches_brute_force(d):
    rng = np.random.default_rng(d)
    Xg, Xp, yg, yp = _views(rng, d=d)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    X = np.concatenate([Xg, Xp])
    cams = np.r_[np.zeros(len(yg)), np.ones(len(yp))]
    W, M, s, dim, _, _ = brute_force(X, np.r_[yg, yp], cams)
    assert model.qr_reduced_ == (d > len(X))
    assert model.n_components_ == dim
    np.testing.assert_allclose(model.spectrum_, s[: len(model.spectrum_)], rtol=1e-8, atol=1e-10)
    Xq = rng.normal(size=(4, d))
    expected = explicit_distances(W, M, Xq, Xg)
    np.testing.assert_allclose(model.pairwise_distances(Xq, Xg), expected, rtol=1e-8, atol=1e-9)
    assert model.n_intra_pairs_ == sum(
        int(np.sum(yp == k)) * int(np.sum(yg == k)) for k in np.unique(yg)
    )


@pytest.mark.parametrize("d", [6, 50])  # direct and QR branch with three cameras
def test_multi_camera_fit_matches_explicit_pairs(d):
    rng = np.random.default_rng(2 + d)
    X, y, cams = _multi_camera(rng, d=d)
    W, M, s, dim, _, _ = brute_force(X, y, cams)
    model = XQDA().fit(X, y, cams)
    assert model.n_components_ == dim
    pairs = [(i, j) for i in range(len(y)) for j in range(i) if cams[i] != cams[j]]
    n_intra = sum(y[i] == y[j] for i, j in pairs)
    assert (model.n_intra_pairs_, model.n_extra_pairs_) == (n_intra, len(pairs) - n_intra)
    assert xqda_module._pair_counts(y, cams) == (n_intra, len(pairs))
    np.testing.assert_allclose(model.spectrum_, s[: len(model.spectrum_)], rtol=1e-8, atol=1e-10)
    Xq = rng.normal(size=(3, d))
    np.testing.assert_allclose(
        model.pairwise_distances(Xq, X), explicit_distances(W, M, Xq, X), rtol=1e-8, atol=1e-9
    )


def test_fit_with_two_cameras_equals_fit_views():
    rng = np.random.default_rng(1)
    Xg, Xp, yg, yp = _views(rng, d=8)
    a = XQDA().fit_views(Xg, Xp, yg, yp)
    X = np.concatenate([Xg, Xp])
    b = XQDA().fit(X, np.concatenate([yg, yp]), np.r_[np.full(len(yg), 4), np.full(len(yp), 7)])
    np.testing.assert_allclose(
        a.pairwise_distances(Xg, Xp), b.pairwise_distances(Xg, Xp), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(a.spectrum_, b.spectrum_, rtol=1e-12)


@pytest.mark.parametrize("d", [7, 60])
@pytest.mark.parametrize("solver", ["svd", "eig"])
def test_memory_lean_route_matches_the_direct_one(monkeypatch, d, solver):
    """The large-problem route (A A' eigenvectors, spilled QR reflectors) = the small one.

    Its subspace is accurate to about eps * s_max^2 / gap (singular values s of inv(S_I) S_E),
    so the rows are unit-normalised like LOMO features, which keeps s_max moderate.
    """
    rng = np.random.default_rng(4)
    X, y, cams = _multi_camera(rng, n=40, d=d, n_ids=8)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    exact = XQDA(solver=solver).fit(X, y, cams)
    monkeypatch.setattr(xqda_module, "LARGE_PROBLEM", 0)
    monkeypatch.setattr(xqda_module, "SPILL_BYTES", 0)
    lean = XQDA(solver=solver).fit(X, y, cams)
    assert lean.n_components_ == exact.n_components_
    kept = lean.spectrum_.size
    np.testing.assert_allclose(lean.spectrum_, exact.spectrum_[:kept], rtol=1e-8)
    assert np.all(exact.spectrum_[kept:] <= 1)
    np.testing.assert_allclose(
        lean.pairwise_distances(X[:5], X), exact.pairwise_distances(X[:5], X), rtol=1e-7, atol=1e-9
    )


def test_large_route_falls_back_to_qr_for_duplicate_samples(monkeypatch):
    """Duplicate rows make the Gram matrix singular: the QR reduction takes over."""
    rng = np.random.default_rng(11)
    X, y, cams = _multi_camera(rng, n=30, d=50, n_ids=6)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[1] = X[0]
    exact = XQDA().fit(X, y, cams)
    assert exact.reduction_ == "qr"
    monkeypatch.setattr(xqda_module, "LARGE_PROBLEM", 0)
    lean = XQDA().fit(X, y, cams)
    assert lean.reduction_ == "qr"
    np.testing.assert_allclose(
        lean.pairwise_distances(X[:4], X), exact.pairwise_distances(X[:4], X), rtol=1e-7, atol=1e-9
    )
    X[1] += 1e-3 * rng.normal(size=50)  # no longer singular: the Gram route
    assert lean.fit(X, y, cams).reduction_ == "gram-cholesky"


def test_eig_solver_is_the_generalised_eigenproblem():
    rng = np.random.default_rng(3)
    X, y, cams = _multi_camera(rng, d=6)
    _, _, _, _, S_I, S_E = brute_force(X, y, cams)
    expected = scipy.linalg.eigh(S_E, S_I, eigvals_only=True)[::-1]
    model = XQDA(solver="eig").fit(X, y, cams)
    np.testing.assert_allclose(model.spectrum_, expected, rtol=1e-9)
    assert model.n_components_ == max(1, int(np.sum(expected > 1)))
    # Generalised eigenvectors: W' S_I W = I and W' S_E W = diag(lambda), so M = I - 1/lambda.
    lam = expected[: model.n_components_]
    np.testing.assert_allclose(model.metric_, np.diag(1 - 1 / lam), atol=1e-8)


def test_requested_dimension_is_capped():
    rng = np.random.default_rng(3)
    Xg, Xp, yg, yp = _views(rng, d=6)
    full = XQDA().fit_views(Xg, Xp, yg, yp)
    capped = XQDA(n_components=100).fit_views(Xg, Xp, yg, yp)
    assert capped.n_components_ == full.n_components_ == int(np.sum(full.spectrum_ > 1))
    one = XQDA(n_components=1).fit_views(Xg, Xp, yg, yp)
    assert one.components_.shape == (6, 1) and one.metric_.shape == (1, 1)
    np.testing.assert_allclose(one.components_[:, 0] ** 2, full.components_[:, 0] ** 2)


def test_no_singular_value_above_one_keeps_one_direction():
    # Identical views: every difference is intra-like noise, so the extra scatter is small.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 3))
    y = np.arange(40) // 2
    cams = np.arange(40) % 2
    X[1::2] = X[0::2] + 1e-4 * rng.normal(size=(20, 3))
    model = XQDA(reg=10.0).fit(X, y, cams)
    assert np.all(model.spectrum_ <= 1)
    assert model.n_components_ == 1


def test_distances_symmetry_and_embedding():
    rng = np.random.default_rng(5)
    X, y, cams = _multi_camera(rng, n=40, d=7)
    model = XQDA().fit(X, y, cams)
    D = model.pairwise_distances(X, X)
    np.testing.assert_allclose(D, D.T, atol=1e-9)
    np.testing.assert_allclose(np.diag(D), 0, atol=1e-9)
    eigvals = scipy.linalg.eigvalsh(model.metric_)
    assert model.n_clipped_ == int(np.sum(eigvals < 0))
    E = model.embedding(X)
    sq = ((E[:, None, :] - E[None, :, :]) ** 2).sum(-1)
    # Always: the distances of the clipped (PSD) metric.
    vals, vecs = np.linalg.eigh(model.metric_)
    M_psd = (vecs * np.clip(vals, 0, None)) @ vecs.T
    P = model.transform(X)
    expected = explicit_distances(np.eye(P.shape[1]), M_psd, P, P)
    np.testing.assert_allclose(sq, expected, rtol=1e-8, atol=1e-9)


def test_embedding_reproduces_distances_when_metric_is_psd():
    rng = np.random.default_rng(6)
    Xg, Xp, yg, yp = _views(rng, n_ids=10, d=4, per_view=3)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    assert model.n_clipped_ == 0  # this seed gives a positive semi-definite M
    E = model.euclidean_transform(Xg)
    sq = ((E[:, None, :] - E[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(sq, model.pairwise_distances(Xg, Xg), rtol=1e-8, atol=1e-10)


def test_float32_and_memmap_inputs(tmp_path):
    rng = np.random.default_rng(9)
    X, y, cams = _multi_camera(rng, d=45)
    path = tmp_path / "x.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    a = XQDA().fit(ro, y, cams)
    b = XQDA().fit(X.astype(np.float32).astype(np.float64), y, cams)
    np.testing.assert_allclose(
        a.pairwise_distances(ro, ro), b.pairwise_distances(X, X), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, X, y, c: m.fit(X, y, np.zeros(len(y))), "single camera"),
        (lambda m, X, y, c: m.fit(X, np.zeros(len(y)), c), "two identities"),
        (lambda m, X, y, c: m.fit(np.where(np.eye(*X.shape) > 0, np.nan, X), y, c), "NaN"),
        (lambda m, X, y, c: m.fit(X[:, :, None], y, c), "2-D"),
        (lambda m, X, y, c: m.fit(X, y[:-1], c), "y must be 1-D"),
        (lambda m, X, y, c: m.fit(X, y, c[:-1]), "cams must be 1-D"),
        (lambda m, X, y, c: m.fit(X, np.arange(len(y)) // 3, np.arange(len(y)) // 3), "two cam"),
        (lambda m, X, y, c: m.fit_views(X, X[:, :3], y, y), "features"),
        (lambda m, X, y, c: XQDA(solver="qr").fit(X, y, c), "solver"),
        (lambda m, X, y, c: XQDA(reg=-1).fit(X, y, c), "reg"),
        (lambda m, X, y, c: XQDA(n_components=0).fit(X, y, c), "n_components"),
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
    Xg, Xp, yg, yp = _views(rng, d=5)
    model = XQDA().fit_views(Xg, Xp, yg, yp)
    with pytest.raises(ValueError, match="5"):
        model.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="columns"):
        model.projected_distances(np.zeros((2, 99)), np.zeros((2, 99)))
