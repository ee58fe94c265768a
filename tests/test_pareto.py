"""Pareto front on hand-made points."""

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


def test_ties_and_duplicates():
    assert pareto_front([1.0, 1.0, 2.0], [50, 60, 60]).tolist() == [1]  # same ms: keep the best
    assert pareto_front([1.0, 1.0], [50, 50]).tolist() == [0]  # duplicates: first one
    assert pareto_front([], []).tolist() == []


def test_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        pareto_front([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([np.nan], [1.0])
