"""Training throughput (images/s) by torch thread count and OpenMP wait policy, shared or not.

Each setting runs in its own process (OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads):
MobileNet v1 0.25 training steps (forward, loss, backward, SGD) on a random batch of 32 at
64x32 for ``--seconds``. ``--busy N`` starts N busy-looping processes for the duration, as
other users of a shared machine would; a machine already shared is measured as it is. Writes
runs/bench/threads.md.

    python bench/bench_threads.py [--threads 1 2] [--seconds 15] [--busy 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.timing import cpu_model
from data.cli import positive_int
from data.io import atomic_write_text
from data.runs import RunsLayout

REPO = Path(__file__).resolve().parents[1]
#: One measurement: prints "<median images/s> <steps>" (the first step, a warm-up, excluded).
PROBE = """
import sys, time
import numpy as np, torch
from deep.models import build_model
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
model = build_model("mobilenet_v1_0.25", num_classes=150).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(32, 3, 64, 32), torch.randint(0, 150, (32,))
times, start = [], time.perf_counter()
while time.perf_counter() - start < float(sys.argv[2]) or len(times) < 3:
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t0)
print(32 / float(np.median(times[1:])), len(times) - 1)
"""


def _spin() -> None:
    while True:
        pass


def measure(threads: int, policy: str, seconds: float) -> tuple[float, int]:
    """(median images/s, timed steps) of one setting, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = str(REPO)
    # the probe imports torch before any project package: the policy is exactly this one
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(threads), str(seconds)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", nargs="+", type=positive_int, default=[1, 2], help="thread counts (1 2)"
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        choices=["unset", "PASSIVE", "ACTIVE"],
        default=["unset", "PASSIVE"],
        help="OMP_WAIT_POLICY values; unset = the OpenMP runtime's default (unset PASSIVE)",
    )
    parser.add_argument(
        "--seconds", type=positive_int, default=15, help="seconds per setting (default 15)"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="busy-looping processes started meanwhile (0)"
    )
    args = parser.parse_args(argv)
    if args.busy < 0:
        parser.error(f"--busy must be >= 0, got {args.busy}")
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    try:
        lines = [
            f"Training throughput by threads and OMP_WAIT_POLICY, {os.cpu_count()} cores, "
            f"{args.busy} busy process(es) started, load average {os.getloadavg()[0]:.1f}, "
            f"{cpu_model()}",
            "",
            "| threads | OMP_WAIT_POLICY | images/s (median step) | steps |",
            "|---|---|---|---|",
        ]
        for threads in args.threads:
            for policy in args.policies:
                rate, steps = measure(threads, policy, args.seconds)
                lines.append(f"| {threads} | {policy} | {rate:.0f} | {steps} |")
                print(lines[-1], flush=True)
    finally:
        for spinner in spinners:
            spinner.terminate()
    atomic_write_text(RunsLayout.from_env().bench_report("threads.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
