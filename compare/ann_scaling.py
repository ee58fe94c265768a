"""Per-query matching time and recall of every matcher (exact, FAISS flat / HNSW / IVF-PQ)
against gallery size, on a pipeline's embeddings.

A gallery of ``n`` items = the real test gallery embeddings, plus identity-clustered
distractors fitted to the real embeddings (:mod:`data.distractors`) when ``n`` exceeds it (as
Market-1501's 500k distractors grow its gallery). The queries are the real query embeddings.
For each matcher: build time and index size, per-query matching time through
:func:`compare.timing.time_queries` (the same (b) as every pipeline's ms/query), and recall@10 /
@50 of its top 50 against exact search. Points are cached in a JSON file keyed by the machine,
the library versions, the embeddings' fingerprint and every setting.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from compare.timing import cpu_model, thread_limit, time_queries
from data.ann import MatchingConfig, build_matcher, recall_at
from data.distractors import IdentityStatistics, sample_distractors
from data.io import atomic_write_text
from data.matching import topk_chunked

RECALL_KS = (10, 50)


@dataclass(frozen=True)
class AnnPoint:
    """One matcher on one gallery size of one embedding source."""

    source: str  # whose embeddings, e.g. "mobilenet_v1_0.25", "XQDA", "random"
    dim: int
    gallery_size: int
    real_items: int  # items of the gallery that are real embeddings (the rest: distractors)
    method: str
    params: str  # the MatchingConfig that differs from the defaults, as JSON
    ms_match: float  # median per-query matching time
    ms_match_p90: float
    recall10: float
    recall50: float
    build_seconds: float
    index_mb: float
    num_queries: int
    threads: int
    build_threads: int = 1
    load_average: float = float("nan")  # 1-minute load when timed (other processes' share)

    @property
    def label(self) -> str:
        """The method, ``+refine`` for IVF-PQ re-ranked with exact distances."""
        refined = json.loads(self.params).get("refine", 0)
        return self.method + ("+refine" if refined else "")


@dataclass
class EmbeddingSet:
    """A pipeline's embeddings: real queries, real gallery and what grows the gallery."""

    source: str
    queries: np.ndarray
    gallery: np.ndarray
    statistics: IdentityStatistics | None  # None: grow with the gallery's own distribution
    seed: int = 0

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.queries, self.gallery):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]

    def grown_gallery(self, n: int) -> tuple[np.ndarray, int]:
        """(gallery of n items, how many of them are real)."""
        real = min(n, len(self.gallery))
        if n <= len(self.gallery):
            return np.ascontiguousarray(self.gallery[:n], dtype=np.float32), real
        if self.statistics is None:
            rng = np.random.default_rng(self.seed)
            extra = rng.standard_normal((n - real, self.gallery.shape[1]), dtype=np.float32)
        else:
            extra = sample_distractors(self.statistics, n - real, seed=self.seed)[0]
        return np.concatenate([self.gallery.astype(np.float32), extra]), real


def _params(config: MatchingConfig) -> str:
    default = MatchingConfig(method=config.method).as_dict()
    changed = {k: v for k, v in config.as_dict().items() if v != default[k]}
    return json.dumps(changed, sort_keys=True)


def _time_matching(match_one, queries: np.ndarray, threads: int, target_seconds: float):
    """time_queries with a no-op extraction; query count adapted to about target_seconds."""

    def no_extraction(feature: np.ndarray) -> np.ndarray:
        return feature

    with thread_limit(threads):
        t0 = time.perf_counter()
        match_one(queries[0])
        once = max(time.perf_counter() - t0, 1e-6)
    n = int(np.clip(target_seconds / once, 5, min(500, 5 * len(queries))))
    return time_queries(
        no_extraction, match_one, list(queries), num_queries=n, warmup=2, threads=threads
    )


