"""Every option tried on a real dataset, scored on validation identities (never on the test split).

The training identities are split by identity (``data.layouts.validation_split``, seeded; the
held-out ids are written to ``split.json`` beside the report): every pipeline trains on the rest
and is scored on the held-out ones (Market-1501 evaluation: one query per held-out identity and
camera, the rest in the gallery). Each invocation tries the cartesian product of its options and
adds one row per option to the report (rows with the same option are replaced, so interrupted or
repeated invocations accumulate; finished CNN runs are reused, interrupted ones resume).
``--teacher`` trains the options distilled from a teacher this script trained on the same split::

    python bench/bench_real_validation.py lomo --data-root /data/cuhk03_labeled \\
        --sizes 128x48 64x32 --regs 0.001 0.01
    python bench/bench_real_validation.py cnn --data-root /data/cuhk03_labeled \\
        --models mobilenet_v2_1.0 --inits imagenet pretrained scratch --sizes 64x32 \\
        --epochs 10 --lrs 0.01 --erasing 0 0.5
    python bench/bench_real_validation.py cnn --data-root /data/cuhk03_labeled \
        --models mobilenet_v1_0.25 --teacher <runs-dir>/real_validation/mobilenet_v2_1.0/<option>

Writes ``<out>/real_validation.csv`` and ``.md`` (default ``<runs-dir>/<dataset>/real_validation``);
CNN runs go to ``<runs-dir>/<dataset>/real_validation/<model>/<option>``, LOMO features to the
dataset's LOMO cache. One thread per process unless ``--threads``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classical.pipeline import ClassicalConfig, LomoXqda
from compare.timing import cpu_model, thread_limit
from data.cli import fraction, image_size, non_negative_int, positive_int
from data.io import atomic_write_text
from data.layouts import ReidDataset, load_dataset, record_arrays, validation_split
from data.protocols import evaluate
from data.runs import RunsLayout, add_runs_dir_argument, layout_from_args
from deep.config import TrainConfig
from deep.distill import train_on_split
from deep.models import list_models
from deep.pretrained import INITS

REPORT = "real_validation"


@dataclass
class OptionResult:
    """One option tried: its settings, its validation scores and what it cost."""

    pipeline: str  # "lomo_xqda" or "cnn"
    option: str  # every setting that changes the numbers, one string (the report's key)
    model: str
    init: str
    input: str
    epochs: int | None
    lr: float | None
    val_rank1: float
    val_mAP: float
    train_acc: float | None
    wall_min: float
    split: str  # "val<fraction>-seed<s>: <n> train ids / <m> held-out ids"
    machine: str
    command: str


def split_label(args: argparse.Namespace, val: ReidDataset, full: ReidDataset) -> str:
    held_out = full.num_train_pids - val.num_train_pids
    return (
        f"val{args.val_fraction:g}-seed{args.split_seed}: {val.num_train_pids} train ids / "
        f"{held_out} held-out ids"
    )


def record_split(out_dir: Path, args: argparse.Namespace, val: ReidDataset) -> None:
    """``split.json``: which training identities were held out (original ids), and the seed."""
    held = sorted({r.pid for r in val.query} | {r.pid for r in val.gallery})
    record = {"dataset": args.dataset, "data_root": str(args.data_root),
              "val_fraction": args.val_fraction, "seed": args.split_seed,
              "num_train_ids": val.num_train_pids, "held_out_ids": held,
              "num_queries": len(val.query), "num_gallery": len(val.gallery)}  # fmt: skip
    atomic_write_text(out_dir / f"split_seed{args.split_seed}.json", json.dumps(record, indent=1))


# ---------------------------------------------------------------------------------------------
# LOMO + XQDA: LOMO of every training image once per size (cached), XQDA per regulariser
# ---------------------------------------------------------------------------------------------
def lomo_results(args, full: ReidDataset, val: ReidDataset, label: str) -> list[OptionResult]:
    results = []
    row_of = {r.path: i for i, r in enumerate(full.train)}
    cache = args.layout.lomo_cache(args.dataset)  # shared with make lomo-xqda's test-split run
    for size in args.sizes:
        start = time.perf_counter()
        base = ClassicalConfig(dataset=args.dataset, data_root=args.data_root, input_size=size)
        features = LomoXqda(base, cache).lomo(full.train, f"LOMO train {size[0]}x{size[1]}")
        feature_min = (time.perf_counter() - start) / 60
        part = {s: features[[row_of[r.path] for r in getattr(val, s)]]
                for s in ("train", "query", "gallery")}  # fmt: skip
        for reg in args.regs:
            start = time.perf_counter()
            pipeline = LomoXqda(dataclasses.replace(base, reg=reg), cache)
            pipeline.fit(part["train"], val.train)
            q, g = pipeline.project(part["query"]), pipeline.project(part["gallery"])
            dist = pipeline.matcher(g).distance_matrix(q)
            (qi, qc), (gi, gc) = record_arrays(val.query), record_arrays(val.gallery)
            scores = evaluate(dist, qi, gi, qc, gc)
            results.append(
                OptionResult(
                    pipeline="lomo_xqda",
                    option=f"lomo_xqda_{size[0]}x{size[1]}_reg{reg:g}",
                    model="lomo_xqda",
                    init="n/a",
                    input=f"{size[0]}x{size[1]}",
                    epochs=None,
                    lr=None,
                    val_rank1=100 * float(scores.cmc[0]),
                    val_mAP=100 * scores.mAP,
                    train_acc=None,
                    wall_min=feature_min + (time.perf_counter() - start) / 60,
                    split=label,
                    machine=cpu_model(),
                    command=args.command,
                )
            )
            print(results[-1], flush=True)
    return results


# ---------------------------------------------------------------------------------------------
# CNNs: one training run per option on the training ids of the split, scored on the held-out ids
# ---------------------------------------------------------------------------------------------
def cnn_option(c: TrainConfig) -> str:
    h, w = c.input_size
    parts = [c.model, c.init, f"{h}x{w}", f"ep{c.epochs}", f"lr{c.lr:g}", f"bs{c.batch_size}",
             f"er{c.erasing:g}", "flip" if c.flip else "noflip", f"pad{c.pad}",
             "bnneck" if c.bn_neck else "nobnneck", f"tri{c.triplet_weight:g}",
             f"ls{c.last_stride or 'def'}", f"seed{c.seed}"]  # fmt: skip
    if c.triplet_weight > 0:
        parts.append(f"{c.sampler}{c.instances}")
    if c.colour_jitter > 0:
        parts.append(f"cj{c.colour_jitter:g}")
    if c.teacher:
        parts.append(f"kd-{Path(c.teacher).name}-T{c.kd_T:g}-a{c.kd_alpha:g}")
    return "_".join(parts)


def cnn_configs(args: argparse.Namespace, runs_root: Path) -> list[TrainConfig]:
    grid = itertools.product(args.models, args.inits, args.sizes, args.epochs, args.lrs,
                             args.erasing, args.flip, args.triplet, args.last_stride)  # fmt: skip
    configs = []
    for model, init, size, epochs, lr, erasing, flip, triplet, stride in grid:
        config = TrainConfig(
            model=model, dataset=args.dataset, data_root=str(args.data_root), seed=args.seed,
            input_size=size, epochs=epochs, lr=lr, erasing=erasing, flip=flip == "on",
            triplet_weight=triplet, sampler="identity" if triplet > 0 else "random",
            last_stride=stride or None, init=init, batch_size=args.batch_size,
            warmup_epochs=min(2, epochs - 1), label_smoothing=0.1, pad=args.pad,
            bn_neck=args.bn_neck, colour_jitter=args.colour_jitter, threads=args.threads,
            teacher=args.teacher, kd_T=args.kd_T, kd_alpha=args.kd_alpha,
            variant="distilled" if args.teacher else "baseline",
        )  # fmt: skip
        config = dataclasses.replace(config, out=str(runs_root / model / cnn_option(config)))
        config.validate()
        configs.append(config)
    return configs


def cnn_results(args, full: ReidDataset, val: ReidDataset, label: str) -> list[OptionResult]:
    runs_root = args.layout.report(args.dataset, REPORT)
    results = []
    for config in cnn_configs(args, runs_root):
        start = time.perf_counter()
        scores = train_on_split(config, val, config.teacher)
        h, w = config.input_size
        results.append(
            OptionResult(
                pipeline="cnn",
                option=cnn_option(config),
                model=config.model,
                init=config.init,
                input=f"{h}x{w}",
                epochs=config.epochs,
                lr=config.lr,
                val_rank1=scores["val_rank1"],
                val_mAP=scores["val_mAP"],
                train_acc=scores["train_acc"],
                wall_min=scores["train_min"],
                split=label,
                machine=cpu_model(),
                command=args.command,
            )
        )
        print(f"{results[-1]} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
        write_report(Path(args.out), results)  # after every run: an interruption loses none
    return results


# ---------------------------------------------------------------------------------------------
# The report: rows accumulate across invocations (same option = replaced)
# ---------------------------------------------------------------------------------------------
def write_report(out_dir: Path, results: list[OptionResult]) -> pd.DataFrame:
    path = out_dir / f"{REPORT}.csv"
    new = pd.DataFrame([asdict(r) for r in results])
    if path.is_file():
        old = pd.read_csv(path, dtype={"init": str}, keep_default_na=False, na_values=[""])
        old = old[~(old.option.isin(new.option) & old.split.isin(new.split))]
        new = pd.concat([old, new], ignore_index=True)
    table = new.sort_values(["pipeline", "model", "val_mAP"], ascending=[True, True, False])
    atomic_write_text(path, table.to_csv(index=False))
    shown = table.drop(columns=["machine", "command"]).round(2)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(False)]
    head = f"Options tried on validation identities ({cpu_model()}; commands in the CSV)\n\n"
    atomic_write_text(path.with_suffix(".md"), head + "\n".join(lines) + "\n")
    return table


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", type=Path, required=True, help="dataset folder")
    common.add_argument("--dataset", default="market1501", help="layout (default market1501)")
    common.add_argument("--val-fraction", type=float, default=0.2,
                        help="training ids held out for validation (default 0.2)")  # fmt: skip
    common.add_argument("--split-seed", type=non_negative_int, default=0,
                        help="which ids are held out (default 0)")  # fmt: skip
    add_runs_dir_argument(common)
    common.add_argument(
        "--out", default=None, help="report folder (default <runs-dir>/<dataset>/real_validation)"
    )
    common.add_argument("--threads", type=positive_int, default=1, help="threads (default 1)")
    sub = p.add_subparsers(dest="pipeline", required=True)
    lomo = sub.add_parser("lomo", parents=[common], help="LOMO+XQDA: input size x regulariser")
    lomo.add_argument("--sizes", nargs="+", type=image_size, default=[(128, 48)],
                      help="LOMO input HxW (default 128x48)")  # fmt: skip
    lomo.add_argument("--regs", nargs="+", type=float, default=[1e-3], help="XQDA lambda")
    cnn = sub.add_parser("cnn", parents=[common], help="CNNs: the product of the options below")
    cnn.add_argument(
        "--models",
        nargs="+",
        choices=list_models(),
        default=["mobilenet_v2_1.0"],
        metavar="MODEL",
        help="registry names (default mobilenet_v2_1.0)",
    )
    cnn.add_argument(
        "--inits",
        nargs="+",
        choices=INITS,
        default=["pretrained"],
        help="initialisations (default pretrained: the shipped backbone)",
    )
    cnn.add_argument(
        "--sizes", nargs="+", type=image_size, default=[(64, 32)], help="input HxW (default 64x32)"
    )
    cnn.add_argument("--epochs", nargs="+", type=positive_int, default=[10], help="default 10")
    cnn.add_argument("--lrs", nargs="+", type=float, default=[0.01], help="peak lr (0.01)")
    cnn.add_argument(
        "--erasing",
        nargs="+",
        type=fraction,
        default=[0.0],
        help="random-erasing probabilities (default 0)",
    )
    cnn.add_argument(
        "--flip",
        nargs="+",
        choices=("on", "off"),
        default=["on"],
        help="random horizontal flips (default on)",
    )
    cnn.add_argument("--triplet", nargs="+", type=float, default=[0.0], help="triplet weight")
    cnn.add_argument("--last-stride", nargs="+", type=int, choices=(0, 1, 2), default=[0],
                     help="0 = the model's default")  # fmt: skip
    cnn.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    cnn.add_argument(
        "--pad", type=non_negative_int, default=4, help="random-crop padding in pixels (default 4)"
    )
    cnn.add_argument("--colour-jitter", type=float, default=0.0, help="strength (default 0)")
    cnn.add_argument(
        "--bn-neck",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="BatchNorm neck before the classifier (default off)",
    )
    cnn.add_argument("--seed", type=non_negative_int, default=0, help="training seed")
    cnn.add_argument("--teacher", default=None,
                     help="run folder of a teacher trained by this script on the same split: "
                     "the options are trained distilled from it")  # fmt: skip
    cnn.add_argument("--kd-T", type=float, default=2.0, help="temperature (default 2)")
    cnn.add_argument("--kd-alpha", type=fraction, default=0.9, help="soft-target weight (0.9)")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command = shlex.join(["python", "bench/bench_real_validation.py", *argv])
    if not args.data_root.is_dir():
        parser().error(f"--data-root {args.data_root} is not a folder")
    if getattr(args, "teacher", None) and not (Path(args.teacher) / "model.pt").is_file():
        parser().error(f"--teacher {args.teacher} holds no finished run (model.pt)")
    args.layout: RunsLayout = layout_from_args(args)
    args.out = args.out or str(args.layout.report(args.dataset, REPORT))
    torch.set_num_threads(args.threads)
    try:
        full = load_dataset(args.dataset, str(args.data_root))
        val = validation_split(full, val_fraction=args.val_fraction, seed=args.split_seed)
    except (ValueError, OSError) as err:
        parser().error(str(err))
    label = split_label(args, val, full)
    record_split(Path(args.out), args, val)
    with thread_limit(args.threads):
        if args.pipeline == "lomo":
            results = lomo_results(args, full, val, label)
        else:
            results = cnn_results(args, full, val, label)
    table = write_report(Path(args.out), results)
    print(table.drop(columns=["machine", "command", "split"]).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
