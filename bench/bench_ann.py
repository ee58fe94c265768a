"""Approximate nearest-neighbour matching (FAISS flat / HNSW / IVF-PQ) against exact search.

For each embedding source, per-query matching time at 10k, 100k and 1M gallery items, recall@10
and recall@50 against exact search, index build time and size (:mod:`compare.ann_scaling`):

* ``cnn``: the shipped pretrained backbone (default ``mobilenet_v1_0.25``, trained as an identity
  classifier on the synthetic pretraining identities) embedding a generated synthetic set
  (``--preset large`` of :mod:`data.synthetic`: 751 train / 750 test identities, ~19.8k images);
* ``xqda``: LOMO + XQDA fitted on that set's training split, gallery and queries in XQDA's
  Euclidean embedding (``XQDA.embedding``: squared distances = XQDA distances);
* ``random``: standard normal vectors at the CNN's dimension (the worst case for graph indexes).

Galleries beyond the real test gallery (~9.6k items) are grown with identity-clustered
distractors fitted to the real *training* embeddings (:mod:`data.distractors`: Gaussian identity
centres with the real between-identity covariance + real within-identity residuals), because
embedding a million generated images is not affordable on this machine. Queries are the real
query embeddings.

The search parameters (HNSW ``efSearch``, IVF ``nprobe``) are chosen per source on a validation
gallery built from the training identities only (one query image per identity, the rest plus
distractors as the gallery, 100k items): the smallest value whose recall@10 reaches
``--target-recall``. Timing with 1 thread (``--threads``), builds with ``--build-threads``.

    python bench/bench_ann.py [--sources cnn xqda random] [--sizes 10000 100000 1000000]
        [--out runs/bench/ann.md] [--work runs/bench/ann_work]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from classical.pipeline import ClassicalConfig, LomoXqda
from compare.ann_scaling import EmbeddingSet, ann_scaling
from compare.timing import cpu_model, thread_limit, time_queries
from data.ann import MatchingConfig, build_matcher, recall_at
from data.cli import positive_int
from data.distractors import fit_identity_statistics
from data.io import atomic_write_text
from data.layouts import load_dataset
from data.matching import topk_chunked
from data.runs import RunsLayout
from data.synthetic import PRESETS, ensure_synthetic
from deep.export import engine_embeddings, load_engine
from deep.loader import load_records
from deep.models import build_model
from deep.pretrained import initialise, read_metadata

SOURCES = ("cnn", "xqda", "random")
EF_SEARCH = (16, 32, 64, 128, 256, 512)
NPROBE = (4, 8, 16, 32, 64, 128)
TUNE_SIZE = 100_000
#: Query-time parameters (the sweeps set them; not part of what is built).
SEARCH_FIELDS = ("hnsw_ef_search", "ivf_nprobe")


def _splits(dataset) -> dict[str, tuple[list, np.ndarray]]:
    out = {}
    for name in ("train", "query", "gallery"):
        records = getattr(dataset, name)
        out[name] = (records, np.array([r.pid for r in records]))
    return out


def cnn_embeddings(dataset, model_name: str, threads: int) -> dict[str, np.ndarray]:
    """The shipped backbone's embeddings of every split (at its pretraining input size)."""
    size = tuple(read_metadata(model_name)["input_size"])
    model = build_model(model_name, num_classes=1)
    initialise(model, model_name, "pretrained")
    engine = load_engine(model, "torch", threads=threads, input_size=size)
    out = {}
    with thread_limit(threads):
        for name, (records, _) in _splits(dataset).items():
            out[name] = engine_embeddings(engine, load_records(records, size))
    return out


def xqda_embeddings(dataset, cache_dir: Path, threads: int) -> dict[str, np.ndarray]:
    """LOMO + XQDA fitted on the training split; every split in XQDA's Euclidean embedding."""
    pipeline = LomoXqda(ClassicalConfig(progress=False), cache_dir)
    splits = _splits(dataset)
    with thread_limit(threads):
        train = pipeline.lomo(splits["train"][0], "train")
        pipeline.fit(train, splits["train"][0])
        out = {"train": (pipeline.project(train) @ pipeline.model.embedding_).astype(np.float32)}
        for name in ("query", "gallery"):
            features = pipeline.lomo(splits[name][0], name)
            out[name] = (pipeline.project(features) @ pipeline.model.embedding_).astype(np.float32)
    return out


