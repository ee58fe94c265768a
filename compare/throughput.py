"""Bulk extraction throughput (gallery indexing): images/s at batch 64 of every model, input
size and engine in the results table, through each row's pipeline adapter
(:meth:`~compare.pipelines.Pipeline.batch_extractor`), cached per run and machine in
``<runs-dir>/<dataset>/cache/throughput.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from compare.pipelines import RunRef, pipeline
from compare.results import fill_defaults
from compare.timing import batch_throughput, cpu_model
from data.images import load_image
from data.io import atomic_write_text
from data.layouts import load_dataset
from data.paths import REPO_ROOT
from data.runs import RunsLayout

THROUGHPUT_BATCH = 64


def _throughput_one(row: pd.Series, images: np.ndarray, threads: int) -> float:
    """images/s of ``row``'s extraction on a batch of ``THROUGHPUT_BATCH`` decoded images."""
    run = RunRef.from_row(row)
    extract = pipeline(run.pipeline).batch_extractor(run, threads)
    return batch_throughput(
        extract, images, batch_size=THROUGHPUT_BATCH, repeats=2, threads=threads
    )


def throughput_table(
    df: pd.DataFrame, dataset: str, data_root: str | None, *, threads: int, layout: RunsLayout
) -> pd.DataFrame:
    """images/s at batch 64 for each (model, input size, engine) in ``df``; cached per run and
    machine.

    Deep models are loaded from one of their run folders (the architecture decides the cost,
    not the weights). Rows that cannot be measured (missing checkpoint or images) get NaN and
    a note instead of failing the report.
    """
    df = fill_defaults(df)
    cache_path = layout.throughput_cache(dataset)
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
            name = pipeline(row.pipeline).short_name(row.model)
            print(
                f"  throughput {name} {row.input_size} {row.engine}: {rate:.0f} images/s {note}",
                flush=True,
            )
        out.append(
            {
                "pipeline": row.pipeline,
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
        name = pipeline(r.pipeline).short_name(r.model)
        lines.append(f"| {name} | {r.input_size} | {engine} | {rate}{note} |")
    return "\n".join(lines)
