"""Measure a trained CNN run on every inference engine: accuracy, ms per query, size; rows.

:func:`measure_run` measures the run's accuracy (both AP variants, Euclidean and cosine;
:func:`deep.evaluation.score_embeddings`) and times its queries
(:func:`compare.timing.time_engine_queries`) on each engine of :data:`deep.export.ENGINES` that
is installed: eager PyTorch, and ONNX Runtime and OpenVINO on the model exported once to
``RUN_DIR/model.onnx`` (:func:`deep.export.export_run`). Each engine's accuracy comes from its
own embeddings of the test split, and is compared with PyTorch's (largest embedding difference,
rank-1/mAP difference, queries whose ranking changed). The int8 engines
(:data:`deep.export.INT8_ENGINES`, asked for with ``--engines``) run the model quantised by
:func:`deep.quantize.quantize_run`, calibrated on the run's training images; their accuracy is
that of the int8 model's own embeddings. ``summary.json`` keeps PyTorch's numbers at the top
level and every engine's under ``engines``; the results table gets one row per engine.

A measurement belongs to the test data it was made on (:meth:`data.layouts.ReidDataset.
test_fingerprint`, recorded as ``test_data`` in ``summary.json``). A run's own data is the data
it was first measured on (else the data it was trained on); ``--data-root`` pointing at a moved
copy of it measures the run as usual, but a *different* dataset of the same layout is measured
into ``RUN_DIR/other_data/<fingerprint>/`` (its own ``summary.json`` and ``results.csv``), never
into the run's summary or the study's table.

    python -m compare.measure runs/synthetic/deep/resnet18/baseline_seed0 [--data-root DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from compare.cnn_summary import CnnSummary
from compare.reranking import (
    PLAIN,
    RerankOutcome,
    outcome_text,
    rerank_embeddings,
    reranked_from_entry,
)
from compare.results import (
    ResultRow,
    check_table,
    extra_json,
    repo_relative,
    upsert_rows,
)
from compare.timing import TOP_K, available_threads, machine_info, time_engine_queries
from data.cli import entry_point, non_negative_int, positive_int
from data.images import load_image, size_text
from data.io import remove_orphan_temporaries
from data.layouts import ReidDataset, load_dataset
from data.matching import GalleryIndex, topk_chunked
from data.runs import RunsLayout, add_runs_dir_argument, layout_from_args
from deep.checkpoint import model_from_state
from deep.evaluation import score_embeddings, split_labels
from deep.export import (
    ALL_ENGINES,
    INT8_ENGINES,
    EngineNotInstalled,
    ExportError,
    available_engines,
    check_engines,
    engine_embeddings,
    export_run,
    load_engine,
)
from deep.loader import load_records
from deep.models import ReIDNet, model_complexity
from deep.quantize import QuantizeError, quantize_run
from deep.run_folder import RunFolder
from deep.train import RUN_OUTPUTS, worker_pool


def measure_run(
    run_dir: Path | str,
    *,
    layout: RunsLayout,
    dataset: ReidDataset | None = None,
    data_root: str | None = None,
    num_timed_queries: int = 100,
    threads: int | None = 1,
    table: bool | None = None,
    engines: list[str] | tuple[str, ...] | None = None,
    rerank: bool = False,
) -> dict:
    """Measure ``run_dir/model.pt`` on each engine; write ``summary.json`` and results rows.

    Parameters
    ----------
    run_dir : path
        A finished run folder (``model.pt``).
    layout : RunsLayout
        The runs tree whose results table the rows go to (see ``table``).
    dataset : ReidDataset, optional
        The run's dataset, already loaded (default: loaded from the run's config, from
        ``data_root`` when given: a dataset moved since training).
    data_root : str, optional
        Where the run's dataset is now (default: where it was when the run was trained).
    num_timed_queries : int
        Single queries timed per engine.
    threads : int or None
        Threads every engine computes with (None = all cores).
    table : bool or None
        ``None`` adds the rows to the dataset's shared results table of ``layout`` only for
        run folders under its ``deep`` folder (where ``make train`` and ``make distill`` put
        them): a run trained elsewhere with ``--out`` is an experiment and must not replace
        the study's rows for the same model, variant and seed. ``True`` / ``False`` force it.
    engines : sequence of str, optional
        Engines to time and write rows for (default: every installed one, an export failure then
        only skipping that engine with a warning). PyTorch's accuracy is always measured (the
        reference); when ``torch`` is not asked for, its earlier timing is kept from the
        summary of the same weights, or it is timed too if there is none.
    rerank : bool
        Also re-rank each timed engine's test split (:mod:`compare.reranking`: online and
        offline accuracy, the re-ranking matcher timed) and write a re-ranked row beside its
        plain one.
    """
    folder = RunFolder(run_dir)
    run_dir = folder.path
    state = folder.model_state()
    remove_orphan_temporaries(run_dir, RUN_OUTPUTS)  # what a killed export or write left
    cfg = state["config"]
    if dataset is None:
        dataset = load_dataset(cfg["dataset"], data_root or cfg["data_root"])
    size = tuple(int(v) for v in cfg["input_size"])
    threads = available_threads() if threads is None else int(threads)
    test_data = dataset.test_fingerprint()
    place = _MeasurementPlace.of(folder, layout, test_data, data_root)
    if place.other_data:
        print(f"{data_root} is not the data {run_dir} was measured on: measured into {place.dir}")
        table = True
    weights = folder.weights_sha256()
    previous = _previous_summary(place.folder, weights, test_data)
    strict = engines is not None
    wanted = check_engines(engines) if strict else available_engines()
    if "torch" not in wanted and previous is None:
        wanted = ["torch", *wanted]
    split = _Split(dataset, size, num_timed_queries)
    model = model_from_state(state)
    results, failed = _measure_engines(
        run_dir, state, model, split, wanted, previous, threads, strict, rerank
    )
    summary = _summary(run_dir, state, model, size, results, previous, weights, threads)
    summary.update(test_data=test_data, engines_failed=failed)
    record = CnnSummary.from_json(summary, run_dir / "summary.json")
    place.folder.write_summary(record.to_json())
    rows = [row for e in results for row in engine_rows(record, run_dir, e)]
    _record_rows(run_dir, place.table, rows, table, place.study_tree)
    for name, entry in results.items():
        _print_entry(cfg, name, entry)
    return record.to_json()


def _measure_engines(
    run_dir: Path,
    state: dict,
    model: ReIDNet,
    split: _Split,
    wanted: list[str],
    previous: dict | None,
    threads: int,
    strict: bool,
    rerank: bool = False,
) -> tuple[dict[str, dict], dict[str, str]]:
    """Accuracy on every engine (PyTorch first, the reference) and timing on the wanted ones."""
    size = split.size
    results: dict[str, dict] = {}
    failed: dict[str, str] = {}
    reference = exported = None
    for name in ["torch", *[e for e in ALL_ENGINES if e in wanted and e != "torch"]]:
        quantized = None
        try:
            if name == "torch":
                engine = load_engine(model, "torch", threads=threads, input_size=size)
            else:
                exported = exported or export_run(run_dir, state=state)
                source = exported.path
                if name in INT8_ENGINES:  # calibrated on the run's training images
                    quantized = quantize_run(
                        run_dir, name, dataset=split.dataset, state=state, exported=exported
                    )
                    source = quantized.path
                engine = load_engine(source, name, threads=threads, input_size=size)
        except (EngineNotInstalled, ExportError, QuantizeError) as err:
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
            if quantized is not None:
                entry["int8"] = _int8_entry(quantized)
        if rerank and name in wanted:
            entry["rerank"] = rerank_embeddings(
                q,
                g,
                split.labels,
                lambda match, engine=engine: time_engine_queries(
                    engine,
                    match,
                    split.query_images,
                    num_queries=split.num_timed,
                    threads=threads,
                ),
            )
        if name in wanted:
            timing = time_engine_queries(
                engine,
                GalleryIndex(g, k=TOP_K).match,
                split.query_images,
                num_queries=split.num_timed,
                threads=threads,
            )
            entry["timing"] = timing.as_dict()
        elif previous is not None:  # torch as the reference only: keep its earlier timing
            entry["timing"] = previous["engines"]["torch"]["timing"]
            if "rerank" in previous["engines"]["torch"]:  # and its re-ranking (same weights)
                entry["rerank"] = previous["engines"]["torch"]["rerank"]
        results[name] = entry
    return results, failed


def _int8_entry(quantized) -> dict:
    """What a summary keeps of an int8 file: where, its hash, settings and calibration cost."""
    record = quantized.record
    return {
        "path": quantized.path.name,
        "sha256": record["int8_sha256"],
        "settings": record["settings"],
        "calibration": record["calibration"],
        "seconds": record["seconds"],
        "operations": record["operations"],
    }


class _MeasurementPlace:
    """Where a measurement goes: the run folder and its dataset's results table, or, for test
    data other than the run's own, ``RUN_DIR/other_data/<fingerprint>/`` and a table there."""

    def __init__(self, folder: RunFolder, table: Path, study_tree: bool, other: bool) -> None:
        self.folder, self.table, self.study_tree, self.other_data = folder, table, study_tree, other
        self.dir = folder.path

    @classmethod
    def of(
        cls, folder: RunFolder, layout: RunsLayout, test_data: str, data_root: str | None
    ) -> _MeasurementPlace:
        if _own_test_data(folder, test_data, data_root) == test_data:
            dataset = folder.model_state()["config"]["dataset"]
            in_tree = layout.holds(folder.path, layout.deep_dir(dataset))
            return cls(folder, layout.results_table(dataset), in_tree, False)
        other = folder.path / "other_data" / test_data
        return cls(RunFolder(other), other / "results.csv", False, True)


