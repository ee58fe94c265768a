"""Identity-classification training of re-ID CNNs, resumable and deterministic.

``python -m deep.train --model resnet50 --dataset synthetic`` (``make train MODEL=...``) trains a
model from :mod:`deep.models` as a classifier over the training identities (cross-entropy with
optional label smoothing, optional batch-hard triplet loss with an identity-balanced sampler),
then evaluates it (:mod:`deep.evaluate`) and writes ``summary.json`` and a results-table row.

Guarantees
----------
* Determinism: batches and augmentation are a pure function of (seed, epoch, batch index)
  (:mod:`deep.data`), model initialisation depends only on the seed, and deterministic algorithms
  are requested, so on CPU two runs with the same seed give identical weights.
* Resumability: an atomic checkpoint is written every epoch and every ``checkpoint_every``
  steps; ``--resume`` continues from it (mid-epoch included) to the same final weights as an
  uninterrupted run. A NaN/inf loss stops the run with a clear error and leaves the last good
  checkpoint in place.
* Distillation hook: ``train(config, teacher=...)`` takes a callable ``teacher(batch) ->
  (logits, embedding)`` (see :mod:`deep.distill`); the loss then becomes Hinton's
  ``(1 - alpha) CE + alpha T^2 KL`` (+ an optional embedding term), everything else unchanged.
* DistributedDataParallel: under ``torchrun`` each rank takes its slice of every global batch
  (gloo on CPU, nccl on GPU); only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from data.io import atomic_write_text
from data.layouts import ReidDataset, load_dataset
from data.paths import run_dir_for
from deep.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from deep.data import AugmentConfig, Batch, DeterministicLoader, load_records
from deep.kd_loss import EmbeddingDistillation, distillation_loss
from deep.models import ReIDNet, build_model, list_models
from deep.pretrained import (
    INITS,
    PretrainedWeightsError,
    initialise,
    is_backbone_file,
)

log = logging.getLogger("deep.train")

TeacherFn = Callable[[Batch], "tuple[Tensor, Tensor | None]"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json and in checkpoints)."""

    model: str = "resnet50"
    dataset: str = "synthetic"
    data_root: str | None = None
    out: str | None = None  # run folder; default runs/<dataset>/deep/<model>/<variant>_seed<k>
    variant: str = "baseline"
    seed: int = 0
    input_size: tuple[int, int] = (64, 32)
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"
    warmup_epochs: int = 2
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    label_smoothing: float = 0.1
    triplet_weight: float = 0.0
    triplet_margin: float = 0.3
    sampler: str = "random"
    instances: int = 4
    flip: bool = True
    pad: int = 4
    erasing: float = 0.5
    colour_jitter: float = 0.0
    bn_neck: bool = True
    last_stride: int | None = None
    zero_init_residual: bool = False
    # Initialisation (deep.pretrained): "pretrained" fine-tunes from the shipped backbone of the
    # model (`make pretrain`), or from `weights` (a deep.pretrain file, a backbone state dict or
    # a torchvision/ImageNet file), or from torchvision's cached ImageNet file (`pretrained`);
    # "scratch" is a random initialisation.
    init: str = "pretrained"
    pretrained: bool = False
    weights: str | None = None
    checkpoint_every: int = 50  # steps; 0 = only at the end of each epoch
    stop_after_steps: int | None = None  # debugging / tests: simulate an interruption
    device: str = "auto"
    threads: int | None = None
    evaluate: bool = True
    # Distillation (used when a teacher is given): Hinton soft targets, optional embedding term.
    kd_T: float = 4.0
    kd_alpha: float = 0.9
    kd_feature_weight: float = 0.0
    kd_feature_kind: str = "cosine"
    teacher: str | None = None
    extra: dict = field(default_factory=dict)

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return run_dir_for(self.dataset) / "deep" / self.model / f"{self.variant}_seed{self.seed}"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> None:
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; known models: {list_models()}")
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (
                self.optimizer in ("sgd", "adam"),
                f"optimizer must be sgd or adam: {self.optimizer!r}",
            ),
            (
                self.scheduler in ("cosine", "step"),
                f"scheduler must be cosine or step: {self.scheduler!r}",
            ),
            (0 <= self.warmup_epochs < self.epochs, "warmup_epochs must be in [0, epochs)"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)"),
            (self.init in INITS, f"init must be one of {INITS}, got {self.init!r}"),
            (
                self.init == "pretrained" or not (self.pretrained or self.weights),
                "--weights / --pretrained load weights: they need --init pretrained",
            ),
            (
                len(self.input_size) == 2 and min(self.input_size) >= 16,
                "input_size must be HxW >= 16",
            ),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"device must be auto, cpu or cuda: {self.device!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# ---------------------------------------------------------------------------------------------
