"""``make tradeoff-plot``: run what is missing, time everything, draw accuracy against ms/query.

``python -m compare.tradeoff --dataset synthetic [--data-root PATH] [--profile quick]``

1. Runs the classical pipeline (``python -m compare.lomo_xqda``) when its row is missing from
   ``runs/<dataset>/results.csv``, and the distillation study (``python -m
   compare.distillation``: :mod:`deep.distill` trains, :mod:`compare.measure` measures) when
   any of the rows its profile produces is missing (``--skip-runs`` runs nothing). Every
   pipeline's queries are timed by :func:`compare.timing.time_queries`.
2. Times every CNN run on every installed inference engine (eager PyTorch, ONNX Runtime,
   OpenVINO; :mod:`deep.export`) that the table has no row for: the run is exported once to
   ``model.onnx`` in its folder (reused while the weights are unchanged), evaluated on the test
   split with each engine and timed with the thread count of its PyTorch row; one row per engine
   (restored from the run's ``summary.json`` when it already holds them). ``--skip-runs``
   skips this too. The plot shows each CNN at its fastest engine; ``tradeoff.md`` lists all.
3. Measures matching time against galleries of 1k to 100k random features at each pipeline's
   real dimension (raw LOMO, the XQDA subspace, 512/1024/2048-d and every CNN embedding size),
   memory-bounded, cached in ``runs/bench/matching_scaling.json``; and approximate search
   (FAISS HNSW / IVF-PQ, :mod:`data.ann`) against exact search on each pipeline's own
   embeddings (its fastest run; the gallery grown to 10k and 100k items with distractors
   fitted to its training embeddings): ms/query, recall@10 / @50, build cost, cached in
   ``runs/bench/ann_scaling.json`` (:mod:`compare.ann_scaling`; ``--no-ann`` skips it).
4. Measures bulk extraction throughput (images/s at batch 64) of every architecture and engine
   in the table, cached in ``runs/<dataset>/cache/throughput.json``.
5. Writes ``runs/<dataset>/tradeoff.png``, ``tradeoff.svg`` and ``tradeoff.md``.

Unless ``--no-rerank`` (``make tradeoff-plot RERANK=0``), step 2 also gives every plain study
point a re-ranked twin (k-reciprocal re-ranking, online per query, :mod:`compare.reranking`):
LOMO+XQDA is fitted again with ``--rerank``, each CNN run re-measured with it on the engine the
plot draws; the plot joins each
re-ranked point to its plain one and ``tradeoff.md`` gets a re-ranking table.

Steps 1-2 are :mod:`compare.study`, 3 :mod:`compare.scaling` and :mod:`compare.ann_scaling`,
4 :mod:`compare.throughput`, 5 :mod:`compare.report`; every pipeline enters them through its
adapter (:mod:`compare.pipelines`).

A second run with nothing changed only reads the caches and redraws (seconds).
"""

from __future__ import annotations

import argparse
import sys
import time

from compare.report import build_report
from compare.study import ensure_engine_rows, ensure_rerank_rows, ensure_runs
from compare.timing import available_threads
from data.cli import entry_point, positive_int
from data.runs import add_runs_dir_argument, layout_from_args
from deep.profiles import PROFILES


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run what is missing, then plot accuracy against ms per query "
        "(make tradeoff-plot)"
    )
    parser.add_argument("--dataset", default="synthetic", help="dataset layout (default synthetic)")
    parser.add_argument("--data-root", default=None, help="dataset folder (real datasets)")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="deep.distill study profile (default quick)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="deep.distill worker processes (default: its own, 2)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for the scaling and throughput measurements "
        "(default: the thread count of the rows)",
    )
    parser.add_argument(
        "--skip-runs",
        action="store_true",
        help="only report existing results (no runs, no timing on other engines)",
    )
    parser.add_argument(
        "--rerank",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also re-ranked points (default; --no-rerank: plain ones only): k-reciprocal "
        "re-ranking (Zhong et al. 2017), online per query, for every pipeline's study rows on "
        "the engine the plot draws (compare.reranking)",
    )
    parser.add_argument("--refresh-scaling", action="store_true", help="re-measure the scaling")
    parser.add_argument("--no-throughput", action="store_true", help="skip batch throughput")
    parser.add_argument(
        "--no-ann",
        action="store_true",
        help="skip the approximate-search (FAISS) curves (compare.ann_scaling)",
    )
    add_runs_dir_argument(parser)
    args = parser.parse_args(argv)
    layout = layout_from_args(args)
    if args.threads is not None and not 1 <= args.threads <= max(available_threads(), 1):
        parser.error(f"--threads must be in 1..{available_threads()}, got {args.threads}")
    start = time.perf_counter()
    if not args.skip_runs:
        ensure_runs(args.dataset, args.data_root, args.profile, args.jobs, layout=layout)
        ensure_engine_rows(args.dataset, args.data_root, layout=layout)
        if args.rerank:
            ensure_rerank_rows(args.dataset, args.data_root, layout=layout)
    out_dir = build_report(
        args.dataset,
        args.data_root,
        threads=args.threads,
        refresh_scaling=args.refresh_scaling,
        throughput=not args.no_throughput,
        ann=not args.no_ann,
        layout=layout,
    )
    print(
        f"\nwrote {out_dir / 'tradeoff.png'}\n      {out_dir / 'tradeoff.svg'}\n      "
        f"{out_dir / 'tradeoff.md'}\n({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
