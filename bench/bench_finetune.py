"""Fine-tuned from the shipped pretrained backbones versus trained from scratch, per model.

Every run trains on 80% of the training identities of a dataset and is evaluated on the other
20% (``data.layouts.validation_split``): the test split is never looked at, so the grid below is
also how the quick profile's fine-tuning epochs and learning rate were chosen. Scratch runs use
the recipe and per-model epochs the quick profile used before pretraining existed; fine-tuned
runs try each (lr, epochs) of the grid. Reports validation rank-1 / mAP, last-epoch training
accuracy and training minutes (one thread per run, ``--jobs`` runs in parallel).

    python bench/bench_finetune.py [--models mobilenet_v1_0.25 resnet18] [--epochs 5 10 20]
        [--lrs 0.05 0.01] [--sizes 64x32 128x64] [--jobs 2]

Writes runs/bench/finetune.md (and .csv).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.timing import cpu_model
from data.cli import non_negative_int, positive_int
from data.images import parse_size
from data.layouts import load_dataset, validation_split
from data.runs import RunsLayout
from deep.config import TrainConfig
from deep.distill import train_on_split
from deep.profiles import PROFILES
from deep.train import worker_pool

#: The quick profile's epochs from scratch (each model fits its training set; README).
SCRATCH_EPOCHS = {
    "mobilenet_v1_0.25": 80,
    "mobilenet_v1_0.5": 60,
    "mobilenet_v1_1.0": 40,
    "mobilenet_v2_1.0": 60,
    "resnet18": 20,
    "resnet50": 20,
}


def configs(args: argparse.Namespace, out_dir: Path) -> list[TrainConfig]:
    recipe = {**PROFILES["quick"].recipe}
    runs = []
    for model in args.models:
        base = TrainConfig(dataset=args.dataset, data_root=args.data_root, seed=args.seed,
                           **{**recipe, "model": model})  # fmt: skip
        for size in args.sizes:
            hw = parse_size(size)
            tag = f"{hw[0]}x{hw[1]}"
            if not args.no_scratch:
                runs.append(
                    dataclasses.replace(
                        base, input_size=hw, init="scratch", lr=0.05,
                        epochs=SCRATCH_EPOCHS.get(model, 20),
                        variant="scratch", out=str(out_dir / model / f"scratch_{tag}"),
                    )
                )  # fmt: skip
            for lr in args.lrs:
                for epochs in args.epochs:
                    runs.append(
                        dataclasses.replace(
                            base, input_size=hw, init="pretrained", lr=lr, epochs=epochs,
                            warmup_epochs=min(base.warmup_epochs, epochs - 1),
                            variant="finetune",
                            out=str(out_dir / model / f"finetune_{tag}_lr{lr:g}_ep{epochs}"),
                        )
                    )  # fmt: skip
    return runs


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="dataset layout (default synthetic)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the layout's)")
    parser.add_argument("--models", nargs="+", default=None, help="default: the quick profile's")
    parser.add_argument(
        "--epochs", nargs="+", type=positive_int, default=[5, 10, 20], help="default 5 10 20"
    )
    parser.add_argument(
        "--lrs", nargs="+", type=float, default=[0.05, 0.01], help="learning rates (0.05 0.01)"
    )
    parser.add_argument("--sizes", nargs="+", default=["64x32"], help="input HxW (default 64x32)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--jobs", type=positive_int, default=2, help="parallel worker processes (default 2)"
    )
    parser.add_argument("--no-scratch", action="store_true", help="only the fine-tuning grid")
    args = parser.parse_args(argv)
    profile = PROFILES["quick"]
    args.models = args.models or [*profile.students, *profile.reference_models]
    full = load_dataset(args.dataset, args.data_root)
    val = validation_split(full, val_fraction=0.2, seed=args.seed)
    out_dir = RunsLayout.from_env().report(args.dataset, "finetune_bench")
    runs = configs(args, out_dir)
    with worker_pool(args.jobs) as pool:
        futures = [pool.submit(train_on_split, c, val) for c in runs]
        rows = []
        for c, f in zip(runs, futures, strict=True):
            rows.append(
                {
                    "model": c.model,
                    "input": f"{c.input_size[0]}x{c.input_size[1]}",
                    "init": c.init,
                    "lr": c.lr,
                    "epochs": c.epochs,
                    **f.result(),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    metrics = ["val_rank1", "val_mAP", "train_min", "train_acc"]
    table[metrics] = table[metrics].round(2)
    out = RunsLayout.from_env().bench_report("finetune.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    head = (
        f"Fine-tuned vs scratch on the validation split of {args.dataset} "
        f"({len(val.train)} training images, {len(val.query)} queries), seed {args.seed}, "
        f"{cpu_model()}, 1 thread per run, {args.jobs} runs in parallel\n\n"
    )
    out.write_text(head + _markdown(table) + "\n")
    print(head + table.to_string(index=False))


if __name__ == "__main__":
    main()