def measure_point(
    embeddings: EmbeddingSet,
    gallery: np.ndarray,
    real: int,
    config: MatchingConfig,
    exact_top: np.ndarray,
    *,
    threads: int = 1,
    build_threads: int = 1,
    target_seconds: float = 1.0,
) -> AnnPoint:
    """Build ``config``'s matcher over ``gallery``, time it and score its recall."""
    k = max(RECALL_KS)
    matcher = build_matcher(gallery, k=k, config=config, threads=build_threads)
    timing = _time_matching(matcher.match, embeddings.queries, threads, target_seconds)
    with thread_limit(build_threads):
        found = matcher.search(embeddings.queries, k)[0]
    recalls = [recall_at(found, exact_top, r) for r in RECALL_KS]
    point = AnnPoint(
        source=embeddings.source,
        dim=int(gallery.shape[1]),
        gallery_size=len(gallery),
        real_items=real,
        method=config.method,
        params=_params(config),
        ms_match=timing.ms_match,
        ms_match_p90=timing.ms_match_p90,
        recall10=recalls[0],
        recall50=recalls[1],
        build_seconds=float(matcher.build_seconds),
        index_mb=matcher.nbytes / 2**20,
        num_queries=timing.num_queries,
        threads=timing.threads,
        build_threads=build_threads,
        load_average=os.getloadavg()[0],
    )
    del matcher
    gc.collect()
    return point


def _cache_key(embeddings: EmbeddingSet, n: int, config: MatchingConfig, threads: int) -> str:
    import faiss

    return "|".join(
        [
            cpu_model(),
            f"numpy {np.__version__}",
            f"faiss {faiss.__version__}",
            f"threads {threads}",
            embeddings.source,
            embeddings.fingerprint(),
            f"seed {embeddings.seed}",
            f"n {n}",
            json.dumps(config.as_dict(), sort_keys=True),
        ]
    )


def _read_cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a broken cache is only a cache: measure again
    return cache if isinstance(cache, dict) else {}


def ann_scaling(
    embeddings: EmbeddingSet,
    sizes: Sequence[int],
    configs: Sequence[MatchingConfig],
    *,
    threads: int = 1,
    build_threads: int = 1,
    cache_path: Path | str | None = None,
    refresh: bool = False,
    target_seconds: float = 1.0,
    log: Callable[[str], None] | None = print,
) -> list[AnnPoint]:
    """:func:`measure_point` for every (size, matcher), from and into the cache.

    The exact top 50 of every query is computed once per size (blocked GEMM) as the recall
    reference. The cache is written after every new point, so an interrupted run resumes.
    ``target_seconds``: about how long each point's timing runs (5 to 500 queries).
    """
    cache_path = Path(cache_path) if cache_path is not None else None
    cache = _read_cache(cache_path)
    points = []
    for n in sorted({int(s) for s in sizes}):
        keys = [_cache_key(embeddings, n, c, threads) for c in configs]
        todo = [i for i, key in enumerate(keys) if refresh or key not in cache]
        gallery = exact_top = real = None
        for i, (config, key) in enumerate(zip(configs, keys, strict=True)):
            if i in todo:
                if gallery is None:
                    gallery, real = embeddings.grown_gallery(n)
                    with thread_limit(build_threads):
                        exact_top = topk_chunked(embeddings.queries, gallery, max(RECALL_KS))[0]
                point = measure_point(
                    embeddings, gallery, real, config, exact_top,
                    threads=threads, build_threads=build_threads, target_seconds=target_seconds,
                )  # fmt: skip
                cache[key] = asdict(point)
                if cache_path is not None:
                    atomic_write_text(cache_path, json.dumps(cache, indent=1, sort_keys=True))
                if log is not None:
                    log(
                        f"  {point.source:>18} {n:>9,} {config.method:>10}: "
                        f"{point.ms_match:8.3f} ms/query, recall@10 {point.recall10:.3f} "
                        f"@50 {point.recall50:.3f}, build {point.build_seconds:.1f} s, "
                        f"{point.index_mb:.0f} MB"
                    )
            points.append(AnnPoint(**cache[key]))
        del gallery
        gc.collect()
    return points
