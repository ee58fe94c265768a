"""ANN scaling measurements (compare.ann_scaling): recall, growth of the gallery, caching."""

from __future__ import annotations

import numpy as np
import pytest

from compare.ann_scaling import AnnPoint, EmbeddingSet, ann_scaling
from data.ann import MatchingConfig
from data.distractors import fit_identity_statistics

pytest.importorskip("faiss")


def embedding_set() -> EmbeddingSet:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, 16))
    labels = np.repeat(np.arange(60), 5)
    real = (centres[labels] + 0.2 * rng.standard_normal((300, 16))).astype(np.float32)
    stats = fit_identity_statistics(real, labels)
    queries = real[::5][:30] + np.float32(0.01)
    return EmbeddingSet("toy", queries, real, stats, seed=0)


def test_gallery_grows_with_distractors_after_the_real_items():
    emb = embedding_set()
    small, real = emb.grown_gallery(100)
    assert small.shape == (100, 16) and real == 100
    big, real = emb.grown_gallery(1_000)
    assert big.shape == (1_000, 16) and real == 300
    np.testing.assert_array_equal(big[:300], emb.gallery)
    np.testing.assert_array_equal(big, emb.grown_gallery(1_000)[0])  # seeded


def test_scaling_points_and_cache(tmp_path):
    emb = embedding_set()
    configs = [MatchingConfig("exact"), MatchingConfig("faiss-flat"), MatchingConfig("hnsw")]
    cache = tmp_path / "ann.json"
    logged: list[str] = []
    points = ann_scaling(
        emb, [200, 800], configs, cache_path=cache, log=logged.append, target_seconds=0.01
    )
    assert len(points) == 6 and len(logged) == 6
    assert all(isinstance(p, AnnPoint) for p in points)
    by = {(p.gallery_size, p.method): p for p in points}
    for n in (200, 800):
        assert by[(n, "exact")].recall50 == pytest.approx(1.0)
        assert by[(n, "faiss-flat")].recall10 == pytest.approx(1.0)
        assert by[(n, "hnsw")].recall10 >= 0.9
        assert by[(n, "exact")].ms_match > 0 and by[(n, "hnsw")].index_mb > 0
    assert by[(800, "exact")].real_items == 300
    logged.clear()
    again = ann_scaling(
        emb, [200, 800], configs, cache_path=cache, log=logged.append, target_seconds=0.01
    )
    assert again == points and logged == []  # read from the cache, nothing measured
    ann_scaling(
        emb,
        [200],
        configs[:1],
        cache_path=cache,
        log=logged.append,
        refresh=True,
        target_seconds=0.01,
    )
    assert len(logged) == 1
