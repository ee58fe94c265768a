"""data.matching against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from data.matching import (
    GalleryIndex,
    ShardedGalleryIndex,
    pairwise_cosine_distance,
    pairwise_sq_euclidean,
    topk_chunked,
    topk_from_distances,
)


def _brute_sq(q, g):
    return np.array([[float(((a - b) ** 2).sum()) for b in g] for a in q])


def test_sq_euclidean_matches_brute_force_with_tiny_chunks():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    got = pairwise_sq_euclidean(q, g, budget=1)  # one query per chunk
    np.testing.assert_allclose(got, _brute_sq(q, g), rtol=1e-10)
    assert (pairwise_sq_euclidean(q, q) >= 0).all()


def test_cosine_distance():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    g = np.array([[3.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(pairwise_cosine_distance(q, g), [[0, 2], [1, 1]], atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_topk_matches_full_sort(metric):
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(9, 4)), rng.normal(size=(30, 4))
    idx, dist = topk_chunked(q, g, 5, metric=metric, budget=64)
    full = _brute_sq(q, g) if metric == "euclidean" else pairwise_cosine_distance(q, g)
    expected = np.argsort(full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(dist, np.take_along_axis(full, expected, 1), rtol=1e-6, atol=1e-9)


def test_topk_ties_by_index_and_bad_k():
    dist = np.array([[1.0, 0.0, 1.0, 0.0]])
    idx, _ = topk_from_distances(dist, 4)
    assert idx.tolist() == [[1, 3, 0, 2]]
    with pytest.raises(ValueError, match="gallery size"):
        topk_from_distances(dist, 5)
    with pytest.raises(ValueError, match="dimensions"):
        topk_chunked(np.zeros((1, 3)), np.zeros((2, 4)), 1)


def test_gallery_index_matches_topk():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(40, 8)).astype(np.float32)
    q = rng.normal(size=8).astype(np.float32)
    index = GalleryIndex(g, k=6)
    np.testing.assert_array_equal(index.match(q), topk_chunked(q[None], g, 6)[0][0])


def test_chunk_size_and_budget_give_the_same_answer():
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(10, 6)), rng.normal(size=(25, 6))
    full = pairwise_sq_euclidean(q, g)
    np.testing.assert_allclose(pairwise_sq_euclidean(q, g, chunk_size=3), full, rtol=1e-12)
    idx_a, d_a = topk_chunked(q, g, 4, chunk_size=1)
    idx_b, d_b = topk_chunked(q, g, 4, budget=1 << 30)
    np.testing.assert_array_equal(idx_a, idx_b)
    np.testing.assert_allclose(d_a, d_b)
    with pytest.raises(ValueError, match="chunk_size"):
        topk_chunked(q, g, 4, chunk_size=0)


def test_float32_by_default_float64_kept():
    q32 = np.ones((2, 3), np.float32)
    assert pairwise_sq_euclidean(q32, q32).dtype == np.float32
    assert pairwise_sq_euclidean(q32.astype(np.int64), q32.astype(np.int64)).dtype == np.float32
    assert pairwise_sq_euclidean(q32.astype(np.float64), q32).dtype == np.float64


def test_topk_chunked_k_larger_than_gallery_is_an_error():
    with pytest.raises(ValueError, match="gallery size"):
        topk_chunked(np.zeros((2, 3)), np.zeros((4, 3)), 5)
    with pytest.raises(ValueError, match="metric"):
        topk_chunked(np.zeros((2, 3)), np.zeros((4, 3)), 1, metric="manhattan")
    with pytest.raises(ValueError, match="empty"):
        topk_chunked(np.zeros((2, 3)), np.zeros((0, 3)), 1)


def test_cosine_gallery_index_matches_topk():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(30, 5)).astype(np.float32)
    q = rng.normal(size=5).astype(np.float32)
    index = GalleryIndex(g, k=7, metric="cosine")
    expected = topk_chunked(q[None], g, 7, metric="cosine")[0][0]
    np.testing.assert_array_equal(index.match(q), expected)


def test_sharded_index_matches_one_big_gallery():
    rng = np.random.default_rng(5)
    blocks = [rng.normal(size=(n, 8)).astype(np.float32) for n in (13, 1, 20, 6)]
    blocks.append(blocks[0])  # the same block twice, as the scaling benchmark does
    gallery = np.concatenate(blocks)
    index = ShardedGalleryIndex(blocks, k=10)
    assert index.size == len(gallery)
    for q in rng.normal(size=(5, 8)).astype(np.float32):
        expected = topk_chunked(q[None], gallery, 10)[0][0]
        np.testing.assert_array_equal(index.match(q), expected)
    with pytest.raises(ValueError, match="common dimension"):
        ShardedGalleryIndex([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="at least one"):
        ShardedGalleryIndex([])
