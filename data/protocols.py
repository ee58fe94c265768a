"""Re-ID evaluation: CMC and mAP under the Market-1501 single-query protocol.

For each query, gallery images that share its id *and* its camera are ignored ("junk"), and so are
gallery images with id -1; distractors (id 0) stay in the ranking as negatives. Ties in distance are
broken by gallery order (a stable sort), as MATLAB's ``sort`` does in the official devkit.

The ranking never sorts the whole gallery: only the ranks of each query's correct matches matter,
so a numba kernel places every gallery item among the (few) sorted matches by binary search, in
parallel over queries (about a second for Market-1501's 3,368 x 19,732 on 2 cores).

Two AP variants are offered, because papers mix them:

``ap="official"``
    The Market-1501 devkit of the dataset's authors. AP is the area under the precision/recall
    curve by the trapezoid rule: the ``k``-th correct match, at 0-based rank ``r`` once junk is
    removed, adds ``(p_before + k / (r + 1)) / (2 * n_good)``, where ``p_before`` is the
    precision one rank earlier (1 at rank 0). CMC and mAP are averaged over *all* queries; a
    query without any valid match counts 0 in both.
``ap="torchreid"``
    Non-interpolated AP, ``mean_k k / (r_k + 1)``, as torchreid and fast-reid report, averaged over
    the queries that have at least one valid match (others are skipped, also for CMC). It reads
    about 0.5-1.0 mAP points higher than the official variant on Market-1501.

Ids and cameras are compared as int64 (the kernel is compiled for int64 arrays), so ids of 2**31
or more never wrap onto small ones; ids below -1 and ids that do not fit in int64 are refused.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numba
import numpy as np

AP_VARIANTS = ("official", "torchreid")
#: Queries validated at once (bounds the temporary of the NaN check).
DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class EvalResult:
    """Evaluation of one ranking.

    Attributes
    ----------
    cmc : ndarray of shape (max_rank,)
        Fraction of queries whose first correct match is in the top ``i + 1``; ``cmc[0]`` is rank-1.
    mAP : float
        Mean average precision, a fraction.
    ap_per_query : ndarray of shape (n_query,)
        AP of each query (0 for queries without a valid match).
    has_match : ndarray of bool, shape (n_query,)
        Whether each query has at least one valid gallery match.
    num_queries : int
    num_valid_queries : int
        Queries with at least one valid match.
    ap : str
        The AP variant used.
    """

    cmc: np.ndarray
    mAP: float
    ap_per_query: np.ndarray
    has_match: np.ndarray
    num_queries: int
    num_valid_queries: int
    ap: str

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based), a fraction."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank must be in 1..{len(self.cmc)}, got {k}")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)


_INT64 = np.iinfo(np.int64)
#: Floats represent every integer exactly only up to 2**53: larger float ids may already be wrong.
_MAX_EXACT_FLOAT = 2**53


def _exact_int(value: object) -> int | None:
    """``value`` as an exact Python int, or None if it is not an integer."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        if abs(value) > _MAX_EXACT_FLOAT:
            return None  # may already have been rounded
        return int(value)
    return None


