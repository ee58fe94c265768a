"""Evaluate a trained run on every inference engine: accuracy, ms per query, size; rows.

``evaluate_run`` measures the run's accuracy (both AP variants, Euclidean and cosine) and times
its queries (:func:`compare.timing.time_engine_queries`) on each engine of
:data:`deep.export.ENGINES` that is installed: eager PyTorch, and ONNX Runtime and OpenVINO on
the model exported once to ``RUN_DIR/model.onnx`` (:func:`deep.export.export_run`). Each engine's
accuracy comes from its own embeddings of the test split, and is compared with PyTorch's (largest
embedding difference, rank-1/mAP difference, queries whose ranking changed). ``summary.json``
keeps PyTorch's numbers at the top level, as before, and every engine's under ``engines``; the
results table gets one row per engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from compare.results import ResultRow, extra_json, upsert_rows
from compare.timing import available_threads, machine_info, time_engine_queries
from data.images import load_image
from data.io import atomic_write_text
from data.layouts import ReidDataset, load_dataset
from data.matching import (
    GalleryIndex,
    pairwise_cosine_distance,
    pairwise_sq_euclidean,
    topk_from_distances,
)
from data.paths import REPO_ROOT, run_dir_for
from data.protocols import evaluate
from deep.checkpoint import load_checkpoint
from deep.data import load_records
from deep.export import (
    ENGINES,
    EngineNotInstalled,
    ExportError,
    available_engines,
    check_engines,
    engine_embeddings,
    export_run,
    load_engine,
    weights_hash,
)
from deep.models import model_complexity
from deep.train import model_from_state

#: Gallery items each timed query ranks (top-k), as in every pipeline.
TOP_K = 50


def evaluate_run(
    run_dir: Path | str,
    *,
    dataset: ReidDataset | None = None,
    num_timed_queries: int = 100,
    threads: int | None = 1,
    table: bool | None = None,
    engines: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Evaluate ``run_dir/model.pt`` on each engine; write ``summary.json`` and results rows.

    Parameters
    ----------
    run_dir : path
        A finished run folder (``model.pt``).
    dataset : ReidDataset, optional
        The run's dataset, already loaded (default: loaded from the run's config).
    num_timed_queries : int
        Single queries timed per engine.
    threads : int or None
        Threads every engine computes with (None = all cores).
    table : bool or None
        ``None`` adds the rows to the shared ``runs/<dataset>/results.csv`` only for run folders
        under ``runs/<dataset>/deep`` (where ``make train`` and ``make distill`` put them): a run
        trained elsewhere with ``--out`` is an experiment and must not replace the study's rows
        for the same model, variant and seed. ``True`` / ``False`` force it.
    engines : sequence of str, optional
        Engines to time and write rows for (default: every installed one, an export failure then
        only skipping that engine with a warning). PyTorch's accuracy is always measured (the
        reference); when ``torch`` is not asked for, its earlier timing is kept from the
        summary of the same weights, or it is timed too if there is none.
    """
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / "model.pt")
    model, cfg = model_from_state(state), state["config"]
    strict = engines is not None
    wanted = check_engines(engines) if strict else available_engines()
    weights = weights_hash(state["model"])
    previous = _previous_summary(run_dir, weights)
    if "torch" not in wanted and previous is None:
        wanted = ["torch", *wanted]
    dataset = dataset or load_dataset(cfg["dataset"], cfg["data_root"])
    size = tuple(int(v) for v in cfg["input_size"])
    threads = available_threads() if threads is None else int(threads)
    split = _Split(dataset, size, num_timed_queries)

    results: dict[str, dict] = {}
    failed: dict[str, str] = {}
    reference = None
    exported = None
    for name in ["torch", *[e for e in ENGINES if e in wanted and e != "torch"]]:
        try:
            if name == "torch":
                engine = load_engine(model, "torch", threads=threads, input_size=size)
            else:
                exported = exported or export_run(run_dir, state=state)
                engine = load_engine(exported.path, name, threads=threads, input_size=size)
        except (EngineNotInstalled, ExportError) as err:
            if strict:
                raise
            failed[name] = str(err)
            print(f"warning: {name} skipped for {run_dir}: {err}")
            continue
        entry, q, g = _evaluate_engine(engine, split)
        if reference is None:
            reference = (q, g, entry)
        else:
            entry["vs_torch"] = _versus(reference, q, g, entry)
            entry["onnx"] = {
                "path": exported.path.name,
                "sha256": exported.record.get("onnx_sha256"),
                "export_check_max_abs_diff": exported.record.get("check", {}).get("max_abs_diff"),
            }
        if name in wanted:
            timing = time_engine_queries(
                engine,
                GalleryIndex(g, k=TOP_K).match,
                split.query_images,
                num_queries=num_timed_queries,
                threads=threads,
            )
            entry["timing"] = timing.as_dict()
        elif previous is not None:  # torch as the reference only: keep its earlier timing
            entry["timing"] = previous["engines"]["torch"]["timing"]
        results[name] = entry

    summary = _summary(run_dir, state, model, size, results, previous, weights, threads)
    if failed:
        summary["engines_failed"] = failed
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    table_path = run_dir_for(cfg["dataset"]) / "results.csv"
    if table is None:
        table = run_dir.resolve().is_relative_to((table_path.parent / "deep").resolve())
    if table:
        upsert_rows(table_path, [row_from_summary(summary, run_dir, e) for e in results])
    else:
        print(f"{run_dir} is outside {table_path.parent / 'deep'}: not added to {table_path}")
    for name, entry in results.items():
        t = entry["timing"]
        print(
            f"{cfg['model']} ({cfg['variant']}, seed {cfg['seed']}, {name}): "
            f"rank-1 {100 * entry['rank1']:.1f}% mAP {100 * entry['mAP']:.1f}%  "
            f"ms/query {t['ms_query']:.2f} (extract {t['ms_extract']:.2f} + match "
            f"{t['ms_match']:.3f})"
        )
    return summary


