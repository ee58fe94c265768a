"""CNN inference on each CPU engine: ms/image per model x input size x engine, batch 1 and 64.

Every model is built untrained (the weights do not change the cost; batch-norm statistics are
set from a few random batches so activations have realistic magnitudes), exported to ONNX
(:func:`deep.export.export_onnx`, checked against PyTorch) and loaded on each installed engine
(:func:`deep.export.load_engine`: eager PyTorch, ONNX Runtime, OpenVINO) with the same thread
count. The engines are timed interleaved, in one process: each repeat times every engine in
turn on the same normalised float batch (preprocessing excluded), so they share the machine's
load; the table gives the median over repeats of ms per image, and the ratio eager / engine
(above 1 = faster than eager PyTorch). Writes ``runs/bench/inference.md``.

    python bench/bench_inference.py [--quick] [--models ...] [--sizes 64x32 256x128]
        [--batches 1 64] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.timing import cpu_model, machine_info, thread_limit
from data.cli import positive_int
from data.images import parse_size
from data.io import atomic_write_text
from data.runs import RunsLayout
from deep.export import available_engines, export_onnx, load_engine
from deep.models import build_model, list_models

#: Models benchmarked by default (those registered here).
MODELS = (
    "mobilenet_v1_0.25",
    "mobilenet_v1_1.0",
    "mobilenet_v2_1.0",
    "resnet18",
    "resnet50",
    "osnet_x0_25",
    "osnet_x1_0",
)


def calibrated_model(name: str, size: tuple[int, int]) -> torch.nn.Module:
    """An untrained ``name`` in eval mode, batch-norm statistics from random batches."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=100)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, *size))
    return model.eval()


def time_call(fn, x, target_s: float) -> float:
    """Seconds per call of ``fn(x)``: as many calls as fit in ``target_s`` (at least 1)."""
    t0 = time.perf_counter()
    fn(x)
    once = max(time.perf_counter() - t0, 1e-6)
    calls = int(np.clip(target_s / once, 1, 1000))
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - t0) / calls


def bench_model(
    name: str,
    size: tuple[int, int],
    batches: list[int],
    engines: list[str],
    *,
    threads: int,
    repeats: int,
    target_s: float,
    folder: Path,
) -> dict[int, dict[str, float]]:
    """{batch: {engine: median ms per image}} for one model and input size."""
    model = calibrated_model(name, size)
    path = folder / f"{name}_{size[0]}x{size[1]}.onnx"
    export_onnx(model, path, size)
    loaded = {
        e: load_engine(model if e == "torch" else path, e, threads=threads, input_size=size)
        for e in engines
    }
    out: dict[int, dict[str, float]] = {}
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        x = torch.randn(batch, 3, *size, generator=generator)
        times: dict[str, list[float]] = {e: [] for e in engines}
        with thread_limit(threads):
            for engine in loaded.values():  # warm-up (first-call allocations, kernel selection)
                engine(x)
            for _ in range(repeats):  # interleaved: every engine once per repeat
                for e, engine in loaded.items():
                    times[e].append(1e3 * time_call(engine, x, target_s) / batch)
        out[batch] = {e: float(np.median(v)) for e, v in times.items()}
        cells = "  ".join(f"{e} {v:.3f}" for e, v in out[batch].items())
        print(f"  {name} {size[0]}x{size[1]} batch {batch}: ms/image {cells}", flush=True)
    return out


def markdown(results: list[tuple], engines: list[str], header: list[str]) -> str:
    """The table: one line per (model, size, batch), ms/image and ratio to eager per engine."""
    others = [e for e in engines if e != "torch"]
    head = (
        "| model | input | batch | eager PyTorch ms/image | "
        + " | ".join(f"{e} ms/image (x eager)" for e in others)
        + " |"
    )
    lines = [*header, "", head, "|---|---|---:|" + "---:|" * (1 + len(others))]
    for name, size, batch, ms in results:
        if isinstance(ms, str):  # a model that could not be measured
            lines.append(f"| {name} | {size} | {batch} | {ms} |" + " |" * len(others))
            continue
        eager = ms.get("torch")
        cells = [f"{eager:.3f}" if eager else "-"]
        for e in others:
            ratio = f" ({eager / ms[e]:.1f}x)" if eager else ""
            cells.append(f"{ms[e]:.3f}{ratio}")
        lines.append(f"| {name} | {size} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: " + " ".join(MODELS))
    parser.add_argument(
        "--sizes", nargs="+", default=["64x32", "256x128"], help="input HxW (default 64x32 256x128)"
    )
    parser.add_argument(
        "--batches",
        nargs="+",
        type=positive_int,
        default=[1, 64],
        help="batch sizes (default 1 64)",
    )
    parser.add_argument("--engines", nargs="+", default=None, help="default: every installed")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="engine threads (default 1)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per engine")
    parser.add_argument(
        "--target-seconds", type=float, default=0.3, help="timed calls per measurement"
    )
    parser.add_argument(
        "--quick", action="store_true", help="64x32 only, 1 repeat, short measurements"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RunsLayout.from_env().bench_report("inference.md"),
        help="report file (default runs/bench/inference.md)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.target_seconds = ["64x32"], 1, 0.05
    registered = set(list_models())
    models = args.models or [m for m in MODELS if m in registered]
    unknown = [m for m in models if m not in registered]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(registered)}")
    engines = args.engines or available_engines()
    if "torch" not in engines:
        engines = ["torch", *engines]  # the reference of every ratio
    sizes = [parse_size(s) for s in args.sizes]
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for size in sizes:
                label = f"{size[0]}x{size[1]}"
                try:
                    per_batch = bench_model(
                        name,
                        size,
                        args.batches,
                        engines,
                        threads=args.threads,
                        repeats=args.repeats,
                        target_s=args.target_seconds,
                        folder=Path(tmp),
                    )
                except Exception as err:  # report the model, measure the others
                    print(f"  {name} {label}: not measured: {err}", file=sys.stderr, flush=True)
                    results.append((name, label, "-", f"not measured: {err}"))
                    continue
                results += [(name, label, b, ms) for b, ms in per_batch.items()]
    info = machine_info(args.threads)
    header = [
        f"CNN inference, ms per image (median of {args.repeats} interleaved repeat(s)), "
        f"{args.threads} thread(s); in brackets: eager time / engine time.",
        "",
        f"{cpu_model()}, {info['available_cores']} core(s) available; torch {info['torch']}, "
        f"onnxruntime {info['onnxruntime']}, openvino {info['openvino']}; "
        f"{dt.date.today().isoformat()}; {time.perf_counter() - start:.0f} s.",
    ]
    table = markdown(results, engines, header)
    atomic_write_text(args.out, table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