def _as_1d(
    name: str, values: np.ndarray, length: int, *, min_value: int | None = None
) -> np.ndarray:
    """``values`` as a 1-D int64 array of ``length`` integers; never wraps or rounds an id.

    Raises ValueError naming ``name`` for a wrong shape, non-integer values, values outside the
    int64 range (or below ``min_value``), and float values too large to be exact.
    """
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "u" and array.size and int(array.max()) > _INT64.max:
        raise ValueError(
            f"{name} holds {int(array.max())}, beyond the int64 range of ids (max {_INT64.max})"
        )
    if kind in "iub":
        out = array.astype(np.int64)
    elif kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must hold integer ids, got non-integer {array.dtype} values")
        if array.size and float(np.abs(array).max()) > _MAX_EXACT_FLOAT:
            raise ValueError(
                f"{name} holds float ids up to {float(np.abs(array).max()):.0f}, beyond 2**53 "
                "where floats are no longer exact integers; pass an integer (int64) array"
            )
        out = array.astype(np.int64)
    elif kind == "O":
        ints = [_exact_int(v) for v in array.tolist()]
        if any(v is None for v in ints):
            raise ValueError(f"{name} must hold integer ids, got dtype {array.dtype}")
        too_big = [v for v in ints if not _INT64.min <= v <= _INT64.max]
        if too_big:
            raise ValueError(
                f"{name} holds {too_big[0]}, beyond the int64 range of ids "
                f"({_INT64.min}..{_INT64.max})"
            )
        out = np.array(ints, dtype=np.int64)
    else:
        raise ValueError(f"{name} must hold integer ids, got dtype {array.dtype}")
    if min_value is not None and out.size and int(out.min()) < min_value:
        i = int(np.argmin(out))
        raise ValueError(
            f"{name} holds {int(out[i])} at index {i}; ids must be >= {min_value} "
            "(-1 marks junk, 0 distractors; no other negative id has a meaning)"
        )
    return out


def evaluate(
    distmat: np.ndarray,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    query_cams: np.ndarray,
    gallery_cams: np.ndarray,
    *,
    ap: str = "official",
    max_rank: int = 50,
    chunk_size: int = DEFAULT_CHUNK,
) -> EvalResult:
    """Evaluate a query x gallery distance matrix (smaller = more similar).

    Parameters
    ----------
    distmat : ndarray of shape (n_query, n_gallery)
    query_ids, gallery_ids : ndarray of int
        Person ids, ``>= -1`` and within int64; gallery id -1 is junk, 0 a distractor. Ids are
        compared as int64, never narrowed; out-of-range or non-integer ids raise ValueError.
    query_cams, gallery_cams : ndarray of int
        Camera ids (int64).
    ap : {"official", "torchreid"}
        AP variant and query averaging (see the module docstring).
    max_rank : int
        Length of the CMC curve; capped at the gallery size.
    chunk_size : int
        Queries processed at once (memory bound).

    Returns
    -------
    EvalResult
    """
    if ap not in AP_VARIANTS:
        raise ValueError(f"ap must be one of {AP_VARIANTS}, got {ap!r}")
    dist = _check_distances(distmat, max_rank, chunk_size)
    n_query, n_gallery = dist.shape
    # int64 throughout: narrower ids would wrap (2**32 + 1 == 1 in int32) and silently match.
    q_ids = _as_1d("query_ids", query_ids, n_query, min_value=-1)
    g_ids = _as_1d("gallery_ids", gallery_ids, n_gallery, min_value=-1)
    q_cams = _as_1d("query_cams", query_cams, n_query)
    g_cams = _as_1d("gallery_cams", gallery_cams, n_gallery)
    max_rank = min(max_rank, n_gallery)
    first_hit, ap_official, ap_torchreid = _rank_kernel(
        np.ascontiguousarray(dist), q_ids, q_cams, g_ids, g_cams
    )
    has_match = first_hit < n_gallery
    ap_per_query = ap_official if ap == "official" else ap_torchreid

    hits_at = first_hit[:, None] <= np.arange(max_rank)[None, :]
    if ap == "official":
        denominator = n_query
        cmc = hits_at.sum(axis=0) / denominator
        mean_ap = float(ap_per_query.sum() / denominator)
    else:
        denominator = int(has_match.sum())
        if denominator == 0:
            raise ValueError(
                "no query has a valid gallery match; the torchreid variant is undefined"
            )
        cmc = hits_at[has_match].sum(axis=0) / denominator
        mean_ap = float(ap_per_query[has_match].mean())
    return EvalResult(
        cmc=cmc.astype(np.float64),
        mAP=mean_ap,
        ap_per_query=ap_per_query,
        has_match=has_match,
        num_queries=n_query,
        num_valid_queries=int(has_match.sum()),
        ap=ap,
    )


