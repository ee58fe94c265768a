"""Pretrain the study's CNNs once on a large disjoint set: ``make pretrain`` (``python -m
deep.pretrain``).

Re-ID CNNs are normally fine-tuned from ImageNet weights; nothing may be downloaded here, so the
toolkit makes its own pretraining data: the synthetic generator's ``pretrain`` preset (2,000
identities, each seen once by every camera, 12,000 images), drawn from its own random stream so
that no identity, camera or image of a study dataset recurs in it (``data.synthetic``,
``SyntheticConfig.stream``). Any dataset in a registered layout can be used instead
(``--dataset market1501 --data-root DIR``).

Each model is trained as an identity classifier (:func:`deep.train.train`, so deterministic,
resumable, with tqdm and the usual training diagnostics) into
``runs/<dataset>/deep/<model>/pretrain_seed<k>/``, evaluated on the pretraining set's own test
split, and its backbone (no classifier) is written in half precision to
``deep/weights/<model>.pt`` with a metadata record ``deep/weights/<model>.json`` (model, input
size, data recipe, epochs, seed, training numbers, sha256); see :mod:`deep.pretrained`. Same
seed, same thread count and same machine give the same bytes: ``make pretrain`` regenerates the
committed files bit for bit (``--check`` compares without writing).

    python -m deep.pretrain                                   # every model of PRETRAIN_EPOCHS
    python -m deep.pretrain --models resnet50 --jobs 1
    python -m deep.pretrain --verify                          # check the shipped files' sha256
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import sys
import time
from pathlib import Path

import torch

from data.cli import entry_point, non_negative_int, positive_int
from data.io import atomic_write_bytes, check_writable
from data.layouts import load_dataset
from data.runs import RunsLayout, add_runs_dir_argument, layout_from_args
from data.synthetic import GENERATOR_VERSION, PRESETS
from deep.checkpoint import file_sha256, load_checkpoint, model_from_state
from deep.config import TrainConfig
from deep.evaluation import extract_embeddings, score_embeddings, split_labels
from deep.models import ReIDNet, list_models
from deep.pretrained import (
    FORMAT,
    WEIGHTS_DIR,
    PretrainedWeightsError,
    available,
    metadata_path,
    verified_path,
    weights_path,
)
from deep.run_folder import RunFolder
from deep.train import prepare_retraining, train, worker_pool

log = logging.getLogger("deep.pretrain")

PRETRAIN_DATASET = "synthetic_pretrain"
#: The shared recipe: 64x32 as the quick profile, larger batches than fine-tuning (12k images).
PRETRAIN_RECIPE = dict(
    input_size=(64, 32),
    batch_size=64,
    lr=0.1,
    optimizer="sgd",
    scheduler="cosine",
    warmup_epochs=1,
    label_smoothing=0.1,
    erasing=0.0,
    pad=4,
    bn_neck=False,
    threads=1,
    init="scratch",
    variant="pretrain",
)
#: Epochs per model: enough for each to fit the 2,000 identities (small models are cheap and
#: need more passes). These are the models whose backbones are shipped, plus ResNet-50 (the
#: paper's teacher: 47 MB in fp16, not shipped, see the README).
PRETRAIN_EPOCHS = {
    "mobilenet_v1_0.25": 30,
    "mobilenet_v1_0.5": 24,
    "mobilenet_v1_1.0": 16,
    "mobilenet_v2_1.0": 16,
    "resnet18": 12,
}
EXTRA_EPOCHS = {"resnet50": 8}


def pretrain_config(
    model: str,
    *,
    dataset: str = PRETRAIN_DATASET,
    data_root: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    layout: RunsLayout | None = None,
) -> TrainConfig:
    """The training config that pretrains ``model`` (its run folder in ``layout``)."""
    if epochs is None:
        epochs = {**PRETRAIN_EPOCHS, **EXTRA_EPOCHS}.get(model, 12)
    return TrainConfig(
        model=model, dataset=dataset, data_root=data_root, seed=seed, epochs=epochs,
        runs_dir=None if layout is None else str(layout.root), **PRETRAIN_RECIPE,
    )  # fmt: skip


def _data_record(config: TrainConfig) -> dict:
    record: dict = {"dataset": config.dataset, "data_root": config.data_root}
    if config.dataset == PRETRAIN_DATASET and config.data_root is None:
        record.update(
            generator="data.synthetic",
            generator_version=GENERATOR_VERSION,
            preset="pretrain",
            generator_seed=0,
            config=dataclasses.asdict(PRESETS["pretrain"]),
        )
    return record


def backbone_bytes(model_name: str, model_state: dict) -> bytes:
    """The shipped file's bytes: the backbone's tensors in half precision, no classifier."""
    prefix = "backbone."
    tensors = {
        k[len(prefix) :]: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model_state.items()
        if k.startswith(prefix)
    }
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": model_name, "backbone": tensors}, buffer)
    return buffer.getvalue()


def export_backbone(run_dir: Path, out_dir: Path, *, check: bool = False) -> dict:
    """Write (or, with ``check``, compare) the backbone file and record of a finished run."""
    state = load_checkpoint(run_dir / "model.pt")
    config = state["config"]
    name = state["model_name"]
    data = backbone_bytes(name, state["model"])
    digest = hashlib.sha256(data).hexdigest()
    run_config = TrainConfig.from_dict(config)
    record = {
        "model": name,
        "format": FORMAT,
        "input_size": list(config["input_size"]),
        "epochs": config["epochs"],
        "seed": config["seed"],
        "num_classes": state["num_classes"],
        "data": _data_record(run_config),
        "recipe": {k: config[k] for k in PRETRAIN_RECIPE if k in config},
        "training": state.get("training", {}),
        # Percent, on the pretraining set's own test split (a sanity check of the pretraining).
        "pretrain_eval": pretrain_eval(run_config, model_from_state(state)),
        "dtype": "float16",
        "bytes": len(data),
        "torch": torch.__version__,
        "sha256": digest,
    }
    target = weights_path(name, out_dir)
    if check:
        found = file_sha256(target) if target.is_file() else None
        record["matches_shipped"] = found == digest
        return record
    atomic_write_bytes(target, data)
    atomic_write_bytes(metadata_path(name, out_dir), (json.dumps(record, indent=2) + "\n").encode())
    return record


def pretrain_eval(config: TrainConfig, model: ReIDNet) -> dict:
    """Rank-1 and mAP (percent) on the pretraining set's own test split: a sanity check that the
    backbone learned to tell identities apart (not a number of the study)."""
    dataset = load_dataset(config.dataset, config.data_root)
    size = tuple(config.input_size)
    q = extract_embeddings(model, dataset.query, size)
    g = extract_embeddings(model, dataset.gallery, size)
    scores = score_embeddings(q, g, split_labels(dataset.query, dataset.gallery))
    return {"rank1": 100 * scores["rank1"], "mAP": 100 * scores["mAP"]}


def pretrain_one(config: TrainConfig, out_dir: str, check: bool = False) -> dict:
    """Train (or reuse, or resume) one pretraining run, then write its backbone."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    if not RunFolder(config.run_dir()).is_current(config):
        prepare_retraining(config)
        train(config, replace=True)
    record = export_backbone(config.run_dir(), Path(out_dir), check=check)
    record["wall_seconds"] = time.perf_counter() - start
    return record


