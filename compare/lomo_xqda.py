"""``make lomo-xqda``: the classical pipeline fitted, scored, timed, and entered in the results.

1. :func:`classical.pipeline.run` fits LOMO + XQDA and scores it on the dataset's protocol
   (Market-1501 evaluation, or Liao's two-view trials for VIPeR / CUHK01 / CUHK03);
2. milliseconds per query through the pipeline's interface: ``extract`` (LOMO of one decoded
   query image, resize included, + projection) then ``matcher.match`` (XQDA distances to the
   projected gallery + top-k), batch size 1, median over at least 100 queries (cycled when
   there are fewer), one thread unless ``--threads`` says otherwise; trial 0's probes and
   gallery for the two-view protocols;
3. the timing added to the run's ``summary.json``, a row of ``runs/<dataset>/results.csv``
   (keyed by the run name, which holds every setting that changes the numbers) and a
   one-screen summary.

    python -m compare.lomo_xqda --dataset synthetic
    python -m compare.lomo_xqda --dataset cuhk01 --data-root /data/CUHK01   # multi-shot
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from classical.pipeline import (
    ClassicalConfig,
    FittedRun,
    accuracy_text,
    config_from_args,
    config_parser,
    run,
    write_summary,
)
from compare.reranking import outcome_text, rerank_matcher, rerank_split, reranked_row
from compare.results import (
    ResultRow,
    check_table,
    extra_json,
    repo_relative,
    upsert_rows,
)
from compare.timing import TOP_K, TimingResult, machine_info, thread_limit, time_queries
from data.cli import entry_point, positive_int
from data.images import load_image, size_text
from data.layouts import record_arrays


def time_fitted(fitted: FittedRun, *, threads: int | None, num_timed_queries: int) -> TimingResult:
    """Per-query latency: decoded query image -> LOMO -> projection -> XQDA ranking."""
    pipeline = fitted.pipeline
    query_images = [load_image(r.path) for r in fitted.queries[:num_timed_queries]]
    matcher = pipeline.matcher(fitted.projected_gallery, TOP_K)
    with thread_limit(None):  # compile/warm the kernels outside the timed region
        pipeline.extract(query_images[0])
    return time_queries(
        pipeline.extract,
        matcher.match,
        query_images,
        num_queries=max(100, num_timed_queries),
        threads=threads,
    )


def result_row(fitted: FittedRun, timing: TimingResult) -> ResultRow:
    """The run's results-table row (the two-view protocols report the CMC only: no mAP)."""
    s, config, model = fitted.summary, fitted.pipeline.config, fitted.pipeline.model
    feature_dim, xqda_dim = int(model.n_features_in_), int(model.n_components_)
    market = s["protocol"] == "market"
    extra = {"protocol": s["protocol"]}
    if not market:
        extra.update(
            trials=s["num_trials"],
            split_seed=config.split_seed,
            rank20=100 * s["rank20"],
            rank1_std=100 * s["rank1_std"],
            published_rank1=None if s["published"] is None else s["published"]["rank1"],
        )
    return ResultRow(
        dataset=config.dataset,
        pipeline="classical",
        model=s["run_name"],
        variant="classical",
        seed=0,
        input_size=size_text(config.input_size),
        params=int(model.components_.size + model.metric_.size),
        gflops=float("nan"),
        embedding_dim=xqda_dim,
        rank1=100 * s["rank1"],
        rank5=100 * s["rank5"],
        rank10=100 * s["rank10"],
        mAP=100 * s["mAP"] if market else float("nan"),
        mAP_torchreid=100 * s["mAP_torchreid"] if market else float("nan"),
        ms_extract=timing.ms_extract,
        ms_match=timing.ms_match,
        ms_query=timing.ms_query,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        device="cpu",
        run_dir=repo_relative(fitted.out_dir),
        extra=extra_json(
            retinex=config.retinex,
            feature_dim=feature_dim,
            xqda_dim=xqda_dim,
            reg=config.reg,
            solver=config.solver,
            n_components=config.n_components,
            projection_gflops=2 * feature_dim * xqda_dim / 1e9,
            gflops_note="LOMO is integer histogram work; FLOPs not meaningful",
            **extra,
        ),
    )


