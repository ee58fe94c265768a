"""Matching query features against a gallery: chunked GEMM distances and top-k ranking.

Memory stays bounded whatever the gallery size: queries are processed in chunks sized from a
byte budget, each chunk costs one matrix product (BLAS), and only the k best candidates per query
are sorted (``argpartition`` first).
"""

from __future__ import annotations

import numpy as np

#: Bytes allowed for one chunk's (n_chunk x n_gallery) distance block.
DEFAULT_BUDGET = 256 * 1024 * 1024
METRICS = ("euclidean", "cosine")


def _check_pair(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    query = np.asarray(query)
    gallery = np.asarray(gallery)
    if query.ndim == 1:
        query = query[None]
    if query.ndim != 2 or gallery.ndim != 2:
        raise ValueError(
            f"features must be 2-D (n, dim): query {query.shape}, gallery {gallery.shape}"
        )
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query features have {query.shape[1]} dimensions but gallery has {gallery.shape[1]}"
        )
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty")
    # float32 unless a caller passes float64 on purpose (integers, float16 -> float32)
    dtype = np.float64 if np.float64 in (query.dtype, gallery.dtype) else np.float32
    return query.astype(dtype, copy=False), gallery.astype(dtype, copy=False)


def chunk_rows(n_gallery: int, itemsize: int, budget: int = DEFAULT_BUDGET) -> int:
    """Queries per chunk so that one (chunk x n_gallery) block fits in ``budget`` bytes."""
    return max(1, budget // max(1, n_gallery * itemsize))


def _step(n_gallery: int, itemsize: int, budget: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return chunk_rows(n_gallery, itemsize, budget)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (queries per chunk), got {chunk_size}")
    return int(chunk_size)


def squared_norms(features: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 norms, (n,)."""
    return np.einsum("ij,ij->i", features, features)


def pairwise_sq_euclidean(
    query: np.ndarray,
    gallery: np.ndarray,
    *,
    gallery_sq_norms: np.ndarray | None = None,
    budget: int = DEFAULT_BUDGET,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Squared Euclidean distances ``||q||^2 + ||g||^2 - 2 q g'`` (clipped at 0), (n_q, n_g).

    Parameters
    ----------
    query, gallery : ndarray
        (n_q, d) and (n_g, d) features; float32 unless either input is float64.
    gallery_sq_norms : ndarray, optional
        Precomputed ``||g||^2`` (n_g,), e.g. from :func:`squared_norms`.
    budget : int
        Bytes allowed for one chunk's (queries x n_g) block of the matrix product.
    chunk_size : int, optional
        Queries per chunk; overrides ``budget``.
    """
    query, gallery = _check_pair(query, gallery)
    g_norm = squared_norms(gallery) if gallery_sq_norms is None else gallery_sq_norms
    out = np.empty((query.shape[0], gallery.shape[0]), dtype=query.dtype)
    step = _step(gallery.shape[0], query.itemsize, budget, chunk_size)
    for start in range(0, query.shape[0], step):
        block = query[start : start + step]
        dist = block @ gallery.T
        dist *= -2
        dist += squared_norms(block)[:, None]
        dist += g_norm[None, :]
        np.maximum(dist, 0, out=dist)  # rounding can make tiny distances negative
        out[start : start + step] = dist
    return out


def pairwise_cosine_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``1 - cos(q, g)``, (n_q, n_g)."""
    query, gallery = _check_pair(query, gallery)
    return 1.0 - _unit(query) @ _unit(gallery).T


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def topk_from_distances(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries per row, sorted (ties by index): (indices, distances).

    ``argpartition`` selects the k candidates in O(n) and only those k are sorted.
    """
    dist = np.asarray(dist)
    if dist.ndim != 2:
        raise ValueError(f"distances must be 2-D (n_query, n_gallery), got shape {dist.shape}")
    n_gallery = dist.shape[1]
    if not 1 <= k <= n_gallery:
        raise ValueError(f"k must be in 1..{n_gallery} (the gallery size), got {k}")
    if k < n_gallery:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_gallery), dist.shape).copy()
    part_d = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, part_d), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(part_d, order, axis=1)


