"""k-reciprocal re-ranking (:mod:`data.reranking`) as a switch on every pipeline: re-ranked rows.

A pipeline measured with ``--rerank`` gets, beside each plain row, a row marked
``rerank = "online"`` (plain rows read ``"none"``) that says what a user deploying re-ranking
pays and gets:

- accuracy of the *online* variant: each query re-ranked alone against the gallery's neighbour
  graph, built once (:class:`data.reranking.OnlineReranker`), exactly as the timed path runs it;
- its timing: the same per-query path as the plain row's (extraction at batch size 1, then
  matching) timed with the re-ranking matcher (the query's distances to the whole gallery, the
  online re-ranking, top-k) in place of the plain one; ``ms_query`` = the plain row's, its
  matching swapped for the re-ranking matcher's time (only the matching differs);
- in ``extra``: the paper's *offline* accuracy (every query and gallery image in one graph,
  :func:`data.reranking.k_reciprocal_rerank`), the gallery precomputation in seconds, the plain
  accuracy and ``k1`` / ``k2`` / ``lambda``.

Pipelines hand in *squared* distances (squared Euclidean for the CNNs, XQDA's quadratic form for
LOMO+XQDA, what they rank by); re-ranking receives their square roots, the distances the paper's
method squares.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from compare.results import ResultRow, extra_json
from compare.timing import TOP_K, TimingResult
from data.matching import pairwise_sq_euclidean, squared_norms, topk_from_distances
from data.protocols import evaluate
from data.reranking import (
    OnlineReranker,
    RerankParams,
    check_offline_size,
    k_reciprocal_rerank,
)

#: ``rerank`` column of plain rows and of re-ranked ones.
PLAIN, ONLINE = "none", "online"

#: Labels for evaluation: (query ids, gallery ids, query cameras, gallery cameras).
Labels = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Accuracy:
    """Market-1501 accuracy of one ranking, percentages."""

    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mAP_torchreid: float

    @classmethod
    def of(cls, dist: np.ndarray, labels: Labels) -> Accuracy:
        official = evaluate(dist, *labels)
        torchreid = evaluate(dist, *labels, ap="torchreid")
        at = lambda k: 100 * float(official.cmc[min(k, len(official.cmc)) - 1])  # noqa: E731
        return cls(at(1), at(5), at(10), 100 * official.mAP, 100 * torchreid.mAP)


@dataclass(frozen=True)
class RerankOutcome:
    """What re-ranking does to one pipeline's test split."""

    plain: Accuracy
    online: Accuracy
    offline: Accuracy
    fit_seconds: float  # the gallery's graph, once (OnlineReranker.fit)
    params: RerankParams

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> RerankOutcome:
        """The outcome :meth:`as_dict` wrote (a run's ``summary.json``)."""
        return cls(
            plain=Accuracy(**value["plain"]),
            online=Accuracy(**value["online"]),
            offline=Accuracy(**value["offline"]),
            fit_seconds=float(value["fit_seconds"]),
            params=RerankParams(**value["params"]),
        )


def distances(squared: np.ndarray) -> np.ndarray:
    """The distances re-ranking takes: square roots of a pipeline's squared distances (float32;
    rounding below zero clipped)."""
    return np.sqrt(np.maximum(np.asarray(squared, dtype=np.float32), 0))


def rerank_split(
    q_g: np.ndarray,
    q_q: np.ndarray,
    g_g: np.ndarray,
    labels: Labels,
    params: RerankParams | None = None,
) -> tuple[RerankOutcome, OnlineReranker]:
    """Plain, online and offline accuracy from squared distance matrices, and the fitted
    online re-ranker (to time). The offline form refuses matrices beyond
    :data:`data.reranking.MAX_OFFLINE_BYTES` with a one-line message."""
    params = params or RerankParams()
    check_offline_size(*q_g.shape)
    q_g, q_q, g_g = distances(q_g), distances(q_q), distances(g_g)
    start = time.perf_counter()
    reranker = OnlineReranker(**asdict(params)).fit(g_g)
    fit_seconds = time.perf_counter() - start
    offline = k_reciprocal_rerank(q_g, q_q, g_g, **asdict(params))
    outcome = RerankOutcome(
        plain=Accuracy.of(q_g, labels),
        online=Accuracy.of(reranker.rerank(q_g), labels),
        offline=Accuracy.of(offline, labels),
        fit_seconds=fit_seconds,
        params=params,
    )
    return outcome, reranker


