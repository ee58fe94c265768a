"""Matching cost per query against gallery size (1k to 100k) at each pipeline's dimension.

Dimensions: raw LOMO (26,960), the XQDA subspace and the CNN embeddings found in
``runs/<dataset>/results.csv`` (when it exists), and 512/1024/2048. One query = one GEMV
against the gallery + top-50 selection (:class:`data.matching.ShardedGalleryIndex`, blocks
of at most 256 MB), timed with :func:`compare.timing.time_queries`; median ms/query at 1 thread
and at all cores. Writes ``runs/bench/matching.md`` and refreshes the cache that
``make tradeoff-plot`` reads (``runs/bench/matching_scaling.json``).

    python bench/bench_matching.py [--dataset synthetic] [--threads 1 2] [--cached]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from compare.results import read_results
from compare.scaling import GALLERY_SIZES, scaling_dims, scaling_markdown, scaling_table
from compare.timing import available_threads, cpu_model
from data.io import atomic_write_text
from data.runs import RunsLayout


def dims_for(dataset: str) -> dict[int, str]:
    """Dimensions of the pipelines in ``runs/<dataset>/results.csv``, or the defaults."""
    path = RunsLayout.from_env().results_table(dataset)
    if path.is_file():
        try:
            df = read_results(path)
            return scaling_dims(
                df[df.dataset.astype(str) == dataset], dataset, RunsLayout.from_env()
            )
        except ValueError as err:
            print(f"note: {err}; using the default dimensions", file=sys.stderr)
    # no rows: every pipeline's reference dimensions (raw LOMO, 512/1024/2048-d)
    return scaling_dims(pd.DataFrame(columns=["pipeline", "model", "embedding_dim", "extra"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="where to read pipeline dims")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="thread counts (default: 1 and all cores)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(GALLERY_SIZES),
        help=f"gallery sizes (default {' '.join(map(str, GALLERY_SIZES))})",
    )
    parser.add_argument("--cached", action="store_true", help="reuse cached measurements")
    args = parser.parse_args(argv)
    threads = args.threads or sorted({1, available_threads()})
    if min(threads) < 1 or min(args.sizes) < 1:
        parser.error("--threads and --sizes must be positive")
    dims = dims_for(args.dataset)
    sections = [
        "# Matching: ms per query against gallery size",
        f"CPU: {cpu_model()}; random float32 features; one query = GEMV + top-50; median over "
        "5-100 queries (about 0.3 s each point); galleries above 256 MB matched block by block.",
    ]
    start = time.perf_counter()
    for n in threads:
        print(f"{n} thread(s):", flush=True)
        table = scaling_table(
            dims,
            threads=n,
            sizes=args.sizes,
            refresh=not args.cached,
            layout=RunsLayout.from_env(),
        )
        sections += [f"## {n} thread(s)", scaling_markdown(table)]
    text = "\n\n".join(sections) + "\n"
    out = RunsLayout.from_env().bench_report("matching.md")
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    sys.exit(main())