def _setup_distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but no GPU is available")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def batch_hard_triplet(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017) on Euclidean distances."""
    dist = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    valid = torch.isfinite(hardest_neg) & (same.sum(1) > 1)
    if not valid.any():
        return embeddings.sum() * 0.0
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.scheduler == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        epoch = step // steps_per_epoch
        return config.gamma ** sum(epoch >= m for m in config.milestones)

    return factor


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])


def load_training_data(config: TrainConfig, dataset: ReidDataset | None = None):
    dataset = dataset or load_dataset(config.dataset, config.data_root)
    images = load_records(dataset.train, config.input_size)
    labels = torch.tensor([r.pid for r in dataset.train], dtype=torch.long)
    return dataset, images, labels


#: The config fields that define the training batches (order, augmentation, data): two runs
#: that agree on them see identical batches at every (epoch, index) both reach, which the
#: distillation teacher cache relies on. The number of epochs is deliberately not one of them.
SCHEDULE_FIELDS = (
    "seed",
    "input_size",
    "batch_size",
    "flip",
    "pad",
    "erasing",
    "colour_jitter",
    "sampler",
    "instances",
    "dataset",
    "data_root",
)


def training_loader(
    config: TrainConfig, images: Tensor, labels: Tensor, *, rank: int = 0, world_size: int = 1
) -> DeterministicLoader:
    """The deterministic batches of ``config``'s schedule (see :data:`SCHEDULE_FIELDS`)."""
    return DeterministicLoader(
        images,
        labels,
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=AugmentConfig(config.flip, config.pad, config.erasing, config.colour_jitter),
        sampler=config.sampler,
        instances=config.instances,
        rank=rank,
        world_size=world_size,
    )


