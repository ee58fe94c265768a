"""int8 quantisation: what calibration costs, what it buys, and which settings keep accuracy.

Costs (default): every model is built untrained (the weights do not change the cost; batch-norm
statistics from random batches, as in ``bench/bench_inference.py``), exported to ONNX and
quantised for each int8 engine (:mod:`deep.quantize`: ONNX Runtime QDQ, NNCF on OpenVINO) on
``--num-images`` calibration inputs (random images, normalised as at test time). The table gives
the seconds each quantisation takes, and the per-query extraction time (batch 1, the network
alone) of the fp32 and the int8 file on the same runtime, timed interleaved in one process
(median over repeats); ratio = fp32 / int8 (above 1: int8 is faster). Writes
``runs/bench/quantize.md``.

Settings (``--val-runs``): runs trained on the validation split's training identities
(80% of the ids, :func:`data.layouts.validation_split` with seed 0, as ``deep.distill sweep``)
are quantised with each setting of :data:`SWEEP`, calibrated on those training images, and their
rank-1 / mAP on the held-out identities compared with the fp32 model's (never the test split).

    python bench/bench_quantize.py [--models ...] [--sizes 64x32 256x128] [--num-images 300]
    python bench/bench_quantize.py --val-runs RUN_DIR... [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_inference import calibrated_model, time_call
from compare.timing import cpu_model, machine_info, thread_limit
from data.cli import positive_int
from data.images import parse_size
from data.io import atomic_write_text
from data.layouts import load_dataset, validation_split
from data.runs import RunsLayout
from deep.checkpoint import load_checkpoint
from deep.evaluation import score_embeddings, split_labels
from deep.export import (
    INT8_BASE,
    INT8_ENGINES,
    engine_embeddings,
    export_onnx,
    export_run,
    load_engine,
)
from deep.loader import load_records, normalise
from deep.models import list_models
from deep.quantize import QuantizeSettings, quantize_onnxruntime, quantize_openvino, quantize_run

MODELS = ("mobilenet_v1_0.25", "mobilenet_v2_1.0", "resnet18")
#: Settings compared on the validation split, per int8 engine (the first is the default).
SWEEP = {
    "onnxruntime-int8": {
        "default (minmax, per-channel)": QuantizeSettings(),
        "per-tensor weights": QuantizeSettings(per_channel=False),
        "percentile": QuantizeSettings(method="percentile"),
        "entropy": QuantizeSettings(method="entropy"),
        "first/last conv float": QuantizeSettings(exclude_first_last=True),
    },
    "openvino-int8": {
        "default (minmax, per-channel, performance)": QuantizeSettings(),
        "per-tensor weights": QuantizeSettings(per_channel=False),
        "percentile": QuantizeSettings(method="percentile"),
        "mixed preset": QuantizeSettings(preset="mixed"),
        "first/last conv float": QuantizeSettings(exclude_first_last=True),
    },
}


def bench_costs(
    name: str, size: tuple[int, int], num_images: int, repeats: int, target_s: float, tmp: Path
) -> list[dict]:
    """Quantisation seconds and fp32 / int8 per-query extraction times of one model."""
    model = calibrated_model(name, size)
    label = f"{size[0]}x{size[1]}"
    fp32 = tmp / f"{name}_{label}.onnx"
    export_onnx(model, fp32, size)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (num_images, 3, *size), dtype=np.uint8))
    inputs = [x[None].numpy() for x in normalise(images)]
    rows = []
    for engine in INT8_ENGINES:
        out = tmp / f"{name}_{label}.{engine}{'.onnx' if engine == 'onnxruntime-int8' else '.xml'}"
        quantizer = quantize_onnxruntime if engine == "onnxruntime-int8" else quantize_openvino
        t0 = time.perf_counter()
        quantizer(fp32, out, inputs, QuantizeSettings(num_images=num_images))
        seconds = time.perf_counter() - t0
        base = INT8_BASE[engine]
        loaded = {
            base: load_engine(fp32, base, threads=1, input_size=size),
            engine: load_engine(out, engine, threads=1, input_size=size),
        }
        x = torch.from_numpy(inputs[0])
        times: dict[str, list[float]] = {e: [] for e in loaded}
        with thread_limit(1):
            for e in loaded.values():
                e(x)
            for _ in range(repeats):  # interleaved: both files share the machine's load
                for which, e in loaded.items():
                    times[which].append(1e3 * time_call(e, x, target_s))
        ms = {k: float(np.median(v)) for k, v in times.items()}
        # the best repeat: the least disturbed by other processes on a shared machine
        best = {k: float(np.min(v)) for k, v in times.items()}
        rows.append(
            {
                "model": name,
                "size": label,
                "engine": engine,
                "seconds": seconds,
                "fp32": ms[base],
                "int8": ms[engine],
                "fp32_best": best[base],
                "int8_best": best[engine],
            }
        )
        print(
            f"  {name} {label} {engine}: quantised in {seconds:.1f} s; ms/query "
            f"{ms[base]:.3f} fp32, "
            f"{ms[engine]:.3f} int8 ({ms[base] / ms[engine]:.2f}x)",
            flush=True,
        )
    return rows


def costs_table(rows: list[dict], args: argparse.Namespace, seconds: float) -> str:
    info = machine_info(1)
    lines = [
        f"int8 quantisation cost ({args.num_images} calibration images) and "
        f"per-query extraction ms (batch 1, network only, 1 thread, median of {args.repeats} "
        "interleaved repeats, and the best repeat, the least disturbed on a shared machine); "
        "ratio = fp32 / int8.",
        "",
        f"{cpu_model()}, {info['available_cores']} core(s) available; onnxruntime "
        f"{info['onnxruntime']}, openvino {info['openvino']}; {dt.date.today().isoformat()}; "
        f"{seconds:.0f} s.",
        "",
        "| model | input | engine | quantise s | fp32 ms/query | int8 ms/query | fp32 / int8 | "
        "fp32 best | int8 best | fp32 / int8 (best) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['engine']} | {r['seconds']:.1f} | "
            f"{r['fp32']:.3f} | "
            f"{r['int8']:.3f} | {r['fp32'] / r['int8']:.2f} | {r['fp32_best']:.3f} | "
            f"{r['int8_best']:.3f} | {r['fp32_best'] / r['int8_best']:.2f} |"
        )
    return "\n".join(lines)


def sweep_run(run_dir: Path, num_images: int, tmp: Path) -> list[dict]:
    """Validation rank-1 / mAP of fp32 and of every setting of :data:`SWEEP` for one run."""
    state = load_checkpoint(run_dir / "model.pt")
    cfg = state["config"]
    val = validation_split(load_dataset(cfg["dataset"], cfg["data_root"]), val_fraction=0.2)
    size = (int(cfg["input_size"][0]), int(cfg["input_size"][1]))
    labels = split_labels(val.query, val.gallery)
    images = {s: load_records(getattr(val, s), size) for s in ("query", "gallery")}
    exported = export_run(run_dir, state=state)

    def scores(path: Path, engine: str) -> dict:
        loaded = load_engine(path, engine, threads=1, input_size=size)
        q, g = (engine_embeddings(loaded, images[s]) for s in ("query", "gallery"))
        return score_embeddings(q, g, labels)

    fp32 = scores(exported.path, "onnxruntime")
    rows = [{"model": cfg["model"], "engine": "fp32", "setting": "-", **fp32, "seconds": 0.0}]
    for engine, settings in SWEEP.items():
        for label, setting in settings.items():
            setting = dataclasses.replace(setting, num_images=num_images)
            suffix = ".onnx" if engine == "onnxruntime-int8" else ".xml"
            out = tmp / f"{run_dir.parent.name}-{engine}-{len(rows)}{suffix}"
            t0 = time.perf_counter()
            result = quantize_run(
                run_dir,
                engine,
                dataset=val,
                settings=setting,
                state=state,
                exported=exported,
                out=out,
            )
            seconds = time.perf_counter() - t0
            row = {"model": cfg["model"], "engine": engine, "setting": label}
            rows.append({**row, **scores(result.path, engine), "seconds": seconds})
            print(
                f"  {cfg['model']} {engine} {label}: rank-1 {100 * rows[-1]['rank1']:.1f} "
                f"mAP {100 * rows[-1]['mAP']:.1f} (fp32 {100 * fp32['mAP']:.1f})",
                flush=True,
            )
    return rows


def sweep_table(rows: list[dict], num_images: int) -> str:
    lines = [
        "int8 settings on the validation split (20% of the training identities held out, seed 0;"
        f" calibrated on {num_images} images of the other 80%). Change = int8 - fp32, points.",
        "",
        "| model | engine | setting | rank-1 | mAP | rank-1 change | mAP change | quantise s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    fp32 = {r["model"]: r for r in rows if r["engine"] == "fp32"}
    for r in rows:
        ref = fp32[r["model"]]
        lines.append(
            f"| {r['model']} | {r['engine']} | {r['setting']} | {100 * r['rank1']:.1f} | "
            f"{100 * r['mAP']:.1f} | {100 * (r['rank1'] - ref['rank1']):+.1f} | "
            f"{100 * (r['mAP'] - ref['mAP']):+.1f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models (costs)")
    parser.add_argument(
        "--sizes", nargs="+", default=["64x32", "256x128"], help="input HxW (costs; default both)"
    )
    parser.add_argument(
        "--num-images", type=positive_int, default=300, help="calibration images (default 300)"
    )
    parser.add_argument("--repeats", type=positive_int, default=15, help="interleaved rounds")
    parser.add_argument("--target-seconds", type=float, default=0.1, help="per measurement")
    parser.add_argument(
        "--val-runs", nargs="+", type=Path, default=None, help="compare settings on these runs"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report (default runs/bench/quantize[_sweep].md)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        if args.val_runs:
            missing = [str(d) for d in args.val_runs if not (d / "model.pt").is_file()]
            if missing:
                parser.error(f"no model.pt in {', '.join(missing)}")
            rows = [r for d in args.val_runs for r in sweep_run(d, args.num_images, Path(tmp))]
            table = sweep_table(rows, args.num_images)
            out = args.out or RunsLayout.from_env().bench_report("quantize_sweep.md")
        else:
            unknown = [m for m in args.models if m not in list_models()]
            if unknown:
                parser.error(f"unknown model(s) {unknown}; known: {sorted(list_models())}")
            rows = []
            for name in args.models:
                for size in [parse_size(s) for s in args.sizes]:
                    rows += bench_costs(
                        name, size, args.num_images, args.repeats, args.target_seconds, Path(tmp)
                    )
            table = costs_table(rows, args, time.perf_counter() - start)
            out = args.out or RunsLayout.from_env().bench_report("quantize.md")
    atomic_write_text(out, table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
