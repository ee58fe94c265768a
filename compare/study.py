"""The study runner of ``make tradeoff-plot``: run what is missing, time runs on every engine.

1. Each registered pipeline (:mod:`compare.pipelines`) says whether the results table of the
   dataset lacks its study rows and which command produces them (``python -m compare.lomo_xqda``
   for LOMO+XQDA, ``python -m compare.distillation`` for the CNNs); those commands run here.
2. Runs of a pipeline timed on several inference engines (the CNNs: eager PyTorch, ONNX Runtime,
   OpenVINO) get a row for every installed engine the table lacks, restored from the run's
   ``summary.json`` when it holds them, measured otherwise (the pipeline's
   :meth:`~compare.pipelines.Pipeline.engine_rows`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from compare.pipelines import EngineContext, pipeline, pipelines, rows_where
from compare.plot import float_rows
from compare.reranking import ONLINE, PLAIN
from compare.results import KEY_COLUMNS, check_table, fill_defaults, read_results, upsert_rows
from data.cli import CommandFailed
from data.layouts import load_dataset
from data.paths import REPO_ROOT
from data.runs import RunsLayout


def existing_table(results) -> pd.DataFrame | None:
    """The results table at ``results``; None when there is none or it cannot be read."""
    if not results.exists():
        return None
    try:
        return read_results(results)
    except ValueError:
        return None  # an empty or broken table: everything is missing


def missing_runs(df: pd.DataFrame | None, dataset: str, profile: str) -> list[str]:
    """Registered pipelines (by name, registry order) that still lack rows for ``dataset``."""
    if df is not None:
        df = df[df.dataset.astype(str) == dataset]
    return [p.name for p in pipelines() if p.missing(df, dataset, profile)]


def run_module(args: list[str]) -> None:
    """``python -m ARGS`` from the repository root; ``CommandFailed`` when it fails."""
    command = [sys.executable, "-m", *args]
    print("+ python -m " + " ".join(args), flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        raise CommandFailed(
            f"`python -m {' '.join(args)}` failed with exit code "
            f"{result.returncode}; see its output above"
        )


def ensure_runs(
    dataset: str, data_root: str | None, profile: str, jobs: int | None, *, layout: RunsLayout
) -> list[str]:
    """Run the pipelines whose rows are missing; returns the ones that ran.

    A results table that the pipelines could not update (a folder, garbage, a row cut off, a
    folder that cannot be written) stops everything before any of them runs.
    """
    results = layout.results_table(dataset)
    check_table(results)
    todo = missing_runs(existing_table(results), dataset, profile)
    for name in todo:
        run_module(pipeline(name).run_args(dataset, data_root, profile, jobs, layout))
    if not todo:
        print(f"all rows present in {results}; nothing to run")
    return todo


def missing_engines(
    df: pd.DataFrame | None, dataset: str, engines: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """For each run folder of ``dataset`` of a multi-engine pipeline: the engines it has no row
    for, among ``engines`` (default: the pipeline's own, :meth:`Pipeline.engines`)."""
    if df is None:
        return {}
    runs = df[(df.dataset.astype(str) == dataset) & rows_where(df, lambda p: p.multi_engine)]
    runs = runs[runs.run_dir.notna() & (runs.run_dir.astype(str) != "")]
    out = {}
    for run_dir, rows in runs.groupby(runs.run_dir.astype(str), sort=True):
        wanted = pipeline(str(rows.pipeline.iloc[0])).engines() if engines is None else engines
        have = set(rows.engine.astype(str))
        missing = [e for e in wanted if e not in have]
        if missing:
            out[run_dir] = missing
    return out


def ensure_engine_rows(
    dataset: str,
    data_root: str | None,
    *,
    layout: RunsLayout,
    engines: Sequence[str] | None = None,
) -> list[str]:
    """Time every multi-engine run of the table on the installed engines it has no row for.

    Rows are restored from the run's ``summary.json`` when it already holds them (same weights);
    otherwise the run is evaluated and timed on the missing engines with the thread count of its
    existing rows. Runs whose ``model.pt`` is gone are skipped with a message. Returns the run
    folders that got rows.
    """
    results = layout.results_table(dataset)
    df = existing_table(results)
    todo = missing_engines(df, dataset, engines)
    if not todo:
        return []
    print(f"timing {len(todo)} run(s) on engines without rows in {results}:", flush=True)
    loaded = []

    def load():
        if not loaded:
            loaded.append(load_dataset(dataset, data_root))
        return loaded[0]

    done = []
    for run_dir, missing in todo.items():
        rows_of_run = df[df.run_dir.astype(str) == run_dir]
        threads = rows_of_run.threads.dropna()
        n = int(threads.iloc[0]) if len(threads) else 1
        context = EngineContext(load=load, threads=n, layout=layout)
        rows = pipeline(str(rows_of_run.pipeline.iloc[0])).engine_rows(run_dir, missing, context)
        if rows:
            upsert_rows(results, rows)
            done.append(run_dir)
        print(f"  {run_dir}: {'; '.join(context.done)}", flush=True)
    return done


def missing_reranks(df: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    """Plain study rows of ``dataset`` (each pipeline's :meth:`study_rows`), on the engine the
    plot draws (:func:`plotted_engine_rows`), whose point has no re-ranked twin yet."""
    if df is None:
        return pd.DataFrame()
    mine = fill_defaults(df[df.dataset.astype(str) == dataset])
    key = [c for c in KEY_COLUMNS if c != "rerank"]
    plain = mine[mine.rerank == PLAIN]
    study = pd.Series(False, index=plain.index)
    for adapter in pipelines():
        of = plain.pipeline.astype(str) == adapter.name
        if of.any():
            study[of] = adapter.study_rows(plain[of]).to_numpy()
    plain = plotted_engine_rows(plain[study])
    # a point is twinned once any of its engines is: the fastest engine may swap between runs
    point = [c for c in key if c != "engine"]
    twinned = set(mine[mine.rerank == ONLINE][point].astype(str).agg("|".join, axis=1))
    return plain[~plain[point].astype(str).agg("|".join, axis=1).isin(twinned)]


def plotted_engine_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Of each point's plain rows (same key but the engine), the one on its fastest float32
    engine: what the plot draws. Re-ranking it on every other engine would cost one measurement
    per engine and change nothing drawn (re-ranking acts after extraction, so its gain does not
    depend on the engine; ``compare.measure --rerank --engines ...`` gives the others)."""
    if rows.empty:
        return rows
    fp32 = float_rows(rows)
    ranked = fp32.assign(_ms=fp32.ms_query.astype(float).fillna(np.inf))
    ranked = ranked.sort_values("_ms", kind="stable")
    point = [c for c in KEY_COLUMNS if c not in ("engine", "rerank")]
    first = ~ranked[point].astype(str).agg("|".join, axis=1).duplicated()
    return ranked[first].drop(columns="_ms").sort_index()


def ensure_rerank_rows(dataset: str, data_root: str | None, *, layout: RunsLayout) -> list[str]:
    """Re-ranked twins (:mod:`compare.reranking`) of every plain study row without one, through
    each pipeline's adapter (:meth:`~compare.pipelines.Pipeline.rerank_rows`). Returns the
    pipelines that got them."""
    results = layout.results_table(dataset)
    todo = missing_reranks(existing_table(results), dataset)
    if todo.empty:
        return []
    loaded = []

    def load():
        if not loaded:
            loaded.append(load_dataset(dataset, data_root))
        return loaded[0]

    done = []
    for name, rows in todo.groupby(todo.pipeline.astype(str), sort=False):
        threads = rows.threads.dropna()
        context = EngineContext(
            load=load,
            threads=int(threads.iloc[0]) if len(threads) else 1,
            layout=layout,
            dataset=dataset,
            data_root=data_root,
        )
        print(f"re-ranking {len(rows)} {pipeline(name).label} row(s):", flush=True)
        new = pipeline(name).rerank_rows(rows, context)
        if new:
            upsert_rows(results, new)
        print(f"  {'; '.join(context.done)}", flush=True)
        done.append(name)
    return done
