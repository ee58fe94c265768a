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

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from compare.pipelines import RunRef, derived_rows, pipeline, pipelines
from compare.timing import cpu_model, thread_limit, time_queries
from data.ann import MatchingConfig, build_matcher, recall_at
from data.distractors import IdentityStatistics, fit_identity_statistics, sample_distractors
from data.io import atomic_write_text
from data.layouts import ReidDataset
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
    del matcher  # freed now (reference counting): the next index may be as large
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
    return points


# ---------------------------------------------------------------------------------------------
# The study's report: the ANN curves of each pipeline's embeddings
# ---------------------------------------------------------------------------------------------
#: Gallery sizes of the study's ANN curves (1M: ``bench/bench_ann.py``).
ANN_SIZES = (10_000, 100_000)
#: Matchers of the study's ANN curves, at the defaults chosen on validation (README).
STUDY_CONFIGS = (
    MatchingConfig("exact"),
    MatchingConfig("faiss-flat"),
    MatchingConfig("hnsw"),
    MatchingConfig("ivfpq"),
    MatchingConfig("ivfpq", refine=4),
)


def ann_runs(df: pd.DataFrame) -> list[RunRef]:
    """One run per pipeline whose adapter gives ANN features: its fastest row (not a derived
    variant, with a run folder), as the representative of its embedding."""
    runs = []
    rows = df[~derived_rows(df)]
    for adapter in pipelines():
        mine = rows[(rows.pipeline.astype(str) == adapter.name) & rows.run_dir.notna()]
        if not mine.empty:
            runs.append(RunRef.from_row(mine.sort_values(["ms_query", "seed"]).iloc[0]))
    return runs


def embedding_set(run: RunRef, dataset: ReidDataset, threads: int) -> EmbeddingSet | None:
    """The run's real query / gallery features and distractors fitted to its training ones."""
    adapter = pipeline(run.pipeline)
    features = adapter.ann_features(run, dataset, threads)
    if features is None:
        return None
    stats = fit_identity_statistics(features["train"], np.array([r.pid for r in dataset.train]))
    name = f"{adapter.short_name(run.model)} {int(features['gallery'].shape[1])}-d"
    return EmbeddingSet(name, features["query"], features["gallery"], stats, seed=0)


def ann_table(
    df: pd.DataFrame,
    load_dataset: Callable[[], ReidDataset],
    *,
    threads: int,
    sizes: Sequence[int] = ANN_SIZES,
    cache_path: Path | str,
    refresh: bool = False,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Every matcher of :data:`STUDY_CONFIGS` on every representative run's embedding
    (:func:`ann_runs`), at ``sizes``; cached (:func:`ann_scaling`).

    ``load_dataset`` is called once, when the first run's features are needed. A run whose
    features cannot be computed (no weights, no images) is skipped with a line in ``notes``
    rather than failing the report; the table is empty when no run gives features.
    """
    points, dataset = [], None
    for run in ann_runs(df):
        try:
            dataset = dataset or load_dataset()
            embeddings = embedding_set(run, dataset, threads)
        except (OSError, ValueError, RuntimeError, ImportError, KeyError) as err:
            if notes is not None:
                notes.append(f"approximate search not measured for {run.model}: {err}")
            continue
        if embeddings is None:
            continue
        points += ann_scaling(
            embeddings, sizes, STUDY_CONFIGS, threads=threads, build_threads=threads,
            cache_path=cache_path, refresh=refresh,
        )  # fmt: skip
    table = pd.DataFrame([asdict(p) for p in points])
    if not table.empty:
        table["label"] = [p.label for p in points]
    return table


def ann_markdown(table: pd.DataFrame) -> str:
    """One row per (embedding, gallery size, matcher): time, recall, build cost, size."""
    lines = [
        "| embedding | gallery | matcher | ms/query | recall@10 | recall@50 | build s | MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in table.sort_values(["source", "gallery_size"], kind="stable").itertuples():
        lines.append(
            f"| {r.source} | {r.gallery_size:,} | {r.label} | {r.ms_match:.3g} | "
            f"{r.recall10:.3f} | {r.recall50:.3f} | {r.build_seconds:.1f} | {r.index_mb:.0f} |"
        )
    return "\n".join(lines)


def when_index_pays(table: pd.DataFrame, *, min_recall: float = 0.95) -> list[str]:
    """Per embedding: the smallest measured gallery from which an index answers faster than
    the exact GEMV with recall@10 >= ``min_recall``, its speed-up and recall@10 / @50."""
    out = []
    for source, sub in table.groupby("source", sort=False):
        exact = sub[sub.method == "exact"].set_index("gallery_size").ms_match
        best = None
        for r in sub[~sub.method.isin(["exact", "faiss-flat"])].itertuples():
            if r.gallery_size not in exact.index or r.recall10 < min_recall:
                continue
            speedup = exact[r.gallery_size] / r.ms_match
            if speedup > 1 and (best is None or (r.gallery_size, -speedup) < best[0]):
                best = ((r.gallery_size, -speedup), r, speedup)
        if best is None:
            out.append(
                f"{source}: no index beat exact search at recall@10 >= {min_recall} up to "
                f"{int(sub.gallery_size.max()):,} items."
            )
            continue
        _, r, speedup = best
        where = (
            f"already at {r.gallery_size:,} items (the smallest gallery measured)"
            if r.gallery_size == sub.gallery_size.min()
            else f"from {r.gallery_size:,} items"
        )
        out.append(
            f"{source}: {where}, {r.label} answers "
            f"in {r.ms_match:.3g} ms instead of {exact[r.gallery_size]:.3g} ms ({speedup:.0f}x) "
            f"at recall@10 {r.recall10:.3f}, recall@50 {r.recall50:.3f}; build "
            f"{r.build_seconds:.0f} s, {r.index_mb:.0f} MB."
        )
    return out
