"""``make tradeoff-plot``: run what is missing, then draw accuracy against ms per query.

1. Runs the classical pipeline (``python -m classical.pipeline``) if its row is missing from
   ``runs/<dataset>/results.csv``, and the distillation study (``python -m deep.distill run``),
   which itself reuses every finished run, so a second call costs seconds.
2. Measures how matching time grows with the gallery (1k to 100k items) at each pipeline's real
   feature dimension, on random features (cached in ``runs/<dataset>/scaling.csv``).
3. Writes ``runs/<dataset>/tradeoff.png``, ``tradeoff.svg`` and ``tradeoff.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from compare.matching import GalleryIndex
from compare.plot import plot_tradeoff, results_markdown
from compare.results import atomic_write_text, read_results
from compare.timing import machine_info, thread_limit
from data.paths import run_dir_for

GALLERY_SIZES = (1_000, 10_000, 100_000)
#: Bytes a scaling gallery may take; larger (size, dim) pairs are reported as skipped.
SCALING_MEMORY = 4 * 1024**3
SCALING_QUERIES = 20


def _run(args: list[str]) -> None:
    print("+ " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, *args], check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed with exit code {result.returncode}")


def ensure_runs(dataset: str, data_root: str | None, profile: str, jobs: int) -> None:
    results = run_dir_for(dataset) / "results.csv"
    root = ["--data-root", data_root] if data_root else []
    have_classical = False
    if results.exists():
        df = read_results(results)
        have_classical = bool((df.pipeline == "classical").any())
    if not have_classical:
        _run(["-m", "classical.pipeline", "--dataset", dataset, *root])
    _run(
        [
            "-m",
            "deep.distill",
            "run",
            "--dataset",
            dataset,
            *root,
            "--profile",
            profile,
            "--jobs",
            str(jobs),
        ]
    )


def matching_scaling(
    dims: dict[str, int], sizes=GALLERY_SIZES, *, queries: int = 20, threads: int = 1, seed: int = 0
) -> pd.DataFrame:
    """Median ms to match one query (GEMV + top-50) against random galleries of each size."""
    rng = np.random.default_rng(seed)
    rows = []
    with thread_limit(threads):
        for label, dim in dims.items():
            for size in sizes:
                nbytes = size * dim * 4
                if nbytes > SCALING_MEMORY:
                    rows.append(
                        {
                            "features": label,
                            "dim": dim,
                            "gallery": size,
                            "ms_match": np.nan,
                            "note": f"skipped: {nbytes / 1024**3:.1f} GB gallery",
                        }
                    )
                    continue
                gallery = rng.standard_normal((size, dim), dtype=np.float32)
                index = GalleryIndex(gallery, k=50)
                probe = rng.standard_normal((queries, dim), dtype=np.float32)
                index.match(probe[0])
                times = []
                for q in probe:
                    t0 = time.perf_counter_ns()
                    index.match(q)
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                rows.append(
                    {
                        "features": label,
                        "dim": dim,
                        "gallery": size,
                        "ms_match": float(np.median(times)),
                        "note": "",
                    }
                )
                del gallery, index
    return pd.DataFrame(rows)


def scaling_dims(df: pd.DataFrame) -> dict[str, int]:
    dims: dict[str, int] = {}
    classical = df[df.pipeline == "classical"]
    if len(classical):
        try:
            extra = json.loads(str(classical.extra.iloc[0]))
        except ValueError:
            extra = {}
        extra = extra if isinstance(extra, dict) else {}
        dims["LOMO raw"] = int(extra.get("feature_dim", 26960))
        dims["LOMO+XQDA subspace"] = int(classical.embedding_dim.iloc[0])
    for dim in sorted(set(df[df.pipeline == "deep"].embedding_dim.astype(int))):
        dims[f"CNN {dim}-d"] = dim
    return dims


def cached_scaling(path: Path, dims: dict[str, int]) -> pd.DataFrame:
    if path.exists():
        cached = pd.read_csv(path, dtype={"note": str}).fillna({"note": ""})
        if set(zip(cached.features, cached.dim, strict=True)) == set(dims.items()):
            return cached
    table = matching_scaling(dims, GALLERY_SIZES, queries=SCALING_QUERIES)
    atomic_write_text(path, table.to_csv(index=False))
    return table


def scaling_markdown(table: pd.DataFrame) -> str:
    sizes = sorted(table.gallery.unique())
    lines = [
        "| features | dim | " + " | ".join(f"{s:,} gallery" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for (label, dim), sub in table.groupby(["features", "dim"], sort=False):
        cells = []
        for s in sizes:
            v = sub[sub.gallery == s]
            cells.append(
                "-" if v.empty or pd.isna(v.ms_match.iloc[0]) else f"{v.ms_match.iloc[0]:.2f}"
            )
        lines.append(f"| {label} | {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_report(dataset: str) -> Path:
    out_dir = run_dir_for(dataset)
    df = read_results(out_dir / "results.csv")
    title = f"Speed/accuracy trade-off on {dataset} (CPU, {int(df.threads.iloc[0])} thread)"
    plot_tradeoff(df, out_dir / "tradeoff.png", out_dir / "tradeoff.svg", title=title)
    scaling = cached_scaling(out_dir / "scaling.csv", scaling_dims(df))
    info = machine_info(int(df.threads.iloc[0]))
    text = "\n\n".join(
        [
            f"# Speed/accuracy trade-off: {dataset}",
            "Accuracy: Market-1501 protocol (rank-1 and official mAP, %), mean ± std over seeds. "
            "ms/query = query feature extraction at batch size 1 + matching against the gallery "
            "(distances + top-50), median over 100 queries.",
            results_markdown(df),
            "## Matching time (ms/query) against gallery size, random features",
            scaling_markdown(scaling),
            "## Machine",
            "\n".join(f"- {k}: {v}" for k, v in info.items()),
        ]
    )
    atomic_write_text(out_dir / "tradeoff.md", text + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the study and plot the trade-off")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-runs", action="store_true", help="only plot existing results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if not args.skip_runs:
            ensure_runs(args.dataset, args.data_root, args.profile, args.jobs)
        out_dir = build_report(args.dataset)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"\nwrote {out_dir / 'tradeoff.png'}, tradeoff.svg and tradeoff.md "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print((out_dir / "tradeoff.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
