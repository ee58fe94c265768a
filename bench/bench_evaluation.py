"""Evaluation speed at Market-1501 size (3,368 queries x 19,732 gallery), both AP variants."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import atomic_write_text
from data.protocols import evaluate
from data.runs import RunsLayout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="writes its table to runs/bench/evaluation.md (under REID_RUNS_DIR if set)",
    )
    parser.parse_args(argv)  # no options: --help or a stray argument never runs the benchmark
    rng = np.random.default_rng(0)
    n_q, n_g = 3368, 19732
    dist = rng.random((n_q, n_g), dtype=np.float32)
    g_ids = rng.integers(-1, 1500, n_g)
    q_ids = rng.integers(1, 1500, n_q)
    q_cams, g_cams = rng.integers(0, 6, n_q), rng.integers(0, 6, n_g)
    lines = ["| evaluation | queries x gallery | seconds |", "|---|---|---|"]
    for ap in ("official", "torchreid"):
        start = time.perf_counter()
        evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap=ap)
        lines.append(f"| evaluate(ap={ap!r}) | {n_q} x {n_g} | {time.perf_counter() - start:.2f} |")
    table = "\n".join(lines)
    print(table)
    out = RunsLayout.from_env().bench_report("evaluation.md")
    atomic_write_text(out, table + "\n")


if __name__ == "__main__":
    main()
