"""The speed/accuracy Pareto front: pipelines that no other pipeline beats on both axes."""

from __future__ import annotations

import numpy as np


def pareto_front(ms: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (lower ``ms`` and higher ``acc`` are better).

    Point i is dominated when some point j is at least as fast and at least as accurate, and
    strictly better on one of the two. Of exact duplicates only the first (lowest index) is
    kept, so the front has one point per (ms, acc) position.

    Parameters
    ----------
    ms : array_like
        Cost per point (e.g. milliseconds per query), finite.
    acc : array_like
        Accuracy per point (e.g. rank-1 or mAP), finite.

    Returns
    -------
    ndarray of int
        Indices into the inputs, sorted by ``ms``; along them ``acc`` increases strictly.
    """
    ms = np.asarray(ms, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    if ms.ndim != 1 or acc.ndim != 1 or ms.shape != acc.shape:
        raise ValueError(
            f"ms and acc must be 1-D arrays of equal length, got shapes {ms.shape} and {acc.shape}"
        )
    if not (np.isfinite(ms).all() and np.isfinite(acc).all()):
        raise ValueError("ms and acc must be finite (no NaN or inf)")
    # fastest first; among equally fast points the most accurate first, then by index
    order = np.lexsort((np.arange(len(ms)), -acc, ms))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if acc[i] > best:
            front.append(int(i))
            best = acc[i]
    return np.asarray(front, dtype=np.int64)