def rerank_embeddings(
    query: np.ndarray, gallery: np.ndarray, labels: Labels, engine_timer: Callable
) -> dict:
    """Re-ranking of embeddings compared by squared Euclidean distance (the CNNs): the outcome
    and the timing ``engine_timer(match_one)`` gives the re-ranking matcher, as a dict for a
    run's ``summary.json`` (:func:`reranked_from_entry` reads it back)."""
    outcome, reranker = rerank_split(
        pairwise_sq_euclidean(query, gallery),
        pairwise_sq_euclidean(query, query),
        pairwise_sq_euclidean(gallery, gallery),
        labels,
    )
    norms = squared_norms(gallery)

    def squared_row(feature: np.ndarray) -> np.ndarray:
        return pairwise_sq_euclidean(feature, gallery, gallery_sq_norms=norms)

    timing = engine_timer(rerank_matcher(squared_row, reranker, TOP_K))
    return {"outcome": outcome.as_dict(), "timing": timing.as_dict()}


def reranked_from_entry(plain: ResultRow, entry: dict) -> ResultRow:
    """The re-ranked row of ``plain`` from what :func:`rerank_embeddings` stored."""
    return reranked_row(
        plain, RerankOutcome.from_dict(entry["outcome"]), TimingResult(**entry["timing"])
    )


def rerank_matcher(
    squared_row: Callable[[np.ndarray], np.ndarray], reranker: OnlineReranker, k: int
) -> Callable[[np.ndarray], np.ndarray]:
    """``feature -> top-k gallery indices`` after online re-ranking: the timed path.

    ``squared_row(feature)`` is the pipeline's squared distances of one query to every gallery
    item (what its plain matcher computes before its top-k).
    """
    k = min(k, reranker.n_gallery)

    def match(feature: np.ndarray) -> np.ndarray:
        row = reranker.rerank(distances(squared_row(feature)).reshape(-1))
        return topk_from_distances(row[None], k)[0][0]

    return match


def reranked_row(plain: ResultRow, outcome: RerankOutcome, timing: TimingResult) -> ResultRow:
    """The re-ranked twin of ``plain``: online accuracy, and the re-ranking matcher's time
    (``timing``: the timed path with the re-ranking matcher) added to the plain row's extraction.

    Only the matching differs between the two paths, so the twin keeps the plain row's
    ``ms_extract`` and its ``ms_query`` is the plain one with the plain matching swapped for
    the re-ranking matcher's (medians: ``ms_query`` is not ``ms_extract + ms_match``); the
    re-timed extraction, noise on a shared machine, goes to ``extra``; its p90 is the
    re-ranking path's own.
    """
    extra = {
        **_json(plain.extra),
        "rerank": {
            "k1": outcome.params.k1,
            "k2": outcome.params.k2,
            "lambda": outcome.params.lambda_value,
            "fit_seconds": outcome.fit_seconds,
            "plain_ms_match": plain.ms_match,
            "timed_ms_extract": timing.ms_extract,
            "plain": asdict(outcome.plain),
            "offline": asdict(outcome.offline),
        },
    }
    return replace(
        plain,
        rerank=ONLINE,
        **asdict(outcome.online),
        ms_match=timing.ms_match,
        ms_query=plain.ms_query - plain.ms_match + timing.ms_match,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        extra=extra_json(**extra),
    )


def _json(text: str) -> dict:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def outcome_text(name: str, outcome: RerankOutcome, ms_plain: float, ms_rerank: float) -> str:
    """One screen line per ranking: what re-ranking gained and cost."""
    p, on, off = outcome.plain, outcome.online, outcome.offline
    return (
        f"  re-ranking ({name}; k1={outcome.params.k1}, k2={outcome.params.k2}, "
        f"lambda={outcome.params.lambda_value}):\n"
        f"    plain   rank-1 {p.rank1:.1f}%  mAP {p.mAP:.1f}%  match {ms_plain:.3f} ms/query\n"
        f"    online  rank-1 {on.rank1:.1f}%  mAP {on.mAP:.1f}%  match {ms_rerank:.3f} ms/query "
        f"(gallery graph {outcome.fit_seconds:.2f} s once)\n"
        f"    offline rank-1 {off.rank1:.1f}%  mAP {off.mAP:.1f}%  (all queries in one graph)"
    )