def topk_chunked(
    query: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    metric: str = "euclidean",
    gallery_sq_norms: np.ndarray | None = None,
    budget: int = DEFAULT_BUDGET,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery items per query without materialising the full distance matrix.

    Each chunk of queries costs one GEMM against the gallery, then ``argpartition`` picks the k
    candidates and only those are sorted (ties broken by gallery index).

    Parameters
    ----------
    query, gallery : ndarray
        (n_q, d) and (n_g, d) features.
    k : int
        Neighbours per query, 1..n_g.
    metric : {"euclidean", "cosine"}
        Squared Euclidean distance or ``1 - cosine similarity``.
    gallery_sq_norms : ndarray, optional
        Precomputed ``||g||^2`` for the Euclidean metric.
    budget, chunk_size : int
        Bytes for one chunk's distance block, or explicit queries per chunk.

    Returns
    -------
    indices, distances : ndarray
        (n_q, k) each, best first.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    query, gallery = _check_pair(query, gallery)
    if not 1 <= k <= gallery.shape[0]:
        raise ValueError(f"k must be in 1..{gallery.shape[0]} (the gallery size), got {k}")
    if metric == "cosine":
        query, gallery = _unit(query), _unit(gallery)
    g_norm = None
    if metric == "euclidean":
        g_norm = squared_norms(gallery) if gallery_sq_norms is None else gallery_sq_norms
    step = _step(gallery.shape[0], query.itemsize, budget, chunk_size)
    indices = np.empty((query.shape[0], k), dtype=np.int64)
    distances = np.empty((query.shape[0], k), dtype=query.dtype)
    for start in range(0, query.shape[0], step):
        block = query[start : start + step]
        if metric == "euclidean":
            dist = pairwise_sq_euclidean(block, gallery, gallery_sq_norms=g_norm, budget=budget)
        else:
            dist = 1.0 - block @ gallery.T
        idx, d = topk_from_distances(dist, k)
        indices[start : start + step] = idx
        distances[start : start + step] = d
    return indices, distances


class GalleryIndex:
    """Precomputed gallery (features and norms) answering one query at a time: ``match(q)``.

    This is what the timing harness calls for every pipeline: one GEMV against the gallery plus
    a top-k selection.
    """

    def __init__(self, gallery: np.ndarray, *, k: int = 50, metric: str = "euclidean") -> None:
        gallery = np.ascontiguousarray(gallery, dtype=np.float32)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if gallery.ndim != 2 or gallery.shape[0] == 0:
            raise ValueError(f"gallery must be a non-empty (n, dim) array, got {gallery.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if metric == "cosine":
            gallery = _unit(gallery)
        self.gallery = gallery
        self.metric = metric
        self.k = min(k, gallery.shape[0])
        self.sq_norms = squared_norms(gallery)

    def match(self, feature: np.ndarray) -> np.ndarray:
        """Indices of the k nearest gallery items for one feature vector, best first."""
        q = np.asarray(feature, dtype=np.float32).reshape(1, -1)
        if self.metric == "cosine":
            dist = -(_unit(q) @ self.gallery.T)
        else:
            dist = self.sq_norms - 2.0 * (q @ self.gallery.T)  # ||q||^2 does not change the order
        return topk_from_distances(dist, self.k)[0][0]


class ShardedGalleryIndex:
    """A gallery stored as several blocks (shards, memory maps), matched one query at a time.

    ``match(q)`` costs one GEMV and one top-k per block, then merges the per-block candidates,
    so memory stays bounded by the largest block whatever the gallery size. With a single block
    it does exactly what :class:`GalleryIndex` does.

    Parameters
    ----------
    blocks : sequence of ndarray
        (n_b, dim) float32 blocks; global indices follow the order of the blocks. The same array
        object may appear several times (its norms are computed once).
    k : int
        Neighbours returned per query (capped at the gallery size).
    """

    def __init__(self, blocks: list[np.ndarray], *, k: int = 50) -> None:
        if not blocks:
            raise ValueError("ShardedGalleryIndex needs at least one gallery block")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dims = {b.shape[1] if b.ndim == 2 else -1 for b in blocks}
        if len(dims) != 1 or -1 in dims:
            raise ValueError(f"gallery blocks must be 2-D with one common dimension, got {dims}")
        norms: dict[int, np.ndarray] = {}
        self.blocks = []
        offset = 0
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if id(block) not in norms:
                norms[id(block)] = squared_norms(block)
            self.blocks.append((block, norms[id(block)], offset))
            offset += block.shape[0]
        if offset == 0:
            raise ValueError("the gallery is empty")
        self.size = offset
        self.k = min(k, offset)

    def match(self, feature: np.ndarray) -> np.ndarray:
        """Indices of the k nearest gallery items (squared Euclidean), best first."""
        q = np.asarray(feature, dtype=np.float32).reshape(1, -1)
        cand_idx, cand_dist = [], []
        for block, norms, offset in self.blocks:
            dist = norms - 2.0 * (q @ block.T)
            idx, d = topk_from_distances(dist, min(self.k, block.shape[0]))
            cand_idx.append(idx[0] + offset)
            cand_dist.append(d[0])
        idx = np.concatenate(cand_idx)
        dist = np.concatenate(cand_dist)
        order = np.lexsort((idx, dist))[: self.k]
        return idx[order]