class _Split:
    """The test split loaded once for every engine: images at the input size, ids, cameras."""

    def __init__(self, dataset: ReidDataset, size: tuple[int, int], num_timed: int) -> None:
        self.images = {s: load_records(getattr(dataset, s), size) for s in ("query", "gallery")}
        ids = {s: np.array([r.pid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
        cams = {s: np.array([r.camid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
        self.labels = (ids["query"], ids["gallery"], cams["query"], cams["gallery"])
        # timed queries start from the decoded image, as a query arrives
        self.query_images = [load_image(r.path) for r in dataset.query[:num_timed]]


def _evaluate_engine(engine, split: _Split) -> tuple[dict, np.ndarray, np.ndarray]:
    """Accuracy of one engine's embeddings of the test split, and the embeddings."""
    q = engine_embeddings(engine, split.images["query"])
    g = engine_embeddings(engine, split.images["gallery"])
    euclid = pairwise_sq_euclidean(q, g)
    official = evaluate(euclid, *split.labels)
    torchreid = evaluate(euclid, *split.labels, ap="torchreid")
    cosine = evaluate(pairwise_cosine_distance(q, g), *split.labels)
    entry = {
        "engine": engine.name,
        "rank1": official.rank(1),
        "rank5": official.rank(5),
        "rank10": official.rank(10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "cosine": {"rank1": cosine.rank(1), "mAP": cosine.mAP},
        "embedding_dim": int(q.shape[1]),
    }
    return entry, q, g


def _versus(reference: tuple, q: np.ndarray, g: np.ndarray, entry: dict) -> dict:
    """How an engine's results differ from PyTorch's (embeddings, top-k rankings, accuracy)."""
    q0, g0, entry0 = reference
    k = min(TOP_K, len(g))
    top0 = topk_from_distances(pairwise_sq_euclidean(q0, g0), k)[0]
    top = topk_from_distances(pairwise_sq_euclidean(q, g), k)[0]
    return {
        "max_abs_diff": float(max(np.abs(q - q0).max(), np.abs(g - g0).max())),
        "rank1_diff": 100 * (entry["rank1"] - entry0["rank1"]),
        "mAP_diff": 100 * (entry["mAP"] - entry0["mAP"]),
        "queries_with_other_top1": int((top0[:, 0] != top[:, 0]).sum()),
        "queries_with_other_topk": int((top0 != top).any(axis=1).sum()),
        "k": k,
        "num_queries": len(q),
    }


def _previous_summary(run_dir: Path, weights: str) -> dict | None:
    """The run's earlier summary if it holds per-engine results of these same weights."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(summary, dict)
        and summary.get("weights_sha256") == weights
        and "timing" in summary.get("engines", {}).get("torch", {})
    )
    return summary if ok else None


def _summary(
    run_dir: Path,
    state: dict,
    model,
    size: tuple[int, int],
    results: dict[str, dict],
    previous: dict | None,
    weights: str,
    threads: int,
) -> dict:
    """``summary.json``: PyTorch's numbers at the top level, every engine's under ``engines``."""
    cfg = state["config"]
    engines = dict(previous["engines"]) if previous is not None else {}
    engines.update(results)
    torch_entry = engines["torch"]
    params, gflops = model_complexity(model, size)
    return {
        "run_dir": str(run_dir),
        "model": cfg["model"],
        "variant": cfg["variant"],
        "seed": cfg["seed"],
        "dataset": cfg["dataset"],
        "input_size": list(size),
        "init": cfg.get("init", "scratch"),
        "rank1": torch_entry["rank1"],
        "rank5": torch_entry["rank5"],
        "rank10": torch_entry["rank10"],
        "mAP": torch_entry["mAP"],
        "mAP_torchreid": torch_entry["mAP_torchreid"],
        "cosine": torch_entry["cosine"],
        "params": params,
        "gflops": gflops,
        "embedding_dim": torch_entry["embedding_dim"],
        "timing": torch_entry["timing"],
        "engines": {e: engines[e] for e in ENGINES if e in engines},
        "weights_sha256": weights,
        "machine": machine_info(threads),
        "config": cfg,
        # Last epoch's loss / accuracy on the training set and the training wall time (absent
        # for runs trained before they were recorded).
        "training": state.get("training", {}),
        # Which weights the run started from (deep.pretrained: init, file, sha256).
        "init_weights": state.get("init", {"init": cfg.get("init", "scratch")}),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def summary_engines(summary: dict) -> list[str]:
    """Engines a summary holds results for (``["torch"]`` for summaries before engines)."""
    return list(summary.get("engines", {})) or ["torch"]


def row_from_summary(summary: dict, run_dir: Path | str, engine: str = "torch") -> ResultRow:
    """The results-table row of a finished run on ``engine``, rebuilt from its ``summary.json``.

    Used after evaluation and whenever a finished run is reused, so that a lost or deleted row
    reappears without retraining.
    """
    run_dir = Path(run_dir)
    cfg = summary["config"]
    entry = summary.get("engines", {}).get(engine)
    if entry is None:
        if engine != "torch":
            raise KeyError(f"{run_dir}/summary.json has no results for engine {engine!r}")
        entry = summary  # written before engines were recorded: PyTorch's numbers
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
    timing = entry["timing"]
    if timing.get("engine_options"):
        extra["engine_options"] = timing["engine_options"]
    if "vs_torch" in entry:
        extra["vs_torch"] = entry["vs_torch"]
    size = summary["input_size"]
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
        rank1=100 * entry["rank1"],
        rank5=100 * entry["rank5"],
        rank10=100 * entry["rank10"],
        mAP=100 * entry["mAP"],
        mAP_torchreid=100 * entry["mAP_torchreid"],
        ms_extract=timing["ms_extract"],
        ms_match=timing["ms_match"],
        ms_query=timing["ms_query"],
        ms_query_p90=timing["ms_query_p90"],
        threads=timing["threads"],
        device=summary.get("device", "cpu"),
        engine=engine,
        init=str(cfg.get("init", "scratch")),
        run_dir=rel,
        extra=extra_json(**extra),
    )


def rows_from_summary(summary: dict, run_dir: Path | str) -> list[ResultRow]:
    """One row per engine the summary holds results for."""
    return [row_from_summary(summary, run_dir, e) for e in summary_engines(summary)]


def main(argv: list[str] | None = None) -> int:
    """``python -m deep.evaluate RUN_DIR...``: (re-)evaluate and re-time finished runs.

    Useful to re-time every model on a quiet machine after a study whose runs were timed while
    other jobs shared the CPU; accuracy is deterministic and comes out unchanged. Every
    installed engine is timed unless ``--engines`` names some.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders holding model.pt")
    parser.add_argument("--threads", type=int, default=1, help="threads for timing")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=None,
        help="inference engines to time (default: every installed one)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        if not (run_dir / "model.pt").exists():
            print(f"error: no model.pt in {run_dir}", file=sys.stderr)
            return 2
    try:
        for run_dir in args.run_dirs:
            evaluate_run(run_dir, threads=args.threads, engines=args.engines)
    except (EngineNotInstalled, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
