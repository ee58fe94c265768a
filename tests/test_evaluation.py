"""data.protocols against a brute-force reference and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from data.protocols import evaluate


def brute_force(dist, q_ids, g_ids, q_cams, g_cams, ap, max_rank):
    """One query at a time, straight from the protocol's wording."""
    n_q = dist.shape[0]
    aps, firsts, valid = [], [], []
    for i in range(n_q):
        ranking = sorted(range(dist.shape[1]), key=lambda j: (dist[i, j], j))
        kept = [
            j
            for j in ranking
            if g_ids[j] != -1 and not (g_ids[j] == q_ids[i] and g_cams[j] == q_cams[i])
        ]
        matches = [g_ids[j] == q_ids[i] for j in kept]
        n_good = sum(matches)
        valid.append(n_good > 0)
        if n_good == 0:
            aps.append(0.0)
            firsts.append(None)
            continue
        firsts.append(matches.index(True))
        hits, total, old_precision = 0, 0.0, 1.0
        for rank, is_match in enumerate(matches):
            hits += is_match
            precision = hits / (rank + 1)
            if is_match:
                if ap == "official":
                    total += (old_precision + precision) / 2
                else:
                    total += precision
            old_precision = precision
        aps.append(total / n_good)
    max_rank = min(max_rank, dist.shape[1])
    cmc = np.zeros(max_rank)
    rows = [i for i in range(n_q) if ap == "official" or valid[i]]
    for i in rows:
        if firsts[i] is not None and firsts[i] < max_rank:
            cmc[firsts[i] :] += 1
    cmc /= len(rows)
    mean_ap = float(np.mean([aps[i] for i in rows]))
    return cmc, mean_ap


def test_hand_worked_official_and_torchreid():
    # Query id 1, camera 0. Gallery ranked by distance: [id 2, id 1 cam1, id 1 cam0 (junk),
    # id -1 (junk), id 0 (distractor), id 1 cam2].
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    g_ids = np.array([2, 1, 1, -1, 0, 1])
    g_cams = np.array([1, 1, 0, 2, 1, 2])
    # After junk removal: [2, 1, 0, 1] -> matches at ranks 1 and 3 (0-based), n_good = 2.
    # official: hit 1: (p_before=0/1, p_now=1/2) -> 0.25; hit 2: (p_before=1/3, p_now=2/4) -> 5/12
    # AP = (0.25 + 5/12) / 2 = 1/3.  torchreid: (1/2 + 2/4) / 2 = 0.5.
    res = evaluate(dist, np.array([1]), g_ids, np.array([0]), g_cams, max_rank=4)
    assert res.mAP == pytest.approx(1 / 3)
    np.testing.assert_allclose(res.cmc, [0, 1, 1, 1])
    res_t = evaluate(dist, np.array([1]), g_ids, np.array([0]), g_cams, ap="torchreid", max_rank=4)
    assert res_t.mAP == pytest.approx(0.5)


def test_query_without_match_counts_zero_only_in_official():
    dist = np.array([[0.1, 0.2], [0.2, 0.1]])
    g_ids = np.array([5, 6])
    g_cams = np.array([1, 1])
    q_ids = np.array([5, 7])  # id 7 has no gallery image
    q_cams = np.array([0, 0])
    official = evaluate(dist, q_ids, g_ids, q_cams, g_cams)
    assert official.num_queries == 2 and official.num_valid_queries == 1
    assert official.mAP == pytest.approx(0.5)
    assert official.rank1 == pytest.approx(0.5)
    torchreid = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap="torchreid")
    assert torchreid.mAP == pytest.approx(1.0)
    assert torchreid.rank1 == pytest.approx(1.0)


def test_ties_broken_by_gallery_order():
    dist = np.zeros((1, 3))
    res = evaluate(dist, np.array([1]), np.array([2, 1, 1]), np.array([0]), np.array([1, 1, 2]))
    # Stable order [2, 1, 1]: first hit at rank 1.
    assert res.cmc[0] == 0 and res.cmc[1] == 1


def test_same_camera_same_id_is_ignored_not_negative():
    dist = np.array([[0.1, 0.2]])
    res = evaluate(dist, np.array([3]), np.array([3, 3]), np.array([0]), np.array([0, 1]))
    assert res.rank1 == 1.0 and res.mAP == 1.0


@pytest.mark.parametrize("ap", ["official", "torchreid"])
def test_against_brute_force_random(ap):
    rng = np.random.default_rng(0)
    n_q, n_g = 40, 120
    g_ids = rng.integers(-1, 12, size=n_g)
    g_cams = rng.integers(0, 4, size=n_g)
    q_ids = rng.integers(1, 14, size=n_q)  # ids 12, 13 never in the gallery
    q_cams = rng.integers(0, 4, size=n_q)
    # Quantised distances so ties happen.
    dist = rng.integers(0, 30, size=(n_q, n_g)).astype(np.float32)
    res = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap=ap, max_rank=20, chunk_size=7)
    cmc, mean_ap = brute_force(dist, q_ids, g_ids, q_cams, g_cams, ap, 20)
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-12)
    assert res.mAP == pytest.approx(mean_ap, abs=1e-12)


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(1)
    dist = rng.random((50, 80))
    args = (
        rng.integers(1, 9, 50),
        rng.integers(0, 9, 80),
        rng.integers(0, 3, 50),
        rng.integers(0, 3, 80),
    )
    a = evaluate(dist, *args, chunk_size=1)
    b = evaluate(dist, *args, chunk_size=1000)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == b.mAP


def test_max_rank_capped_at_gallery_size():
    res = evaluate(np.zeros((2, 3)), np.array([1, 2]), np.array([1, 2, 3]), np.zeros(2), np.ones(3))
    assert res.cmc.shape == (3,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ap": "interpolated"}, "ap must be one of"),
        ({"max_rank": 0}, "max_rank"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(
            np.zeros((1, 2)),
            np.array([1]),
            np.array([1, 2]),
            np.array([0]),
            np.array([1, 1]),
            **kwargs,
        )


def test_bad_shapes_and_values():
    with pytest.raises(ValueError, match="gallery_ids"):
        evaluate(np.zeros((1, 2)), np.array([1]), np.array([1]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="2-D"):
        evaluate(np.zeros(3), np.array([1]), np.array([1]), np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(
            np.array([[np.nan, 1.0]]),
            np.array([1]),
            np.array([1, 2]),
            np.array([0]),
            np.array([1, 1]),
        )
    with pytest.raises(ValueError, match="no query has a valid"):
        evaluate(
            np.zeros((1, 1)),
            np.array([1]),
            np.array([2]),
            np.array([0]),
            np.array([1]),
            ap="torchreid",
        )