def run_pretraining(
    models: list[str],
    *,
    dataset: str = PRETRAIN_DATASET,
    data_root: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    out_dir: Path | str = WEIGHTS_DIR,
    jobs: int = 2,
    check: bool = False,
    layout: RunsLayout | None = None,
) -> list[dict]:
    """Pretrain ``models`` (``jobs`` at a time, one thread each; run folders in ``layout``,
    default the environment's) and write their backbones."""
    layout = layout or RunsLayout.from_env()
    configs = [
        pretrain_config(
            m, dataset=dataset, data_root=data_root, seed=seed, epochs=epochs, layout=layout
        )
        for m in models
    ]
    for config in configs:
        config.validate()  # before anything is written or generated
    if not check:
        check_writable(out_dir)  # not after hours of training
    if dataset == PRETRAIN_DATASET:
        load_dataset(dataset, data_root)  # generate once here, not in every worker
    # The longest runs first, so the two workers finish together.
    configs.sort(key=lambda c: -c.epochs * _cost(c.model))
    if jobs <= 1:
        return [pretrain_one(c, str(out_dir), check) for c in configs]
    with worker_pool(jobs) as pool:
        futures = [pool.submit(pretrain_one, c, str(out_dir), check) for c in configs]
        return [f.result() for f in futures]


def _cost(model: str) -> float:
    """Rough relative seconds per image (only orders the jobs)."""
    return {"resnet50": 16, "resnet18": 7, "mobilenet_v2_1.0": 3.6, "mobilenet_v1_1.0": 3}.get(
        model, 1
    )


def verify(out_dir: Path | str = WEIGHTS_DIR) -> list[str]:
    """Check every shipped backbone against its recorded sha256; returns the models checked."""
    names = available(out_dir)
    if not names:
        raise PretrainedWeightsError(f"no pretrained backbones in {out_dir}; run `make pretrain`")
    for name in names:
        verified_path(name, out_dir)
    return names


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deep.pretrain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list_models(),
        metavar="MODEL",
        default=list(PRETRAIN_EPOCHS),
        help=f"default: the shipped ones, {list(PRETRAIN_EPOCHS)}; also e.g. resnet50",
    )
    parser.add_argument(
        "--dataset", default=PRETRAIN_DATASET, help=f"dataset layout (default {PRETRAIN_DATASET})"
    )
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the layout's)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="override every model's epochs"
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="default: deep/weights")
    parser.add_argument(
        "--jobs", type=positive_int, default=2, help="parallel runs, one thread each (default 2)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="train (or reuse) and compare with the files in --out instead of writing",
    )
    parser.add_argument(
        "--verify", action="store_true", help="only check the files in --out against their sha256"
    )
    add_runs_dir_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.verify:
        names = verify(args.out)
        print(f"{len(names)} pretrained backbones verified in {args.out}: {', '.join(names)}")
        return 0
    start = time.perf_counter()
    records = run_pretraining(
        args.models,
        dataset=args.dataset,
        data_root=args.data_root,
        seed=args.seed,
        epochs=args.epochs,
        out_dir=args.out,
        jobs=args.jobs,
        check=args.check,
        layout=layout_from_args(args),
    )
    print(f"pretraining done in {(time.perf_counter() - start) / 60:.1f} min")
    for r in records:
        line = (
            f"  {r['model']:<18} {r['epochs']:>3} ep  train acc "
            f"{100 * r['training'].get('accuracy', float('nan')):5.1f}%  "
            f"pretrain-test rank-1 {r['pretrain_eval'].get('rank1', float('nan')):5.1f}%  "
            f"{r['bytes'] / 1e6:6.2f} MB  {r['training'].get('seconds', 0) / 60:5.1f} min"
        )
        if args.check:
            line += "  identical to shipped" if r["matches_shipped"] else "  DIFFERS from shipped"
        print(line)
    if args.check and not all(r["matches_shipped"] for r in records):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
