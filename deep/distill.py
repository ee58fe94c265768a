"""Knowledge distillation study: ``make distill`` (``python -m deep.distill run``).

A teacher, trained once (the paper's ResNet-50 in the ``full`` profile; ResNet-18 in ``quick``,
see ``PROFILES``), teaches small students with Hinton soft targets
(:func:`deep.kd_loss.distillation_loss`). Every student is trained twice per seed with exactly
the same recipe, epochs, augmentation and seed: alone (``baseline``) and with the teacher
(``distilled``), so the only difference is the teacher. Results go to the shared table
``runs/<dataset>/results.csv`` and a table of baseline vs distilled (mean and std over seeds) is
printed and written to ``runs/<dataset>/distill.md``.

Cost control
------------
* Batches are a pure function of (seed, epoch, batch index) (:mod:`deep.data`), so the teacher's
  logits for a seed are computed once, cached on disk (``runs/<dataset>/deep/teacher_cache``),
  and shared by all students of that seed; the cache records each batch's sample indices and is
  checked against them.
* Finished runs (a ``summary.json`` whose config equals the requested one) are reused, so a
  re-run with nothing changed takes seconds.
* Independent runs go to a pool of worker processes, one thread each (``--jobs``).

Commands::

    python -m deep.distill run   --dataset synthetic --profile quick     # the whole study
    python -m deep.distill train --teacher RUN_DIR --student mobilenet_v1_0.25 --T 4 --alpha 0.9
    python -m deep.distill sweep --dataset synthetic --student mobilenet_v1_1.0 \
        [--teacher-model resnet50]        # T x alpha on a validation split of the training ids
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from data.io import atomic_write_text
from data.layouts import ReidDataset, load_dataset, validation_split
from data.paths import run_dir_for
from deep.checkpoint import CheckpointError, file_sha256, load_checkpoint
from deep.data import Batch, load_records
from deep.kd_loss import EmbeddingDistillation, distillation_loss
from deep.pretrained import PretrainedWeightsError, read_metadata
from deep.train import (
    SCHEDULE_FIELDS,
    TrainConfig,
    discard_stale_checkpoint,
    load_trained,
    model_from_state,
    train,
    training_loader,
    worker_pool,
)

# The losses live in deep.kd_loss (no heavy imports); re-exported as the study's public API.
__all__ = [
    "EmbeddingDistillation",
    "distillation_loss",
    "run_one",
    "run_study",
    "run_sweep",
    "train_on_split",
]

log = logging.getLogger("deep.distill")


@dataclass(frozen=True)
class Profile:
    """A study size: which students, how many seeds, and the shared training recipe."""

    students: tuple[str, ...]
    seeds: tuple[int, ...]
    teacher: str
    recipe: dict
    T: float = 4.0
    alpha: float = 0.9
    #: Models trained alone (first seed only) so the trade-off plot shows them too.
    reference_models: tuple[str, ...] = ()
    #: Per-model epochs overriding ``recipe["epochs"]`` (the teacher's and students' too).
    epochs: Mapping[str, int] = field(default_factory=dict)

    def recipe_for(self, model: str) -> dict:
        """The recipe ``model`` trains with: the shared one and the model's own epochs."""
        return {**self.recipe, "epochs": self.epochs.get(model, self.recipe["epochs"])}


