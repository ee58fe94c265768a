"""The study's report: ``runs/<dataset>/tradeoff.png``, ``tradeoff.svg`` and ``tradeoff.md``
from the results table, the gallery-size scaling (:mod:`compare.scaling`) and the bulk
throughput (:mod:`compare.throughput`); every pipeline's rows through its adapter
(:mod:`compare.pipelines`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from compare.ann_scaling import ann_markdown, ann_table, when_index_pays
from compare.pipelines import pipeline, pipelines, row_extra, rows_where
from compare.pipelines.cnn import short_name as cnn_short_name
from compare.plot import (
    ENGINE_NAMES,
    aggregate,
    distillation_markdown,
    engines_markdown,
    fastest_engines,
    float_rows,
    int8_markdown,
    plain_rows,
    plot_tradeoff,
    rerank_markdown,
    results_markdown,
)
from compare.results import fill_defaults, read_results
from compare.scaling import crossover_markdown, scaling_dims, scaling_markdown, scaling_table
from compare.throughput import THROUGHPUT_BATCH, throughput_markdown, throughput_table
from compare.timing import machine_info
from data.io import atomic_write_text
from data.layouts import load_dataset
from data.runs import RunsLayout


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
        options = row_extra(row).engine_options
        if options is None:
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
    """Rows of ``dataset`` the study plots, and notes on what was left out: rows of pipelines
    that are not registered or of variants their pipeline does not plot, and rows outside a
    pipeline's study (:meth:`~compare.pipelines.Pipeline.study_rows`)."""
    notes = []
    mine = df[df.dataset.astype(str) == dataset]
    if mine.empty:
        raise ValueError(
            f"the results table has no rows for dataset {dataset!r} "
            f"(it has {sorted(df.dataset.astype(str).unique())})"
        )
    known = rows_where(mine, lambda p: True)
    if not known.all():
        names = sorted(set(mine[~known].pipeline.astype(str)))
        notes.append(
            f"{int((~known).sum())} row(s) of pipelines without an adapter in compare.pipelines "
            f"({', '.join(names)}) are in results.csv but not plotted."
        )
        mine = mine[known]
    plotted = pd.Series(False, index=mine.index)
    for adapter in pipelines():
        plotted |= (mine.pipeline.astype(str) == adapter.name) & mine.variant.isin(
            adapter.variant_names
        )
    keep = mine[plotted]
    if len(keep) < len(mine):
        other = sorted(set(mine[~plotted].variant.astype(str)))
        notes.append(
            f"{len(mine) - len(keep)} row(s) with other variants ({', '.join(other)}) "
            "are in results.csv but not plotted."
        )
    study = pd.Series(True, index=keep.index)
    for adapter in pipelines():
        rows = keep[keep.pipeline.astype(str) == adapter.name]
        outside = ~adapter.study_rows(rows)
        if outside.any():
            notes.append(adapter.unplotted_note(int(outside.sum())))
            study[rows.index[outside.to_numpy()]] = False
    keep = keep[study]
    if keep.empty:
        raise ValueError(f"no rows with plotted variants for dataset {dataset!r}")
    keep = keep.assign(
        model=[pipeline(p).plotted_model(m) for p, m in zip(keep.pipeline, keep.model, strict=True)]
    )
    keep = fill_defaults(keep)
    if keep[rows_where(keep, lambda p: p.multi_engine)].engine.nunique() > 1:
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


def int8_section(df: pd.DataFrame) -> list[str]:
    """The report's int8 section (empty without int8 rows)."""
    table = int8_markdown(df)
    if not table:
        return []
    return [
        "## int8 models",
        "Each CNN quantised to int8 after training (`deep.quantize`: ONNX Runtime static QDQ and "
        "NNCF on OpenVINO; per-channel int8 weights, min/max activation ranges calibrated on 300 "
        "training images, never test images) and measured like the others: its accuracy comes "
        "from the int8 model's own embeddings of the test split. Speed-up = fp32 / int8 ms/query "
        "on the same runtime; changes in points (int8 - fp32); a loss of more than 1 mAP point "
        "is flagged. On the plot: an X joined to its float point by a dotted line.",
        table,
    ]


