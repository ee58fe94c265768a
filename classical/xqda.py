"""Cross-view Quadratic Discriminant Analysis (XQDA; Liao et al., CVPR 2015).

XQDA learns a subspace ``W`` and a metric ``M`` from the differences of cross-camera pairs:
intra-personal differences (same id) should look small under ``M``, extra-personal ones (different
ids) large. By default this follows the authors' reference implementation as described in
``docs/lomo_xqda.md``: closed-form covariances, an economy QR reduction when the dimension
exceeds the number of samples, ``lambda * I`` on the intra covariance, the SVD of
``inv(S_I) S_E`` (its left singular vectors, the directions whose singular value is > 1) and
``M = inv(W' S_I W) - inv(W' S_E W)``. ``solver="eig"`` solves the paper's generalised
eigenproblem ``S_E w = lambda S_I w`` instead (it generally keeps a different number of
directions).

``fit(X, y, cams=cams)`` uses *all* cross-camera pairs of the training set (pairs of samples from
different cameras; intra = same id, extra = different ids) in closed form from per-(id, camera)
sums, never building pairs. With two cameras the formulas are the spec's two-view ones term by
term, so it equals ``fit_views`` (the paper's gallery/probe setting). Without ``cams`` every pair
of distinct samples counts, as if each sample came from its own camera (what a scikit-learn
``Pipeline`` fitted with ``fit(X, y)`` gets).

:class:`XQDA` is a scikit-learn estimator (``clone``, ``get_params``/``set_params``, ``Pipeline``);
:class:`XQDAMatcher` holds the one implementation of the distance arithmetic, used by the
estimator's distance methods and by :mod:`classical.pipeline` (evaluation and timed queries).

Scale: everything after the reduction happens on (samples x samples) matrices, built with
in-place LAPACK/BLAS calls (lauum/syrk/syr2k, Cholesky, triangular solves). Up to
``LARGE_PROBLEM`` samples the reduction is the spec's economy QR and the decomposition a full
SVD. Above it (a Market-1501-size fit: 12,936 x 26,960) two memory- and time-lean equivalents
are used: the coordinates of the samples in the span of the data come from the Cholesky factor of
their Gram matrix (``X X' = L L'``, the same ``R'`` as the QR up to signs, no d x n float64 copy;
QR if the Gram matrix is singular), and the left singular vectors with singular value > 1 are
eigenvectors of ``A A'`` (``A = inv(S_I) S_E``) refined by a Rayleigh-Ritz SVD. The subspace then
agrees with the full SVD to about ``eps * s_max^2 / gap`` (tiny for LOMO features, whose
``s_max`` is in the tens). ``bench/bench_xqda.py`` measures time and memory.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import scipy.linalg
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from data.matching import topk_from_distances

#: Reduced dimension above which the memory-lean route is taken (A A' eigenvectors instead of the
#: full SVD, covariances not copied, QR reflectors spilled to disk).
LARGE_PROBLEM = 3000
#: On the large-problem route, singular vectors with singular value above this are computed
#: (a margin below the threshold 1, refined afterwards).
RITZ_MARGIN = 0.9
#: Spill the QR reflectors to a temporary file when they take more than this many bytes.
SPILL_BYTES = 1 << 30
#: Bytes of a float64 column block of X when accumulating its Gram matrix or lifting W.
COLUMN_BLOCK_BYTES = 128 << 20
#: Rows per block when checking or transforming features.
ROW_BLOCK = 2048
#: Queries per block in :meth:`XQDAMatcher.distance_matrix`.
QUERY_BLOCK = 1024
#: ``check_is_fitted`` message (``%(name)s``: the class name).
_NOT_FITTED = "This %(name)s instance is not fitted yet; call 'fit' or 'fit_views' first."


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def _check_features(name: str, X: np.ndarray, *, min_rows: int = 1) -> np.ndarray:
    # Our own checks rather than sklearn's check_array, which would copy a memmap whole; the
    # messages carry the phrases scikit-learn's estimator checks look for.
    if scipy.sparse.issparse(X):
        raise ValueError(f"{name} is a sparse matrix: sparse input is not supported (densify it)")
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if X.dtype == object:  # numbers held as Python objects; anything else raises TypeError
        X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}. "
            "Reshape your data: X.reshape(1, -1) for a single sample"
        )
    if X.shape[0] < min_rows:
        raise ValueError(
            f"{name} has {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_rows} is required"
        )
    if X.shape[1] < 1:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if np.iscomplexobj(X):
        raise ValueError(f"{name}: Complex data not supported")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {X.dtype}")
    for start in range(0, X.shape[0], ROW_BLOCK):  # blockwise: no full-size boolean temporary
        block = np.asarray(X[start : start + ROW_BLOCK])
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise ValueError(f"{name} contains NaN or infinite values (first in row {bad})")
    return X


def _check_labels(name: str, values, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per row), got {values.shape}")
    return values


def _symmetrise_from_lower(C: np.ndarray) -> np.ndarray:
    """Copy the lower triangle of a square matrix onto its upper one, in place, blockwise."""
    n = C.shape[0]
    for start in range(0, n, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n)
        block = C[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        block[upper] = block.T[upper]
        C[start:stop, stop:] = C[stop:, start:stop].T
    return C


def _add_to_diagonal(C: np.ndarray, value: float) -> None:
    C.flat[:: C.shape[0] + 1] += value


# ---------------------------------------------------------------------------------------------
# closed-form pair scatters
# ---------------------------------------------------------------------------------------------
def _group_sums(Z: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    one_hot = scipy.sparse.csr_matrix(
        (np.ones(len(index)), (index, np.arange(len(index)))), shape=(n_groups, len(index))
    )
    return np.asarray(one_hot @ Z)


def _others(sums: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """For each group g, the sum of the *other* groups with the same owner (exact for two)."""
    out = np.zeros_like(sums)
    order = np.argsort(owner, kind="stable")
    bounds = np.flatnonzero(np.diff(owner[order])) + 1
    for members in np.split(order, bounds):
        if len(members) == 2:
            out[members[0]], out[members[1]] = sums[members[1]], sums[members[0]]
        elif len(members) > 2:
            for g in members:
                out[g] = sums[members[members != g]].sum(axis=0)
    return out


def _pair_counts(ids: np.ndarray, cams: np.ndarray | None) -> tuple[float, float]:
    """(same-id, all) unordered cross-camera pair counts, from the labels alone.

    ``cams=None``: every pair of distinct samples (each sample its own camera).
    """
    _, id_index = np.unique(ids, return_inverse=True)
    if cams is None:
        per_id = np.bincount(id_index).astype(np.float64)
        n = float(len(ids))
        return (np.sum(per_id**2) - n) / 2.0, (n**2 - n) / 2.0
    _, cam_index = np.unique(cams, return_inverse=True)
    n_cam_total = np.bincount(cam_index)
    n_cross = (len(ids) ** 2 - np.sum(n_cam_total.astype(np.float64) ** 2)) / 2.0
    per_id = np.bincount(id_index).astype(np.float64)
    per_id_cam = np.bincount(id_index * (cam_index.max() + 1) + cam_index).astype(np.float64)
    n_intra = (np.sum(per_id**2) - np.sum(per_id_cam**2)) / 2.0
    return n_intra, n_cross


def _weighted_gram(Z: np.ndarray, weights: np.ndarray, triangular: bool) -> np.ndarray:
    """``Z' diag(weights) Z`` (lower triangle), F-ordered, Z untouched.

    As the reference does, the rows are scaled by ``sqrt(weights)`` and the product is a Gram
    matrix: ``lauum`` when Z is square lower-triangular (a third of the flops), else ``syrk``.
    """
    scaled = np.empty(Z.shape, dtype=np.float64, order="F")
    np.multiply(Z, np.sqrt(weights)[:, None], out=scaled)
    if triangular:
        out, info = lapack.dlauum(scaled, lower=1, overwrite_c=1)
        if info != 0:
            raise RuntimeError(f"LAPACK dlauum failed (info={info})")
        return out
    gram = blas.dsyrk(1.0, scaled, trans=1, lower=1)
    del scaled
    return gram


def _pair_scatters(Z: np.ndarray, ids: np.ndarray, cams: np.ndarray, triangular: bool = False):
    """Unnormalised intra and all-cross-camera scatters of Z's rows.

    Over unordered pairs {i, j} from different cameras, sum (z_i - z_j)(z_i - z_j)' equals
    ``sum_i w_i z_i z_i' - sum_g S_g T_g'`` where w_i counts i's partners, S_g is the sum of a
    group's rows and T_g the sum of its partner groups' rows. For the intra scatter the groups
    are (id, camera) pairs and the partners the same id's other cameras; for the scatter over all
    cross-camera pairs the groups are cameras. With two cameras this is the spec's
    ``X' diag(m_k) X + Z' diag(n_k) Z - S T' - T S'`` and ``m X'X + n Z'Z - s_x s_z' - s_z s_x'``.

    Parameters
    ----------
    Z : ndarray (n, n')
        Samples as rows (float64); left unchanged.
    triangular : bool
        Z is square and lower-triangular (the coordinates from a QR or Cholesky reduction).

    Returns
    -------
    intra, n_intra_pairs, every, n_cross_pairs
        Symmetric F-ordered scatters and pair counts.
    """
    _, id_index = np.unique(ids, return_inverse=True)
    _, cam_index = np.unique(cams, return_inverse=True)
    id_cam = id_index.astype(np.int64) * (cam_index.max() + 1) + cam_index
    groups, group_index = np.unique(id_cam, return_inverse=True)
    group_owner = groups // (cam_index.max() + 1)
    n_id = np.bincount(id_index)[id_index]
    n_group = np.bincount(group_index)[group_index]
    n_cam = np.bincount(cam_index)[cam_index]
    same_id_other_cam = (n_id - n_group).astype(np.float64)
    other_cam = (len(ids) - n_cam).astype(np.float64)
    n_intra = same_id_other_cam.sum() / 2.0
    n_cross = other_cam.sum() / 2.0

    every = _weighted_gram(Z, other_cam, triangular)
    cam_sums = _group_sums(Z, cam_index, cam_index.max() + 1)
    cam_partners = _others(cam_sums, np.zeros(len(cam_sums), dtype=np.int64))
    every = blas.dsyr2k(-0.5, cam_sums.T, cam_partners.T, beta=1.0, c=every, lower=1,
                        overwrite_c=1)  # fmt: skip
    del cam_sums, cam_partners
    intra = _weighted_gram(Z, same_id_other_cam, triangular)
    group_sums = _group_sums(Z, group_index, len(groups))
    group_partners = _others(group_sums, group_owner)
    intra = blas.dsyr2k(-0.5, group_sums.T, group_partners.T, beta=1.0, c=intra, lower=1,
                        overwrite_c=1)  # fmt: skip
    return _symmetrise_from_lower(intra), n_intra, _symmetrise_from_lower(every), n_cross


def _all_pair_scatters(Z: np.ndarray, ids: np.ndarray, triangular: bool = False):
    """:func:`_pair_scatters` without cameras: over every pair of distinct samples.

    Over the unordered pairs of a set of ``k`` rows with sum ``s``,
    ``sum (z_i - z_j)(z_i - z_j)' = k sum_i z_i z_i' - s s'``: the intra scatter sums this over
    the identities, the other one takes all rows as the set. Same arguments and returns as
    :func:`_pair_scatters`; each identity's rows are summed once (no per-sample groups, which
    would make the partner sums quadratic in the number of samples).
    """
    _, id_index = np.unique(ids, return_inverse=True)
    per_id = np.bincount(id_index)
    n = len(ids)
    every = _weighted_gram(Z, np.full(n, float(n)), triangular)
    total = np.asarray(Z.sum(axis=0))[None, :]
    every = blas.dsyrk(-1.0, total, beta=1.0, c=every, trans=1, lower=1, overwrite_c=1)
    intra = _weighted_gram(Z, per_id[id_index].astype(np.float64), triangular)
    id_sums = _group_sums(Z, id_index, len(per_id))
    intra = blas.dsyrk(-1.0, id_sums, beta=1.0, c=intra, trans=1, lower=1, overwrite_c=1)
    n_intra, n_cross = _pair_counts(ids, None)
    return _symmetrise_from_lower(intra), n_intra, _symmetrise_from_lower(every), n_cross


# ---------------------------------------------------------------------------------------------
# QR reduction with the reflectors kept aside
# ---------------------------------------------------------------------------------------------
class _Basis:
    """Q of the economy QR ``X' = Q R``, kept as LAPACK reflectors (in memory or on disk)."""

    def __init__(self, reflectors: np.ndarray, tau: np.ndarray) -> None:
        self.shape = reflectors.shape
        self.tau = tau
        self._array: np.ndarray | None = reflectors
        self._path: str | None = None
        if reflectors.nbytes > SPILL_BYTES:
            fd, self._path = tempfile.mkstemp(prefix="xqda_qr_", suffix=".npy")
            os.close(fd)
            np.save(self._path, reflectors)
            self._array = None

    def apply(self, V: np.ndarray) -> np.ndarray:
        """Q V for V (n, r): the first n columns of the full orthogonal factor times V."""
        reflectors = self._array
        if reflectors is None:
            reflectors = np.load(self._path, mmap_mode="r")
            reflectors = np.asfortranarray(reflectors)
        d, n = self.shape
        padded = np.zeros((d, V.shape[1]), dtype=np.float64, order="F")
        padded[:n] = V
        _, work, _ = lapack.dormqr("L", "N", reflectors, self.tau, padded, lwork=-1)
        W, _, info = lapack.dormqr(
            "L", "N", reflectors, self.tau, padded, lwork=int(work[0]), overwrite_c=1
        )
        if info != 0:
            raise RuntimeError(f"LAPACK dormqr failed (info={info})")
        return W

    def close(self) -> None:
        if self._path is not None and os.path.exists(self._path):
            os.remove(self._path)
        self._array = None

    def __del__(self) -> None:  # pragma: no cover - safety net for interrupted fits
        self.close()


