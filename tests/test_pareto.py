"""Pareto front on hand-made points, and against a brute-force dominance check."""

from __future__ import annotations

import numpy as np
import pytest

from compare.pareto import pareto_front


def test_hand_made_points():
    #          a    b    c    d    e
    ms = [1.0, 2.0, 3.0, 2.5, 10.0]
    acc = [50, 70, 60, 80, 90]
    # c (3 ms, 60) is dominated by b (2 ms, 70); the rest trade speed for accuracy.
    assert pareto_front(ms, acc).tolist() == [0, 1, 3, 4]


def test_output_sorted_by_ms_not_by_index():
    assert pareto_front([5.0, 1.0, 3.0], [90, 10, 50]).tolist() == [1, 2, 0]


def test_ties_and_duplicates():
    assert pareto_front([1.0, 1.0, 2.0], [50, 60, 60]).tolist() == [1]  # same ms: keep the best
    assert pareto_front([2.0, 1.0], [60, 60]).tolist() == [1]  # same accuracy: keep the fastest
    assert pareto_front([1.0, 1.0], [50, 50]).tolist() == [0]  # duplicates: first one
    assert pareto_front([3.0, 1.0, 1.0], [70, 50, 50]).tolist() == [1, 0]
    assert pareto_front([4.0], [1.0]).tolist() == [0]
    assert pareto_front([], []).tolist() == []


def _brute_force(ms, acc):
    keep = []
    for i in range(len(ms)):
        dominated = any(
            ms[j] <= ms[i] and acc[j] >= acc[i] and (ms[j] < ms[i] or acc[j] > acc[i])
            for j in range(len(ms))
        )
        duplicate_of_earlier = any(ms[j] == ms[i] and acc[j] == acc[i] for j in range(i))
        if not dominated and not duplicate_of_earlier:
            keep.append(i)
    return sorted(keep, key=lambda i: ms[i])


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    ms = rng.integers(1, 6, size=30).astype(float)  # small integer grid: plenty of ties
    acc = rng.integers(0, 6, size=30).astype(float)
    assert pareto_front(ms, acc).tolist() == _brute_force(ms, acc)


def test_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        pareto_front([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([np.nan], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        pareto_front([[1.0]], [[1.0]])