def train(
    config: TrainConfig,
    *,
    teacher: TeacherFn | None = None,
    teacher_dim: int | None = None,
    dataset: ReidDataset | None = None,
) -> Path:
    """Train (or resume) a run; returns the run folder. Evaluation follows if configured."""
    config.validate()
    device = resolve_device(config.device)
    rank, world = _setup_distributed(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Data first: a bad dataset path must not leave an empty run folder behind.
    dataset, images, labels = load_training_data(config, dataset)
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _add_file_log(run_dir / "train.log")
        atomic_write_text(run_dir / "config.json", json.dumps(config.as_dict(), indent=2))
    num_classes = dataset.num_train_pids

    torch.manual_seed(config.seed)
    model, init_record = build_initialised(config, num_classes)
    model = model.to(device)
    feature_kd = None
    if teacher is not None and config.kd_feature_weight > 0:
        if teacher_dim is None:
            raise ValueError("embedding distillation needs the teacher's embedding size")
        feature_kd = EmbeddingDistillation(
            model.embedding_dim, teacher_dim, kind=config.kd_feature_kind
        ).to(device)
    params = list(model.parameters()) + (list(feature_kd.parameters()) if feature_kd else [])
    if config.optimizer == "sgd":
        optimiser = torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
        )
    else:
        optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    loader = training_loader(config, images, labels, rank=rank, world_size=world)
    steps_per_epoch = loader.num_batches(0)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set ({len(labels)} images) is smaller than one batch "
            f"({config.batch_size})"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda(config, steps_per_epoch))

    ckpt_path = run_dir / "checkpoint.pt"
    start_epoch, start_batch, global_step = 0, 0, 0
    # Wall time of the training loop, carried across resumes (the README's cost tables).
    train_seconds = 0.0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, expected_model=config.model)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if feature_kd is not None and "feature_kd" in state:
            feature_kd.load_state_dict(state["feature_kd"])
        _set_rng_state(state["rng"])
        start_epoch, start_batch, global_step = state["epoch"], state["batch"], state["step"]
        train_seconds = state.get("train_seconds", 0.0)
        if rank == 0:
            log.info("resuming %s at epoch %d, batch %d", run_dir, start_epoch, start_batch)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    t_session = time.perf_counter()

    def training_seconds() -> float:
        return train_seconds + time.perf_counter() - t_session

    def snapshot(epoch: int, batch: int) -> None:
        if rank != 0:
            return
        state = {
            "model_name": config.model,
            "model": model.state_dict(),
            "optimizer": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "step": global_step,
            "train_seconds": training_seconds(),
            "rng": _rng_state(),
            "config": config.as_dict(),
            "num_classes": num_classes,
        }
        if feature_kd is not None:
            state["feature_kd"] = feature_kd.state_dict()
        save_checkpoint(ckpt_path, state)

    stop_at = config.stop_after_steps
    net.train()
    last_epoch: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        first = start_batch if epoch == start_epoch else 0
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"{config.model} ep {epoch + 1}/{config.epochs}",
            disable=rank != 0 or None,  # None: no bar when stderr is not a terminal
            leave=False,
            unit="batch",
        )
        seen, correct, loss_sum, t0 = 0, 0, 0.0, time.perf_counter()
        for batch in loader.epoch(epoch, first):
            images_b = batch.images.to(device)
            labels_b = batch.labels.to(device)
            logits, embedding = net(images_b, return_embedding=True)
            if teacher is not None:
                t_logits, t_embedding = teacher(batch)
                loss = distillation_loss(
                    logits,
                    t_logits.to(device),
                    labels_b,
                    T=config.kd_T,
                    alpha=config.kd_alpha,
                    label_smoothing=config.label_smoothing,
                )
                if feature_kd is not None:
                    loss = loss + config.kd_feature_weight * feature_kd(
                        embedding, t_embedding.to(device)
                    )
            else:
                loss = F.cross_entropy(logits, labels_b, label_smoothing=config.label_smoothing)
            if config.triplet_weight > 0:
                loss = loss + config.triplet_weight * batch_hard_triplet(
                    embedding, labels_b, config.triplet_margin
                )
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, batch {batch.index}; "
                    f"the last good checkpoint is kept at {ckpt_path}. "
                    "Lower --lr or check the data."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            global_step += 1
            seen += len(labels_b)
            correct += int((logits.argmax(1) == labels_b).sum())
            loss_sum += loss.item() * len(labels_b)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}",
                acc=f"{correct / seen:.2f}",
                ips=f"{seen * world / max(elapsed, 1e-9):.0f}",
            )
            bar.update(1)
            done_batches = batch.index + 1
            if config.checkpoint_every and global_step % config.checkpoint_every == 0:
                snapshot(epoch, done_batches)
            if stop_at is not None and global_step >= stop_at:
                snapshot(epoch, done_batches)
                bar.close()
                log.info("stopped after %d steps (stop_after_steps)", global_step)
                return run_dir
        bar.close()
        snapshot(epoch + 1, 0)
        if seen:
            # The last epoch's training loss and accuracy say whether the model fits its
            # training set at all (an underfitting recipe looks like a weak model).
            last_epoch = {
                "epoch": epoch + 1,
                "loss": loss_sum / seen,
                "accuracy": correct / seen,
                "images_per_s": seen * world / (time.perf_counter() - t0),
            }
        if rank == 0 and seen:
            log.info(
                "%s epoch %d/%d loss %.4f acc %.3f %.0f img/s lr %.4g",
                config.model,
                epoch + 1,
                config.epochs,
                last_epoch["loss"],
                last_epoch["accuracy"],
                last_epoch["images_per_s"],
                scheduler.get_last_lr()[0],
            )
    if rank == 0:
        save_checkpoint(
            run_dir / "model.pt",
            {
                "model_name": config.model,
                "model": model.state_dict(),
                "num_classes": num_classes,
                "config": config.as_dict(),
                "training": {
                    **last_epoch,
                    "seconds": training_seconds(),
                },
                "init": init_record,
            },
        )
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if config.evaluate and rank == 0:
        from deep.evaluate import evaluate_run

        evaluate_run(run_dir, dataset=dataset)
    return run_dir


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for independent runs, started with spawn: forking a process that has
    already used torch's OpenMP (a notebook, a test session) can crash the workers."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def discard_stale_checkpoint(config: TrainConfig) -> None:
    """Delete the run folder's partial checkpoint if another recipe started it: start over
    rather than mix two recipes (a checkpoint of this very config is resumed by :func:`train`)."""
    path = config.run_dir() / "checkpoint.pt"
    if path.exists():
        state = load_checkpoint(path, expected_model=config.model)
        if state["config"] != config.as_dict():
            path.unlink()