def _own_test_data(folder: RunFolder, test_data: str, data_root: str | None) -> str:
    """The fingerprint of the run's own test data: the one its summary records (the data it was
    first measured on); else that of the data it was trained on when ``data_root`` names
    another folder and that one is still there; else ``test_data`` (no other data given, or
    the run's dataset moved)."""
    recorded = (folder.summary() or {}).get("test_data")
    if recorded:
        return str(recorded)
    cfg = folder.model_state()["config"]
    own_root = cfg.get("data_root")
    if data_root is None or not own_root or not Path(own_root).is_dir():
        return test_data
    if Path(own_root).resolve() == Path(data_root).resolve():
        return test_data
    try:
        return load_dataset(cfg["dataset"], own_root).test_fingerprint()
    except (ValueError, OSError):
        return test_data


def check_tables(run_dirs: list[Path], layout: RunsLayout) -> None:
    """Fail now, before measuring anything, if a shared results table that the rows of
    ``run_dirs`` would go to is broken (a folder, garbage, cut off) or cannot be written."""
    for run_dir in run_dirs:
        dataset = RunFolder(run_dir).model_state()["config"]["dataset"]
        if layout.holds(run_dir, layout.deep_dir(dataset)):
            check_table(layout.results_table(dataset))


def _record_rows(
    run_dir: Path, table_path: Path, rows: list[ResultRow], table: bool | None, in_tree: bool
) -> None:
    """Upsert the run's rows into ``table_path`` if ``table`` says so, or (``table`` None) if
    the run belongs to the study's tree (``in_tree``)."""
    if table is None:
        table = in_tree
        if not table:
            print(f"{run_dir} is outside {table_path.parent / 'deep'}: not added to {table_path}")
    if table:
        upsert_rows(table_path, rows)


