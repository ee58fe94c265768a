"""Cross-view Quadratic Discriminant Analysis (XQDA; Liao et al., CVPR 2015).

XQDA learns a subspace ``W`` and a metric ``M`` from the differences of cross-camera pairs:
intra-personal differences (same id) should look small under ``M``, extra-personal ones (different
ids) large. The default follows the authors' reference implementation as written in
``shared/lomo_xqda_spec.md``: closed-form covariances, a QR reduction when the dimension exceeds
the number of samples, ``lambda * I`` on the intra covariance, the SVD of ``inv(S_I) S_E`` (its
left singular vectors; dimensions whose singular value is > 1), and
``M = inv(W' S_I W) - inv(W' S_E W)``. ``solver="eig"`` solves the paper's generalised eigenproblem
``S_E w = lambda S_I w`` instead (it generally keeps a different number of dimensions).

``fit(X, y, cams)`` uses *all* cross-camera pairs of the training set, computed in closed form
from per-(id, camera) sums and counts, never by building pairs; with two cameras it is exactly the
two-view formulation of ``fit_views``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse

#: Above this many reduced dimensions, the SVD's left singular vectors with singular value > 1
#: are computed as the top eigenvectors of A A' (same subspace, same distances, minutes faster).
FULL_SVD_LIMIT = 3000
#: Rows per block in pairwise_distances (bounds the temporary to block x n_gallery floats).
DISTANCE_BLOCK = 1024


def _as_features(name: str, X: np.ndarray, *, min_rows: int = 1) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {X.shape[0]}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        bad = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise ValueError(f"{name} contains NaN or inf (first in row {bad})")
    return X


def _as_labels(name: str, values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries, got shape {values.shape}")
    return values


def _pair_scatter(X: np.ndarray, ids: np.ndarray, cams: np.ndarray):
    """Sums of (x_i - x_j)(x_i - x_j)' over unordered cross-camera pairs: intra and all.

    For sample i with a_i same-id partners in other cameras and b_i partners in other cameras,
    sum_pairs x_i x_i' + x_j x_j' = X' diag(a) X, and the cross terms are
    sum_k (S_k S_k' - sum_c S_kc S_kc') with S_k / S_kc the sums per id / per (id, camera).
    """
    _, id_index = np.unique(ids, return_inverse=True)
    _, cam_index = np.unique(cams, return_inverse=True)
    _, pair_index = np.unique(id_index * (cam_index.max() + 1) + cam_index, return_inverse=True)
    n_id = np.bincount(id_index)[id_index]
    n_pair = np.bincount(pair_index)[pair_index]
    n_cam = np.bincount(cam_index)[cam_index]
    a = (n_id - n_pair).astype(np.float64)  # same id, other camera
    b = (len(ids) - n_cam).astype(np.float64)  # any id, other camera

    def group_sums(index: np.ndarray) -> np.ndarray:
        one_hot = scipy.sparse.csr_matrix(
            (np.ones(len(index)), (index, np.arange(len(index)))),
            shape=(index.max() + 1, len(index)),
        )
        return np.asarray(one_hot @ X)

    s_id, s_pair, s_cam = group_sums(id_index), group_sums(pair_index), group_sums(cam_index)
    total = X.sum(axis=0)
    # In-place updates: at Market-1501 size every (n x n) temporary is 1.3 GB.
    intra = (X * a[:, None]).T @ X
    intra -= s_id.T @ s_id
    intra += s_pair.T @ s_pair
    every = (X * b[:, None]).T @ X
    every -= np.outer(total, total)
    every += s_cam.T @ s_cam
    n_intra = a.sum() / 2.0
    n_all = b.sum() / 2.0
    return intra, n_intra, every, n_all


class XQDA:
    """Cross-view Quadratic Discriminant Analysis, scikit-learn style.

    Parameters
    ----------
    reg : float
        ``lambda`` added to the diagonal of the intra-personal covariance (0.001 in the paper).
    n_components : int or None
        Subspace dimension; ``None`` keeps every direction with singular (or eigen) value > 1
        (at least one). A requested dimension is capped at that count.
    solver : {"svd", "eig"}
        ``"svd"``: left singular vectors of ``inv(S_I) S_E`` (the reference implementation);
        ``"eig"``: the generalised eigenproblem of the paper.

    Attributes
    ----------
    components_ : ndarray (n_features, r)
        ``W``; ``transform(X) = X @ W``.
    metric_ : ndarray (r, r)
        ``M = inv(W' S_I W) - inv(W' S_E W)``.
    spectrum_ : ndarray
        Singular values (svd) or generalised eigenvalues (eig), descending.
    n_components_ : int
    n_clipped_ : int
        Negative eigenvalues of ``M`` clipped to build the Euclidean embedding.
    """

    def __init__(self, *, reg: float = 1e-3, n_components: int | None = None, solver: str = "svd"):
        self.reg = reg
        self.n_components = n_components
        self.solver = solver

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, cams: np.ndarray) -> XQDA:
        """Learn from all cross-camera pairs of ``(X, y, cams)``.

        Parameters
        ----------
        X : ndarray (n_samples, n_features)
        y : ndarray (n_samples,)
            Identity labels.
        cams : ndarray (n_samples,)
            Camera labels; only pairs from different cameras are used.
        """
        X = _as_features("X", X, min_rows=2)
        y = _as_labels("y", y, X.shape[0])
        cams = _as_labels("cams", cams, X.shape[0])
        self._check_params()
        if np.unique(y).size < 2:
            raise ValueError("XQDA needs at least two identities in y")
        if np.unique(cams).size < 2:
            raise ValueError(
                "XQDA learns from cross-camera pairs but cams holds a single camera; pass the "
                "true camera ids (or use fit_views with two views)"
            )
        return self._fit(X, y, cams)

    def fit_views(
        self, X_gallery: np.ndarray, X_probe: np.ndarray, y_gallery: np.ndarray, y_probe: np.ndarray
    ) -> XQDA:
        """The paper's two-view setting: pairs are (gallery row, probe row)."""
        Xg = _as_features("X_gallery", X_gallery)
        Xp = _as_features("X_probe", X_probe)
        if Xg.shape[1] != Xp.shape[1]:
            raise ValueError(f"X_gallery has {Xg.shape[1]} features but X_probe has {Xp.shape[1]}")
        yg = _as_labels("y_gallery", y_gallery, Xg.shape[0])
        yp = _as_labels("y_probe", y_probe, Xp.shape[0])
        self._check_params()
        y = np.concatenate([yg, yp])
        if np.unique(y).size < 2:
            raise ValueError("XQDA needs at least two identities")
        cams = np.concatenate([np.zeros(len(yg), np.int64), np.ones(len(yp), np.int64)])
        return self._fit(np.concatenate([Xg, Xp]), y, cams)

    def _check_params(self) -> None:
        if self.solver not in ("svd", "eig"):
            raise ValueError(f"solver must be 'svd' or 'eig', got {self.solver!r}")
        if not self.reg >= 0:
            raise ValueError(f"reg must be >= 0, got {self.reg}")
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"n_components must be >= 1 or None, got {self.n_components}")

    def _fit(self, X: np.ndarray, y: np.ndarray, cams: np.ndarray) -> XQDA:
        n, d = X.shape
        basis = None
        if d > n:
            # Work in the span of the data: X' = Q R, rows of R' are the samples' coordinates.
            basis, r_factor = scipy.linalg.qr(
                X.T.astype(np.float64), mode="economic", overwrite_a=True, check_finite=False
            )
            X = r_factor.T
        else:
            X = X.astype(np.float64, copy=False)
        intra, n_intra, every, n_all = _pair_scatter(X, y, cams)
        n_extra = n_all - n_intra
        if n_intra == 0:
            raise ValueError(
                "no identity is seen in two cameras: there are no intra-personal pairs"
            )
        if n_extra == 0:
            raise ValueError("there are no cross-camera pairs of different identities")
        every -= intra
        cov_extra = every
        cov_extra /= n_extra
        cov_intra = intra
        cov_intra /= n_intra
        del X
        cov_intra[np.diag_indices_from(cov_intra)] += self.reg
        if self.solver == "svd":
            vectors, spectrum = self._svd_directions(cov_intra, cov_extra)
        else:
            spectrum, vectors = scipy.linalg.eigh(cov_extra, cov_intra)
            spectrum, vectors = spectrum[::-1], vectors[:, ::-1]
        kept = int(np.sum(spectrum > 1))
        dim = max(1, kept) if self.n_components is None else min(self.n_components, max(1, kept))
        V = vectors[:, :dim]
        in_cov = V.T @ cov_intra @ V
        ex_cov = V.T @ cov_extra @ V
        self.metric_ = np.linalg.inv(in_cov) - np.linalg.inv(ex_cov)
        self.metric_ = (self.metric_ + self.metric_.T) / 2  # exact symmetry against rounding
        self.components_ = V if basis is None else basis @ V
        self.spectrum_ = spectrum
        self.n_components_ = dim
        self.n_features_in_ = d
        eigvals, eigvecs = np.linalg.eigh(self.metric_)
        self.n_clipped_ = int(np.sum(eigvals < 0))
        self._embedding = eigvecs * np.sqrt(np.clip(eigvals, 0, None))
        return self

    @staticmethod
    def _svd_directions(cov_intra: np.ndarray, cov_extra: np.ndarray):
        ratio = scipy.linalg.solve(cov_intra, cov_extra, assume_a="pos", check_finite=False)
        if ratio.shape[0] <= FULL_SVD_LIMIT:
            U, s, _ = scipy.linalg.svd(ratio, full_matrices=False, check_finite=False)
            return U, s
        # Left singular vectors of A are the eigenvectors of A A' (eigenvalues s^2); only those
        # with s > 1 are used, so only they are computed (plus one, for the automatic minimum).
        gram = ratio @ ratio.T
        eigvals, eigvecs = scipy.linalg.eigh(
            gram, subset_by_value=(1.0, np.inf), check_finite=False
        )
        if eigvals.size == 0:
            last = gram.shape[0] - 1
            eigvals, eigvecs = scipy.linalg.eigh(gram, subset_by_index=(last, last))
        order = np.argsort(eigvals)[::-1]
        return eigvecs[:, order], np.sqrt(np.clip(eigvals[order], 0, None))

    # -- using the model -------------------------------------------------------------------
    def _check_fitted(self, X: np.ndarray, name: str) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise RuntimeError("this XQDA instance is not fitted yet; call fit or fit_views first")
        X = _as_features(name, X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features but XQDA was fitted on {self.n_features_in_}"
            )
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project onto the learned subspace: ``X @ W``."""
        X = self._check_fitted(X, "X")
        return X @ self.components_.astype(X.dtype, copy=False)

    def pairwise_distances(self, X_query: np.ndarray, X_gallery: np.ndarray) -> np.ndarray:
        """XQDA distances ``(x - z)' W M W' (x - z)``, shape (n_query, n_gallery)."""
        q = self.transform(X_query).astype(np.float64, copy=False)
        g = self.transform(X_gallery).astype(np.float64, copy=False)
        return self.projected_distances(q, g)

    def projected_distances(self, q: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Distances between already-projected features (``transform`` outputs)."""
        gM = g @ self.metric_
        g_norm = np.einsum("ij,ij->i", gM, g)
        out = np.empty((q.shape[0], g.shape[0]), dtype=np.float64)
        for start in range(0, q.shape[0], DISTANCE_BLOCK):
            block = q[start : start + DISTANCE_BLOCK]
            qM = block @ self.metric_
            q_norm = np.einsum("ij,ij->i", qM, block)
            out[start : start + DISTANCE_BLOCK] = q_norm[:, None] + g_norm[None, :] - 2 * qM @ g.T
        return out

    def embedding(self, X: np.ndarray) -> np.ndarray:
        """Euclidean embedding: squared Euclidean distances equal XQDA distances.

        ``M`` is made positive semi-definite first (negative eigenvalues clipped to 0; their
        count is ``n_clipped_``), so with ``n_clipped_ == 0`` the distances are exact and any
        nearest-neighbour index can serve XQDA.
        """
        return self.transform(X) @ self._embedding.astype(np.float64)
