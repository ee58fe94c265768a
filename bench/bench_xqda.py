"""XQDA at Market-1501 size: fit time and peak memory, projection and matching speed.

Random LOMO-like features (non-negative, unit-norm rows, identity structure) of the training
set's shape (12,936 x 26,960 float32, 751 ids, 6 cameras) are fitted with the default solver, then
3,368 query and 19,732 gallery features are projected and matched (XQDA distances of every pair
and a full ranking). Peak memory is the process's resident-set high-water mark (VmHWM), which
includes the float32 training features themselves. ``--quick`` runs a small shape (seconds).

    python bench/bench_xqda.py            # full size: minutes, ~8 GB
    python bench/bench_xqda.py --quick

Prints a markdown table and writes it to ``runs/bench/xqda.md`` (``xqda_quick.md`` for --quick).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classical.xqda import XQDA
from compare.timing import machine_info, thread_limit
from data.io import atomic_write_text
from data.runs import RunsLayout

FULL = {"train": 12936, "dim": 26960, "ids": 751, "cams": 6, "query": 3368, "gallery": 19732}
QUICK = {"train": 1500, "dim": 3200, "ids": 100, "cams": 6, "query": 400, "gallery": 2400}


def peak_rss_gib() -> float:
    """Resident-set high-water mark of this process (Linux: VmHWM), in GiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def lomo_like(rng: np.random.Generator, centres: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float32 rows: |identity centre + noise|, L2-normalised (generated without float64)."""
    out = np.empty((len(ids), centres.shape[1]), dtype=np.float32)
    for start in range(0, len(ids), 1024):
        block = rng.standard_normal(
            (len(ids[start : start + 1024]), centres.shape[1]), dtype=np.float32
        )
        block += centres[ids[start : start + 1024]]
        np.abs(block, out=block)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def run(shape: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.standard_normal((shape["ids"], shape["dim"]), dtype=np.float32)
    train_ids = np.sort(rng.integers(0, shape["ids"], shape["train"]))
    train_ids[: shape["ids"]] = np.arange(shape["ids"])  # every id present
    cams = rng.integers(0, shape["cams"], shape["train"])
    X = lomo_like(rng, centres, train_ids)
    rss_features = peak_rss_gib()

    start = time.perf_counter()
    model = XQDA().fit(X, train_ids, cams=cams)
    fit_s = time.perf_counter() - start
    rss_fit = peak_rss_gib()
    del X

    # Projection of query and gallery (generated and projected in blocks: 2 GB of features
    # never need to be in memory at once), then all XQDA distances and a full ranking.
    proj_s = 0.0
    projected = {}
    for split in ("query", "gallery"):
        ids = rng.integers(0, shape["ids"], shape[split])
        parts = []
        for block_start in range(0, len(ids), 2048):
            block = lomo_like(rng, centres, ids[block_start : block_start + 2048])
            t0 = time.perf_counter()
            parts.append(model.transform(block))
            proj_s += time.perf_counter() - t0
        projected[split] = np.concatenate(parts)
    n_proj = shape["query"] + shape["gallery"]
    t0 = time.perf_counter()
    dist = model.projected_distances(projected["query"], projected["gallery"])
    dist_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.argsort(dist, axis=1)
    rank_s = time.perf_counter() - t0
    return {
        "shape": shape,
        "fit_s": fit_s,
        "fit_phases_s": model.fit_seconds_,
        "reduction": model.reduction_,
        "n_components": int(model.n_components_),
        "peak_rss_gib_features": rss_features,
        "peak_rss_gib_fit": rss_fit,
        "features_gib": shape["train"] * shape["dim"] * 4 / 2**30,
        "projection_ms_per_image": 1e3 * proj_s / n_proj,
        "distances_s": dist_s,
        "ranking_s": rank_s,
    }


def table(result: dict, threads: int, cpu: str) -> str:
    s = result["shape"]
    rows = [
        (
            "training features",
            f"{s['train']:,} x {s['dim']:,} float32 "
            f"({result['features_gib']:.2f} GiB), {s['ids']} ids, {s['cams']} cameras",
        ),
        (
            f"XQDA fit (svd solver, reduction: {result['reduction']})",
            f"{result['fit_s']:.1f} s -> {result['n_components']} dimensions ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in result["fit_phases_s"].items())
            + ")",
        ),
        (
            "peak RSS (whole process, incl. features)",
            f"{result['peak_rss_gib_fit']:.2f} GiB "
            f"(features alone: {result['peak_rss_gib_features']:.2f} GiB)",
        ),
        ("projection x W (float64)", f"{result['projection_ms_per_image']:.3f} ms/image"),
        (f"XQDA distances {s['query']:,} x {s['gallery']:,}", f"{result['distances_s']:.2f} s"),
        (
            f"full ranking (argsort) {s['query']:,} x {s['gallery']:,}",
            f"{result['ranking_s']:.2f} s",
        ),
    ]
    lines = [f"XQDA benchmark on {cpu}, {threads} thread(s)", "", "| step | result |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shape (seconds)")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="Market-1501 shape scaled by this factor (e.g. 0.3)",
    )
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data (default 0)")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else FULL
    if args.scale is not None:
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        shape = {k: max(2, round(v * args.scale)) if k != "cams" else v for k, v in FULL.items()}
    with thread_limit(args.threads) as threads:
        result = run(shape, args.seed)
    info = machine_info(threads)
    text = table(result, threads, info["cpu"])
    print(text)
    name = "xqda_quick" if args.quick else "xqda" if args.scale is None else f"xqda_{args.scale:g}"
    atomic_write_text(RunsLayout.from_env().bench_report(f"{name}.md"), text + "\n")
    atomic_write_text(
        RunsLayout.from_env().bench_report(f"{name}.json"),
        json.dumps({**result, "threads": threads, "machine": info}, indent=2),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