def _print_entry(cfg: dict, name: str, entry: dict) -> None:
    t = entry["timing"]
    print(
        f"{cfg['model']} ({cfg['variant']}, seed {cfg['seed']}, {name}): "
        f"rank-1 {100 * entry['rank1']:.1f}% mAP {100 * entry['mAP']:.1f}%  "
        f"ms/query {t['ms_query']:.2f} (extract {t['ms_extract']:.2f} + match "
        f"{t['ms_match']:.3f})"
    )
    if "rerank" in entry:
        outcome = RerankOutcome.from_dict(entry["rerank"]["outcome"])
        ms = entry["rerank"]["timing"]["ms_match"]
        print(outcome_text(f"{name}, Euclidean", outcome, t["ms_match"], ms))


class _Split:
    """The test split loaded once for every engine: images at the input size, ids, cameras."""

    def __init__(self, dataset: ReidDataset, size: tuple[int, int], num_timed: int) -> None:
        self.dataset, self.size, self.num_timed = dataset, size, num_timed
        self.images = {s: load_records(getattr(dataset, s), size) for s in ("query", "gallery")}
        self.labels = split_labels(dataset.query, dataset.gallery)
        # timed queries start from the decoded image, as a query arrives
        self.query_images = [load_image(r.path) for r in dataset.query[:num_timed]]


def _evaluate_engine(engine, split: _Split) -> tuple[dict, np.ndarray, np.ndarray]:
    """Accuracy of one engine's embeddings of the test split, and the embeddings."""
    q = engine_embeddings(engine, split.images["query"])
    g = engine_embeddings(engine, split.images["gallery"])
    return {"engine": engine.name, **score_embeddings(q, g, split.labels)}, q, g


