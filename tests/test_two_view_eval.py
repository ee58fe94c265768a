"""Liao's two-view protocol: closed-set CMC, multi-shot set distances, mean over trials.

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.protocols import mean_cmc, set_distances, two_view_cmc


def test_cmc_hand_worked():
    dist = np.array(
        [
            [0.1, 0.5, 0.9],  # probe 1: its match (gallery 0) is nearest            -> rank 0
            [0.2, 0.4, 0.3],  # probe 2: order g0 (0.2), g2 (0.3), g1 (0.4)           -> rank 2
            [0.5, 0.6, 0.7],  # probe 3: order g0, g1, g2; its match g2 is last        -> rank 2
        ]
    )
    cmc = two_view_cmc(dist, [1, 2, 3], [1, 2, 3])
    np.testing.assert_allclose(cmc, [1 / 3, 1 / 3, 1.0])
    np.testing.assert_allclose(two_view_cmc(dist, [1, 2, 3], [1, 2, 3], max_rank=2), [1 / 3] * 2)
    np.testing.assert_allclose(two_view_cmc(dist, [1, 2, 3], [1, 2, 3], max_rank=9), cmc)


def test_cmc_gallery_order_and_ids_do_not_have_to_match_the_probes():
    # gallery ids [30, 10, 20]; probe 10's match is gallery 1, probe 30's gallery 0
    dist = np.array(
        [
            [0.9, 0.2, 0.1],  # probe 10: g2 (0.1) then g1 (0.2)                     -> rank 1
            [0.3, 0.1, 0.2],  # probe 30: g1, g2, g0                                  -> rank 2
        ]
    )
    np.testing.assert_allclose(two_view_cmc(dist, [10, 30], [30, 10, 20]), [0.0, 0.5, 1.0])


def test_cmc_ties_follow_gallery_order():
    # every distance equal: a stable sort keeps gallery order, so the rank is the match's index
    dist = np.zeros((3, 3))
    np.testing.assert_allclose(two_view_cmc(dist, [1, 2, 3], [1, 2, 3]), [1 / 3, 2 / 3, 1.0])
    # a tie between the match and an earlier impostor puts the match second
    dist = np.array([[0.5, 0.5, 0.9]])
    np.testing.assert_allclose(two_view_cmc(dist, [2], [1, 2, 3]), [0.0, 1.0, 1.0])
    # ... and a later impostor after it
    np.testing.assert_allclose(two_view_cmc(dist, [1], [1, 2, 3]), [1.0, 1.0, 1.0])


def test_cmc_with_several_gallery_images_counts_the_first_match():
    dist = np.array([[0.4, 0.1, 0.3, 0.2]])  # ids [1, 2, 1, 3]: order g1 (2), g3 (3), g2 (1)
    np.testing.assert_allclose(two_view_cmc(dist, [1], [1, 2, 1, 3]), [0, 0, 1, 1])


def test_cmc_errors():
    with pytest.raises(ValueError, match=r"probe 1 \(id 7\) has no true match"):
        two_view_cmc(np.zeros((2, 2)), [1, 7], [1, 2])
    with pytest.raises(ValueError, match="non-empty 2-D"):
        two_view_cmc(np.zeros((0, 2)), [], [1, 2])
    with pytest.raises(ValueError, match="NaN or inf"):
        two_view_cmc(np.array([[0.0, np.nan]]), [1], [1, 2])
    with pytest.raises(ValueError, match="gallery_ids must be a 1-D array of length 2"):
        two_view_cmc(np.zeros((1, 2)), [1], [1, 2, 3])
    with pytest.raises(ValueError, match="max_rank"):
        two_view_cmc(np.zeros((1, 2)), [1], [1, 2], max_rank=0)


def test_set_distances_average_image_pairs():
    # probe images of persons [2, 1, 2], gallery images of persons [1, 1, 2]
    dist = np.array(
        [
            [1.0, 3.0, 5.0],
            [2.0, 4.0, 6.0],
            [3.0, 5.0, 9.0],
        ]
    )
    persons, probe_ids, gallery_ids = set_distances(dist, [2, 1, 2], [1, 1, 2])
    np.testing.assert_array_equal(probe_ids, [1, 2])
    np.testing.assert_array_equal(gallery_ids, [1, 2])
    expected = [
        [(2 + 4) / 2, 6.0],  # probe person 1 (row 1) vs gallery 1 (cols 0, 1) and 2 (col 2)
        [(1 + 3 + 3 + 5) / 4, (5 + 9) / 2],  # probe person 2 (rows 0, 2)
    ]
    np.testing.assert_allclose(persons, expected)
    # then the person-level CMC: person 1 ranks g1 (3) before g2 (6); person 2: g1 (3) < g2 (7)
    np.testing.assert_allclose(two_view_cmc(persons, probe_ids, gallery_ids), [0.5, 1.0])


def test_mean_cmc_over_trials():
    mean, std = mean_cmc([np.array([0.5, 1.0]), np.array([0.25, 0.5])])
    np.testing.assert_allclose(mean, [0.375, 0.75])
    np.testing.assert_allclose(std, [0.125, 0.25])
    # a trial with a smaller gallery is flat beyond its end
    mean, _ = mean_cmc([np.array([0.5, 1.0, 1.0]), np.array([0.0, 1.0])])
    np.testing.assert_allclose(mean, [0.25, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        mean_cmc([])
