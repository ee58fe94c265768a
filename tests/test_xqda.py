"""XQDA against a brute-force construction from explicit pairs, its invariants, its
scikit-learn conventions and the matcher that ranks with its metric."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

import classical.xqda as xqda_module
from classical.xqda import XQDA, XQDAMatcher


def brute_force(X, y, cams, reg=1e-3, n_components=None):
    """The spec, literally: explicit cross-camera pair lists, QR when d > n, SVD of solve().

    ``cams=None``: every pair of distinct samples.
    """
    n, d = X.shape
    Q = None
    if d > n:
        Q, R = np.linalg.qr(X.T)
        X = R.T
    pairs = [
        (i, j) for i in range(n) for j in range(i + 1, n) if cams is None or cams[i] != cams[j]
    ]
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
    model = XQDA().fit_views(Xg, yg, Xp, yp)
    X = np.concatenate([Xg, Xp])
    cams = np.r_[np.zeros(len(yg)), np.ones(len(yp))]
    W, M, s, dim, _, _ = brute_force(X, np.r_[yg, yp], cams)
    assert model.reduction_ == ("qr" if d > len(X) else "none")
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
    model = XQDA().fit(X, y, cams=cams)
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
    a = XQDA().fit_views(Xg, yg, Xp, yp)
    X = np.concatenate([Xg, Xp])
    cams = np.r_[np.full(len(yg), 4), np.full(len(yp), 7)]
    b = XQDA().fit(X, np.concatenate([yg, yp]), cams=cams)
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
    exact = XQDA(solver=solver).fit(X, y, cams=cams)
    monkeypatch.setattr(xqda_module, "LARGE_PROBLEM", 0)
    monkeypatch.setattr(xqda_module, "SPILL_BYTES", 0)
    lean = XQDA(solver=solver).fit(X, y, cams=cams)
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
    exact = XQDA().fit(X, y, cams=cams)
    assert exact.reduction_ == "qr"
    monkeypatch.setattr(xqda_module, "LARGE_PROBLEM", 0)
    lean = XQDA().fit(X, y, cams=cams)
    assert lean.reduction_ == "qr"
    np.testing.assert_allclose(
        lean.pairwise_distances(X[:4], X), exact.pairwise_distances(X[:4], X), rtol=1e-7, atol=1e-9
    )
    X[1] += 1e-3 * rng.normal(size=50)  # no longer singular: the Gram route
    assert lean.fit(X, y, cams=cams).reduction_ == "gram-cholesky"


def test_eig_solver_is_the_generalised_eigenproblem():
    rng = np.random.default_rng(3)
    X, y, cams = _multi_camera(rng, d=6)
    _, _, _, _, S_I, S_E = brute_force(X, y, cams)
    expected = scipy.linalg.eigh(S_E, S_I, eigvals_only=True)[::-1]
    model = XQDA(solver="eig").fit(X, y, cams=cams)
    np.testing.assert_allclose(model.spectrum_, expected, rtol=1e-9)
    assert model.n_components_ == max(1, int(np.sum(expected > 1)))
    # Generalised eigenvectors: W' S_I W = I and W' S_E W = diag(lambda), so M = I - 1/lambda.
    lam = expected[: model.n_components_]
    np.testing.assert_allclose(model.metric_, np.diag(1 - 1 / lam), atol=1e-8)


def test_requested_dimension_is_capped():
    rng = np.random.default_rng(3)
    Xg, Xp, yg, yp = _views(rng, d=6)
    full = XQDA().fit_views(Xg, yg, Xp, yp)
    capped = XQDA(n_components=100).fit_views(Xg, yg, Xp, yp)
    assert capped.n_components_ == full.n_components_ == int(np.sum(full.spectrum_ > 1))
    one = XQDA(n_components=1).fit_views(Xg, yg, Xp, yp)
    assert one.components_.shape == (6, 1) and one.metric_.shape == (1, 1)
    np.testing.assert_allclose(one.components_[:, 0] ** 2, full.components_[:, 0] ** 2)


def test_no_singular_value_above_one_keeps_one_direction():
    # Identical views: every difference is intra-like noise, so the extra scatter is small.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 3))
    y = np.arange(40) // 2
    cams = np.arange(40) % 2
    X[1::2] = X[0::2] + 1e-4 * rng.normal(size=(20, 3))
    model = XQDA(reg=10.0).fit(X, y, cams=cams)
    assert np.all(model.spectrum_ <= 1)
    assert model.n_components_ == 1


def test_distances_symmetry_and_embedding():
    rng = np.random.default_rng(5)
    X, y, cams = _multi_camera(rng, n=40, d=7)
    model = XQDA().fit(X, y, cams=cams)
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
    model = XQDA().fit_views(Xg, yg, Xp, yp)
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
    a = XQDA().fit(ro, y, cams=cams)
    b = XQDA().fit(X.astype(np.float32).astype(np.float64), y, cams=cams)
    np.testing.assert_allclose(
        a.pairwise_distances(ro, ro), b.pairwise_distances(X, X), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, X, y, c: m.fit(X, y, cams=np.zeros(len(y))), "single camera"),
        (lambda m, X, y, c: m.fit(X, np.zeros(len(y)), cams=c), "two identities"),
        (lambda m, X, y, c: m.fit(np.where(np.eye(*X.shape) > 0, np.nan, X), y, cams=c), "NaN"),
        (lambda m, X, y, c: m.fit(X[:, :, None], y, cams=c), "2-D"),
        (lambda m, X, y, c: m.fit(X, y[:-1], cams=c), "y must be 1-D"),
        (lambda m, X, y, c: m.fit(X, y, cams=c[:-1]), "cams must be 1-D"),
        (
            lambda m, X, y, c: m.fit(X, np.arange(len(y)) // 3, cams=np.arange(len(y)) // 3),
            "two cam",
        ),
        (lambda m, X, y, c: m.fit(X, np.arange(len(y))), "no identity has two samples"),
        (lambda m, X, y, c: m.fit_views(X, y, X[:, :3], y), "features"),
        (lambda m, X, y, c: m.fit_views(X, X, y, y), r"\(X_gallery, y_gallery, X_probe, y_probe\)"),
        (lambda m, X, y, c: XQDA(solver="qr").fit(X, y, cams=c), "solver"),
        (lambda m, X, y, c: XQDA(reg=-1).fit(X, y, cams=c), "reg"),
        (lambda m, X, y, c: XQDA(n_components=0).fit(X, y, cams=c), "n_components"),
    ],
)
def test_bad_inputs(call, message):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(12, 4))
    y = np.repeat(np.arange(4), 3)
    cams = np.tile([0, 1, 2], 4)
    with pytest.raises(ValueError, match=message):
        call(XQDA(), X, y, cams)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.transform(np.zeros((1, 3))),
        lambda m: m.pairwise_distances(np.zeros((1, 3)), np.zeros((1, 3))),
        lambda m: m.projected_distances(np.zeros((1, 2)), np.zeros((1, 2))),
        lambda m: m.embedding(np.zeros((1, 3))),
        lambda m: XQDAMatcher(m, np.zeros((1, 2)), k=1),
    ],
)
def test_unfitted_raises_not_fitted_error(call):
    with pytest.raises(NotFittedError, match="not fitted yet; call 'fit' or 'fit_views'"):
        call(XQDA())


def test_wrong_width():
    rng = np.random.default_rng(7)
    Xg, Xp, yg, yp = _views(rng, d=5)
    model = XQDA().fit_views(Xg, yg, Xp, yp)
    with pytest.raises(ValueError, match="5"):
        model.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="columns"):
        model.projected_distances(np.zeros((2, 99)), np.zeros((2, 99)))
    r = model.n_components_
    with pytest.raises(ValueError, match="columns"):
        model.projected_distances(np.zeros((2, r)), np.zeros((2, r + 1)))
    with pytest.raises(ValueError, match="columns"):
        XQDAMatcher(model, np.zeros((3, r)), k=2).distance_matrix(np.zeros((2, r + 1)))
    with pytest.raises(ValueError, match="columns"):
        XQDAMatcher(model, np.zeros(r), k=2)  # a single row must still be 2-D


# ---------------------------------------------------------------------------------------------
# fitting without cameras: every pair of distinct samples
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [6, 50])  # direct and QR branch
def test_fit_without_cams_uses_every_pair(d):
    rng = np.random.default_rng(20 + d)
    X, y, _ = _multi_camera(rng, n=30, d=d)
    W, M, s, dim, _, _ = brute_force(X, y, None)
    model = XQDA().fit(X, y)
    assert model.n_components_ == dim
    n_intra = sum(int(k) * (int(k) - 1) // 2 for k in np.bincount(y))
    assert model.n_intra_pairs_ == n_intra
    assert model.n_extra_pairs_ == 30 * 29 // 2 - n_intra
    np.testing.assert_allclose(model.spectrum_, s[: len(model.spectrum_)], rtol=1e-8, atol=1e-10)
    Xq = rng.normal(size=(3, d))
    np.testing.assert_allclose(
        model.pairwise_distances(Xq, X), explicit_distances(W, M, Xq, X), rtol=1e-8, atol=1e-9
    )
    # Each sample its own camera: the same pairs through the per-(id, camera) route.
    own = XQDA().fit(X, y, cams=np.arange(len(y)))
    np.testing.assert_allclose(own.spectrum_, model.spectrum_, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        own.pairwise_distances(Xq, X), model.pairwise_distances(Xq, X), rtol=1e-8, atol=1e-9
    )


def test_fit_without_cams_on_the_large_problem_route(monkeypatch):
    rng = np.random.default_rng(21)
    X, y, _ = _multi_camera(rng, n=40, d=60, n_ids=8)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    exact = XQDA().fit(X, y)
    monkeypatch.setattr(xqda_module, "LARGE_PROBLEM", 0)
    lean = XQDA().fit(X, y)
    assert (exact.reduction_, lean.reduction_) == ("qr", "gram-cholesky")
    np.testing.assert_allclose(
        lean.pairwise_distances(X[:5], X), exact.pairwise_distances(X[:5], X), rtol=1e-7, atol=1e-9
    )


# ---------------------------------------------------------------------------------------------
# scikit-learn conventions
# ---------------------------------------------------------------------------------------------
def test_get_params_set_params_and_clone():
    model = XQDA(reg=0.1, n_components=3, solver="eig")
    params = {"reg": 0.1, "n_components": 3, "solver": "eig"}
    assert model.get_params() == params
    assert XQDA().set_params(**params).get_params() == params
    assert XQDA(**model.get_params()).get_params() == params
    assert repr(model).startswith("XQDA(") and "solver='eig'" in repr(model)
    with pytest.raises(ValueError, match="Invalid parameter 'bins'"):
        model.set_params(bins=3)
    with pytest.raises(TypeError):
        XQDA(0.1)  # keyword-only hyper-parameters
    rng = np.random.default_rng(12)
    X, y, cams = _multi_camera(rng)
    model.fit(X, y, cams=cams)
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert not hasattr(copy, "components_")  # unfitted, as clone promises
    np.testing.assert_array_equal(
        copy.fit(X, y, cams=cams).pairwise_distances(X, X), model.pairwise_distances(X, X)
    )
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.transform(X), model.transform(X))


def test_fit_returns_self_and_fit_transform_takes_cams():
    rng = np.random.default_rng(13)
    X, y, cams = _multi_camera(rng)
    model = XQDA()
    assert model.fit(X, y, cams=cams) is model
    np.testing.assert_array_equal(XQDA().fit_transform(X, y, cams=cams), model.transform(X))
    with pytest.raises(TypeError):
        XQDA().fit(X, y, cams)  # cams is keyword-only


def test_in_a_pipeline():
    rng = np.random.default_rng(14)
    X, y, cams = _multi_camera(rng, d=8)
    X = np.abs(X)
    pipe = make_pipeline(FunctionTransformer(np.sqrt), XQDA(reg=0.01))
    pipe.fit(X, y)  # no cameras: every pair
    plain = XQDA(reg=0.01).fit(np.sqrt(X), y)
    np.testing.assert_array_equal(pipe.transform(X), plain.transform(np.sqrt(X)))
    # Camera labels reach the XQDA step as a step parameter.
    pipe = Pipeline([("sqrt", FunctionTransformer(np.sqrt)), ("xqda", XQDA(reg=0.01))])
    pipe.fit(X, y, xqda__cams=cams)
    with_cams = XQDA(reg=0.01).fit(np.sqrt(X), y, cams=cams)
    np.testing.assert_array_equal(pipe.transform(X), with_cams.transform(np.sqrt(X)))
    assert pipe.get_params()["xqda__reg"] == 0.01
    assert clone(pipe).set_params(xqda__solver="eig").get_params()["xqda__solver"] == "eig"


def test_in_a_pipeline_with_metadata_routing():
    rng = np.random.default_rng(15)
    X, y, cams = _multi_camera(rng, d=8)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(FunctionTransformer(), XQDA().set_fit_request(cams=True))
        pipe.fit(X, y, cams=cams)
    np.testing.assert_array_equal(pipe.transform(X), XQDA().fit(X, y, cams=cams).transform(X))


# ---------------------------------------------------------------------------------------------
# the matcher: the one implementation of the distance arithmetic
# ---------------------------------------------------------------------------------------------
def test_matcher_equals_explicit_distances_and_the_estimator():
    rng = np.random.default_rng(16)
    X, y, cams = _multi_camera(rng, n=40, d=9)
    model = XQDA().fit(X, y, cams=cams)
    q, g = model.transform(X[:7]), model.transform(X)
    explicit = explicit_distances(np.eye(q.shape[1]), model.metric_, q, g)
    exact = XQDAMatcher(model, g, k=5, dtype=np.float64)
    np.testing.assert_allclose(exact.distance_matrix(q), explicit, rtol=1e-10, atol=1e-10)
    # The estimator's distances are the float64 matcher's, bit for bit (one implementation).
    np.testing.assert_array_equal(model.projected_distances(q, g), exact.distance_matrix(q))
    np.testing.assert_array_equal(model.pairwise_distances(X[:7], X), exact.distance_matrix(q))
    # Smaller blocks: the same up to BLAS rounding (not bit for bit: kernels depend on the shape).
    np.testing.assert_allclose(
        exact.distance_matrix(q, block=3), exact.distance_matrix(q), rtol=1e-12, atol=1e-12
    )
    fast = XQDAMatcher(model, g, k=5)  # float32 gallery side, as timed
    assert fast.gallery_m.dtype == np.float32
    np.testing.assert_allclose(fast.distance_matrix(q), explicit, rtol=1e-4, atol=1e-4)
    for matcher in (exact, fast):
        dist = matcher.distance_matrix(q)
        np.testing.assert_allclose(matcher.distances(q[2]), dist[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(exact.match(q[2]), np.argsort(explicit[2], kind="stable")[:5])
    assert XQDAMatcher(model, g[:3], k=5).match(q[0]).shape == (3,)  # k capped at the gallery