def _versus(reference: tuple, q: np.ndarray, g: np.ndarray, entry: dict) -> dict:
    """How an engine's results differ from PyTorch's (embeddings, top-k rankings, accuracy)."""
    q0, g0, entry0 = reference
    k = min(TOP_K, len(g))
    top0 = topk_chunked(q0, g0, k)[0]
    top = topk_chunked(q, g, k)[0]
    return {
        "max_abs_diff": float(max(np.abs(q - q0).max(), np.abs(g - g0).max())),
        "rank1_diff": 100 * (entry["rank1"] - entry0["rank1"]),
        "mAP_diff": 100 * (entry["mAP"] - entry0["mAP"]),
        "queries_with_other_top1": int((top0[:, 0] != top[:, 0]).sum()),
        "queries_with_other_topk": int((top0 != top).any(axis=1).sum()),
        "k": k,
        "num_queries": len(q),
    }


def _previous_summary(folder: RunFolder, weights: str, test_data: str) -> dict | None:
    """The earlier summary at ``folder`` if it holds per-engine results of the weights of the
    run now, measured on the same test data (summaries before ``test_data`` was recorded were
    measured on the run's own)."""
    summary = folder.summary()
    if summary is None or summary.get("weights_sha256") != weights:
        return None
    same_data = summary.get("test_data", test_data) == test_data
    timed = "timing" in summary.get("engines", {}).get("torch", {})
    return summary if same_data and timed else None


