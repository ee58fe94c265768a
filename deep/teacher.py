"""The teacher's signal for distillation: a frozen trained run, with a disk cache of its logits.

Batches are a pure function of (seed, epoch, batch index) (:mod:`deep.loader`), so the
teacher's logits on every batch of a seed's schedule are computed once
(:func:`precompute_teacher`), cached under ``runs/<dataset>/deep/teacher_cache`` keyed by the
teacher's weights and the schedule (:func:`teacher_cache_path`), and shared by every student of
that seed. A retrained teacher has new weights, hence a new :func:`weights_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from data.io import atomic_path
from data.layouts import ReidDataset, load_dataset
from deep.checkpoint import file_sha256, load_trained
from deep.config import SCHEDULE_FIELDS, TrainConfig
from deep.loader import Batch, load_records, training_loader

log = logging.getLogger("deep.teacher")


class TeacherSignal:
    """``teacher(batch) -> (logits, embedding)`` for the training loop, with a disk cache.

    The cache maps (epoch, batch index) to the teacher's logits on that exact augmented batch;
    it is valid because batches depend only on (seed, epoch, batch index). Embeddings (for the
    optional feature-level term) are never cached: that path runs the teacher on the fly.
    """

    def __init__(
        self,
        teacher_dir: Path | str,
        *,
        cache_path: Path | None = None,
        need_embedding: bool = False,
    ) -> None:
        self.model, self.config = load_trained(teacher_dir)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self.embedding_dim = self.model.embedding_dim
        self.need_embedding = need_embedding
        self.cache_path = cache_path
        self.cache: dict[str, Tensor] = {}
        if cache_path is not None and cache_path.exists():
            self.cache = torch.load(cache_path, map_location="cpu", weights_only=True)

    @torch.no_grad()
    def __call__(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        key = f"{batch.epoch}:{batch.index}"
        if not self.need_embedding and key in self.cache:
            cached = self.cache[key]
            if torch.equal(cached["indices"], batch.sample_indices):
                return cached["logits"], None
            log.warning("teacher cache entry %s does not match its batch; recomputing", key)
        logits, embedding = self.model(batch.images, return_embedding=True)
        if self.cache_path is not None and not self.need_embedding:
            self.cache[key] = {"indices": batch.sample_indices.clone(), "logits": logits.clone()}
        return logits, embedding if self.need_embedding else None

    def save(self) -> None:
        if self.cache_path is None or not self.cache:
            return
        with atomic_path(self.cache_path) as tmp:
            torch.save(self.cache, tmp)


def precompute_teacher(
    teacher_dir: Path, config: TrainConfig, cache_path: Path, dataset: ReidDataset | None = None
) -> Path:
    """Fill the teacher cache for every batch of ``config``'s schedule (one pass, no training).

    An existing cache is extended, not recomputed: a longer schedule of the same batches (more
    epochs) only adds the missing epochs.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    dataset = dataset or load_dataset(config.dataset, config.data_root)
    images = load_records(dataset.train, config.input_size)
    labels = torch.tensor([r.pid for r in dataset.train])
    loader = training_loader(config, images, labels)
    signal = TeacherSignal(teacher_dir, cache_path=cache_path)
    wanted = {f"{e}:{i}" for e in range(config.epochs) for i in range(loader.num_batches(e))}
    if wanted <= signal.cache.keys():
        return cache_path
    for epoch in range(config.epochs):
        for batch in loader.epoch(epoch):
            signal(batch)
    signal.save()
    return cache_path


def teacher_cache_path(dataset: str, teacher_fingerprint: str, config: TrainConfig) -> Path:
    """One cache per (teacher weights, data schedule): the fields that change the batches
    (not the number of epochs: a cache filled for more epochs serves shorter schedules)."""
    schedule = {k: getattr(config, k) for k in SCHEDULE_FIELDS}
    key = json.dumps(
        [teacher_fingerprint, schedule],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return config.layout().teacher_cache(dataset, f"seed{config.seed}_{digest}.pt")


def teacher_weights(teacher_dir: Path | str) -> Path:
    path = Path(teacher_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no trained teacher at {teacher_dir} (model.pt missing)")
    return path


def weights_fingerprint(teacher_dir: Path | str) -> str:
    """Content hash of a finished run's weights (a retrained teacher gets a new one)."""
    return file_sha256(teacher_weights(teacher_dir))[:16]


def open_teacher(
    teacher_dir: Path | str, config: TrainConfig, *, cache_path: Path | None = None
) -> TeacherSignal:
    """The frozen teacher of ``config``'s student, with clear errors when it is missing or was
    trained on other identities (shared by ``deep.distill`` and ``deep.train --teacher``)."""
    teacher_weights(teacher_dir)
    signal = TeacherSignal(
        teacher_dir, cache_path=cache_path, need_embedding=config.kd_feature_weight > 0
    )
    _check_teacher_fits(signal, config)
    return signal


def _check_teacher_fits(signal: TeacherSignal, config: TrainConfig) -> None:
    teacher_cfg = signal.config
    for key in ("dataset", "data_root"):
        if teacher_cfg.get(key) != getattr(config, key):
            raise ValueError(
                f"the teacher was trained on {key}={teacher_cfg.get(key)!r} but the student uses "
                f"{getattr(config, key)!r}: they must share the training identities"
            )


def precompute_job(teacher_dir: str, config: TrainConfig) -> str:
    cache = teacher_cache_path(config.dataset, weights_fingerprint(teacher_dir), config)
    start = time.perf_counter()
    precompute_teacher(Path(teacher_dir), config, cache)
    return f"teacher outputs for seed {config.seed} cached in {time.perf_counter() - start:.0f} s"
