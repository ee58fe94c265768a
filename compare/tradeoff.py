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
   memory-bounded, cached in ``runs/bench/matching_scaling.json``.
4. Measures bulk extraction throughput (images/s at batch 64) of every architecture and engine
   in the table, cached in ``runs/<dataset>/cache/throughput.json``.
5. Writes ``runs/<dataset>/tradeoff.png``, ``tradeoff.svg`` and ``tradeoff.md``.

A second run with nothing changed only reads the caches and redraws (seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from classical.lomo import layout, lomo
from classical.pipeline import ClassicalConfig, study_run_name
from compare.measure import current_rows, measure_run, rows_from_summary
from compare.plot import (
    ENGINE_NAMES,
    aggregate,
    distillation_markdown,
    engines_markdown,
    fastest_engines,
    plot_tradeoff,
    results_markdown,
)
from compare.plot import short_name as _short
from compare.results import check_table, fill_defaults, read_results, results_path, upsert_rows
from compare.timing import (
    available_threads,
    batch_throughput,
    cpu_model,
    gallery_scaling,
    machine_info,
)
from data.cli import positive_int
from data.images import load_image, parse_size, resize
from data.io import atomic_write_text
from data.layouts import load_dataset
from data.paths import REPO_ROOT, RUNS_DIR, run_dir_for
from deep.checkpoint import load_trained
from deep.export import available_engines, export_run, load_engine
from deep.profiles import PROFILES

GALLERY_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
#: CNN embedding sizes always measured (ResNet-18/34, MobileNet v1 1.0, ResNet-50/101).
CNN_DIMS = (512, 1024, 2048)
#: LOMO dimension at the classical pipeline's default input size (26,960 at 128x48).
LOMO_DIM = layout(*ClassicalConfig().size).dim
PLOTTED_VARIANTS = ("classical", "baseline", "distilled")
THROUGHPUT_BATCH = 64


# ---------------------------------------------------------------------------------------------
# 1. Run what is missing
# ---------------------------------------------------------------------------------------------
def _existing(results: Path) -> pd.DataFrame | None:
    if not results.exists():
        return None
    try:
        return read_results(results)
    except ValueError:
        return None  # an empty or broken table: everything is missing


def expected_deep_rows(dataset: str, profile: str) -> set[tuple[str, str, int, str, str]] | None:
    """(model, variant, seed, input_size, init) the distillation profile writes, or None if
    unknown. The initialisation is part of it: rows of scratch runs do not stand in for the
    fine-tuned runs of a profile that fine-tunes."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    p = PROFILES[profile]

    def size_init(model: str) -> tuple[str, str]:
        recipe = p.recipe_for(model)
        return "x".join(str(v) for v in recipe["input_size"]), recipe.get("init", "scratch")

    rows = {(p.teacher, "baseline", 0, *size_init(p.teacher))}
    for seed in p.seeds:
        for student in p.students:
            rows |= {
                (student, "baseline", seed, *size_init(student)),
                (student, "distilled", seed, *size_init(student)),
            }
    return rows


def study_classical(df: pd.DataFrame) -> pd.Series:
    """Which rows are the classical pipeline at the study's settings (``make lomo-xqda``'s
    defaults, Market-1501 evaluation): the only classical row the study plots."""
    return (df.pipeline == "classical") & (df.model.astype(str) == study_run_name())


def missing_runs(df: pd.DataFrame | None, dataset: str, profile: str) -> list[str]:
    """Which of "classical" and "deep" still lack rows for ``dataset``."""
    if df is not None:
        df = df[df.dataset.astype(str) == dataset]
    missing = []
    if df is None or not study_classical(df).any():
        missing.append("classical")
    expected = expected_deep_rows(dataset, profile)
    if df is None:
        have = set()
    else:
        deep = fill_defaults(df[df.pipeline == "deep"])
        have = set(
            zip(
                deep.model,
                deep.variant,
                deep.seed.astype(int),
                deep.input_size,
                deep.init,
                strict=True,
            )
        )
    if expected is None:  # profile unknown here: require at least a baseline and a distilled row
        if not {"baseline", "distilled"} <= {row[1] for row in have}:
            missing.append("deep")
    elif not expected <= have:
        missing.append("deep")
    return missing


def _run(args: list[str]) -> None:
    command = [sys.executable, "-m", *args]
    print("+ python -m " + " ".join(args), flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"`python -m {' '.join(args)}` failed with exit code "
            f"{result.returncode}; see its output above"
        )


def ensure_runs(dataset: str, data_root: str | None, profile: str, jobs: int | None) -> list[str]:
    """Run the pipelines whose rows are missing; returns the ones that ran.

    A results table that the pipelines could not update (a folder, garbage, a row cut off, a
    folder that cannot be written) stops everything before any of them runs.
    """
    results = results_path(dataset)
    check_table(results)
    todo = missing_runs(_existing(results), dataset, profile)
    root = ["--data-root", str(data_root)] if data_root else []
    if "classical" in todo:
        _run(["compare.lomo_xqda", "--dataset", dataset, *root, "--protocol", "market"])
    if "deep" in todo:
        extra = ["--jobs", str(jobs)] if jobs else []
        _run(["compare.distillation", "--dataset", dataset, *root, "--profile", profile, *extra])
    if not todo:
        print(f"all rows present in {results}; nothing to run")
    return todo


# ---------------------------------------------------------------------------------------------
# 2. Every CNN on every inference engine
# ---------------------------------------------------------------------------------------------
def _run_path(run_dir: str) -> Path:
    path = Path(run_dir)
    return path if path.is_absolute() else REPO_ROOT / path


def missing_engines(
    df: pd.DataFrame | None, dataset: str, engines: Sequence[str]
) -> dict[str, list[str]]:
    """For each CNN run folder of ``dataset`` in the table: the ``engines`` it has no row for."""
    if df is None:
        return {}
    deep = df[(df.dataset.astype(str) == dataset) & (df.pipeline == "deep")]
    deep = deep[deep.run_dir.notna() & (deep.run_dir.astype(str) != "")]
    out = {}
    for run_dir, rows in deep.groupby(deep.run_dir.astype(str), sort=True):
        have = set(rows.engine.astype(str))
        missing = [e for e in engines if e not in have]
        if missing:
            out[run_dir] = missing
    return out


def ensure_engine_rows(
    dataset: str, data_root: str | None, *, engines: Sequence[str] | None = None
) -> list[str]:
    """Time every CNN run of the table on the installed engines it has no row for.

    Rows are restored from the run's ``summary.json`` when it already holds them (same weights);
    otherwise the run is evaluated and timed on the missing engines
    (:func:`compare.measure.measure_run`) with the thread count of its existing rows. Runs whose
    ``model.pt`` is gone are skipped with a message. Returns the run folders that got rows.
    """
    results = results_path(dataset)
    df = _existing(results)
    engines = list(engines) if engines is not None else available_engines()
    todo = missing_engines(df, dataset, engines)
    if not todo:
        return []
    print(f"timing {len(todo)} CNN run(s) on engines without rows in {results}:", flush=True)
    loaded = None
    done = []
    for run_dir, missing in todo.items():
        run = _run_path(run_dir)
        if not (run / "model.pt").is_file():
            print(f"  {run_dir}: no model.pt; not timed on {', '.join(missing)}")
            continue
        rows = current_rows(run, missing)
        restored = {r.engine for r in rows}
        left = [e for e in missing if e not in restored]
        if left:
            if loaded is None:
                loaded = load_dataset(dataset, data_root)
            threads = df[df.run_dir.astype(str) == run_dir].threads.dropna()
            summary = measure_run(
                run,
                dataset=loaded,
                threads=int(threads.iloc[0]) if len(threads) else 1,
                table=False,
                engines=left,
            )
            # every engine of the new summary (torch too, in case it was re-timed)
            rows = [r for r in rows if r.engine not in summary.get("engines", {})]
            rows += rows_from_summary(summary, run)
        if rows:
            upsert_rows(results, rows)
            done.append(run_dir)
            what = [f"restored {sorted(restored)} from summary.json"] if restored else []
            what += [f"timed {left}"] if left else []
            print(f"  {run_dir}: {'; '.join(what)}", flush=True)
    return done


# ---------------------------------------------------------------------------------------------
# 3. Gallery-size scaling of matching
# ---------------------------------------------------------------------------------------------
def _extra(row: pd.Series) -> dict:
    try:
        value = json.loads(str(row.get("extra", "{}")))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def scaling_dims(df: pd.DataFrame, dataset: str | None = None) -> dict[int, str]:
    """Feature dimensions to measure, with a label saying whose they are."""
    labels: dict[int, list[str]] = {}

    def add(dim: int, name: str) -> None:
        labels.setdefault(int(dim), [])
        if name and name not in labels[int(dim)]:
            labels[int(dim)].append(name)

    lomo_dim = LOMO_DIM
    classical = df[df.pipeline == "classical"]
    for _, row in classical.iterrows():
        extra = _extra(row)
        lomo_dim = int(extra.get("feature_dim", lomo_dim))
        xqda = extra.get("xqda_dim", row.embedding_dim)
        if pd.notna(xqda):
            add(int(xqda), "XQDA")
    if dataset is not None and classical.empty:
        summary = run_dir_for(dataset) / "classical" / study_run_name() / "summary.json"
        if summary.is_file():
            data = json.loads(summary.read_text())
            lomo_dim = int(data.get("feature_dim", lomo_dim))
            if "xqda_dim" in data:
                add(int(data["xqda_dim"]), "XQDA")
    add(lomo_dim, "raw LOMO")
    for dim in CNN_DIMS:
        add(dim, "")
    deep = df[df.pipeline == "deep"][["model", "embedding_dim"]].drop_duplicates()
    for model, dim in deep.itertuples(index=False):
        if pd.notna(dim):
            add(int(dim), _short(str(model)))
    out = {}
    for dim in sorted(labels):
        names = labels[dim]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        out[dim] = f"{dim}-d" + (f" ({shown})" if names else "")
    return out


def scaling_table(
    dims: dict[int, str],
    *,
    threads: int,
    sizes: Sequence[int] | None = None,
    refresh: bool = False,
) -> pd.DataFrame:
    """ms/query of matching for every (dim, gallery size), from the cache where possible.

    ``sizes`` defaults to :data:`GALLERY_SIZES` (1k to 100k items).
    """
    points = gallery_scaling(
        list(dims),
        GALLERY_SIZES if sizes is None else sizes,
        threads=threads,
        refresh=refresh,
        cache_path=RUNS_DIR / "bench" / "matching_scaling.json",
    )
    table = pd.DataFrame([asdict(p) for p in points])
    table["label"] = [dims[d] for d in table.dim]
    return table


def scaling_markdown(table: pd.DataFrame) -> str:
    """Gallery sizes as rows, feature dimensions as columns, median ms/query."""
    sizes = sorted(table.gallery_size.unique())
    dims = sorted(table.dim.unique())
    labels = dict(zip(table.dim, table.label, strict=False))
    lines = [
        "| gallery | " + " | ".join(labels[d] for d in dims) + " |",
        "|---:|" + "---:|" * len(dims),
    ]
    for n in sizes:
        cells = []
        for d in dims:
            v = table[(table.gallery_size == n) & (table.dim == d)].ms_match
            cells.append("-" if v.empty else f"{v.iloc[0]:.3g}")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crossover(table: pd.DataFrame, dim: int, ms_extract: float) -> float | None:
    """Gallery size where matching ``dim``-d features costs as much as extraction (log-log).

    None when matching stays cheaper over the measured range; 0 when it already costs more at
    the smallest gallery.
    """
    sub = table[table.dim == dim].sort_values("gallery_size")
    if sub.empty or not np.isfinite(ms_extract) or ms_extract <= 0:
        return None
    n = sub.gallery_size.to_numpy(float)
    ms = sub.ms_match.to_numpy(float)
    if ms[0] >= ms_extract:
        return 0.0
    above = np.flatnonzero(ms >= ms_extract)
    if not len(above):
        return None
    i = above[0]
    t = (np.log(ms_extract) - np.log(ms[i - 1])) / (np.log(ms[i]) - np.log(ms[i - 1]))
    return float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1]))))


def crossover_markdown(agg: pd.DataFrame, table: pd.DataFrame) -> str:
    """Per architecture: extraction time, and the gallery size where matching overtakes it."""
    biggest = int(table.gallery_size.max())
    lines = [
        "| pipeline | input | dim | ms extract | matching ≥ extraction from a gallery of |",
        "|---|---|---:|---:|---|",
    ]
    rows = agg[agg.variant != "distilled"].drop_duplicates(["model", "input_size"])
    for r in rows.sort_values("ms_extract").itertuples():
        if pd.isna(r.embedding_dim):
            continue
        n = crossover(table, int(r.embedding_dim), r.ms_extract)
        where = (
            f"> {biggest:,} (not reached)"
            if n is None
            else f"≤ {int(table.gallery_size.min()):,}"
            if n == 0
            else f"≈ {n:,.0f}"
        )
        lines.append(
            f"| {_short(r.model)} | {r.input_size} | {int(r.embedding_dim)} | "
            f"{r.ms_extract:.2f} | {where} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 4. Bulk extraction throughput (gallery indexing)
# ---------------------------------------------------------------------------------------------
def _throughput_one(row: pd.Series, images: np.ndarray, threads: int) -> float:
    """images/s of ``row``'s extraction on a batch of ``THROUGHPUT_BATCH`` decoded images.

    A CNN runs on the row's engine (its exported ``model.onnx`` for ONNX Runtime / OpenVINO).
    """
    size = parse_size(row.input_size)
    if row.pipeline == "classical":
        extra = _extra(row)
        retinex = bool(extra.get("retinex", False))
        # the XQDA projection's cost depends only on its shape, so a random one of that shape
        # stands in for the trained projection (which the pipeline does not store)
        dim = int(extra.get("feature_dim", LOMO_DIM))
        projection = np.random.default_rng(0).standard_normal((dim, int(row.embedding_dim)))

        def extract(batch: np.ndarray) -> np.ndarray:
            resized = np.stack([resize(im, size) for im in batch])
            return lomo(resized, retinex=retinex, dtype=np.float64) @ projection

    else:
        run = _run_path(str(row.run_dir))
        engine_name = str(row.get("engine", "torch"))
        source = load_trained(run)[0] if engine_name == "torch" else export_run(run).path
        engine = load_engine(source, engine_name, threads=threads, input_size=size)

        def extract(batch: np.ndarray) -> np.ndarray:
            return engine(batch)

    return batch_throughput(
        extract, images, batch_size=THROUGHPUT_BATCH, repeats=2, threads=threads
    )


def throughput_table(
    df: pd.DataFrame, dataset: str, data_root: str | None, *, threads: int
) -> pd.DataFrame:
    """images/s at batch 64 for each (model, input size, engine) in ``df``; cached per run and
    machine.

    Deep models are loaded from one of their run folders (the architecture decides the cost,
    not the weights). Rows that cannot be measured (missing checkpoint or images) get NaN and
    a note instead of failing the report.
    """
    df = fill_defaults(df)
    cache_path = run_dir_for(dataset) / "cache" / "throughput.json"
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    first = df.sort_values(["model", "input_size", "variant", "seed"]).drop_duplicates(
        ["model", "input_size", "engine"]
    )
    images = None
    out, changed = [], False
    for _, row in first.iterrows():
        model_file = REPO_ROOT / str(row.run_dir) / "model.pt"
        stamp = model_file.stat().st_mtime_ns if model_file.is_file() else 0
        key = (
            f"{cpu_model()}|{threads}|{row.model}|{row.input_size}|{row.run_dir}|{stamp}"
            f"|{row.engine}"
        )
        if key not in cache:
            note = ""
            rate = float("nan")
            try:
                if images is None:
                    images = _throughput_images(dataset, data_root)
                rate = _throughput_one(row, images, threads)
            except (OSError, ValueError, RuntimeError, ImportError, KeyError, TypeError) as err:
                note = f"not measured: {err}"
            cache[key] = {"rate": rate, "note": note}
            changed = True
            print(
                f"  throughput {_short(row.model)} {row.input_size} {row.engine}: {rate:.0f} "
                f"images/s {note}",
                flush=True,
            )
        out.append(
            {
                "model": row.model,
                "input_size": row.input_size,
                "engine": row.engine,
                "images_per_s": cache[key]["rate"],
                "note": cache[key]["note"],
            }
        )
    if changed:
        atomic_write_text(cache_path, json.dumps(cache, indent=1, sort_keys=True))
    return pd.DataFrame(out)


def _throughput_images(dataset: str, data_root: str | None) -> np.ndarray:
    records = load_dataset(dataset, data_root).gallery[:THROUGHPUT_BATCH]
    return np.stack([load_image(r.path) for r in records])


def throughput_markdown(table: pd.DataFrame) -> str:
    lines = [
        f"| pipeline | input | engine | images/s (batch {THROUGHPUT_BATCH}) |",
        "|---|---|---|---:|",
    ]
    for r in table.itertuples():
        rate = "-" if not np.isfinite(r.images_per_s) else f"{r.images_per_s:,.0f}"
        note = f" ({r.note})" if r.note else ""
        engine = getattr(r, "engine", "")
        lines.append(f"| {_short(r.model)} | {r.input_size} | {engine} | {rate}{note} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 5. The report
# ---------------------------------------------------------------------------------------------
def _machine_markdown(info: dict) -> str:
    keys = (
        "cpu",
        "physical_cores",
        "logical_cores",
        "available_cores",
        "threads",
        "device",
        "python",
        "numpy",
        "torch",
        "numba",
        "onnxruntime",
        "openvino",
        "onnx",
        "blas_threads_controlled",
        "platform",
    )
    return "\n".join(f"- {k}: {info[k]}" for k in keys if k in info)


def engine_settings(df: pd.DataFrame) -> dict[str, list[dict]]:
    """The distinct engine settings recorded in the rows' ``extra`` (``engine_options``)."""
    out: dict[str, list[dict]] = {}
    for _, row in df.iterrows():
        options = _extra(row).get("engine_options")
        if not isinstance(options, dict):
            continue
        seen = out.setdefault(str(row.engine), [])
        if options not in seen:
            seen.append(options)
    return out