def _summary(
    run_dir: Path,
    state: dict,
    model: ReIDNet,
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
        "engines": {e: engines[e] for e in ALL_ENGINES if e in engines},
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


def summary_engines(summary: dict | CnnSummary) -> list[str]:
    """Engines a summary holds results for (``["torch"]`` for summaries before engines)."""
    return list(_record(summary).engines)


def _record(summary: dict | CnnSummary, run_dir: Path | str = "") -> CnnSummary:
    if isinstance(summary, CnnSummary):
        return summary
    return CnnSummary.from_json(summary, Path(run_dir) / "summary.json")


def row_from_summary(
    summary: dict | CnnSummary, run_dir: Path | str, engine: str = "torch"
) -> ResultRow:
    """The results-table row of a finished run on ``engine``, rebuilt from its summary (the
    typed :class:`compare.cnn_summary.CnnSummary`, or its JSON).

    Used after evaluation and whenever a finished run is reused, so that a lost or deleted row
    reappears without retraining.
    """
    run_dir = Path(run_dir)
    record = _record(summary, run_dir)
    cfg = record.config
    entry = record.engines.get(engine)
    if entry is None:
        raise KeyError(f"{run_dir}/summary.json has no results for engine {engine!r}")
    extra = {k: cfg[k] for k in ("epochs", "lr", "batch_size")}
    training = record.training
    if "accuracy" in training:
        extra.update(
            train_acc=round(100 * training["accuracy"], 1),
            train_min=round(training["seconds"] / 60, 2),
        )
    if record.variant == "distilled":
        extra.update(T=cfg["kd_T"], alpha=cfg["kd_alpha"], feature_weight=cfg["kd_feature_weight"])
    timing = entry.timing
    if timing.get("engine_options"):
        extra["engine_options"] = timing["engine_options"]
    if entry.vs_torch is not None:
        extra["vs_torch"] = entry.vs_torch
    if entry.int8 is not None:
        extra["int8"] = entry.int8["settings"]
    return ResultRow(
        dataset=record.dataset,
        pipeline="deep",
        model=record.model,
        variant=record.variant,
        seed=record.seed,
        input_size=size_text(record.input_size),
        params=record.params,
        gflops=record.gflops,
        embedding_dim=record.embedding_dim,
        rank1=100 * entry.rank1,
        rank5=100 * entry.rank5,
        rank10=100 * entry.rank10,
        mAP=100 * entry.mAP,
        mAP_torchreid=100 * entry.mAP_torchreid,
        ms_extract=timing["ms_extract"],
        ms_match=timing["ms_match"],
        ms_query=timing["ms_query"],
        ms_query_p90=timing["ms_query_p90"],
        threads=timing["threads"],
        device=record.device,
        engine=engine,
        init=record.init,
        run_dir=repo_relative(run_dir),
        extra=extra_json(**extra),
    )


def engine_rows(summary: dict | CnnSummary, run_dir: Path | str, engine: str) -> list[ResultRow]:
    """The plain row of ``engine`` and, when the summary holds its re-ranking, the re-ranked."""
    record = _record(summary, run_dir)
    plain = row_from_summary(record, run_dir, engine)
    rerank = record.engines[engine].rerank
    return [plain] + ([reranked_from_entry(plain, rerank)] if rerank is not None else [])


def rows_from_summary(summary: dict | CnnSummary, run_dir: Path | str) -> list[ResultRow]:
    """The rows of every engine the summary holds results for (re-ranked ones included)."""
    record = _record(summary, run_dir)
    return [row for e in record.engines for row in engine_rows(record, run_dir, e)]


def current_rows(run_dir: Path, engines: list[str]) -> list[ResultRow]:
    """Rows of ``engines`` rebuilt from the run's ``summary.json`` when it holds them for the
    weights in ``model.pt`` now (a retrained run's old summary does not count)."""
    summary = RunFolder(run_dir).current_summary()
    if summary is None:
        return []
    held = summary.get("engines", {})
    timed = [e for e in engines if "timing" in held.get(e, {})]
    return [row for e in timed for row in engine_rows(summary, run_dir, e)]


def _measure_job(
    run_dir: str, layout: RunsLayout, data_root: str | None, rerank: bool = False
) -> str:
    measure_run(run_dir, layout=layout, data_root=data_root, rerank=rerank)
    return f"measured {run_dir}"


def measure_runs(
    run_dirs: list[Path],
    layout: RunsLayout,
    *,
    data_root: str | None = None,
    jobs: int = 1,
    rerank: bool = False,
) -> None:
    """Rows for every run: restored from its summary when that holds every installed engine
    for the current weights (and their re-ranking, with ``rerank``), else measured (``jobs``
    runs at a time, in worker processes)."""
    engines = available_engines()
    todo = []
    for run_dir in run_dirs:
        rows = current_rows(run_dir, engines)
        plain = sum(r.rerank == PLAIN for r in rows)
        if plain == len(engines) and (not rerank or len(rows) == 2 * plain):
            dataset = rows[0].dataset
            in_tree = layout.holds(run_dir, layout.deep_dir(dataset))
            _record_rows(run_dir, layout.results_table(dataset), rows, None, in_tree)
        else:
            todo.append(str(run_dir))
    if not todo:
        return
    with worker_pool(jobs) as pool:
        for future in [pool.submit(_measure_job, r, layout, data_root, rerank) for r in todo]:
            print(future.result(), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="run folders holding model.pt")
    run = parser.add_argument_group(
        "or name the run as deep.train does (its folder in the runs tree, as make train)"
    )
    run.add_argument("--model", default=None, help="architecture of the run")
    run.add_argument("--dataset", default="synthetic", help="dataset layout (default synthetic)")
    run.add_argument("--variant", default="baseline", help="run label (default baseline)")
    run.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="threads every engine computes with"
    )
    parser.add_argument(
        "--num-timed-queries", type=positive_int, default=100, help="single queries timed"
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="where the runs' dataset is now (default: where it was when they were trained); "
        "another dataset is measured into RUN_DIR/other_data/",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ALL_ENGINES,
        default=None,
        help="inference engines to time (default: every installed float32 one; the int8 ones "
        "are quantised on the run's training images first, deep.quantize)",
    )
    parser.add_argument(
        "--rerank",
        action="store_true",
        help="also re-ranked rows: k-reciprocal re-ranking (Zhong et al. 2017), online per "
        "query, timed in the matching",
    )
    add_runs_dir_argument(parser)
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m compare.measure RUN_DIR...``: (re-)measure and re-time finished CNN runs.

    Useful to re-time every model on a quiet machine after a study whose runs were timed while
    other jobs shared the CPU; accuracy is deterministic and comes out unchanged. Every
    installed engine is timed unless ``--engines`` names some.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    layout = layout_from_args(args)
    if bool(args.run_dirs) == bool(args.model):
        parser.error("give run folders, or --model (with --dataset, --variant, --seed)")
    run_dirs = args.run_dirs or [layout.cnn_run(args.dataset, args.model, args.variant, args.seed)]
    missing = [str(d) for d in run_dirs if not (d / "model.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"no model.pt in {', '.join(missing)} (not a finished run)")
    torch.set_num_threads(args.threads)
    check_tables(run_dirs, layout)  # a broken results table stops us before the work
    for run_dir in run_dirs:
        measure_run(
            run_dir,
            layout=layout,
            data_root=args.data_root,
            threads=args.threads,
            num_timed_queries=args.num_timed_queries,
            engines=args.engines,
            rerank=args.rerank,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