class _Identity:
    """No reduction (d <= n): the coordinates are the features themselves."""

    triangular = False
    name = "none"

    def __init__(self, X: np.ndarray) -> None:
        self.coords = np.array(X, dtype=np.float64, order="C")

    def lift(self, V: np.ndarray) -> np.ndarray:
        return V

    def close(self) -> None:
        pass


class _QRReduction:
    """Economy QR of X' (d x n): coordinates R' (n x n, lower-triangular), Q as reflectors."""

    triangular = True
    name = "qr"

    def __init__(self, X: np.ndarray) -> None:
        # d x n float64, the one full copy (always a copy: the QR overwrites it).
        A = np.array(np.asarray(X).T, dtype=np.float64, order="F", copy=True)
        (reflectors, tau), R = scipy.linalg.qr(A, mode="raw", overwrite_a=True,
                                               check_finite=False)  # fmt: skip
        del A
        self.coords = np.asfortranarray(R.T)  # rows = samples in the orthonormal basis Q
        del R
        self.basis = _Basis(reflectors, tau)

    def lift(self, V: np.ndarray) -> np.ndarray:
        return self.basis.apply(V)

    def close(self) -> None:
        self.basis.close()


class _GramReduction:
    """Coordinates from the Cholesky factor of the Gram matrix: X X' = L L', Q = X' L^-T.

    ``L`` equals the QR's ``R'`` up to column signs, so everything downstream is the same; the
    Gram matrix is accumulated in float64 from column blocks of X (no d x n float64 copy).
    Raises ``numpy.linalg.LinAlgError`` when the Gram matrix is numerically singular.
    """

    triangular = True
    name = "gram-cholesky"

    def __init__(self, X: np.ndarray) -> None:
        n, d = X.shape
        gram = np.zeros((n, n), dtype=np.float64, order="F")
        step = max(1, COLUMN_BLOCK_BYTES // (8 * n))
        for start in range(0, d, step):
            block = np.asarray(X[:, start : start + step], dtype=np.float64)
            gram = blas.dsyrk(1.0, block.T, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)
        del block
        self.coords = scipy.linalg.cholesky(gram, lower=True, overwrite_a=True,
                                            check_finite=False)  # fmt: skip
        self.X = X

    def lift(self, V: np.ndarray) -> np.ndarray:
        # Q V = X' (L^-T V); X is read in column blocks, as float64.
        T = scipy.linalg.solve_triangular(self.coords, V, lower=True, trans="T",
                                          check_finite=False)  # fmt: skip
        n, d = self.X.shape
        W = np.empty((d, V.shape[1]), dtype=np.float64)
        step = max(1, COLUMN_BLOCK_BYTES // (8 * n))
        for start in range(0, d, step):
            block = np.asarray(self.X[:, start : start + step], dtype=np.float64)
            W[start : start + block.shape[1]] = block.T @ T
        return W

    def close(self) -> None:
        self.X = None


def _reduce(X: np.ndarray):
    """The spec's reduction: none when d <= n, else the span of the data (QR or Gram)."""
    n, d = X.shape
    if d <= n:
        return _Identity(X)
    if n > LARGE_PROBLEM:
        try:
            return _GramReduction(X)
        except np.linalg.LinAlgError:
            pass  # singular Gram matrix (e.g. duplicate samples): the QR copes with it
    return _QRReduction(X)


# ---------------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------------
class XQDA(TransformerMixin, BaseEstimator):
    """Cross-view Quadratic Discriminant Analysis, a scikit-learn estimator (transformer).

    ``clone``, ``get_params``/``set_params`` and ``Pipeline`` work as for any scikit-learn
    estimator; the camera labels are a keyword-only fit parameter (in a ``Pipeline``:
    ``pipe.fit(X, y, xqda__cams=cams)``, or ``set_fit_request(cams=True)`` with metadata routing).

    Parameters
    ----------
    reg : float
        ``lambda`` added to the diagonal of the intra-personal covariance (0.001 in the paper).
    n_components : int or None
        Subspace dimension; ``None`` keeps every direction with singular (or eigen) value > 1,
        at least one. A requested dimension is capped at that count.
    solver : {"svd", "eig"}
        ``"svd"``: left singular vectors of ``inv(S_I) S_E`` (the reference implementation);
        ``"eig"``: generalised eigenvectors of ``(S_E, S_I)`` (the paper's formulation).

    Attributes
    ----------
    components_ : ndarray (n_features, n_components_)
        ``W``; ``transform(X) = X @ W``.
    metric_ : ndarray (n_components_, n_components_)
        ``M = inv(W' S_I W) - inv(W' S_E W)`` (symmetrised).
    spectrum_ : ndarray
        Singular values (svd) or generalised eigenvalues (eig), descending. All of them for
        problems up to ``LARGE_PROBLEM`` reduced dimensions, else those > 1 (at least one).
    n_components_ : int
    n_features_in_ : int
    reduction_ : str
        ``"none"`` (d <= number of samples), else the fit ran in the span of the data: ``"qr"``
        (the spec's economy QR) or ``"gram-cholesky"`` (large problems).
    n_intra_pairs_, n_extra_pairs_ : int
        Cross-camera pairs of the same / of different identities.
    embedding_ : ndarray (n_components_, n_components_)
        ``L`` with ``L L' = M+`` (``M`` with negative eigenvalues clipped to 0).
    n_clipped_ : int
        How many eigenvalues of ``M`` were negative and clipped for ``embedding_``.
    fit_seconds_ : dict
        Wall time of the fit's phases (reduction, scatters, decomposition, lift).
    """

    def __init__(
        self, *, reg: float = 1e-3, n_components: int | None = None, solver: str = "svd"
    ) -> None:
        self.reg = reg
        self.n_components = n_components
        self.solver = solver

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # y (the identities) is what XQDA learns from
        return tags

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, *, cams: np.ndarray | None = None) -> XQDA:
        """Learn from all cross-camera pairs of ``(X, y)``.

        Parameters
        ----------
        X : array (n_samples, n_features)
            Training features (float32 or float64; a memmap is read, not copied whole).
        y : array (n_samples,)
            Identity labels.
        cams : array (n_samples,) or None
            Camera labels; only pairs of samples from different cameras are used. ``None``
            uses every pair of distinct samples (as if each sample had its own camera).

        Returns
        -------
        XQDA
            ``self``, fitted.
        """
        self._check_params()
        X = _check_features("X", X, min_rows=2)
        if y is None:
            raise ValueError("XQDA requires y to be passed, but the target y is None")
        y = _check_labels("y", y, X.shape[0])
        if np.unique(y).size < 2:
            raise ValueError("XQDA needs at least two identities in y")
        if cams is not None:
            cams = _check_labels("cams", cams, X.shape[0])
            if np.unique(cams).size < 2:
                raise ValueError(
                    "XQDA learns from cross-camera pairs but cams holds a single camera; pass "
                    "the true camera ids, cams=None for all pairs, or use fit_views with two views"
                )
        return self._fit(X, y, cams)

    def fit_views(
        self,
        X_gallery: np.ndarray,
        y_gallery: np.ndarray,
        X_probe: np.ndarray,
        y_probe: np.ndarray,
    ) -> XQDA:
        """The paper's two-view setting: pairs are (gallery row, probe row).

        Each view is what :meth:`fit` takes, features then identities; the same as
        ``fit(vstack(views), concat(ids), cams=[0] * n + [1] * m)``.

        Parameters
        ----------
        X_gallery, y_gallery : arrays (n, d) and (n,)
            Gallery view (camera A) features and identity labels.
        X_probe, y_probe : arrays (m, d) and (m,)
            Probe view (camera B) features and identity labels.

        Returns
        -------
        XQDA
            ``self``, fitted.
        """
        self._check_params()
        if np.ndim(y_gallery) == 2:  # a call in the former (Xg, Xp, yg, yp) order: say so
            raise ValueError(
                "y_gallery is 2-D: fit_views takes (X_gallery, y_gallery, X_probe, y_probe)"
            )
        Xg = _check_features("X_gallery", X_gallery)
        Xp = _check_features("X_probe", X_probe)
        if Xg.shape[1] != Xp.shape[1]:
            raise ValueError(f"X_gallery has {Xg.shape[1]} features but X_probe has {Xp.shape[1]}")
        yg = _check_labels("y_gallery", y_gallery, Xg.shape[0])
        yp = _check_labels("y_probe", y_probe, Xp.shape[0])
        y = np.concatenate([yg, yp])
        if np.unique(y).size < 2:
            raise ValueError("XQDA needs at least two identities")
        cams = np.concatenate([np.zeros(len(yg), np.int64), np.ones(len(yp), np.int64)])
        return self._fit(np.concatenate([np.asarray(Xg), np.asarray(Xp)]), y, cams)

    def _check_params(self) -> None:
        if self.solver not in ("svd", "eig"):
            raise ValueError(f"solver must be 'svd' or 'eig', got {self.solver!r}")
        if not (np.isscalar(self.reg) and self.reg >= 0):
            raise ValueError(f"reg must be a number >= 0, got {self.reg!r}")
        if self.n_components is not None and (
            not isinstance(self.n_components, int | np.integer) or self.n_components < 1
        ):
            raise ValueError(
                f"n_components must be a positive int or None, got {self.n_components!r}"
            )

    def _fit(self, X: np.ndarray, y: np.ndarray, cams: np.ndarray | None) -> XQDA:
        n_intra, n_cross = _pair_counts(y, cams)
        if n_intra == 0:
            raise ValueError(
                "no identity appears in two cameras, so there are no intra-personal pairs"
                if cams is not None
                else "no identity has two samples, so there are no intra-personal pairs"
            )
        if n_cross - n_intra == 0:
            raise ValueError("there are no cross-camera pairs of different identities")
        seconds = {}
        start = time.perf_counter()
        reduction = _reduce(X)  # d > n: work in the span of the data
        seconds["reduction"] = time.perf_counter() - start
        try:
            self._fit_reduced(reduction, y, cams, seconds)
        finally:
            reduction.close()
        self.n_features_in_ = X.shape[1]
        self.reduction_ = reduction.name
        self.fit_seconds_ = seconds
        return self

    def _fit_reduced(self, reduction, y, cams, seconds: dict) -> None:
        start = time.perf_counter()
        if cams is None:
            intra, n_intra, extra, n_cross = _all_pair_scatters(
                reduction.coords, y, triangular=reduction.triangular
            )
        else:
            intra, n_intra, extra, n_cross = _pair_scatters(
                reduction.coords, y, cams, triangular=reduction.triangular
            )
        if reduction.name != "gram-cholesky":  # the Gram route needs L again to lift V
            reduction.coords = None
        n_extra = n_cross - n_intra
        extra -= intra  # every cross-camera pair minus the intra ones (unregularised S_I)
        extra /= n_extra
        intra /= n_intra
        _add_to_diagonal(intra, self.reg)
        cov_intra, cov_extra = intra, extra
        seconds["scatters"] = time.perf_counter() - start
        start = time.perf_counter()
        large = cov_intra.shape[0] > LARGE_PROBLEM
        if self.solver == "svd":
            V, spectrum, in_cov, ex_cov = self._svd_route(cov_intra, cov_extra, large)
        else:
            V, spectrum, in_cov, ex_cov = self._eig_route(cov_intra, cov_extra, large)
        del cov_intra, cov_extra, intra, extra
        metric = scipy.linalg.inv(in_cov) - scipy.linalg.inv(ex_cov)
        seconds["decomposition"] = time.perf_counter() - start
        start = time.perf_counter()
        self.metric_ = (metric + metric.T) / 2.0  # symmetric up to rounding; make it exact
        self.components_ = reduction.lift(V)
        seconds["lift"] = time.perf_counter() - start
        self.spectrum_ = spectrum
        self.n_components_ = V.shape[1]
        self.n_intra_pairs_ = int(n_intra)
        self.n_extra_pairs_ = int(n_extra)
        eigvals, eigvecs = np.linalg.eigh(self.metric_)
        self.n_clipped_ = int(np.sum(eigvals < 0))
        self.embedding_ = eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))

    def _dimension(self, kept: int) -> int:
        automatic = max(1, kept)
        return automatic if self.n_components is None else min(self.n_components, automatic)

    def _svd_route(self, cov_intra, cov_extra, large):
        if not large:
            ratio = scipy.linalg.solve(cov_intra, cov_extra, assume_a="pos", check_finite=False)
            U, s, _ = scipy.linalg.svd(ratio, full_matrices=False, check_finite=False)
            V = U[:, : self._dimension(int(np.sum(s > 1)))]
            return V, s, V.T @ cov_intra @ V, V.T @ cov_extra @ V
        # Memory-lean: factor S_I in place, overwrite S_E with A = inv(S_I) S_E.
        L = scipy.linalg.cholesky(cov_intra, lower=True, overwrite_a=True, check_finite=False)
        A = scipy.linalg.cho_solve((L, True), cov_extra, overwrite_b=True, check_finite=False)
        # Left singular vectors of A = eigenvectors of A A' (eigenvalues s^2). Only the top ones
        # are needed: those with s above a margin below 1 are computed, then refined by an SVD
        # of their projection of A (Rayleigh-Ritz). The refinement brings the singular values
        # back to SVD accuracy (eps * s_max instead of eps * s_max^2), which decides r near 1.
        gram = blas.dsyrk(1.0, A, trans=0)
        values, vectors = scipy.linalg.eigh(
            gram,
            lower=False,
            overwrite_a=True,
            subset_by_value=(RITZ_MARGIN**2, np.inf),
            check_finite=False,
        )
        del gram
        if values.size == 0:  # no singular value near 1 or above: keep the largest one anyway
            gram = blas.dsyrk(1.0, A, trans=0)
            last = gram.shape[0] - 1
            values, vectors = scipy.linalg.eigh(
                gram,
                lower=False,
                subset_by_index=(last, last),
                overwrite_a=True,
                check_finite=False,
            )
            del gram
        projected = vectors.T @ A  # (m, n): A seen from the computed subspace
        rotation, spectrum, _ = scipy.linalg.svd(projected, full_matrices=False, check_finite=False)
        del projected
        V = vectors @ rotation[:, : self._dimension(int(np.sum(spectrum > 1)))]
        # V' S_I V = (L'V)'(L'V);  V' S_E V = (S_I V)'(A V) = (L L'V)'(A V).
        LtV = blas.dtrmm(1.0, L, V, lower=1, trans_a=1)
        in_cov = LtV.T @ LtV
        SiV = blas.dtrmm(1.0, L, LtV, lower=1)
        ex_cov = SiV.T @ (A @ V)
        return V, spectrum, in_cov, (ex_cov + ex_cov.T) / 2.0

    def _eig_route(self, cov_intra, cov_extra, large):
        if not large:
            values, vectors = scipy.linalg.eigh(cov_extra, cov_intra, check_finite=False)
            values, vectors = values[::-1], vectors[:, ::-1]
            V = vectors[:, : self._dimension(int(np.sum(values > 1)))]
            return V, values, V.T @ cov_intra @ V, V.T @ cov_extra @ V
        values, vectors = scipy.linalg.eigh(
            cov_extra, cov_intra, subset_by_value=(1.0, np.inf), check_finite=False
        )
        kept = values.size
        if kept == 0:
            last = cov_intra.shape[0] - 1
            values, vectors = scipy.linalg.eigh(
                cov_extra, cov_intra, check_finite=False, subset_by_index=(last, last)
            )
        values, vectors = values[::-1], vectors[:, ::-1]
        V = np.ascontiguousarray(vectors[:, : self._dimension(kept)])
        return V, values, V.T @ cov_intra @ V, V.T @ cov_extra @ V

    # -- using the model -------------------------------------------------------------------
    def _check_fitted(self, X: np.ndarray, name: str) -> np.ndarray:
        check_is_fitted(self, ("components_", "metric_"), msg=_NOT_FITTED)
        X = _check_features(name, X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but XQDA is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted on)"
            )
        return X

    def transform(self, X: np.ndarray, *, dtype: type | np.dtype = np.float64) -> np.ndarray:
        """Project onto the learned subspace: ``X @ W``, shape (n, n_components_).

        Parameters
        ----------
        X : array (n, n_features)
            Features (a memmap is read block by block).
        dtype : float64 (default) or float32
            Precision of the product and of the result. float32 halves the memory traffic of
            the (n_features x n_components_) projection, which dominates a single query's cost;
            with float32 features its rounding is of the order of the features' own.

        Returns
        -------
        ndarray (n, n_components_)
        """
        X = self._check_fitted(X, "X")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        W = self.components_ if dtype == np.float64 else self._components32()
        out = np.empty((X.shape[0], self.n_components_), dtype=dtype)
        for start in range(0, X.shape[0], ROW_BLOCK):  # converts a block at a time
            block = np.asarray(X[start : start + ROW_BLOCK], dtype=dtype)
            out[start : start + len(block)] = block @ W
        return out

    def _components32(self) -> np.ndarray:
        cached = getattr(self, "_w32", None)
        if cached is None or cached.shape != self.components_.shape:
            cached = self._w32 = np.ascontiguousarray(self.components_, dtype=np.float32)
        return cached

    def pairwise_distances(self, X_query: np.ndarray, X_gallery: np.ndarray) -> np.ndarray:
        """XQDA distances ``(x - z)' W M W' (x - z)``, shape (n_query, n_gallery).

        Smaller means more similar. Float64 projections, then :meth:`projected_distances`.
        """
        return self.projected_distances(self.transform(X_query), self.transform(X_gallery))

    def projected_distances(self, q: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Distances between already projected features (outputs of :meth:`transform`).

        ``g M g' - 2 q (g M)' + q M q'`` in float64: :meth:`XQDAMatcher.distance_matrix` with
        ``dtype=float64``, the arithmetic the pipeline evaluates with.

        Parameters
        ----------
        q, g : arrays (n_query, n_components_) and (n_gallery, n_components_)

        Returns
        -------
        ndarray (n_query, n_gallery), float64
        """
        g = np.asarray(g)
        return XQDAMatcher(self, g, k=max(1, len(g)), dtype=np.float64).distance_matrix(q)

    def embedding(self, X: np.ndarray) -> np.ndarray:
        """Euclidean embedding: squared Euclidean distances between rows = XQDA distances.

        ``transform(X) @ embedding_``. Exact when ``n_clipped_ == 0`` (``M`` positive
        semi-definite); otherwise the negative directions of ``M`` are dropped first. Lets any
        Euclidean nearest-neighbour index serve XQDA.
        """
        return self.transform(X) @ self.embedding_

    euclidean_transform = embedding


# ---------------------------------------------------------------------------------------------
# matching with the learned metric
# ---------------------------------------------------------------------------------------------
def _check_projected(name: str, values: np.ndarray, width: int) -> None:
    if values.ndim != 2 or values.shape[1] != width:
        raise ValueError(
            f"{name} must be projected features with {width} columns (XQDA.transform), got "
            f"shape {values.shape}"
        )


class XQDAMatcher:
    """Rank the projected gallery for projected queries with the XQDA metric.

    ``d(q, g) = g M g' - 2 q (g M)' + q M q'``: the gallery side ``g M`` and ``g M g'`` are
    precomputed, so a query costs one (n_gallery x r) matrix-vector product, then top-k. The
    evaluation uses :meth:`distance_matrix`, the same arithmetic as the timed :meth:`match`;
    :meth:`XQDA.projected_distances` is :meth:`distance_matrix` with ``dtype=float64``.

    Parameters
    ----------
    model : XQDA
        Fitted model (its ``metric_``).
    projected_gallery : ndarray (n_gallery, r)
        ``model.transform(gallery)``.
    k : int
        Ranking depth of :meth:`match` (capped at the gallery size).
    dtype : numpy dtype
        Precision of the gallery-side matrix product (float32 halves its memory traffic); the
        norms ``g M g'`` and ``q M q'`` are always float64.
    """

    def __init__(
        self,
        model: XQDA,
        projected_gallery: np.ndarray,
        k: int,
        dtype: type | np.dtype = np.float32,
    ) -> None:
        check_is_fitted(model, ("metric_",), msg=_NOT_FITTED)
        g = np.asarray(projected_gallery, dtype=np.float64)
        _check_projected("projected_gallery", g, model.metric_.shape[0])
        self.metric = model.metric_
        gallery_m = g @ self.metric
        self.gallery_norm = np.einsum("ij,ij->i", gallery_m, g)
        self.gallery_m = np.ascontiguousarray(gallery_m, dtype=dtype)
        self.k = min(k, g.shape[0])

    def distance_matrix(
        self, projected_queries: np.ndarray, block: int = QUERY_BLOCK
    ) -> np.ndarray:
        """(n_query, n_gallery) XQDA distances (float64), by blocks of ``block`` queries."""
        q_all = np.asarray(projected_queries)
        _check_projected("projected_queries", q_all, self.metric.shape[0])
        out = np.empty((q_all.shape[0], self.gallery_m.shape[0]), dtype=np.float64)
        for start in range(0, q_all.shape[0], block):
            q = q_all[start : start + block]
            q64 = q.astype(np.float64)
            q_norm = np.einsum("ij,ij->i", q64 @ self.metric, q64)
            cross = q.astype(self.gallery_m.dtype) @ self.gallery_m.T
            out[start : start + len(q)] = self.gallery_norm[None, :] - 2.0 * cross + q_norm[:, None]
        return out

    def distances(self, projected_query: np.ndarray) -> np.ndarray:
        """XQDA distances of one query to every gallery item (not validated: the timed path)."""
        q = np.asarray(projected_query).reshape(-1)
        q64 = q.astype(np.float64)
        cross = self.gallery_m @ q.astype(self.gallery_m.dtype)
        return self.gallery_norm - 2.0 * cross + q64 @ self.metric @ q64

    def match(self, projected_query: np.ndarray) -> np.ndarray:
        """Indices of the ``k`` nearest gallery items, best first."""
        return topk_from_distances(self.distances(projected_query)[None, :], self.k)[0][0]