def reranked(
    fitted: FittedRun, plain: ResultRow, *, threads: int | None, num_timed_queries: int
) -> tuple[ResultRow, str]:
    """The run's re-ranked row (:mod:`compare.reranking`): XQDA distances of the whole split
    re-ranked online and offline, the online re-ranking timed query by query."""
    if fitted.projected_queries is None or fitted.gallery is None:
        raise ValueError(
            f"--rerank needs the Market-1501 evaluation (one query set, one gallery), not the "
            f"{fitted.summary['protocol']} protocol"
        )
    pipeline, q, g = fitted.pipeline, fitted.projected_queries, fitted.projected_gallery
    matcher = pipeline.matcher(g, TOP_K)
    labels = (*record_arrays(fitted.queries), *record_arrays(fitted.gallery))
    labels = (labels[0], labels[2], labels[1], labels[3])  # ids, ids, cameras, cameras
    q_g, g_g = matcher.distance_matrix(q), matcher.distance_matrix(g)
    q_q = pipeline.matcher(q, TOP_K).distance_matrix(q)
    outcome, reranker = rerank_split(q_g, q_q, g_g, labels)
    query_images = [load_image(r.path) for r in fitted.queries[:num_timed_queries]]
    timing = time_queries(
        pipeline.extract,
        rerank_matcher(matcher.distances, reranker, TOP_K),
        query_images,
        num_queries=max(100, num_timed_queries),
        threads=threads,
    )
    text = outcome_text("XQDA distances", outcome, plain.ms_match, timing.ms_match)
    return reranked_row(plain, outcome, timing), text


def timing_text(s: dict, out_dir: Path, table: Path | None) -> str:
    t, sec = s["timing"], s["seconds"]
    return (
        f"  ms/query {t['ms_query']:.2f} = LOMO+projection {t['ms_extract']:.2f} + matching "
        f"{t['ms_match']:.3f} (p90 {t['ms_query_p90']:.2f}; median of {t['num_queries']}, "
        f"{t['threads']} thread(s))\n"
        f"  features {sec['features']:.1f} s, fit {sec['fit']:.1f} s, total {sec['total']:.1f} s\n"
        f"  wrote {out_dir / 'summary.json'}" + (f" and a row of {table}" if table else "")
    )


def measure(
    config: ClassicalConfig,
    *,
    threads: int | None = 1,
    num_timed_queries: int = 100,
    rerank: bool = False,
) -> FittedRun:
    """Fit and score (:func:`classical.pipeline.run`), time, and upsert the results row (and,
    with ``rerank``, its re-ranked twin, :func:`reranked`)."""
    protocol = config.validate()
    if rerank and protocol != "market":
        raise ValueError(
            f"--rerank needs the Market-1501 evaluation (--protocol market), not {protocol}"
        )
    table = config.layout().results_table(config.dataset)
    if config.in_study_tree():
        check_table(table)  # a broken results table stops us before the work, not after
    fitted = run(config)
    timing = time_fitted(fitted, threads=threads, num_timed_queries=num_timed_queries)
    fitted.summary.update(timing=timing.as_dict(), machine=machine_info(timing.threads))
    if fitted.summary["protocol"] != "market":
        fitted.summary["timing_note"] = "trial 0: its probes against its gallery, one by one"
    rows = [result_row(fitted, timing)]
    if rerank:
        row, text = reranked(fitted, rows[0], threads=threads, num_timed_queries=num_timed_queries)
        rows.append(row)
        fitted.summary["rerank"] = {"row": asdict(row), "text": text}
    write_summary(fitted)
    if config.in_study_tree():
        upsert_rows(table, rows)
    else:
        print(f"{fitted.out_dir} is outside {table.parent / 'classical'}: not added to {table}")
    return fitted


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("LOMO + XQDA: fit, score, time, and add a results row (make lomo-xqda)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="threads for the per-query timing (default 1; extraction and fitting use all cores)",
    )
    parser.add_argument(
        "--num-timed-queries",
        type=positive_int,
        default=100,
        help="single queries timed (cycled when the query set is smaller; at least 100)",
    )
    parser.add_argument(
        "--rerank",
        action="store_true",
        help="also a re-ranked row: k-reciprocal re-ranking (Zhong et al. 2017), online per "
        "query, timed in the matching (Market-1501 evaluation only)",
    )
    args = parser.parse_args(argv)
    config = config_from_args(args)
    fitted = measure(
        config,
        threads=args.threads,
        num_timed_queries=args.num_timed_queries,
        rerank=args.rerank,
    )
    print(accuracy_text(fitted.summary))
    table = config.layout().results_table(config.dataset) if config.in_study_tree() else None
    print(timing_text(fitted.summary, fitted.out_dir, table))
    if "rerank" in fitted.summary:
        print(fitted.summary["rerank"]["text"])
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
