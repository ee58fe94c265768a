"""k-reciprocal re-ranking: what it costs per query against plain matching, at a few gallery sizes.

Identity-clustered float32 embeddings (``--dim``, 8 gallery images per identity, Q = G / 4
queries, as Market-1501's 3,368 / 15,913) stand in for a pipeline's features. At each gallery
size G, on ``--threads`` threads (default 1):

- plain: one query = Euclidean GEMV against the gallery + top-50 (``GalleryIndex.match``);
- online: one query = its distance row (GEMV) + ``OnlineReranker.rerank`` + top-50;
- precomputation: ``OnlineReranker.fit_features`` on the gallery, once (seconds, and in plain
  queries: how many queries it would have answered);
- offline: ``rerank_features`` of every query with the gallery in one graph (the paper's
  evaluation), total seconds and per query.

Per-query costs are medians over ``--timed`` queries, reported as ms and as ratios to plain
matching; mAP (Market-1501 protocol) of the three rankings on the same vectors says what the
cost buys on identity-clustered data. Offline runs only up to ``--offline-max`` items (time
grows as (Q + G)^2).

    python bench/bench_rerank.py [--sizes 1000 4000 16000] [--dim 256] [--out runs/bench]

Writes ``rerank.md`` under ``--out`` (default: ``bench/`` of the runs tree, ``$REID_RUNS_DIR``
or ``runs/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from compare.timing import TOP_K, cpu_model, thread_limit
from data.io import atomic_write_text
from data.matching import GalleryIndex, pairwise_sq_euclidean, topk_from_distances
from data.protocols import evaluate
from data.reranking import OnlineReranker, rerank_features
from data.runs import RunsLayout


class Point(NamedTuple):
    """One gallery size's measurements."""

    gallery: int
    queries: int
    ms_plain: float
    ms_online: float
    fit_s: float
    offline_s: float | None
    map_plain: float
    map_online: float
    map_offline: float | None


def clustered(n_gallery: int, dim: int, seed: int) -> tuple[np.ndarray, ...]:
    """Query and gallery embeddings of identities (8 gallery images each) and their ids."""
    rng = np.random.default_rng(seed)
    n_ids = max(2, n_gallery // 8)
    centres = rng.normal(size=(n_ids, dim)).astype(np.float32)
    g_ids = rng.integers(n_ids, size=n_gallery)
    q_ids = rng.integers(n_ids, size=max(1, n_gallery // 4))
    spread = np.float32(2.0)  # at 256-d, plain mAP about 57%: room for re-ranking to help
    g = centres[g_ids] + spread * rng.normal(size=(n_gallery, dim)).astype(np.float32)
    q = centres[q_ids] + spread * rng.normal(size=(len(q_ids), dim)).astype(np.float32)
    return q, g, q_ids, g_ids


def median_ms(fn, inputs: np.ndarray, timed: int) -> float:
    """Median wall time of ``fn(x)`` over ``timed`` inputs (after 5 warm-up calls), ms."""
    for x in inputs[:5]:
        fn(x)
    times = []
    for i in range(timed):
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        fn(x)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times))


def mean_ap(dist: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray) -> float:
    """Market-1501 mAP with queries and gallery on different cameras (nothing is junk)."""
    cams = np.zeros(len(q_ids), np.int64), np.ones(len(g_ids), np.int64)
    return evaluate(dist, q_ids, g_ids, *cams).mAP


def measure(n_gallery: int, args: argparse.Namespace) -> Point:
    q, g, q_ids, g_ids = clustered(n_gallery, args.dim, args.seed)
    index = GalleryIndex(g, k=TOP_K)
    t0 = time.perf_counter()
    online = OnlineReranker().fit_features(g)
    fit_s = time.perf_counter() - t0

    def online_query(feature: np.ndarray) -> np.ndarray:
        row = np.sqrt(pairwise_sq_euclidean(feature, g, gallery_sq_norms=index.sq_norms))
        return topk_from_distances(online.rerank(row), TOP_K)[0][0]  # row is (1, G)

    ms_plain = median_ms(index.match, q, args.timed)
    ms_online = median_ms(online_query, q, args.timed)
    plain = np.sqrt(pairwise_sq_euclidean(q, g))
    offline_s = map_offline = None
    if len(q) + n_gallery <= args.offline_max:
        t0 = time.perf_counter()
        offline = rerank_features(q, g)
        offline_s = time.perf_counter() - t0
        map_offline = mean_ap(offline, q_ids, g_ids)
    return Point(
        gallery=n_gallery,
        queries=len(q),
        ms_plain=ms_plain,
        ms_online=ms_online,
        fit_s=fit_s,
        offline_s=offline_s,
        map_plain=mean_ap(plain, q_ids, g_ids),
        map_online=mean_ap(online.rerank(plain), q_ids, g_ids),
        map_offline=map_offline,
    )


def markdown(points: list[Point], args: argparse.Namespace) -> str:
    lines = [
        "# k-reciprocal re-ranking: cost per query against plain matching",
        "",
        f"CPU: {cpu_model()}; {args.threads} thread(s); {args.dim}-d identity-clustered float32 "
        "embeddings, Q = G/4 queries; k1=20, k2=6, lambda=0.3. Per-query times are medians over "
        f"{args.timed} queries; ratios are to plain matching (GEMV + top-{TOP_K}). "
        "Precomputation = `OnlineReranker.fit_features` once per gallery. "
        "Command: `python bench/bench_rerank.py "
        f"--sizes {' '.join(map(str, args.sizes))} --dim {args.dim} --threads {args.threads}`.",
        "",
        "| gallery | queries | plain ms/query | online ms/query | online / plain | "
        "precompute s | precompute / plain query | offline s (all queries) | "
        "offline ms/query | offline / plain | mAP plain | mAP online | mAP offline |",
        "|" + "---:|" * 13,
    ]
    for p in points:
        off = (
            ["-", "-", "-", "-"]
            if p.offline_s is None
            else [
                f"{p.offline_s:.1f}",
                f"{1e3 * p.offline_s / p.queries:.2f}",
                f"{1e3 * p.offline_s / p.queries / p.ms_plain:.0f}x",
                f"{100 * p.map_offline:.1f}",
            ]
        )
        lines.append(
            f"| {p.gallery:,} | {p.queries:,} | {p.ms_plain:.3f} | {p.ms_online:.3f} | "
            f"{p.ms_online / p.ms_plain:.1f}x | {p.fit_s:.1f} | "
            f"{1e3 * p.fit_s / p.ms_plain:,.0f} | {' | '.join(off[:3])} | "
            f"{100 * p.map_plain:.1f} | {100 * p.map_online:.1f} | {off[3]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 4000, 16000],
        help="gallery sizes (default 1000 4000 16000)",
    )
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension (256)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (1)")
    parser.add_argument("--timed", type=int, default=200, help="timed queries per point (200)")
    parser.add_argument(
        "--offline-max", type=int, default=20_000, help="largest Q + G run offline (20000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the vectors (0)")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: the runs tree's bench/)"
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.dim < 1 or args.threads < 1 or args.timed < 1:
        parser.error("--sizes must be >= 2 and --dim, --threads, --timed >= 1")
    points = []
    with thread_limit(args.threads):
        for n in args.sizes:
            print(f"gallery {n:,} ...", flush=True)
            points.append(measure(n, args))
    text = markdown(points, args)
    out = (
        RunsLayout.from_env().bench_report("rerank.md")
        if args.out is None
        else args.out / "rerank.md"
    )
    try:
        atomic_write_text(out, text)
    except OSError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