def _engine_settings_markdown(settings: dict[str, list[dict]]) -> str:
    lines = []
    for engine in sorted(
        settings, key=lambda e: list(ENGINE_NAMES).index(e) if e in ENGINE_NAMES else 99
    ):
        for options in settings[engine]:
            text = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
            lines.append(f"- engine {engine}: {text}")
    return "\n".join(lines)


def plotted_rows(df: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``dataset`` with a plotted variant, and notes on what was left out."""
    notes = []
    mine = df[df.dataset.astype(str) == dataset]
    if mine.empty:
        raise ValueError(
            f"the results table has no rows for dataset {dataset!r} "
            f"(it has {sorted(df.dataset.astype(str).unique())})"
        )
    keep = mine[mine.variant.isin(PLOTTED_VARIANTS)]
    if len(keep) < len(mine):
        other = sorted(set(mine.variant) - set(PLOTTED_VARIANTS))
        notes.append(
            f"{len(mine) - len(keep)} row(s) with other variants ({', '.join(other)}) "
            "are in results.csv but not plotted."
        )
    classical = keep.pipeline == "classical"
    study = study_classical(keep)
    if (classical & ~study).any():
        notes.append(
            f"{int((classical & ~study).sum())} LOMO+XQDA row(s) with other settings than the "
            "study's (make lomo-xqda defaults, Market-1501 evaluation) are in results.csv but not "
            "plotted."
        )
    keep = keep[~classical | study]
    keep = keep.assign(model=keep.model.mask(keep.pipeline == "classical", "lomo_xqda"))
    if keep.empty:
        raise ValueError(f"no rows with variants {PLOTTED_VARIANTS} for dataset {dataset!r}")
    keep = fill_defaults(keep)
    deep = keep[keep.pipeline != "classical"]
    if deep.engine.nunique() > 1:
        notes.append(
            "Each CNN is plotted at its fastest engine (bold in the results table); its rows on "
            "the other engines are in the results table, the engine table and results.csv."
        )
    threads = sorted({int(t) for t in keep.threads.dropna()})
    if len(threads) > 1:
        notes.append(
            f"rows were timed with different thread counts {threads}: compare ms/query "
            "only between rows with the same count."
        )
    return keep, notes


def build_report(
    dataset: str,
    data_root: str | None = None,
    *,
    threads: int | None = None,
    refresh_scaling: bool = False,
    throughput: bool = True,
) -> Path:
    """Scaling, throughput, plot and markdown from ``runs/<dataset>/results.csv``."""
    out_dir = run_dir_for(dataset)
    df, notes = plotted_rows(read_results(out_dir / "results.csv"), dataset)
    row_threads = int(pd.Series(df.threads.dropna().astype(int)).mode().iloc[0])
    threads = row_threads if threads is None else threads
    print(f"matching vs gallery size ({threads} thread(s); cached in runs/bench):", flush=True)
    scaling = scaling_table(scaling_dims(df, dataset), threads=threads, refresh=refresh_scaling)
    agg = fastest_engines(aggregate(df))
    title = f"Speed/accuracy trade-off on {dataset}"
    plot_tradeoff(
        df, out_dir / "tradeoff.png", out_dir / "tradeoff.svg", title=title, scaling=scaling
    )
    sections = [
        f"# {title}",
        "Each point is a pipeline (mean ± std over seeds). **ms/query** = extracting the query's "
        "feature from its decoded image at batch size 1 (LOMO + XQDA projection, or CNN "
        "preprocessing + forward) + matching it against the precomputed gallery (distances + "
        "top-50 ranking); median over 100 queries after warm-up, on the CPU with the thread "
        "count shown. Accuracy: single-query Market-1501 protocol, in %; mAP is the official "
        "(trapezoid) one, torchreid-style mAP alongside. `*` = on the mAP Pareto front (nothing "
        "else is both faster and more accurate). CNNs are timed on every installed inference "
        "engine (`engine`: eager PyTorch `torch`, `onnxruntime`, `openvino`; LOMO+XQDA runs on "
        "`numba`); the plot shows each at its fastest engine, in bold below. `init`: how the "
        "CNN was initialised before training. Plot: `tradeoff.png` / `tradeoff.svg`.",
        "![trade-off](tradeoff.png)",
        "## Results",
        results_markdown(df),
    ]
    engines = engines_markdown(df)
    if engines:
        sections += [
            "## Inference engines",
            "ms/query of each CNN on each engine (same thread count, batch size 1), the speed-up "
            "of the fastest over eager PyTorch, and the accuracy change of the exported model "
            "(each engine ranks the test split with its own embeddings; 0.0 = same accuracy as "
            "PyTorch).",
            engines,
        ]
    distill = distillation_markdown(df)
    if distill:
        teachers = teachers_used(out_dir)
        taught_by = ", ".join(_short(t) for t in teachers) if teachers else "their teacher"
        sections += [f"## Distillation: students alone vs taught by {taught_by}", distill]
    sections += [
        "## Where matching starts to dominate",
        "Gallery size at which matching one query (at the pipeline's feature dimension) costs as "
        "much as extracting its feature; beyond it, a larger gallery makes matching the "
        "bottleneck (from the scaling measurement below, interpolated).",
        crossover_markdown(agg, scaling),
        "## Matching time (ms/query) against gallery size",
        f"Random float32 features; one query = a GEMV against the gallery + top-50 selection, "
        f"{threads} thread(s); galleries above 256 MB are matched block by block.",
        scaling_markdown(scaling),
    ]
    if throughput:
        table = throughput_table(df, dataset, data_root, threads=threads)
        sections += [
            "## Bulk extraction throughput (gallery indexing)",
            f"Images per second at batch {THROUGHPUT_BATCH}, {threads} thread(s), same input size "
            "as the accuracy.",
            throughput_markdown(table),
        ]
    machine = _machine_markdown(machine_info(threads))
    settings = _engine_settings_markdown(engine_settings(df))
    sections += ["## Machine", machine + ("\n" + settings if settings else "")]
    if notes:
        sections += ["## Notes", "\n".join(f"- {n}" for n in notes)]
    atomic_write_text(out_dir / "tradeoff.md", "\n\n".join(sections) + "\n")
    return out_dir


def teachers_used(out_dir: Path) -> list[str]:
    """Teacher architectures of the distilled runs under ``out_dir`` (from their configs)."""
    names = set()
    for config in Path(out_dir).glob("deep/*/distilled_seed*/config.json"):
        try:
            teacher = json.loads(config.read_text()).get("teacher")
        except (OSError, ValueError):
            continue
        if teacher:
            names.add(Path(teacher).parent.name)
    return sorted(names)


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
    parser.add_argument("--refresh-scaling", action="store_true", help="re-measure the scaling")
    parser.add_argument("--no-throughput", action="store_true", help="skip batch throughput")
    args = parser.parse_args(argv)
    if args.threads is not None and not 1 <= args.threads <= max(available_threads(), 1):
        parser.error(f"--threads must be in 1..{available_threads()}, got {args.threads}")
    start = time.perf_counter()
    try:
        if not args.skip_runs:
            ensure_runs(args.dataset, args.data_root, args.profile, args.jobs)
            ensure_engine_rows(args.dataset, args.data_root)
        out_dir = build_report(
            args.dataset,
            args.data_root,
            threads=args.threads,
            refresh_scaling=args.refresh_scaling,
            throughput=not args.no_throughput,
        )
    except (OSError, ValueError, RuntimeError) as err:  # OSError: an output that cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"\nwrote {out_dir / 'tradeoff.png'}\n      {out_dir / 'tradeoff.svg'}\n      "
        f"{out_dir / 'tradeoff.md'}\n({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
