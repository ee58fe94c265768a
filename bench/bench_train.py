"""Training throughput (images/s) of every registered model on this CPU.

One training step = forward + cross-entropy + backward + SGD step on a random batch; the median
over a few steps after a warm-up. Writes runs/bench/train.md.

    python bench/bench_train.py [--sizes 64x32 128x64] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.timing import cpu_model
from data.cli import positive_int
from data.images import parse_size
from data.runs import RunsLayout
from deep.models import build_model, list_models


def throughput(name: str, size: tuple[int, int], batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(name, num_classes=150).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *size)
    y = torch.randint(0, 150, (batch,))
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step:  # the first step warms up the allocator and kernels
            times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["64x32", "128x64"], help="input HxW (default 64x32 128x64)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per step (default 32)"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=3,
        help="timed steps after one warm-up step (default 3)",
    )
    parser.add_argument(
        "--models", nargs="+", default=list_models(), help="default: every registered model"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes]
    header = "| model | " + " | ".join(f"img/s at {h}x{w}" for h, w in sizes) + " |"
    lines = [
        f"Training throughput, batch {args.batch_size}, {args.threads} thread(s), {cpu_model()}",
        "",
        header,
        "|---|" + "---|" * len(sizes),
    ]
    for name in args.models:
        rates = [throughput(name, size, args.batch_size, args.steps) for size in sizes]
        lines.append(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
        print(lines[-1], flush=True)
    out = RunsLayout.from_env().bench_report("train.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