def load_embeddings(args, source: str, dataset) -> dict[str, np.ndarray]:
    """Embeddings of every split, cached in ``--work`` (recomputed when absent)."""
    path = args.work / f"{source}_{args.model if source == 'cnn' else 'lomo_xqda'}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    t0 = time.perf_counter()
    if source == "cnn":
        out = cnn_embeddings(dataset, args.model, args.build_threads)
    else:
        out = xqda_embeddings(dataset, args.work / "lomo_cache", args.build_threads)
    print(f"{source} embeddings in {time.perf_counter() - t0:.0f} s: {out['gallery'].shape}")
    args.work.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def validation_split(train: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(queries, gallery) from training identities only: the first image of every identity
    with two or more images is a query, every other image is in the gallery."""
    first = {}
    for i, pid in enumerate(pids):
        first.setdefault(pid, i)
    counts = dict(zip(*np.unique(pids, return_counts=True), strict=True))
    q_idx = np.array([i for pid, i in first.items() if counts[pid] >= 2])
    g_mask = np.ones(len(pids), bool)
    g_mask[q_idx] = False
    return train[q_idx], train[g_mask]


def _sweep_time(index, queries: np.ndarray, threads: int) -> float:
    def no_extraction(feature: np.ndarray) -> np.ndarray:
        return feature

    n = min(200, len(queries))
    return time_queries(
        no_extraction, index.match, list(queries[:n]), num_queries=n, warmup=2, threads=threads
    ).ms_match


def _variants(args) -> list[tuple[str, MatchingConfig, str, tuple[int, ...]]]:
    """(label, matcher, tuned parameter, its candidate values) for the validation sweep."""
    variants = [
        ("hnsw", MatchingConfig("hnsw"), "ef_search", EF_SEARCH),
        ("ivfpq", MatchingConfig("ivfpq"), "nprobe", NPROBE),
    ]
    if args.refine:
        refine = MatchingConfig("ivfpq", refine=args.refine)
        variants.append(("ivfpq+refine", refine, "nprobe", NPROBE))
    return variants


def choose(rows: list[dict], target: float) -> int:
    """The smallest value whose recall@10 reaches ``target``; when none does (PQ's
    quantisation caps recall), the smallest within 0.01 of the best recall reached."""
    reached = [r for r in rows if r["recall10"] >= target]
    if not reached:
        best = max(r["recall10"] for r in rows)
        reached = [r for r in rows if r["recall10"] >= best - 0.01]
    return min(r["value"] for r in reached)


def _sweep(index, valid: EmbeddingSet, exact: np.ndarray, label: str, field: str, values, args):
    rows = []
    for value in values:
        index.set_search(**{field: value})
        with thread_limit(args.build_threads):
            found = index.search(valid.queries, 50)[0]
        row = {
            "source": valid.source,
            "variant": label,
            "parameter": field,
            "value": value,
            "recall10": recall_at(found, exact, 10),
            "recall50": recall_at(found, exact, 50),
            "ms_match": _sweep_time(index, valid.queries, args.threads),
        }
        rows.append(row)
        print(f"  tune {valid.source} {label} {field}={value}: {row}")
    return rows


def tune(valid: EmbeddingSet, args) -> tuple[dict, list[dict]]:
    """Search parameter of every variant chosen on the validation gallery (:func:`choose`).

    Sweeps are cached in ``<work>/tune.json`` by validation set, variant and values.
    """
    cache_path = args.work / "tune.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    gallery = exact = None
    chosen, sweep = {}, []
    for label, config, field, values in _variants(args):
        built = {k: v for k, v in config.as_dict().items() if k not in SEARCH_FIELDS}
        key = f"{valid.source}|{valid.fingerprint()}|{TUNE_SIZE}|{built}|{values}"
        if key not in cache:
            if gallery is None:
                gallery, _ = valid.grown_gallery(TUNE_SIZE)
                with thread_limit(args.build_threads):
                    exact = topk_chunked(valid.queries, gallery, 50)[0]
            index = build_matcher(gallery, k=50, config=config, threads=args.build_threads)
            cache[key] = _sweep(index, valid, exact, label, field, values, args)
            del index
            atomic_write_text(cache_path, json.dumps(cache, indent=1))
        chosen[label] = choose(cache[key], args.target_recall)
        sweep += cache[key]
    return chosen, sweep


def configs_for(chosen: dict, args) -> list[MatchingConfig]:
    """Exact, FAISS flat, and every swept variant at its chosen search parameter."""
    configs = [MatchingConfig("exact"), MatchingConfig("faiss-flat")]
    for label, config, field, _ in _variants(args):
        key = "hnsw_ef_search" if field == "ef_search" else "ivf_nprobe"
        configs.append(replace(config, **{key: chosen[label]}))
    return configs


def markdown(points, tuned: dict, args) -> str:
    lines = [
        "# ANN matching: FAISS indexes against exact search",
        "",
        f"Machine: {cpu_model()}; timing with {args.threads} thread(s) (load: the 1-minute "
        "load average when timed; above the core count, other processes share the CPU and "
        "every time is inflated). Galleries beyond the real test gallery are grown with "
        "identity-clustered distractors fitted to the training embeddings (data.distractors); "
        "queries are the real query embeddings. Search parameters chosen on validation "
        f"(training identities, {TUNE_SIZE:,} items) for recall@10 >= {args.target_recall}: "
        f"{json.dumps(tuned)}.",
        "",
        "| source | dim | gallery | real | method | params | ms/query (p90) | recall@10 | "
        "recall@50 | build s (threads) | index MB | load |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.source} | {p.dim} | {p.gallery_size:,} | {p.real_items:,} | {p.label} | "
            f"{p.params} | {p.ms_match:.3f} ({p.ms_match_p90:.3f}) | {p.recall10:.3f} | "
            f"{p.recall50:.3f} | {p.build_seconds:.1f} ({p.build_threads}) | {p.index_mb:.0f} | "
            f"{p.load_average:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sources", nargs="+", choices=SOURCES, default=list(SOURCES),
        help="embeddings to measure: cnn, xqda, random (default all)",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", nargs="+", type=positive_int, default=[10_000, 100_000, 1_000_000],
        help="gallery sizes (default 10000 100000 1000000)",
    )  # fmt: skip
    parser.add_argument("--model", default="mobilenet_v1_0.25", help="shipped backbone (cnn)")
    parser.add_argument(
        "--data-root", type=Path, default=None,
        help="synthetic dataset folder (default: <work>/synthetic_large, generated when missing)",
    )  # fmt: skip
    bench = RunsLayout.from_env()
    parser.add_argument(
        "--work", type=Path, default=bench.bench_report("ann_work"),
        help="embeddings, dataset and caches (default runs/bench/ann_work)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=bench.bench_report("ann.md"),
        help="markdown report; a .json beside it (default runs/bench/ann.md)",
    )  # fmt: skip
    parser.add_argument("--queries", type=positive_int, default=300, help="queries scored")
    parser.add_argument("--threads", type=positive_int, default=1, help="timing threads")
    parser.add_argument(
        "--build-threads", type=positive_int, default=1,
        help="threads for index builds and embedding (default 1: deterministic HNSW)",
    )  # fmt: skip
    parser.add_argument(
        "--refine", type=int, default=4,
        help="also IVF-PQ re-ranking refine*k candidates exactly (0: not measured; default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--target-recall", type=float, default=0.95,
        help="recall@10 the validation sweep chooses parameters for (default 0.95)",
    )  # fmt: skip
    parser.add_argument("--refresh", action="store_true", help="re-measure cached points")
    args = parser.parse_args(argv)
    if not 0 < args.target_recall <= 1:
        parser.error(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if args.refine < 0:
        parser.error(f"--refine must be >= 0, got {args.refine}")
    return args


def source_sets(args, source: str, dataset) -> tuple[EmbeddingSet, EmbeddingSet]:
    """(test set, validation set) of one source."""
    rng = np.random.default_rng(0)
    if source == "random":
        dim = load_embeddings(args, "cnn", dataset)["gallery"].shape[1]
        q, g = rng.standard_normal((2, args.queries + 10_000, dim), dtype=np.float32)
        make = lambda name, s: EmbeddingSet(name, q[: args.queries], g[:10_000], None, s)  # noqa: E731
        return make("random", 0), make("random-validation", 1)
    emb = load_embeddings(args, source, dataset)
    splits = _splits(dataset)
    train_pids = splits["train"][1]
    stats = fit_identity_statistics(emb["train"], train_pids)
    name = args.model if source == "cnn" else "LOMO+XQDA"
    picks = rng.choice(len(emb["query"]), min(args.queries, len(emb["query"])), replace=False)
    test = EmbeddingSet(name, emb["query"][np.sort(picks)], emb["gallery"], stats, 0)
    vq, vg = validation_split(emb["train"], train_pids)
    valid = EmbeddingSet(f"{name}-validation", vq[: args.queries], vg, stats, 1)
    return test, valid


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.data_root or args.work / "synthetic_large"
    if args.data_root is None:
        ensure_synthetic(root, seed=0, config=PRESETS["large"])
    dataset = load_dataset("synthetic", root)
    cache = args.out.with_suffix(".json")
    all_points, tuned, sweeps = [], {}, []
    for source in args.sources:
        test, valid = source_sets(args, source, dataset)
        tuned[test.source], sweep = tune(valid, args)
        sweeps += sweep
        all_points += ann_scaling(
            test, args.sizes, configs_for(tuned[test.source], args),
            threads=args.threads, build_threads=args.build_threads,
            cache_path=args.work / f"points_{source}.json", refresh=args.refresh,
        )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, markdown(all_points, tuned, args))
    record = {"tuned": tuned, "sweep": sweeps, "points": [asdict(p) for p in all_points]}
    atomic_write_text(cache, json.dumps(record, indent=1))
    print(f"wrote {args.out} and {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
