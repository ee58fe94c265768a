"""Identity-classification training of re-ID CNNs, resumable and deterministic.

``python -m deep.train --model resnet50 --dataset synthetic`` (``make train MODEL=...``) trains a
model from :mod:`deep.models` as a classifier over the training identities (cross-entropy with
optional label smoothing, optional batch-hard triplet loss with an identity-balanced sampler),
and writes ``model.pt`` (weights, config, last epoch's training loss / accuracy, initialisation
record). Accuracy and speed are measured by ``compare`` (``python -m compare.measure RUN_DIR``;
``make train`` runs both).

Guarantees
----------
* Determinism: batches and augmentation are a pure function of (seed, epoch, batch index)
  (:mod:`deep.loader`), model initialisation depends only on the seed, and deterministic algorithms
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from data.cli import CommandFailed, entry_point
from data.io import OutputError, atomic_write_text, ensure_dir, remove_orphan_temporaries
from data.layouts import ReidDataset, check_training_set
from data.ownership import MARKER_NAME, check_run_folder, mark_run_folder
from deep.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from deep.config import TrainConfig, config_from_args, config_parser
from deep.kd_loss import EmbeddingDistillation, distillation_loss
from deep.loader import Batch, DeterministicLoader, load_training_data, training_loader
from deep.models import ReIDNet, build_model
from deep.pretrained import initialise, is_backbone_file
from deep.run_folder import RUNTIME_FIELDS, RunFolder
from deep.teacher import open_teacher, weights_fingerprint

log = logging.getLogger("deep.train")

TeacherFn = Callable[[Batch], "tuple[Tensor, Tensor | None]"]

#: The marker kind of a CNN run folder (:mod:`data.ownership`).
RUN_KIND = "deep"
#: Files a CNN run folder receives (training, distillation, measurement, export): the names
#: whose atomic-write temporaries a killed writer may leave there.
RUN_OUTPUTS = (
    "checkpoint.pt",
    "model.pt",
    "config.json",
    "summary.json",
    "model.onnx",
    "model.onnx.json",
    # int8 files (deep.quantize)
    "model.int8.onnx",
    "model.int8.onnx.json",
    "model.int8.xml",
    "model.int8.bin",
    "model.int8.xml.json",
    "teacher.json",
    MARKER_NAME,
)


class TrainingDiverged(CommandFailed, RuntimeError):
    """The loss became NaN or infinite."""


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


@dataclass
class EpochStats:
    """Running loss / accuracy of the current epoch (saved in mid-epoch checkpoints, so that a
    resumed epoch reports the numbers of all its batches, not only those after the resume)."""

    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def add(self, loss: float, logits: Tensor, labels: Tensor) -> None:
        self.seen += len(labels)
        self.correct += int((logits.argmax(1) == labels).sum())
        self.loss_sum += loss * len(labels)


@dataclass
class _Session:
    """One training run in progress: what it trains, with what, and where it is."""

    config: TrainConfig
    run_dir: Path
    model: ReIDNet
    feature_kd: EmbeddingDistillation | None
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: DeterministicLoader
    num_classes: int
    init_record: dict
    rank: int = 0
    world: int = 1
    epoch: int = 0
    batch: int = 0
    step: int = 0
    stats: EpochStats = dataclasses.field(default_factory=EpochStats)
    last_epoch: dict = dataclasses.field(default_factory=dict)  # the last finished epoch's numbers
    seconds_before: float = 0.0  # training wall time of earlier sessions (resumes)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    net: nn.Module | None = None  # the model, wrapped for DistributedDataParallel if needed

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def snapshot(self) -> None:
        """Atomic checkpoint of everything needed to continue bit for bit (rank 0 only)."""
        if self.rank != 0:
            return
        state = {
            "model_name": self.config.model,
            "model": self.model.state_dict(),
            "optimizer": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "epoch_stats": dataclasses.asdict(self.stats),
            "last_epoch": self.last_epoch,
            "train_seconds": self.seconds(),
            "rng": _rng_state(),
            "config": self.config.as_dict(),
            "num_classes": self.num_classes,
        }
        if self.feature_kd is not None:
            state["feature_kd"] = self.feature_kd.state_dict()
        save_checkpoint(self.checkpoint_path, state)

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint of this run (see :func:`_check_resumable`)."""
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.feature_kd is not None and "feature_kd" in state:
            self.feature_kd.load_state_dict(state["feature_kd"])
        _set_rng_state(state["rng"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.stats = EpochStats(**state.get("epoch_stats", {})) if self.batch else EpochStats()
        self.last_epoch = state.get("last_epoch", {})
        self.seconds_before = state.get("train_seconds", 0.0)


def _optimiser(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _check_resumable(config: TrainConfig, state: dict, num_classes: int, path: Path) -> None:
    """A checkpoint continues only the run that wrote it: same recipe, same identities."""
    saved = {k: v for k, v in state["config"].items() if k not in RUNTIME_FIELDS}
    wanted = {k: v for k, v in config.as_dict().items() if k not in RUNTIME_FIELDS}
    differ = sorted(k for k in wanted if k in saved and saved[k] != wanted[k])
    if differ:
        shown = ", ".join(f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in differ[:5])
        raise CheckpointError(
            f"{path} was written by another recipe ({shown}); resume with the same settings, "
            "or use another --out to start a new run"
        )
    if state.get("num_classes") != num_classes:
        raise CheckpointError(
            f"{path} was trained on {state.get('num_classes')} identities but the training set "
            f"now has {num_classes}: the dataset changed; use another --out to start a new run"
        )


def _open_session(
    config: TrainConfig,
    dataset: ReidDataset,
    images: Tensor,
    labels: Tensor,
    teacher_dim: int | None,
    device: torch.device,
) -> _Session:
    """Model, optimiser, scheduler and loader of ``config``; resumed from its checkpoint."""
    rank, world = _setup_distributed(device)
    num_classes = dataset.num_train_pids
    run_dir = config.run_dir()
    checkpoint = None
    if (run_dir / "checkpoint.pt").exists():
        checkpoint = load_checkpoint(run_dir / "checkpoint.pt", expected_model=config.model)
        _check_resumable(config, checkpoint, num_classes, run_dir / "checkpoint.pt")
    torch.manual_seed(config.seed)
    model, init_record = build_initialised(config, num_classes)
    model = model.to(device)
    feature_kd = None
    if teacher_dim is not None and config.kd_feature_weight > 0:
        feature_kd = EmbeddingDistillation(
            model.embedding_dim, teacher_dim, kind=config.kd_feature_kind
        ).to(device)
    params = list(model.parameters()) + (list(feature_kd.parameters()) if feature_kd else [])
    optimiser = _optimiser(config, params)
    loader = training_loader(config, images, labels, rank=rank, world_size=world)
    steps_per_epoch = loader.num_batches(0)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set ({len(labels)} images) is smaller than one batch "
            f"(--batch-size {config.batch_size})"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda(config, steps_per_epoch))
    session = _Session(
        config, run_dir, model, feature_kd, optimiser, scheduler, loader, num_classes,
        init_record, rank=rank, world=world,
    )  # fmt: skip
    if checkpoint is not None:
        session.restore(checkpoint)
        if rank == 0:
            log.info("resuming %s at epoch %d, batch %d", run_dir, session.epoch, session.batch)
    return session


def _loss(
    session: _Session, batch: Batch, teacher: TeacherFn | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(training loss, logits) of one batch: identity loss or Hinton KD, optional extra terms."""
    config = session.config
    net = session.net
    labels = batch.labels.to(device)
    logits, embedding = net(batch.images.to(device), return_embedding=True)
    if teacher is not None:
        t_logits, t_embedding = teacher(batch)
        loss = distillation_loss(
            logits,
            t_logits.to(device),
            labels,
            T=config.kd_T,
            alpha=config.kd_alpha,
            label_smoothing=config.label_smoothing,
        )
        if session.feature_kd is not None:
            loss = loss + config.kd_feature_weight * session.feature_kd(
                embedding, t_embedding.to(device)
            )
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    if config.triplet_weight > 0:
        loss = loss + config.triplet_weight * batch_hard_triplet(
            embedding, labels, config.triplet_margin
        )
    return loss, logits


def _train_epoch(session: _Session, teacher: TeacherFn | None, device: torch.device) -> bool:
    """Train from the session's position to the end of its epoch; False if stopped early."""
    config, epoch = session.config, session.epoch
    steps = session.loader.num_batches(epoch)
    bar = tqdm(
        total=steps,
        initial=session.batch,
        desc=f"{config.model} ep {epoch + 1}/{config.epochs}",
        disable=session.rank != 0 or None,  # None: no bar when stderr is not a terminal
        leave=False,
        unit="batch",
    )
    t0, seen_before = time.perf_counter(), session.stats.seen

    for batch in session.loader.epoch(epoch, session.batch):
        loss, logits = _loss(session, batch, teacher, device)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}, batch {batch.index}; "
                f"the last good checkpoint is kept at {session.checkpoint_path}. "
                "Lower --lr or check the data."
            )
        session.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        session.optimiser.step()
        session.scheduler.step()
        session.step += 1
        session.batch = batch.index + 1
        session.stats.add(loss.item(), logits, batch.labels.to(device))
        stats, elapsed = session.stats, time.perf_counter() - t0
        bar.set_postfix(
            loss=f"{stats.loss_sum / stats.seen:.3f}",
            acc=f"{stats.correct / stats.seen:.2f}",
            ips=f"{(stats.seen - seen_before) * session.world / max(elapsed, 1e-9):.0f}",
        )
        bar.update(1)
        if config.checkpoint_every and session.step % config.checkpoint_every == 0:
            session.snapshot()
        if config.stop_after_steps is not None and session.step >= config.stop_after_steps:
            session.snapshot()
            bar.close()
            log.info("stopped after %d steps (stop_after_steps)", session.step)
            return False
    bar.close()
    images_per_s = (session.stats.seen - seen_before) * session.world / (time.perf_counter() - t0)
    _end_epoch(session, images_per_s)
    return True


def _end_epoch(session: _Session, images_per_s: float) -> None:
    """Record and log the epoch's loss / accuracy, then checkpoint at the epoch boundary."""
    stats, config = session.stats, session.config
    if stats.seen:
        session.last_epoch = {
            "epoch": session.epoch + 1,
            "loss": stats.loss_sum / stats.seen,
            "accuracy": stats.correct / stats.seen,
            "images_per_s": images_per_s,
        }
    if session.rank == 0 and stats.seen:
        log.info(
            "%s epoch %d/%d loss %.4f acc %.3f %.0f img/s lr %.4g",
            config.model,
            session.epoch + 1,
            config.epochs,
            session.last_epoch["loss"],
            session.last_epoch["accuracy"],
            images_per_s,
            session.scheduler.get_last_lr()[0],
        )
    session.epoch, session.batch, session.stats = session.epoch + 1, 0, EpochStats()
    session.snapshot()


def _save_model(session: _Session) -> None:
    """``model.pt``: weights, config, the last epoch's numbers, the initialisation record."""
    if session.rank != 0:
        return
    save_checkpoint(
        session.run_dir / "model.pt",
        {
            "model_name": session.config.model,
            "model": session.model.state_dict(),
            "num_classes": session.num_classes,
            "config": session.config.as_dict(),
            # The last epoch's training loss and accuracy say whether the model fits its
            # training set at all (an underfitting recipe looks like a weak model).
            "training": {**session.last_epoch, "seconds": session.seconds()},
            "init": session.init_record,
        },
    )


def train(
    config: TrainConfig,
    *,
    teacher: TeacherFn | None = None,
    teacher_dim: int | None = None,
    dataset: ReidDataset | None = None,
    replace: bool = False,
) -> Path:
    """Train (or resume) a run; returns the run folder (``model.pt`` once finished).

    A finished run (``model.pt`` of this recipe) is left unchanged, and one of another recipe is
    an error, unless ``replace``: then the run is trained and its ``model.pt`` replaces the old
    one when complete (the study's own folders, see :func:`prepare_retraining`). Nothing is
    written before the data, the settings and any checkpoint to resume have been checked.
    """
    config.validate()
    check_deep_run_folder(config.run_dir())
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not replace and finished_model(config) is not None:
        log.info("%s is finished; nothing to do", config.run_dir())
        return config.run_dir()
    dataset, images, labels = load_training_data(config, dataset)
    check_training_set(dataset, needs_cross_camera_pairs=False)  # >= 2 ids; warnings logged
    session = _open_session(config, dataset, images, labels, teacher_dim, device)
    if session.rank == 0:
        # Temporary files of atomic writes that a killed earlier session (kill -9) left behind.
        remove_orphan_temporaries(session.run_dir, RUN_OUTPUTS)
        ensure_dir(session.run_dir)
        mark_run_folder(session.run_dir, RUN_KIND)
        _add_file_log(session.run_dir / "train.log")
        atomic_write_text(session.run_dir / "config.json", json.dumps(config.as_dict(), indent=2))
    session.net = session.model
    if session.world > 1:
        session.net = nn.parallel.DistributedDataParallel(
            session.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    session.net.train()
    while session.epoch < config.epochs:
        if not _train_epoch(session, teacher, device):
            return session.run_dir
    _save_model(session)
    if session.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return session.run_dir


def check_deep_run_folder(run_dir: Path) -> Path:
    """Refuse a run folder that holds files training did not write (or another kind's run)."""
    return check_run_folder(
        run_dir,
        RUN_KIND,
        legacy=lambda d: (d / "model.pt").is_file() or (d / "checkpoint.pt").is_file(),
    )


def finished_model(config: TrainConfig, teacher: str | None = None) -> Path | None:
    """``model.pt`` of ``config``'s run folder if it is current
    (:meth:`deep.run_folder.RunFolder.is_current`, with the teacher fingerprint ``teacher``),
    else None; a run folder finished with another recipe or teacher is an error."""
    folder = RunFolder(config.run_dir())
    if not folder.has_model():
        return None
    if not folder.is_current(config, teacher=teacher):
        folder.model_state(expected_model=config.model)  # another architecture: its own error
        raise CheckpointError(
            f"{config.run_dir()} holds a finished run of another recipe or teacher; use another "
            "--out (or delete the folder) to train this one"
        )
    return folder.model_path


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for independent runs, started with spawn: forking a process that has
    already used torch's OpenMP (a notebook, a test session) can crash the workers."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def prepare_retraining(config: TrainConfig, *, invalidated: bool = False) -> None:
    """Before the study (re)trains ``config``'s run folder: drop a partial checkpoint that must
    not be resumed, one of another recipe, or any when ``invalidated`` (the finished run there
    was made with another teacher or backbone, so its checkpoint is stale too). A finished
    ``model.pt`` is never deleted here: ``train(..., replace=True)`` replaces it atomically
    once the new run is complete, so an interrupted retraining loses nothing finished."""
    folder = RunFolder(config.run_dir())
    path = folder.checkpoint_path
    if not path.exists():
        return
    if invalidated or folder.has_model() or not config.same_recipe(load_checkpoint(path)["config"]):
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
    if config.init in ("scratch", "imagenet"):
        return model, initialise(model, config.model, config.init)
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


def _add_file_log(path: Path) -> None:
    root = logging.getLogger("deep")
    # One log file per run: a worker process running several runs must not write into old ones.
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        if handler.baseFilename == str(Path(path).resolve()):
            return
        root.removeHandler(handler)
        handler.close()
    try:
        handler = logging.FileHandler(path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _check_start(config: TrainConfig, *, resume: bool, teacher: str | None) -> Path | None:
    """What ``python -m deep.train`` may do with the run folder, checked before any work:
    the finished ``model.pt`` if the run is already done, else None (train or resume)."""
    check_deep_run_folder(config.run_dir())
    finished = finished_model(config, teacher)
    if finished is not None:
        return finished
    checkpoint = config.run_dir() / "checkpoint.pt"
    if checkpoint.exists() and not resume:
        raise ValueError(
            f"{config.run_dir()} already has a checkpoint; pass --resume to continue it or "
            "--out to start a new run"
        )
    if resume and not checkpoint.exists():
        raise ValueError(
            f"nothing to resume: {checkpoint} does not exist (check --out, or drop --resume to "
            "start a new run)"
        )
    return None


@entry_point
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
    config.validate()
    fingerprint = weights_fingerprint(config.teacher) if config.teacher else None
    # runs distilled before teacher records were kept are judged by their recipe alone
    recorded = RunFolder(config.run_dir()).teacher_fingerprint() is not None
    finished = _check_start(config, resume=args.resume, teacher=fingerprint if recorded else None)
    if finished is not None:
        print(
            f"{config.run_dir()} is finished ({finished.name}); nothing was changed. "
            f"Measure it with: python -m compare.measure {config.run_dir()}"
        )
        return 0
    # Same path as `python -m deep.distill train`: a frozen teacher, soft targets.
    signal = open_teacher(config.teacher, config) if config.teacher else None
    run_dir = train(config, teacher=signal, teacher_dim=signal.embedding_dim if signal else None)
    if fingerprint is not None and RunFolder(run_dir).has_model():
        RunFolder(run_dir).record_teacher(config.teacher, fingerprint)
    print(f"run folder: {run_dir}\nmeasure it with: python -m compare.measure {run_dir}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