def _check_distances(distmat: np.ndarray, max_rank: int, chunk_size: int) -> np.ndarray:
    """``distmat`` as a finite 2-D float array; clear errors otherwise."""
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (n_query, n_gallery), got shape {dist.shape}")
    n_query, n_gallery = dist.shape
    if n_query == 0 or n_gallery == 0:
        raise ValueError(f"distmat is empty: shape {dist.shape}")
    if not np.issubdtype(dist.dtype, np.number):
        raise ValueError(f"distmat must be numeric, got dtype {dist.dtype}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n_query, chunk_size):
        block = dist[start : start + chunk_size]
        if not np.all(np.isfinite(block)):
            bad = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise ValueError(f"distmat has NaN or inf values (first in query row {bad})")
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)
    return dist


@numba.njit(parallel=True, cache=True, nogil=True)
def _rank_kernel(dist, q_ids, q_cams, g_ids, g_cams):  # pragma: no cover - compiled
    """Per query: rank of the first correct match and both APs, without sorting the gallery.

    Only the ranks of the correct matches matter. Sort the k correct matches by (distance, index),
    then place every other valid gallery item among them by binary search: O(n_gallery log k) per
    query instead of O(n_gallery log n_gallery) for a full sort, and no (n_query x n_gallery)
    temporaries. Ties are broken by gallery index, as a stable sort would.
    """
    n_query, n_gallery = dist.shape
    first_hit = np.full(n_query, n_gallery, dtype=np.int64)
    ap_official = np.zeros(n_query, dtype=np.float64)
    ap_torchreid = np.zeros(n_query, dtype=np.float64)
    for i in numba.prange(n_query):
        row = dist[i]
        qid = q_ids[i]
        qcam = q_cams[i]
        k = 0
        for j in range(n_gallery):
            if g_ids[j] == qid and g_cams[j] != qcam:
                k += 1
        if k == 0:
            continue
        good = np.empty(k, dtype=np.int64)
        k = 0
        for j in range(n_gallery):
            if g_ids[j] == qid and g_cams[j] != qcam:
                good[k] = j
                k += 1
        # Indices are increasing, so a stable sort by distance orders by (distance, index).
        good = good[np.argsort(row[good], kind="mergesort")]
        good_d = row[good]
        # before[m] = valid non-matching items that rank before the m-th match (then prefix sums).
        before = np.zeros(k + 1, dtype=np.int64)
        for j in range(n_gallery):
            gid = g_ids[j]
            if gid == -1 or gid == qid:
                continue  # junk, or a match (placed by its own order) / same-camera junk
            d = row[j]
            lo, hi = 0, k
            while lo < hi:  # first match ranked after j
                mid = (lo + hi) // 2
                if good_d[mid] < d or (good_d[mid] == d and good[mid] < j):
                    lo = mid + 1
                else:
                    hi = mid
            before[lo] += 1
        passed = 0
        total_official = 0.0
        total_torchreid = 0.0
        for m in range(k):
            passed += before[m]
            rank = m + passed  # 0-based rank among valid items
            if m == 0:
                first_hit[i] = rank
            precision = (m + 1) / (rank + 1.0)
            precision_before = m / rank if rank > 0 else 1.0
            total_official += 0.5 * (precision_before + precision)
            total_torchreid += precision
        ap_official[i] = total_official / k
        ap_torchreid[i] = total_torchreid / k
    return first_hit, ap_official, ap_torchreid


