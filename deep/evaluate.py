"""Evaluate a trained run: accuracy (both AP variants), ms per query, size; summary + table row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from compare.evaluation import evaluate
from compare.matching import GalleryIndex, pairwise_cosine_distance, pairwise_sq_euclidean
from compare.results import ResultRow, atomic_write_text, extra_json, upsert_rows
from compare.timing import machine_info, time_queries
from data.images import load_image
from data.layouts import ReidDataset, load_dataset
from data.paths import REPO_ROOT, run_dir_for
from deep.checkpoint import load_checkpoint
from deep.data import preprocess_image
from deep.features import extract_embeddings
from deep.models import model_complexity
from deep.train import model_from_state


def evaluate_run(
    run_dir: Path | str,
    *,
    dataset: ReidDataset | None = None,
    num_timed_queries: int = 100,
    threads: int | None = 1,
    table: bool | None = None,
) -> dict:
    """Evaluate ``run_dir/model.pt``; write ``summary.json`` and a results row.

    ``table=None`` adds the row to the shared ``runs/<dataset>/results.csv`` only for run folders
    under ``runs/<dataset>/deep`` (where ``make train`` and ``make distill`` put them): a run
    trained elsewhere with ``--out`` is an experiment and must not replace the study's row for
    the same model, variant and seed. ``True`` / ``False`` force it.
    """
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / "model.pt")
    model, cfg = model_from_state(state), state["config"]
    dataset = dataset or load_dataset(cfg["dataset"], cfg["data_root"])
    size = tuple(cfg["input_size"])
    q = extract_embeddings(model, dataset.query, size)
    g = extract_embeddings(model, dataset.gallery, size)
    ids = {s: np.array([r.pid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
    cams = {s: np.array([r.camid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
    args = (ids["query"], ids["gallery"], cams["query"], cams["gallery"])
    euclid = pairwise_sq_euclidean(q, g)
    official = evaluate(euclid, *args)
    torchreid = evaluate(euclid, *args, ap="torchreid")
    cosine = evaluate(pairwise_cosine_distance(q, g), *args)

    index = GalleryIndex(g, k=50)
    query_images = [load_image(r.path) for r in dataset.query[:num_timed_queries]]

    def extract_one(image: np.ndarray) -> np.ndarray:
        return model.extract(preprocess_image(image, size))[0].numpy()

    timing = time_queries(
        extract_one, index.match, query_images, num_queries=num_timed_queries, threads=threads
    )
    params, gflops = model_complexity(model, size)
    summary = {
        "run_dir": str(run_dir),
        "model": cfg["model"],
        "variant": cfg["variant"],
        "seed": cfg["seed"],
        "dataset": cfg["dataset"],
        "input_size": list(size),
        "rank1": official.rank(1),
        "rank5": official.rank(5),
        "rank10": official.rank(10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "cosine": {"rank1": cosine.rank(1), "mAP": cosine.mAP},
        "params": params,
        "gflops": gflops,
        "embedding_dim": int(q.shape[1]),
        "timing": timing.as_dict(),
        "machine": machine_info(timing.threads),
        "config": cfg,
        # Last epoch's loss / accuracy on the training set and the training wall time (absent
        # for runs trained before they were recorded).
        "training": state.get("training", {}),
    }
    summary["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    results = run_dir_for(cfg["dataset"]) / "results.csv"
    if table is None:
        table = run_dir.resolve().is_relative_to((results.parent / "deep").resolve())
    if table:
        upsert_rows(results, [row_from_summary(summary, run_dir)])
    else:
        print(f"{run_dir} is outside {results.parent / 'deep'}: not added to {results}")
    print(
        f"{cfg['model']} ({cfg['variant']}, seed {cfg['seed']}): "
        f"rank-1 {100 * official.rank(1):.1f}% "
        f"mAP {100 * official.mAP:.1f}%  ms/query {timing.ms_query:.2f} "
        f"(extract {timing.ms_extract:.2f} + match {timing.ms_match:.3f})"
    )
    return summary


def row_from_summary(summary: dict, run_dir: Path | str) -> ResultRow:
    """The results-table row of a finished run, rebuilt from its ``summary.json``.

    Used after evaluation and whenever a finished run is reused, so that a lost or deleted row
    reappears without retraining.
    """
    run_dir = Path(run_dir)
    cfg = summary["config"]
    try:
        rel = str(run_dir.resolve().relative_to(REPO_ROOT))
    except ValueError:
        rel = str(run_dir)
    extra = {k: cfg[k] for k in ("epochs", "lr", "batch_size")}
    training = summary.get("training", {})
    if "accuracy" in training:
        extra.update(
            train_acc=round(100 * training["accuracy"], 1),
            train_min=round(training["seconds"] / 60, 2),
        )
    if cfg["variant"] == "distilled":
        extra.update(T=cfg["kd_T"], alpha=cfg["kd_alpha"], feature_weight=cfg["kd_feature_weight"])
    size = summary["input_size"]
    timing = summary["timing"]
    return ResultRow(
        dataset=cfg["dataset"],
        pipeline="deep",
        model=cfg["model"],
        variant=cfg["variant"],
        seed=int(cfg["seed"]),
        input_size=f"{size[0]}x{size[1]}",
        params=int(summary["params"]),
        gflops=float(summary["gflops"]),
        embedding_dim=int(summary["embedding_dim"]),
        rank1=100 * summary["rank1"],
        rank5=100 * summary["rank5"],
        rank10=100 * summary["rank10"],
        mAP=100 * summary["mAP"],
        mAP_torchreid=100 * summary["mAP_torchreid"],
        ms_extract=timing["ms_extract"],
        ms_match=timing["ms_match"],
        ms_query=timing["ms_query"],
        ms_query_p90=timing["ms_query_p90"],
        threads=timing["threads"],
        device=summary.get("device", "cpu"),
        run_dir=rel,
        extra=extra_json(**extra),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m deep.evaluate RUN_DIR...``: (re-)evaluate and re-time finished runs.

    Useful to re-time every model on a quiet machine after a study whose runs were timed while
    other jobs shared the CPU; accuracy is deterministic and comes out unchanged.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders holding model.pt")
    parser.add_argument("--threads", type=int, default=1, help="threads for timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        if not (run_dir / "model.pt").exists():
            print(f"error: no model.pt in {run_dir}", file=sys.stderr)
            return 2
    for run_dir in args.run_dirs:
        evaluate_run(run_dir, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