QUICK_RECIPE = dict(
    input_size=(64, 32),
    epochs=20,
    batch_size=16,
    # Fine-tuning: lr 0.01 beat 0.05 by 5-15 validation mAP points for every model and tied
    # with 0.003 (bench/bench_finetune.py, README).
    lr=0.01,
    optimizer="sgd",
    scheduler="cosine",
    warmup_epochs=2,
    label_smoothing=0.1,
    erasing=0.0,
    pad=4,
    bn_neck=False,
    threads=1,
    # Fine-tuned from the shipped backbones pretrained on a disjoint synthetic set (make
    # pretrain, deep.pretrained); chosen against scratch on the validation split (README).
    init="pretrained",
)
FULL_RECIPE = dict(
    input_size=(256, 128),
    epochs=60,
    batch_size=64,
    lr=0.05,
    optimizer="sgd",
    scheduler="cosine",
    warmup_epochs=5,
    label_smoothing=0.1,
    erasing=0.5,
    pad=10,
    bn_neck=True,
    threads=None,
    # No backbones ship at 256x128 for every model of this profile: scratch unless you bring
    # weights (deep.train --init pretrained --weights PATH, e.g. ImageNet ones).
    init="scratch",
)
PROFILES = {
    "quick": Profile(
        students=(
            "mobilenet_v1_0.25",
            "mobilenet_v1_0.5",
            "mobilenet_v1_1.0",
            "mobilenet_v2_1.0",
            "resnet18",
        ),
        seeds=(0, 1, 2),
        # Every CNN is fine-tuned from its shipped backbone (make pretrain). ResNet-18 teaches:
        # ResNet-50 did not fit the pretraining set in an affordable schedule and, fine-tuned
        # from that backbone, taught worse on the validation split (README, "Teacher").
        teacher="resnet18",
        recipe=QUICK_RECIPE,
        T=2.0,
        alpha=0.9,
        # Fine-tuning epochs per model: the best validation mAP at lr 0.01 among 5, 10 and 20
        # epochs (bench/bench_finetune.py on 80% of the training ids; README, "Pretraining").
        epochs={
            "mobilenet_v1_0.25": 10,
            "mobilenet_v1_0.5": 10,
            "mobilenet_v1_1.0": 20,
            "mobilenet_v2_1.0": 20,
            "resnet18": 20,
        },
    ),
    "full": Profile(
        students=(
            "mobilenet_v1_0.25",
            "mobilenet_v1_0.5",
            "mobilenet_v1_0.75",
            "mobilenet_v1_1.0",
            "mobilenet_v2_1.0",
            "resnet18",
            "resnet34",
        ),
        seeds=(0, 1, 2),
        teacher="resnet50",
        recipe=FULL_RECIPE,
    ),
}


# ---------------------------------------------------------------------------------------------
# Teacher outputs, computed once per (teacher, seed, recipe) and shared by all students
# ---------------------------------------------------------------------------------------------
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
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".tmp")
        torch.save(self.cache, tmp)
        tmp.replace(self.cache_path)


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