def build_initialised(config: TrainConfig, num_classes: int) -> tuple[ReIDNet, dict]:
    """The model of ``config``, initialised as ``config.init`` says, and a record of it.

    The record (``init``, ``weights``, ``sha256``) goes into ``model.pt`` and ``summary.json``.
    """
    torchvision_file = (
        config.init == "pretrained"
        and config.weights is not None
        and Path(config.weights).is_file()
        and not is_backbone_file(config.weights)
    )
    model = build_model(
        config.model,
        num_classes,
        pretrained=config.pretrained,
        weights=config.weights if torchvision_file else None,
        bn_neck=config.bn_neck,
        last_stride=config.last_stride,
        zero_init_residual=config.zero_init_residual,
    )
    if config.init == "scratch":
        return model, initialise(model, config.model, "scratch")
    if config.pretrained:
        return model, {"init": "pretrained", "weights": "torchvision ImageNet", "sha256": None}
    if torchvision_file:
        return model, {
            "init": "pretrained",
            "weights": str(config.weights),
            "sha256": file_sha256(config.weights),
        }
    record = initialise(
        model, config.model, "pretrained", weights=config.weights, input_size=config.input_size
    )
    return model, record


def load_trained(run_dir: Path | str, *, expected_model: str | None = None):
    """(model in eval mode, config dict) of a finished run folder."""
    state = load_checkpoint(Path(run_dir) / "model.pt", expected_model=expected_model)
    return model_from_state(state), state["config"]


def model_from_state(state: dict) -> ReIDNet:
    """The model (in eval mode) of a loaded ``model.pt`` state (see :func:`load_trained`)."""
    cfg = state["config"]
    model = build_model(
        state["model_name"],
        state["num_classes"],
        bn_neck=cfg["bn_neck"],
        last_stride=cfg["last_stride"],
    )
    model.load_state_dict(state["model"])
    model.eval()
    return model


def _add_file_log(path: Path) -> None:
    root = logging.getLogger("deep")
    # One log file per run: a worker process running several runs must not write into old ones.
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        if handler.baseFilename == str(Path(path).resolve()):
            return
        root.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def size_arg(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 64x32, got {text!r}") from None
    return h, w


def config_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field (shared with deep.distill)."""
    parser = argparse.ArgumentParser(description=description)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("extra",):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "init":
            parser.add_argument(
                flag,
                choices=INITS,
                default=None,
                help="pretrained (default: the shipped backbone, or --weights PATH) or scratch",
            )
        elif f.name == "input_size":
            parser.add_argument(flag, type=size_arg, default=None, help="HxW, e.g. 64x32")
        elif f.name == "milestones":
            parser.add_argument(flag, type=int, nargs="*", default=None)
        elif isinstance(default, float):
            parser.add_argument(flag, type=float, default=None)
        elif isinstance(default, int) or f.name in ("last_stride", "stop_after_steps", "threads"):
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, default=None)
    return parser


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    base = base or TrainConfig()
    updates = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            updates[f.name] = tuple(value) if f.name == "milestones" else value
    return dataclasses.replace(base, **updates)


def main(argv: list[str] | None = None) -> int:
    parser = config_parser("Train a re-ID CNN as an identity classifier (make train)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint (default: refuse to "
        "overwrite a started run)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = config_from_args(args)
    try:
        config.validate()
        ckpt = config.run_dir() / "checkpoint.pt"
        if ckpt.exists() and not args.resume:
            raise ValueError(
                f"{config.run_dir()} already has a checkpoint; pass --resume to "
                "continue it or --out to start a new run"
            )
        signal = None
        if config.teacher:
            # Same path as `python -m deep.distill train`: a frozen teacher, soft targets.
            from deep.distill import open_teacher

            signal = open_teacher(config.teacher, config)
        run_dir = train(
            config, teacher=signal, teacher_dim=signal.embedding_dim if signal else None
        )
    except (
        ValueError,
        FileNotFoundError,
        CheckpointError,
        TrainingDiverged,
        PretrainedWeightsError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
