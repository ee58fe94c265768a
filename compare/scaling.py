"""Matching time against gallery size at every pipeline's feature dimension, and where it
overtakes extraction.

Each registered pipeline names the dimensions its rows match at
(:meth:`~compare.pipelines.Pipeline.scaling_dims`: raw LOMO and the XQDA subspace, every CNN
embedding size and 512/1024/2048-d for reference); matching one query (GEMV + top-50) is timed
against galleries of 1k to 100k random features of each dimension, memory-bounded, cached in
``<runs-dir>/bench/matching_scaling.json`` (:func:`compare.timing.gallery_scaling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from compare.pipelines import derived_rows, pipeline, pipelines
from compare.timing import gallery_scaling
from data.runs import RunsLayout

GALLERY_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)


def scaling_dims(
    df: pd.DataFrame, dataset: str | None = None, layout: RunsLayout | None = None
) -> dict[int, str]:
    """Feature dimensions to measure, with a label saying whose they are (``layout``: where
    the study's runs are, for pipelines without rows yet)."""
    labels: dict[int, list[str]] = {}
    for adapter in pipelines():
        rows = df[df.pipeline.astype(str) == adapter.name]
        for dim, name in adapter.scaling_dims(rows, dataset, layout):
            labels.setdefault(int(dim), [])
            if name and name not in labels[int(dim)]:
                labels[int(dim)].append(name)
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
    layout: RunsLayout,
) -> pd.DataFrame:
    """ms/query of matching for every (dim, gallery size), from ``layout.scaling_cache()``
    where possible.

    ``sizes`` defaults to :data:`GALLERY_SIZES` (1k to 100k items).
    """
    points = gallery_scaling(
        list(dims),
        GALLERY_SIZES if sizes is None else sizes,
        threads=threads,
        refresh=refresh,
        cache_path=layout.scaling_cache(),
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
    rows = agg[~derived_rows(agg)].drop_duplicates(["model", "input_size"])
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
        name = pipeline(r.pipeline).short_name(r.model)
        lines.append(
            f"| {name} | {r.input_size} | {int(r.embedding_dim)} | {r.ms_extract:.2f} | {where} |"
        )
    return "\n".join(lines)