def _teacher_cache_path(dataset: str, teacher_fingerprint: str, config: TrainConfig) -> Path:
    """One cache per (teacher weights, data schedule): the fields that change the batches
    (not the number of epochs: a cache filled for more epochs serves shorter schedules)."""
    schedule = {k: getattr(config, k) for k in SCHEDULE_FIELDS}
    key = json.dumps(
        [teacher_fingerprint, schedule],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return run_dir_for(dataset) / "deep" / "teacher_cache" / f"seed{config.seed}_{digest}.pt"


# ---------------------------------------------------------------------------------------------
# One run (in a worker process)
# ---------------------------------------------------------------------------------------------
def _teacher_weights(teacher_dir: Path | str) -> Path:
    path = Path(teacher_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no trained teacher at {teacher_dir} (model.pt missing)")
    return path


def _weights_fingerprint(teacher_dir: Path | str) -> str:
    """Content hash of a finished run's weights (a retrained teacher gets a new one)."""
    return file_sha256(_teacher_weights(teacher_dir))[:16]


def _teacher_record(config: TrainConfig) -> Path:
    return config.run_dir() / "teacher.json"


def _started_from_current_backbone(config: TrainConfig, summary: dict) -> bool:
    """Whether a run fine-tuned from a shipped backbone started from the one shipped now (a
    regenerated backbone invalidates the run, as a retrained teacher does)."""
    if config.init != "pretrained" or config.weights or config.pretrained:
        return True
    try:
        current = read_metadata(config.model)["sha256"]
    except PretrainedWeightsError:
        return True  # training it again would stop with the clear error; nothing to compare
    return summary.get("init_weights", {}).get("sha256") == current


def _finished(config: TrainConfig, teacher_fingerprint: str | None = None) -> bool:
    """True when the run's summary holds this exact config, started from the backbone shipped
    now (for fine-tuned runs), and, if distilled, from the teacher whose weights have this
    :func:`_weights_fingerprint`."""
    summary = config.run_dir() / "summary.json"
    if not summary.exists():
        return False
    try:
        saved = json.loads(summary.read_text())
        if saved["config"] != config.as_dict():
            return False
        if not _started_from_current_backbone(config, saved):
            return False
        if teacher_fingerprint is None:
            return True
        recorded = json.loads(_teacher_record(config).read_text())["fingerprint"]
        return recorded == teacher_fingerprint
    except (OSError, ValueError, KeyError):
        return False


def run_one(config: TrainConfig, teacher_dir: str | None = None) -> str:
    """Train + evaluate one run unless it is already finished with the same config."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Hashed once here: reuse, the staleness check and the cache key all need it.
    fingerprint = None if teacher_dir is None else _weights_fingerprint(teacher_dir)
    if _finished(config, fingerprint):
        # Re-upsert the row: cheap, and restores a row that was lost or deleted from the table.
        from compare.results import upsert_rows
        from deep.evaluate import row_from_summary

        summary = json.loads((config.run_dir() / "summary.json").read_text())
        upsert_rows(
            run_dir_for(config.dataset) / "results.csv",
            [row_from_summary(summary, config.run_dir())],
        )
        return f"reused {config.run_dir()}"
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    run_dir = config.run_dir()
    discard_stale_checkpoint(config)
    signal = None
    if teacher_dir is not None:
        # Which teacher this student learns from: a retrained teacher invalidates the run
        # (its partial checkpoint too), even though the student's own config is unchanged.
        record = _teacher_record(config)
        if record.exists() and json.loads(record.read_text()).get("fingerprint") != fingerprint:
            for stale in ("checkpoint.pt", "summary.json", "model.pt"):
                (run_dir / stale).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            record, json.dumps({"teacher": str(teacher_dir), "fingerprint": fingerprint})
        )
        cache = _teacher_cache_path(config.dataset, fingerprint, config)
        signal = open_teacher(teacher_dir, config, cache_path=cache if cache.exists() else None)
    train(config, teacher=signal, teacher_dim=signal.embedding_dim if signal else None)
    return f"trained {run_dir} in {time.perf_counter() - start:.0f} s"


def open_teacher(
    teacher_dir: Path | str, config: TrainConfig, *, cache_path: Path | None = None
) -> TeacherSignal:
    """The frozen teacher of ``config``'s student, with clear errors when it is missing or was
    trained on other identities (shared by ``deep.distill`` and ``deep.train --teacher``)."""
    _teacher_weights(teacher_dir)
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


def _precompute_job(teacher_dir: str, config: TrainConfig) -> str:
    cache = _teacher_cache_path(config.dataset, _weights_fingerprint(teacher_dir), config)
    start = time.perf_counter()
    precompute_teacher(Path(teacher_dir), config, cache)
    return f"teacher outputs for seed {config.seed} cached in {time.perf_counter() - start:.0f} s"


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------
def study_configs(
    profile: Profile,
    dataset: str,
    data_root: str | None,
    *,
    T: float,
    alpha: float,
    students: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    base_dir: Path | None = None,
):
    def base(model: str) -> TrainConfig:
        config = TrainConfig(dataset=dataset, data_root=data_root, **profile.recipe_for(model))
        return dataclasses.replace(
            config, model=model, input_size=tuple(config.input_size), kd_T=T, kd_alpha=alpha
        )

    def out(model: str, variant: str, seed: int) -> str | None:
        if base_dir is None:
            return None
        return str(base_dir / model / f"{variant}_seed{seed}")

    teacher = dataclasses.replace(
        base(profile.teacher),
        variant="baseline",
        seed=0,
        out=out(profile.teacher, "baseline", 0),
    )
    runs = []
    first_seed = (seeds or profile.seeds)[0]
    for model in profile.reference_models:
        if model != profile.teacher:
            runs.append(
                dataclasses.replace(
                    base(model),
                    variant="baseline",
                    seed=first_seed,
                    out=out(model, "baseline", first_seed),
                )
            )
    for seed in seeds or profile.seeds:
        for student in students or profile.students:
            for variant in ("baseline", "distilled"):
                runs.append(
                    dataclasses.replace(
                        base(student),
                        variant=variant,
                        seed=seed,
                        out=out(student, variant, seed),
                    )
                )
    return teacher, runs


def _profile(name: str, teacher_model: str | None = None) -> Profile:
    """A profile, with its teacher architecture replaced when ``teacher_model`` is given."""
    profile = PROFILES[name]
    return profile if teacher_model is None else dataclasses.replace(profile, teacher=teacher_model)


def run_study(
    profile_name: str,
    dataset: str,
    data_root: str | None,
    *,
    jobs: int = 2,
    T: float | None = None,
    alpha: float | None = None,
    students: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    teacher_model: str | None = None,
) -> pd.DataFrame:
    """Teacher, then every student alone and distilled for every seed; prints the gain table.

    ``students`` / ``seeds`` restrict the profile (to fit a time budget, say);
    ``teacher_model`` replaces the profile's teacher architecture.
    """
    profile = _profile(profile_name, teacher_model)
    T = profile.T if T is None else T
    alpha = profile.alpha if alpha is None else alpha
    load_dataset(dataset, data_root)  # fail early on a bad dataset, and generate synthetic data
    teacher, runs = study_configs(
        profile, dataset, data_root, T=T, alpha=alpha, students=students, seeds=seeds
    )
    teacher_dir = str(teacher.run_dir())
    for r in runs:
        if r.variant == "distilled":
            r.teacher = teacher_dir
    # A student's own baseline can be the teacher run (a ResNet-18 teaching ResNet-18s).
    baselines = [r for r in runs if r.variant == "baseline" and r.run_dir() != teacher.run_dir()]
    distilled = [r for r in runs if r.variant == "distilled"]
    start = time.perf_counter()
    with worker_pool(jobs) as pool:

        def submit_caches():
            # One cache per seed, filled for the longest student schedule: the batch at
            # (epoch, index) does not depend on the number of epochs, so it serves them all.
            longest: dict[int, TrainConfig] = {}
            for r in distilled:
                if r.seed not in longest or r.epochs > longest[r.seed].epochs:
                    longest[r.seed] = r
            return [pool.submit(_precompute_job, teacher_dir, longest[s]) for s in sorted(longest)]

        if _finished(teacher):
            # The teacher's outputs gate every distilled run: compute them before the baselines.
            print(run_one(teacher), flush=True)
            caches = submit_caches()
            baseline_futures = [pool.submit(run_one, r) for r in baselines]
        else:
            teacher_future = pool.submit(run_one, teacher)
            baseline_futures = [pool.submit(run_one, r) for r in baselines]
            print(teacher_future.result(), flush=True)
            caches = submit_caches()
        for f in caches:
            print(f.result(), flush=True)
        distilled_futures = [pool.submit(run_one, r, teacher_dir) for r in distilled]
        for f in baseline_futures + distilled_futures:
            print(f.result(), flush=True)
    table = summarise(dataset, profile.students, profile.teacher)
    text = gain_markdown(table)
    atomic_write_text(run_dir_for(dataset) / "distill.md", text + "\n")
    print(text)
    print(f"\nstudy finished in {(time.perf_counter() - start) / 60:.1f} min")
    return table


def summarise(dataset: str, students, teacher: str) -> pd.DataFrame:
    """Baseline vs distilled per student: mean and std over seeds, and the gain."""
    from compare.results import read_results

    df = read_results(run_dir_for(dataset) / "results.csv")
    df = df[df.pipeline == "deep"]
    rows = []
    for model in dict.fromkeys([teacher, *students]):
        sub = df[df.model == model]
        if sub.empty:
            continue
        row = {
            "model": model,
            "params_M": sub.params.iloc[0] / 1e6,
            "ms_query": sub.ms_query.median(),
        }
        for variant in ("baseline", "distilled"):
            v = sub[sub.variant == variant]
            for metric in ("rank1", "mAP"):
                row[f"{metric}_{variant}"] = v[metric].mean() if len(v) else np.nan
                row[f"{metric}_{variant}_std"] = v[metric].std(ddof=1) if len(v) > 1 else np.nan
            row[f"seeds_{variant}"] = len(v)
        row["gain_rank1"] = row["rank1_distilled"] - row["rank1_baseline"]
        row["gain_mAP"] = row["mAP_distilled"] - row["mAP_baseline"]
        rows.append(row)
    return pd.DataFrame(rows)


def gain_markdown(table: pd.DataFrame) -> str:
    def pm(mean, std):
        if pd.isna(mean):
            return "-"
        return f"{mean:.1f}" + ("" if pd.isna(std) else f" ± {std:.1f}")

    lines = [
        "| model | params (M) | ms/query | rank-1 alone | rank-1 distilled | mAP alone | "
        "mAP distilled | gain rank-1 | gain mAP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.model} | {r.params_M:.2f} | {r.ms_query:.2f} | "
            f"{pm(r.rank1_baseline, r.rank1_baseline_std)} | "
            f"{pm(r.rank1_distilled, r.rank1_distilled_std)} | "
            f"{pm(r.mAP_baseline, r.mAP_baseline_std)} | "
            f"{pm(r.mAP_distilled, r.mAP_distilled_std)} | "
            f"{'-' if pd.isna(r.gain_rank1) else f'{r.gain_rank1:+.1f}'} | "
            f"{'-' if pd.isna(r.gain_mAP) else f'{r.gain_mAP:+.1f}'} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# T / alpha sweep on a validation split of the training identities (never on the test split)
# ---------------------------------------------------------------------------------------------
def run_sweep(
    dataset: str,
    data_root: str | None,
    *,
    student: str,
    profile_name: str = "quick",
    temperatures=(2.0, 4.0, 8.0),
    alphas=(0.5, 0.9),
    jobs: int = 2,
    seed: int = 0,
    teacher_model: str | None = None,
) -> pd.DataFrame:
    """Train teacher and student on 80% of the training ids, evaluate on the other 20%.

    The student alone (alpha = 0) and each (T, alpha) are compared on the held-out identities;
    ``teacher_model`` overrides the profile's teacher (to compare teachers the same way).
    """
    profile = _profile(profile_name, teacher_model)
    full = load_dataset(dataset, data_root)
    val = validation_split(full, val_fraction=0.2, seed=seed)
    base_dir = run_dir_for(dataset) / "sweep"
    teacher, _ = study_configs(profile, dataset, data_root, T=4.0, alpha=0.9, base_dir=base_dir)
    teacher = dataclasses.replace(teacher, variant="val_baseline")
    results = []
    with worker_pool(jobs) as pool:
        pool.submit(train_on_split, teacher, val).result()
        configs = []
        for T in temperatures:
            for alpha in (0.0, *alphas) if temperatures[0] == T else alphas:
                variant = (
                    "val_baseline" if alpha == 0.0 else f"val_{profile.teacher}_T{T:g}_a{alpha:g}"
                )
                configs.append(
                    dataclasses.replace(
                        teacher,
                        model=student,
                        epochs=profile.recipe_for(student)["epochs"],
                        variant=variant,
                        seed=seed,
                        kd_T=T,
                        kd_alpha=alpha,
                        out=str(base_dir / student / variant),
                    )
                )
        futures = [
            pool.submit(train_on_split, c, val, None if c.kd_alpha == 0 else str(teacher.run_dir()))
            for c in configs
        ]
        for c, f in zip(configs, futures, strict=True):
            results.append(
                {
                    "student": student,
                    "teacher": profile.teacher if c.kd_alpha else "-",
                    "T": c.kd_T,
                    "alpha": c.kd_alpha,
                    **f.result(),
                }
            )
    table = pd.DataFrame(results)
    atomic_write_text(base_dir / f"{student}_from_{profile.teacher}.csv", table.to_csv(index=False))
    print(table.to_string(index=False))
    return table


def train_on_split(config: TrainConfig, split: ReidDataset, teacher_dir: str | None = None) -> dict:
    """Train on ``split.train`` and return validation rank-1 / mAP (no results-table row), the
    training minutes and the last epoch's training accuracy (%)."""
    from data.matching import pairwise_sq_euclidean
    from data.protocols import evaluate
    from deep.features import extract_embeddings

    if config.threads:
        torch.set_num_threads(config.threads)
    config = dataclasses.replace(config, evaluate=False)
    done = config.run_dir() / "model.pt"
    if not done.exists():
        signal = TeacherSignal(teacher_dir) if teacher_dir else None
        train(config, teacher=signal, dataset=split)
    state = load_checkpoint(done, expected_model=config.model)
    model, cfg = model_from_state(state), state["config"]
    size = tuple(cfg["input_size"])
    q = extract_embeddings(model, split.query, size)
    g = extract_embeddings(model, split.gallery, size)
    res = evaluate(
        pairwise_sq_euclidean(q, g),
        np.array([r.pid for r in split.query]),
        np.array([r.pid for r in split.gallery]),
        np.array([r.camid for r in split.query]),
        np.array([r.camid for r in split.gallery]),
    )
    training = state.get("training", {})
    return {
        "val_rank1": 100 * res.rank1,
        "val_mAP": 100 * res.mAP,
        "train_min": training.get("seconds", float("nan")) / 60,
        "train_acc": 100 * training.get("accuracy", float("nan")),
    }


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Knowledge distillation (make distill)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="teacher + students with and without distillation")
    p_train = sub.add_parser("train", help="train one student with a trained teacher")
    p_sweep = sub.add_parser("sweep", help="T x alpha grid on a validation split")
    for p in (p_run, p_train, p_sweep):
        p.add_argument("--dataset", default="synthetic")
        p.add_argument("--data-root", default=None)
        p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
        p.add_argument("--T", type=float, default=None)
        p.add_argument("--alpha", type=float, default=None)
        p.add_argument("--jobs", type=int, default=2, help="parallel worker processes")
    p_train.add_argument("--teacher", required=True, help="run folder of the trained teacher")
    p_train.add_argument("--student", required=True)
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument(
        "--feature-weight",
        type=float,
        default=0.0,
        help="weight of the embedding-level term (0 = Hinton KD only)",
    )
    p_sweep.add_argument("--student", default="mobilenet_v1_0.25")
    p_sweep.add_argument("--temperatures", nargs="+", type=float, default=[2.0, 4.0, 8.0])
    p_sweep.add_argument("--alphas", nargs="+", type=float, default=[0.5, 0.9])
    for p in (p_run, p_sweep):
        p.add_argument(
            "--teacher-model",
            default=None,
            help="teacher architecture (default: the profile's: resnet18 quick, resnet50 full)",
        )
    p_run.add_argument("--students", nargs="+", default=None, help="subset of the profile's")
    p_run.add_argument("--seeds", nargs="+", type=int, default=None, help="subset of its seeds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "run":
            run_study(
                args.profile,
                args.dataset,
                args.data_root,
                jobs=args.jobs,
                T=args.T,
                alpha=args.alpha,
                students=tuple(args.students) if args.students else None,
                seeds=tuple(args.seeds) if args.seeds else None,
                teacher_model=args.teacher_model,
            )
        elif args.command == "sweep":
            run_sweep(
                args.dataset,
                args.data_root,
                student=args.student,
                profile_name=args.profile,
                temperatures=tuple(args.temperatures),
                alphas=tuple(args.alphas),
                jobs=args.jobs,
                teacher_model=args.teacher_model,
            )
        else:
            profile = PROFILES[args.profile]
            teacher_dir = Path(args.teacher)
            _teacher_weights(teacher_dir)  # fail before building anything
            config = TrainConfig(
                dataset=args.dataset, data_root=args.data_root, **profile.recipe_for(args.student)
            )
            config = dataclasses.replace(
                config,
                model=args.student,
                variant="distilled",
                seed=args.seed,
                input_size=tuple(config.input_size),
                kd_T=profile.T if args.T is None else args.T,
                kd_alpha=profile.alpha if args.alpha is None else args.alpha,
                kd_feature_weight=args.feature_weight,
                teacher=str(teacher_dir),
            )
            print(run_one(config, str(teacher_dir)))
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