def build_report(
    dataset: str,
    data_root: str | None = None,
    *,
    threads: int | None = None,
    refresh_scaling: bool = False,
    throughput: bool = True,
    layout: RunsLayout,
    ann: bool = True,
) -> Path:
    """Scaling, throughput, plot and markdown from the dataset's results table in ``layout``."""
    out_dir = layout.dataset_dir(dataset)
    df, notes = plotted_rows(read_results(layout.results_table(dataset)), dataset)
    threads = threads or int(pd.Series(df.threads.dropna().astype(int)).mode().iloc[0])
    scaling = _scaling(df, dataset, threads, refresh_scaling, layout)
    agg = fastest_engines(aggregate(float_rows(plain_rows(df))))
    title = f"Speed/accuracy trade-off on {dataset}"
    png, svg = (layout.report(dataset, f"tradeoff.{ext}") for ext in ("png", "svg"))
    ann_points = _ann_points(ann, df, dataset, data_root, threads, refresh_scaling, layout, notes)
    plot_tradeoff(df, png, svg, title=title, scaling=scaling, ann=ann_points)
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
    sections += int8_section(df)
    distill = distillation_markdown(df)
    if distill:
        teachers = teachers_used(layout.deep_dir(dataset))
        taught_by = ", ".join(cnn_short_name(t) for t in teachers) if teachers else "their teacher"
        sections += [f"## Distillation: students alone vs taught by {taught_by}", distill]
    sections += rerank_sections(df)
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
    sections += ann_sections(ann_points, threads)
    if throughput:
        table = throughput_table(plain_rows(df), dataset, data_root, threads=threads, layout=layout)
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
    atomic_write_text(layout.report(dataset, "tradeoff.md"), "\n\n".join(sections) + "\n")
    return out_dir


def _scaling(df, dataset, threads, refresh, layout) -> pd.DataFrame:
    """Matching time against gallery size at every pipeline's dimension (compare.scaling)."""
    print(f"matching vs gallery size ({threads} thread(s), cache {layout.scaling_cache()}):")
    dims = scaling_dims(df, dataset, layout)
    return scaling_table(dims, threads=threads, refresh=refresh, layout=layout)


def _ann_points(
    enabled, df, dataset, data_root, threads, refresh, layout, notes
) -> pd.DataFrame | None:
    """The approximate-search curves of every pipeline's fastest run (compare.ann_scaling);
    None when not ``enabled`` (``--no-ann``)."""
    if not enabled:
        return None
    cache = layout.bench_report("ann_scaling.json")
    print(f"approximate search (FAISS), cache {cache}:")
    return ann_table(
        df, lambda: load_dataset(dataset, data_root), threads=threads, refresh=refresh,
        cache_path=cache, notes=notes,
    )  # fmt: skip


def ann_sections(table: pd.DataFrame | None, threads: int) -> list[str]:
    """The approximate-search section: when an index pays, then every measured point (none
    without points)."""
    if table is None or table.empty:
        return []
    return [
        "## Approximate search (FAISS) for big galleries",
        "Matching one query with FAISS indexes (`data.ann`: HNSW, IVF-PQ, IVF-PQ re-ranked "
        "with exact distances) against the exact GEMV, on each pipeline's own embeddings (its "
        "fastest run): the real test gallery grown with identity-clustered distractors fitted "
        "to the run's training embeddings (`data.distractors`), the real queries; recall@k = "
        "share of the exact top k found. Search parameters: the defaults of "
        f"`data.ann.MatchingConfig`, chosen on validation identities; {threads} thread(s); "
        "1M items and the validation sweeps: `bench/bench_ann.py`. When an index pays "
        "(recall@10 >= 0.95):",
        "\n".join(f"- {line}" for line in when_index_pays(table)),
        ann_markdown(table),
    ]


def teachers_used(deep_dir: Path) -> list[str]:
    """Teacher architectures of the distilled runs under ``deep_dir`` (a dataset's CNN runs,
    :meth:`data.runs.RunsLayout.deep_dir`; from their configs)."""
    names = set()
    for config in Path(deep_dir).glob("*/distilled_seed*/config.json"):
        try:
            teacher = json.loads(config.read_text()).get("teacher")
        except (OSError, ValueError):
            continue
        if teacher:
            names.add(Path(teacher).parent.name)
    return sorted(names)


def rerank_sections(df: pd.DataFrame) -> list[str]:
    """The re-ranking section of ``tradeoff.md`` (none without re-ranked rows)."""
    table = rerank_markdown(df)
    if not table:
        return []
    return [
        "## Re-ranking (k-reciprocal, Zhong et al. CVPR 2017)",
        "Each re-ranked point beside its plain one, at the plain point's fastest engine (mean "
        "over seeds; gains in brackets). *Online*: each query re-ranked alone against the "
        "gallery's neighbour graph, built once (its cost in the last column); this is what the "
        "plotted point and its ms/query show (the plain extraction + the re-ranking matcher). "
        "*Offline*: the paper's evaluation, every query and gallery image in one graph (queries "
        "help each other; not available to a system answering one query at a time). k1=20, "
        "k2=6, lambda=0.3. Zhong et al.'s best Market-1501 row with re-ranking reads 77.1% "
        "rank-1 / 63.6% mAP, mAP gains of several to more than ten points over their baselines.",
        table,
    ]
