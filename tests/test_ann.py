"""FAISS matchers (data.ann) against exact search on small identity-clustered sets."""

from __future__ import annotations

import numpy as np
import pytest

from data.ann import (
    MATCHING_METHODS,
    ExactMatcher,
    FaissIndex,
    MatchingConfig,
    auto_nlist,
    build_matcher,
    faiss_threads,
    pq_layout,
    recall_at,
)
from data.matching import pairwise_cosine_distance, pairwise_sq_euclidean

pytest.importorskip("faiss")


def clustered(seed: int, n_ids: int = 80, per_id: int = 40, dim: int = 24, spread: float = 0.3):
    """Gallery of identity clusters and queries near gallery items (as re-ID embeddings are)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    gallery = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    picks = rng.choice(len(gallery), 60, replace=False)
    queries = gallery[picks] + 0.1 * spread * rng.standard_normal((60, dim))
    return gallery.astype(np.float32), queries.astype(np.float32)


def slow_topk(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Obviously correct reference: full float64 distance matrix, stable argsort."""
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    if metric == "euclidean":
        dist = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    else:
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        dist = 1 - qn @ gn.T
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_faiss_flat_equals_exact(metric):
    gallery, queries = clustered(0)
    flat = build_matcher(gallery, k=10, metric=metric, config=MatchingConfig("faiss-flat"))
    exact = build_matcher(gallery, k=10, metric=metric)
    fi, fd = flat.search(queries, 10)
    ei, _ = exact.search(queries, 10)
    np.testing.assert_array_equal(fi, ei)
    np.testing.assert_array_equal(fi, slow_topk(queries, gallery, 10, metric))
    reference = (pairwise_sq_euclidean if metric == "euclidean" else pairwise_cosine_distance)(
        queries, gallery
    )
    np.testing.assert_allclose(fd, np.take_along_axis(reference, fi, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(flat.match(queries[3]), ei[3])
    np.testing.assert_array_equal(exact.match(queries[3]), ei[3])


@pytest.mark.parametrize(
    ("config", "k", "floor"),
    [
        (MatchingConfig("hnsw"), 10, 0.95),
        (MatchingConfig("hnsw"), 50, 0.9),
        (MatchingConfig("ivfpq", pq_bits=6, ivf_nprobe=8), 10, 0.5),
        (MatchingConfig("ivfpq", pq_bits=6, ivf_nprobe=8, refine=8), 10, 0.95),
        (MatchingConfig("ivfpq", pq_bits=6, ivf_nprobe=8, refine=8), 50, 0.9),
    ],
)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_index_recall_on_clustered_set(config, k, floor, metric):
    gallery, queries = clustered(1)
    index = build_matcher(gallery, k=k, metric=metric, config=config, threads=1)
    approx = index.search(queries)[0]
    assert approx.shape == (len(queries), k)
    assert recall_at(approx, slow_topk(queries, gallery, k, metric), k) >= floor


def test_approximation_is_measured_not_assumed():
    """A starved index (tiny graph, one candidate) must lose recall: the test can fail."""
    gallery, queries = clustered(2)
    exact = slow_topk(queries, gallery, 50, "euclidean")
    starved = MatchingConfig("hnsw", hnsw_m=2, hnsw_ef_construction=2, hnsw_ef_search=1)
    approx = build_matcher(gallery, k=50, config=starved, threads=1).search(queries)[0]
    assert recall_at(approx, exact, 50) < 0.9
    ivf = MatchingConfig("ivfpq", pq_bits=4, ivf_nlist=32, ivf_nprobe=1)
    index = build_matcher(gallery, k=50, config=ivf, threads=1)
    idx, dist = index.search(queries)
    assert recall_at(idx, exact, 50) < 0.9
    assert np.all(np.isinf(dist[idx < 0]))  # missing items are padded, not invented


@pytest.mark.parametrize("method", ["hnsw", "ivfpq"])
def test_single_thread_build_is_deterministic(method):
    gallery, queries = clustered(3)
    config = MatchingConfig(method, pq_bits=6)
    first = build_matcher(gallery, k=20, config=config, threads=1).search(queries)
    second = build_matcher(gallery, k=20, config=config, threads=1).search(queries)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_match_returns_k_best_first_and_records_costs():
    gallery, queries = clustered(4)
    for method in MATCHING_METHODS:
        cfg = MatchingConfig(method, pq_bits=6)
        index = build_matcher(gallery, k=7, config=cfg, threads=1)
        assert index.match(queries[0]).shape == (7,)
        assert index.nbytes > 0 and index.build_seconds >= 0
    flat = build_matcher(gallery, config=MatchingConfig("faiss-flat"))
    pq = build_matcher(gallery, config=MatchingConfig("ivfpq", pq_bits=6), threads=1)
    assert pq.nbytes < flat.nbytes  # codes are smaller than the raw vectors
    assert build_matcher(gallery[:5], k=50).k == 5  # k capped at the gallery size


def test_search_parameters_change_in_place():
    gallery, queries = clustered(8)
    exact = slow_topk(queries, gallery, 10, "euclidean")
    hnsw = build_matcher(gallery, k=10, config=MatchingConfig("hnsw", hnsw_m=4), threads=1)
    hnsw.set_search(ef_search=1)
    low = recall_at(hnsw.search(queries)[0], exact, 10)
    hnsw.set_search(ef_search=200)
    assert recall_at(hnsw.search(queries)[0], exact, 10) > low
    assert hnsw.config.hnsw_ef_search == 200
    # unclustered vectors, where the cells probed decide what is found
    gallery = np.random.default_rng(8).standard_normal((3200, 24)).astype(np.float32)
    exact = slow_topk(queries, gallery, 10, "euclidean")
    for refine in (0, 4):
        cfg = MatchingConfig("ivfpq", pq_bits=6, ivf_nlist=32, refine=refine)
        ivf = build_matcher(gallery, k=10, config=cfg, threads=1)
        ivf.set_search(nprobe=1)
        low = recall_at(ivf.search(queries)[0], exact, 10)
        ivf.set_search(nprobe=32)
        assert recall_at(ivf.search(queries)[0], exact, 10) > low
    with pytest.raises(ValueError, match="ef_search applies to hnsw"):
        ivf.set_search(ef_search=3)
    with pytest.raises(ValueError, match="nprobe applies to ivfpq"):
        hnsw.set_search(nprobe=3)
    with pytest.raises(ValueError, match="nprobe must be an integer"):
        ivf.set_search(nprobe=0)


def test_pq_padding_keeps_distances():
    """An odd dimension is zero-padded for PQ; refined distances stay the exact ones."""
    gallery, queries = clustered(5, dim=23)
    assert pq_layout(23, 0) == (6, 24)
    cfg = MatchingConfig("ivfpq", pq_bits=6, refine=8)
    idx, dist = build_matcher(gallery, k=5, config=cfg, threads=1).search(queries)
    exact = pairwise_sq_euclidean(queries, gallery)
    ok = idx >= 0
    np.testing.assert_allclose(dist[ok], np.take_along_axis(exact, idx, 1)[ok], atol=1e-4)


def test_auto_nlist():
    assert auto_nlist(1_000_000, 100_000) == 2564  # capped by 39 vectors per cell
    assert auto_nlist(10_000, 100_000) == 256  # lowered to 10_000 // 39
    assert auto_nlist(100_000, 100_000) == 1265
    assert auto_nlist(10, 10) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "annoy"}, "method must be one of"),
        ({"method": "hnsw", "hnsw_m": 0}, "hnsw_m"),
        ({"method": "hnsw", "hnsw_ef_search": -1}, "hnsw_ef_search"),
        ({"method": "ivfpq", "ivf_nprobe": 0}, "ivf_nprobe"),
        ({"method": "ivfpq", "ivf_nlist": -3}, "ivf_nlist"),
        ({"method": "ivfpq", "pq_bits": 17}, "pq_bits"),
        ({"method": "ivfpq", "refine": 1.5}, "refine"),
        ({"method": "ivfpq", "train_size": 0}, "train_size"),
        ({"method": "hnsw", "hnsw_m": True}, "hnsw_m"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    gallery, _ = clustered(6, n_ids=10, per_id=10)
    with pytest.raises(ValueError, match=message):
        build_matcher(gallery, config=MatchingConfig(**kwargs))


def test_bad_inputs_are_named():
    gallery, queries = clustered(7, n_ids=10, per_id=10)
    with pytest.raises(ValueError, match="pq_bits=8 needs at least 256"):
        build_matcher(gallery, config=MatchingConfig("ivfpq"))
    with pytest.raises(ValueError, match="pq_m must be <="):
        build_matcher(gallery, config=MatchingConfig("ivfpq", pq_m=99, pq_bits=4))
    with pytest.raises(ValueError, match="ivf_nlist=500 exceeds"):
        build_matcher(gallery, config=MatchingConfig("ivfpq", ivf_nlist=500, pq_bits=4))
    with pytest.raises(ValueError, match="metric must be one of"):
        build_matcher(gallery, metric="manhattan", config=MatchingConfig("hnsw"))
    with pytest.raises(ValueError, match="non-empty"):
        FaissIndex(np.zeros((0, 4), np.float32))
    index = build_matcher(gallery, config=MatchingConfig("hnsw"))
    with pytest.raises(ValueError, match=r"queries must be \(n, 24\)"):
        index.search(queries[:, :5])
    with pytest.raises(ValueError, match=r"k must be in 1\.\.100"):
        index.search(queries, 101)
    with pytest.raises(ValueError, match="use build_matcher"):
        FaissIndex(gallery, config=MatchingConfig("exact"))
    with pytest.raises(ValueError, match="thread count"), faiss_threads(0):
        pass


def test_recall_at():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at(exact, exact, 3) == 1.0
    assert recall_at(np.array([[3, 9, -1], [6, 5, 4]]), exact, 3) == pytest.approx(4 / 6)
    assert recall_at(np.array([[2, 1, 0], [0, 0, 0]]), exact, 1) == 0.0
    with pytest.raises(ValueError, match="k must be in"):
        recall_at(exact, exact, 4)
    assert isinstance(build_matcher(np.eye(3, dtype=np.float32)), ExactMatcher)