# ---------------------------------------------------------------------------------------------
# Liao's two-view protocol (VIPeR, CUHK01, CUHK03 old protocol): CMC of a closed-set ranking
# ---------------------------------------------------------------------------------------------
def two_view_cmc(
    distmat: np.ndarray,
    probe_ids: np.ndarray,
    gallery_ids: np.ndarray,
    *,
    max_rank: int | None = None,
) -> np.ndarray:
    """CMC of a closed-set ranking, as Liao's ``EvalCMC``: no cameras, no junk.

    Each probe's rank is the 0-based position of its first true match (same id) when the
    gallery is sorted by distance; ties are broken by gallery order (a stable sort, as MATLAB's
    ``sort``). ``cmc[k - 1]`` is the fraction of probes ranked below ``k``.

    Parameters
    ----------
    distmat : ndarray of shape (n_probe, n_gallery)
        Smaller = more similar.
    probe_ids, gallery_ids : ndarray of int
        Person ids; every probe must have a true match in the gallery.
    max_rank : int, optional
        Curve length (default and cap: the gallery size).

    Returns
    -------
    ndarray of shape (max_rank,)
    """
    dist = np.asarray(distmat, dtype=np.float64)
    if dist.ndim != 2 or 0 in dist.shape:
        raise ValueError(f"distmat must be a non-empty 2-D array, got shape {dist.shape}")
    if not np.all(np.isfinite(dist)):
        bad = np.argwhere(~np.isfinite(dist))[0]
        raise ValueError(f"distmat has NaN or inf values (first at probe {bad[0]})")
    n_probe, n_gallery = dist.shape
    p_ids = _as_1d("probe_ids", probe_ids, n_probe)
    g_ids = _as_1d("gallery_ids", gallery_ids, n_gallery)
    if max_rank is None:
        max_rank = n_gallery
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    order = np.argsort(dist, axis=1, kind="stable")
    hits = g_ids[order] == p_ids[:, None]
    has_match = hits.any(axis=1)
    if not has_match.all():
        i = int(np.flatnonzero(~has_match)[0])
        raise ValueError(
            f"probe {i} (id {p_ids[i]}) has no true match in the gallery; the two-view protocol "
            "needs one for every probe"
        )
    first = hits.argmax(axis=1)
    ranks = np.arange(min(max_rank, n_gallery))
    return (first[:, None] <= ranks[None, :]).mean(axis=0)


def set_distances(
    distmat: np.ndarray, probe_ids: np.ndarray, gallery_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-shot: distance between two persons = mean of their image-pair distances.

    Parameters
    ----------
    distmat : ndarray of shape (n_probe_images, n_gallery_images)
    probe_ids, gallery_ids : ndarray of int
        Person of each probe / gallery image.

    Returns
    -------
    (person_distances, probe_persons, gallery_persons)
        ``person_distances[i, j]`` is the mean of ``distmat`` over the images of probe person
        ``probe_persons[i]`` and gallery person ``gallery_persons[j]`` (ids sorted).
    """
    dist = np.asarray(distmat, dtype=np.float64)
    if dist.ndim != 2 or 0 in dist.shape:
        raise ValueError(f"distmat must be a non-empty 2-D array, got shape {dist.shape}")
    p_ids = _as_1d("probe_ids", probe_ids, dist.shape[0])
    g_ids = _as_1d("gallery_ids", gallery_ids, dist.shape[1])
    p_persons, p_index = np.unique(p_ids, return_inverse=True)
    g_persons, g_index = np.unique(g_ids, return_inverse=True)
    p_avg = np.zeros((len(p_persons), len(p_ids)))
    p_avg[p_index, np.arange(len(p_ids))] = 1.0
    p_avg /= p_avg.sum(axis=1, keepdims=True)
    g_avg = np.zeros((len(g_persons), len(g_ids)))
    g_avg[g_index, np.arange(len(g_ids))] = 1.0
    g_avg /= g_avg.sum(axis=1, keepdims=True)
    return p_avg @ dist @ g_avg.T, p_persons, g_persons


def mean_cmc(curves: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) of CMC curves over trials.

    A shorter curve (a trial with a smaller gallery) is flat beyond its end: it is padded with
    its last value.
    """
    arrays = [np.asarray(c, dtype=np.float64).ravel() for c in curves]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("mean_cmc needs at least one non-empty curve")
    length = max(a.size for a in arrays)
    stacked = np.vstack([np.pad(a, (0, length - a.size), mode="edge") for a in arrays])
    return stacked.mean(axis=0), stacked.std(axis=0)
