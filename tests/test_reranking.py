"""data.reranking against a slow, loop-by-loop transcription of Zhong et al. (CVPR 2017)."""

from __future__ import annotations

import numpy as np
import pytest

from data.reranking import (
    OnlineReranker,
    RerankParams,
    RerankSizeError,
    check_offline_size,
    k_reciprocal_rerank,
    rerank_features,
    stable_topk,
)


def slow_rerank(q_g, q_q, g_g, k1, k2, lam):
    """The paper's method written plainly: Python sets and loops, dense encodings.

    Ties in the initial ranking are broken by index (a stable sort), queries first.
    """
    n_query, n_gallery = q_g.shape
    n = n_query + n_gallery
    stacked = np.block([[q_q, q_g], [q_g.T, g_g]])
    squared = np.square(stacked.astype(np.float64)).astype(np.float32)
    dist = (squared / squared.max(axis=0)).T  # column-normalised, row i = item i
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    half = int(np.around(k1 / 2))
    codes = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        grown = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                grown |= set(rc)
        members = sorted(grown)
        weights = np.exp(-dist[i, members].astype(np.float64))
        codes[i, members] = weights / weights.sum()
    if k2 != 1:
        codes = np.array([codes[rank[i, :k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((n_query, n_gallery))
    for i in range(n_query):
        for j in range(n_gallery):
            a, b = codes[i], codes[n_query + j]
            jaccard = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
            out[i, j] = (1 - lam) * jaccard + lam * dist[i, n_query + j]
    return out


def slow_online(q_row, g_g, k1, k2, lam):
    """The online variant written plainly: the gallery's graph frozen, one query inserted.

    The query precedes gallery items in ties, so it would enter gallery item g's list of
    ``k + 1`` when at most ``k`` gallery items are strictly closer to g than the query is.
    """
    n = len(g_g)
    squared = np.square(g_g.astype(np.float64)).astype(np.float32)
    peak = squared.max(axis=0)
    dist = (squared / peak).T
    rank = np.argsort(dist, axis=1, kind="stable")
    q_sq = np.square(q_row.astype(np.float64)).astype(np.float32)
    q_dist = q_sq / q_sq.max()
    q_rank = [n, *np.argsort(q_dist, kind="stable").tolist()]  # the query is item n
    seen = q_sq / peak  # the query's distance as gallery item g normalises it

    def gallery_reciprocal(i, k):
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    def query_reciprocal(k):
        return [j for j in q_rank[: k + 1] if j == n or (dist[j] < seen[j]).sum() <= k]

    def reciprocal(i, k):
        return query_reciprocal(k) if i == n else gallery_reciprocal(i, k)

    def encode(i, d_row):
        r = reciprocal(i, k1)
        grown = set(r)
        for c in r:
            rc = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                grown |= set(rc)
        code = np.zeros(n + 1)
        members = sorted(grown)
        weights = np.exp(-d_row[members].astype(np.float64))
        code[members] = weights / weights.sum()
        return code

    codes = np.array([encode(i, np.append(dist[i], np.inf)) for i in range(n)])
    codes = np.vstack([codes, encode(n, np.append(q_dist, 0))])
    if k2 != 1:
        gallery = np.array([codes[rank[i, :k2]].mean(axis=0) for i in range(n)])
        query = codes[q_rank[:k2]].mean(axis=0)
    else:
        gallery, query = codes[:n], codes[n]
    out = np.zeros(n)
    for j in range(n):
        jaccard = 1 - np.minimum(query, gallery[j]).sum() / np.maximum(query, gallery[j]).sum()
        out[j] = (1 - lam) * jaccard + lam * q_dist[j]
    return out


def euclid(a, b):
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))


def point_case(seed, n_query, n_gallery, dim=4, ids=5):
    """Identity-clustered points and their three Euclidean distance matrices."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim)) * 2
    q = centres[rng.integers(ids, size=n_query)] + rng.normal(size=(n_query, dim))
    g = centres[rng.integers(ids, size=n_gallery)] + rng.normal(size=(n_gallery, dim))
    return q, g, euclid(q, g), euclid(q, q), euclid(g, g)


def integer_case(seed, n_query, n_gallery):
    """Symmetric small-integer distances: ties everywhere."""
    rng = np.random.default_rng(seed)
    n = n_query + n_gallery
    full = rng.integers(1, 4, size=(n, n)).astype(np.float64)
    full = np.triu(full, 1)
    full = full + full.T
    return full[:n_query, n_query:], full[:n_query, :n_query], full[n_query:, n_query:]


@pytest.mark.parametrize(
    ("seed", "n_query", "n_gallery", "k1", "k2", "lam"),
    [
        (0, 4, 15, 3, 2, 0.3),
        (1, 6, 20, 5, 3, 0.3),
        (2, 3, 12, 20, 6, 0.3),  # k1 and k2 larger than the whole graph
        (3, 5, 14, 4, 1, 0.0),  # no query expansion, Jaccard alone
        (4, 1, 9, 2, 4, 0.7),
    ],
)
def test_offline_matches_slow_reference(seed, n_query, n_gallery, k1, k2, lam):
    _, _, q_g, q_q, g_g = point_case(seed, n_query, n_gallery)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == (n_query, n_gallery)
    np.testing.assert_allclose(got, slow_rerank(q_g, q_q, g_g, k1, k2, lam), atol=2e-6)


@pytest.mark.parametrize(("seed", "k1", "k2"), [(5, 3, 2), (6, 6, 3), (7, 30, 5), (8, 1, 1)])
def test_offline_matches_slow_reference_under_ties(seed, k1, k2):
    q_g, q_q, g_g = integer_case(seed, 5, 13)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2)
    np.testing.assert_allclose(got, slow_rerank(q_g, q_q, g_g, k1, k2, 0.3), atol=2e-6)


def test_duplicate_items_and_asymmetric_inputs_follow_the_reference():
    _, _, q_g, q_q, g_g = point_case(9, 4, 10)
    g_g[:, 3], g_g[3, :] = g_g[:, 2], g_g[2, :]  # gallery items 2 and 3 are the same image
    g_g[2, 3] = g_g[3, 2] = 0
    q_g[:, 3] = q_g[:, 2]
    rng = np.random.default_rng(9)
    skewed = q_q * rng.uniform(0.8, 1.2, size=q_q.shape)  # read by columns, as the reference
    for case in [(q_g, q_q, g_g), (q_g, skewed, g_g)]:
        got = k_reciprocal_rerank(*case, k1=4, k2=3)
        np.testing.assert_allclose(got, slow_rerank(*case, 4, 3, 0.3), atol=2e-6)


def test_lambda_one_keeps_the_original_order_and_small_blocks_change_nothing():
    _, _, q_g, q_q, g_g = point_case(10, 6, 25)
    plain = k_reciprocal_rerank(q_g, q_q, g_g, k1=5, k2=3, lambda_value=1.0)
    np.testing.assert_array_equal(np.argsort(plain, axis=1), np.argsort(q_g, axis=1))
    default = k_reciprocal_rerank(q_g, q_q, g_g, k1=5, k2=3)
    tiny = k_reciprocal_rerank(q_g, q_q, g_g, k1=5, k2=3, budget=1)  # one row per block
    np.testing.assert_array_equal(default, tiny)


def test_invariant_to_scale_and_to_the_order_of_queries_and_gallery():
    _, _, q_g, q_q, g_g = point_case(11, 5, 18)
    base = k_reciprocal_rerank(q_g, q_q, g_g, k1=4, k2=3)
    np.testing.assert_allclose(
        k_reciprocal_rerank(3.5 * q_g, 3.5 * q_q, 3.5 * g_g, k1=4, k2=3), base, atol=1e-6
    )
    pq, pg = np.random.default_rng(11).permutation(5), np.random.default_rng(12).permutation(18)
    shuffled = k_reciprocal_rerank(q_g[pq][:, pg], q_q[pq][:, pq], g_g[pg][:, pg], k1=4, k2=3)
    np.testing.assert_allclose(shuffled, base[pq][:, pg], atol=1e-6)


def test_reranking_helps_on_clustered_points():
    """The point of the method: same-identity items come closer (mAP-like check)."""
    rng = np.random.default_rng(13)
    centres = rng.normal(size=(20, 8)) * 1.2
    q_ids, g_ids = rng.integers(20, size=40), np.repeat(np.arange(20), 8)
    q = centres[q_ids] + rng.normal(size=(40, 8))
    g = centres[g_ids] + rng.normal(size=(160, 8))
    plain = euclid(q, g)
    reranked = k_reciprocal_rerank(plain, euclid(q, q), euclid(g, g), k1=8, k2=3)

    def mean_ap(dist):
        aps = []
        for i in range(len(q)):
            hits = g_ids[np.argsort(dist[i], kind="stable")] == q_ids[i]
            ranks = np.flatnonzero(hits)
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / (ranks + 1)))
        return np.mean(aps)

    assert mean_ap(reranked) > mean_ap(plain) + 0.02


def test_features_path_equals_the_matrix_path():
    q, g, q_g, q_q, g_g = point_case(14, 6, 21)
    from_matrices = k_reciprocal_rerank(q_g, q_q, g_g, k1=5, k2=3)
    np.testing.assert_allclose(
        rerank_features(q, g, k1=5, k2=3, budget=1), from_matrices, atol=1e-5
    )


def separated_case(seed):
    """A query near a tight cluster A but in none of its items' lists, and a far cluster B.

    Inserting the query changes no gallery item's lists, sets or normalisation, so the online
    variant must equal the offline one with that single query.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(12, 3)) * 0.01
    b = rng.normal(size=(10, 3)) * 0.01 + np.array([100.0, 0, 0])
    g = np.vstack([a, b])[rng.permutation(22)]
    q = np.array([[0.5, 0.0, 0.0], [0.0, 0.6, 0.0], [0.4, 0.3, 0.0]])
    return q, g


@pytest.mark.parametrize(("seed", "k1", "k2"), [(15, 4, 3), (16, 6, 1), (17, 3, 5)])
def test_online_equals_offline_where_the_query_changes_no_gallery_list(seed, k1, k2):
    q, g = separated_case(seed)
    g_g = euclid(g, g)
    online = OnlineReranker(k1=k1, k2=k2).fit(g_g)
    batch = online.rerank(euclid(q, g))
    for i in range(len(q)):
        single = k_reciprocal_rerank(euclid(q[i : i + 1], g), np.zeros((1, 1)), g_g, k1=k1, k2=k2)
        np.testing.assert_allclose(online.rerank(euclid(q[i : i + 1], g)[0]), single[0], atol=1e-6)
        np.testing.assert_allclose(batch[i], single[0], atol=1e-6)


def test_online_batch_rows_are_independent_and_lambda_one_keeps_order():
    _, _, q_g, _, g_g = point_case(18, 7, 30)
    online = OnlineReranker(k1=6, k2=3).fit(g_g)
    batch = online.rerank(q_g)
    assert batch.shape == (7, 30) and batch.dtype == np.float32
    for i in range(7):
        np.testing.assert_allclose(online.rerank(q_g[i]), batch[i], atol=1e-7)
    plain = OnlineReranker(k1=6, k2=3, lambda_value=1.0).fit(g_g).rerank(q_g)
    np.testing.assert_array_equal(np.argsort(plain, axis=1), np.argsort(q_g, axis=1))


def test_online_with_k1_beyond_the_gallery():
    _, _, q_g, _, g_g = point_case(19, 3, 6)
    out = OnlineReranker(k1=20, k2=6).fit(g_g).rerank(q_g)
    assert np.isfinite(out).all() and ((out >= 0) & (out <= 1 + 1e-6)).all()


def test_stable_topk_under_ties():
    rng = np.random.default_rng(20)
    block = rng.integers(0, 3, size=(9, 40)).astype(np.float32)
    for k in (1, 5, 17, 40):
        expected = np.argsort(block, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(stable_topk(block, k), expected)


def test_bad_input_is_refused_with_a_clear_message():
    _, _, q_g, q_q, g_g = point_case(21, 3, 8)
    with pytest.raises(ValueError, match="k1 must be an integer >= 1"):
        RerankParams(k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match=r"g_g must have shape \(8, 8\)"):
        k_reciprocal_rerank(q_g, q_q, g_g[:7])
    bad = q_g.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="q_g contains NaN"):
        k_reciprocal_rerank(bad, q_q, g_g)
    with pytest.raises(RuntimeError, match="before fit"):
        OnlineReranker().rerank(q_g)
    with pytest.raises(ValueError, match=r"q_g must have shape \(3, 8\)"):
        OnlineReranker().fit(g_g).rerank(q_g[:, :5])
    with pytest.raises(
        RerankSizeError, match=r"50000 queries \+ 50000 gallery items needs 27.9 GiB"
    ):
        check_offline_size(50_000, 50_000)
    check_offline_size(3_000, 15_000)  # a Market-1501-sized evaluation fits


@pytest.mark.parametrize(("seed", "k1", "k2"), [(22, 4, 3), (23, 7, 5), (24, 3, 1), (25, 20, 6)])
def test_online_matches_slow_reference(seed, k1, k2):
    _, _, q_g, _, g_g = point_case(seed, 4, 16)
    online = OnlineReranker(k1=k1, k2=k2).fit(g_g).rerank(q_g)
    for i in range(len(q_g)):
        np.testing.assert_allclose(online[i], slow_online(q_g[i], g_g, k1, k2, 0.3), atol=2e-6)


@pytest.mark.parametrize(("seed", "k1", "k2"), [(26, 4, 3), (27, 8, 2), (28, 12, 4)])
def test_online_matches_slow_reference_under_ties(seed, k1, k2):
    q_g, _, g_g = integer_case(seed, 6, 30)
    online = OnlineReranker(k1=k1, k2=k2).fit(g_g).rerank(q_g)
    for i in range(len(q_g)):
        np.testing.assert_allclose(online[i], slow_online(q_g[i], g_g, k1, k2, 0.3), atol=2e-6)


def test_online_fit_from_features_equals_fit_from_the_matrix():
    _, g, q_g, _, g_g = point_case(29, 5, 24)
    from_matrix = OnlineReranker(k1=5, k2=3).fit(g_g).rerank(q_g)
    from_features = OnlineReranker(k1=5, k2=3, budget=1).fit_features(g).rerank(q_g)
    np.testing.assert_allclose(from_features, from_matrix, atol=1e-5)
