"""LOMO extraction speed: numba kernels against plain NumPy, 128x48 and 128x64, 1 and all threads.

Everything is measured in one run on the same images (random textures with flat, striped and
gradient areas; Retinex off unless stated, as the reference comparison is without it):

* numba ``classical.lomo.lomo`` on a batch (best of 3 repeats), 1 thread and all threads, and at
  batch size 1 (the per-query case);
* ``classical/lomo_reference.py``: the plain NumPy implementation (whole-array per-pixel maps, one
  ``np.bincount`` per window; the tests' oracle) and a batch-vectorised NumPy version (all
  windows of a batch in one ``bincount`` per scale), both single-threaded by nature;
* the Retinex (MSRCR, OpenCV blur) cost on top, 1 thread.

Speed-ups compare images/s at the same thread count (1). Prints a markdown table and writes it to
``runs/bench/lomo.md`` (``lomo.json`` with the raw numbers).

    python bench/bench_lomo.py [--batch 256] [--repeats 9] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# The repository root, for classical/, compare/, data/ and the NumPy oracle in tests/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classical.lomo import lomo
from classical.lomo_reference import lomo_numpy, lomo_numpy_batched
from compare.timing import available_threads, machine_info, thread_limit
from data.io import atomic_write_text
from data.runs import RunsLayout

SIZES = ((128, 48), (128, 64))
TARGET_SPEEDUP = 20.0
TARGET_MS_PER_CORE = 0.3


def make_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random textures with flat, striped and smooth areas (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([127 + 120 * np.sin(y / 11 + c) * np.cos(x / 7 - c) for c in range(3)], -1)
    half = height // 2
    images[:, :half] = (0.7 * smooth[:half] + 0.3 * images[:, :half]).astype(np.uint8)
    images[:, half : half + 10] = 200
    images[:, half + 20 : half + 30, ::4] = 0
    return images


def best_seconds(function, repeats: int) -> float:
    function()  # warm-up (and numba compilation)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def median_single(function, images: np.ndarray, count: int) -> float:
    function(images[0])
    times = []
    for i in range(count):
        start = time.perf_counter()
        function(images[i % len(images)])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_size(height: int, width: int, batch: int, baseline_images: int, repeats: int):
    """Rows for one image size (all implementations, measured back to back)."""
    size = f"{height}x{width}"
    images = make_images(batch, height, width)
    few = images[:baseline_images]
    rows = []

    def add(name: str, threads: int, seconds: float, n: int) -> None:
        rows.append(
            {
                "implementation": name,
                "size": size,
                "threads": threads,
                "images_per_s": n / seconds,
                "ms_per_image": 1e3 * seconds / n,
            }
        )

    with thread_limit(1):
        plain = best_seconds(lambda: lomo_numpy(few), max(1, repeats // 3))
        add("NumPy, plain (oracle)", 1, plain, len(few))
        batched = best_seconds(lambda: lomo_numpy_batched(few), repeats)
        add("NumPy, batch-vectorised", 1, batched, len(few))
        add("numba", 1, best_seconds(lambda: lomo(images, retinex=False), repeats), batch)
        single = median_single(lambda im: lomo(im, retinex=False), images, 200)
        add("numba, batch size 1", 1, single, 1)
        with_retinex = best_seconds(lambda: lomo(few, retinex=True), repeats)
        add("numba + Retinex (MSRCR)", 1, with_retinex, len(few))
    all_threads = available_threads()
    with thread_limit(all_threads):
        parallel = best_seconds(lambda: lomo(images, retinex=False), repeats)
        add("numba", all_threads, parallel, batch)
    return rows


def measure(batch: int, baseline_images: int, repeats: int) -> list[dict]:
    rows = []
    for height, width in SIZES:
        rows += measure_size(height, width, batch, baseline_images, repeats)
    return rows


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(rows: list[dict], info: dict) -> str:
    lines = [
        f"LOMO extraction on {info['cpu']} ({info['available_cores']} cores available), "
        f"numba {info['numba']}, numpy {info['numpy']}; Retinex off unless stated.",
        "",
        "| implementation | size | threads | images/s | ms/image | speed-up vs plain NumPy "
        "| speed-up vs batch NumPy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        plain = next(
            r
            for r in rows
            if r["size"] == row["size"] and r["implementation"] == "NumPy, plain (oracle)"
        )
        batched = next(
            r
            for r in rows
            if r["size"] == row["size"] and r["implementation"] == "NumPy, batch-vectorised"
        )
        lines.append(
            f"| {row['implementation']} | {row['size']} | {row['threads']} | "
            f"{row['images_per_s']:,.0f} | {row['ms_per_image']:.3f} | "
            f"{row['images_per_s'] / plain['images_per_s']:.1f}x | "
            f"{row['images_per_s'] / batched['images_per_s']:.1f}x |"
        )
    numba_1 = [r for r in rows if r["implementation"] == "numba" and r["threads"] == 1]
    lines.append("")
    for row in numba_1:
        plain = next(
            r
            for r in rows
            if r["size"] == row["size"] and r["implementation"] == "NumPy, plain (oracle)"
        )
        speedup = row["images_per_s"] / plain["images_per_s"]
        lines.append(
            f"Targets at {row['size']} (1 thread): speed-up {speedup:.1f}x vs plain NumPy "
            f"(target >= {TARGET_SPEEDUP:.0f}x: {_verdict(speedup >= TARGET_SPEEDUP)}), "
            f"{row['ms_per_image']:.3f} ms/image per core (target <= {TARGET_MS_PER_CORE} ms: "
            f"{_verdict(row['ms_per_image'] <= TARGET_MS_PER_CORE)})."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per numba batch")
    parser.add_argument(
        "--baseline-images", type=int, default=32, help="images for the (slow) NumPy baselines"
    )
    parser.add_argument(
        "--repeats", type=int, default=9, help="best of this many runs (the machine may be shared)"
    )
    parser.add_argument("--quick", action="store_true", help="small batches (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.baseline_images, args.repeats = 64, 8, 2
    rows = measure(args.batch, args.baseline_images, args.repeats)
    info = machine_info(available_threads())
    text = table(rows, info)
    print(text)
    name = "lomo_quick" if args.quick else "lomo"
    atomic_write_text(RunsLayout.from_env().bench_report(f"{name}.md"), text + "\n")
    atomic_write_text(
        RunsLayout.from_env().bench_report(f"{name}.json"),
        json.dumps({"rows": rows, "machine": info}, indent=2),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
