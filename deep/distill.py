"""Knowledge distillation: the teacher and every student, trained alone and distilled.

A teacher, trained once (the paper's ResNet-50 in the ``full`` profile; ResNet-18 in ``quick``,
see :mod:`deep.profiles`), teaches small students with Hinton soft targets
(:func:`deep.kd_loss.distillation_loss`). Every student is trained twice per seed with exactly
the same recipe, epochs, augmentation and seed: alone (``baseline``) and with the teacher
(``distilled``), so the only difference is the teacher. This module trains; ``compare`` measures
the runs and writes the table of baseline vs distilled (``make distill`` =
``python -m compare.distillation``, which calls :func:`run_study`).

Cost control
------------
* Batches are a pure function of (seed, epoch, batch index) (:mod:`deep.loader`), so the
  teacher's logits for a seed are computed once and cached on disk (:mod:`deep.teacher`).
* Finished runs (a ``model.pt`` of the requested recipe, started from the shipped backbone and,
  if distilled, from the current teacher) are reused, so a re-run with nothing changed takes
  seconds.
* Independent runs go to a pool of worker processes, one thread each (``--jobs``).

Commands (training only; ``python -m compare.measure RUN_DIR`` measures a run)::

    python -m deep.distill run   --dataset synthetic --profile quick     # every run of the study
    python -m deep.distill train --teacher RUN_DIR --student mobilenet_v1_0.25 --T 4 --alpha 0.9
    python -m deep.distill sweep --dataset synthetic --student mobilenet_v1_1.0 \
        [--teacher-model resnet50]        # T x alpha on a validation split of the training ids
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from data.cli import (
    entry_point,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from data.io import atomic_write_text, check_writable
from data.layouts import ReidDataset, load_dataset, validation_split
from data.runs import RunsLayout, add_runs_dir_argument, layout_from_args
from deep.checkpoint import model_from_state
from deep.config import TrainConfig
from deep.evaluation import extract_embeddings, score_embeddings, split_labels
from deep.kd_loss import EmbeddingDistillation, distillation_loss
from deep.models import list_models
from deep.profiles import PROFILES, Profile, get_profile, study_configs
from deep.run_folder import RunFolder, shipped_backbone
from deep.teacher import (
    TeacherSignal,
    open_teacher,
    precompute_job,
    teacher_cache_path,
    teacher_weights,
    weights_fingerprint,
)
from deep.train import prepare_retraining, train, worker_pool

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


# ---------------------------------------------------------------------------------------------
# One run (in a worker process)
# ---------------------------------------------------------------------------------------------
def finished(config: TrainConfig, teacher_fingerprint: str | None = None) -> bool:
    """Whether the run is finished and current (:meth:`deep.run_folder.RunFolder.is_current`):
    this recipe, started from the backbone shipped now (for fine-tuned runs) and, if distilled,
    from the teacher whose weights have this :func:`deep.teacher.weights_fingerprint`."""
    return RunFolder(config.run_dir()).is_current(
        config, teacher=teacher_fingerprint, backbone=shipped_backbone(config)
    )


def _other_teacher(config: TrainConfig, fingerprint: str) -> bool:
    """Whether the run folder holds work done with another teacher than ``fingerprint``'s (a
    retrained teacher invalidates the student's run although its own config is unchanged)."""
    recorded = RunFolder(config.run_dir()).teacher_fingerprint()
    return recorded is not None and recorded != fingerprint


def run_one(config: TrainConfig, teacher_dir: str | None = None) -> str:
    """Train one run unless it is already finished with the same recipe (and teacher)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Hashed once here: reuse, the staleness check and the cache key all need it.
    fingerprint = None if teacher_dir is None else weights_fingerprint(teacher_dir)
    if finished(config, fingerprint):
        return f"reused {config.run_dir()}"
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    check_writable(config.run_dir())  # an unwritable run folder fails before any training
    other_teacher = teacher_dir is not None and _other_teacher(config, fingerprint)
    prepare_retraining(config, invalidated=other_teacher)
    signal = None
    if teacher_dir is not None:
        cache = teacher_cache_path(config.dataset, fingerprint, config)
        signal = open_teacher(teacher_dir, config, cache_path=cache if cache.exists() else None)
    dim = signal.embedding_dim if signal else None
    train(config, teacher=signal, teacher_dim=dim, replace=True)
    folder = RunFolder(config.run_dir())
    if teacher_dir is not None and folder.has_model():
        folder.record_teacher(teacher_dir, fingerprint)  # once complete, never before
    return f"trained {config.run_dir()} in {time.perf_counter() - start:.0f} s"


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------
def _study_runs(
    profile: Profile, dataset: str, data_root: str | None, T: float, alpha: float, **subset
) -> tuple[TrainConfig, list[TrainConfig], list[TrainConfig]]:
    """(teacher, baselines, distilled students) of a profile; students know their teacher."""
    teacher, runs = study_configs(profile, dataset, data_root, T=T, alpha=alpha, **subset)
    teacher_dir = str(teacher.run_dir())
    for r in runs:
        if r.variant == "distilled":
            r.teacher = teacher_dir
    # A student's own baseline can be the teacher run (a ResNet-18 teaching ResNet-18s).
    baselines = [r for r in runs if r.variant == "baseline" and r.run_dir() != teacher.run_dir()]
    return teacher, baselines, [r for r in runs if r.variant == "distilled"]


def _longest_per_seed(distilled: list[TrainConfig]) -> list[TrainConfig]:
    """One teacher cache per seed, filled for the longest student schedule: the batch at
    (epoch, index) does not depend on the number of epochs, so it serves them all."""
    longest: dict[int, TrainConfig] = {}
    for r in distilled:
        if r.seed not in longest or r.epochs > longest[r.seed].epochs:
            longest[r.seed] = r
    return [longest[s] for s in sorted(longest)]


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
    layout: RunsLayout | None = None,
) -> list[TrainConfig]:
    """Train the teacher, then every student alone and distilled for every seed.

    ``students`` / ``seeds`` restrict the profile (to fit a time budget, say);
    ``teacher_model`` replaces the profile's teacher architecture. Returns every run's config
    (teacher first), for ``compare`` to measure.
    """
    profile = get_profile(profile_name, teacher_model)
    layout = layout or RunsLayout.from_env()
    T = profile.T if T is None else T
    alpha = profile.alpha if alpha is None else alpha
    teacher, baselines, distilled = _study_runs(
        profile, dataset, data_root, T, alpha, students=students, seeds=seeds, layout=layout
    )
    for config in (teacher, *baselines, *distilled):
        config.validate()  # every setting checked before the data is generated or anything runs
    load_dataset(dataset, data_root)  # fail early on a bad dataset, and generate synthetic data
    teacher_dir = str(teacher.run_dir())
    cache_for = _longest_per_seed(distilled)
    start = time.perf_counter()
    with worker_pool(jobs) as pool:
        if finished(teacher):
            # The teacher's outputs gate every distilled run: compute them before the baselines.
            print(run_one(teacher), flush=True)
            caches = [pool.submit(precompute_job, teacher_dir, r) for r in cache_for]
            baseline_futures = [pool.submit(run_one, r) for r in baselines]
        else:
            teacher_future = pool.submit(run_one, teacher)
            baseline_futures = [pool.submit(run_one, r) for r in baselines]
            print(teacher_future.result(), flush=True)
            caches = [pool.submit(precompute_job, teacher_dir, r) for r in cache_for]
        for f in caches:
            print(f.result(), flush=True)
        distilled_futures = [pool.submit(run_one, r, teacher_dir) for r in distilled]
        for f in baseline_futures + distilled_futures:
            print(f.result(), flush=True)
    print(f"training finished in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return [teacher, *baselines, *distilled]


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
    layout: RunsLayout | None = None,
) -> pd.DataFrame:
    """Train teacher and student on 80% of the training ids, evaluate on the other 20%.

    The student alone (alpha = 0) and each (T, alpha) are compared on the held-out identities;
    ``teacher_model`` overrides the profile's teacher (to compare teachers the same way).
    """
    profile = get_profile(profile_name, teacher_model)
    layout = layout or RunsLayout.from_env()
    base_dir = layout.sweep_dir(dataset)
    teacher, _ = study_configs(
        profile, dataset, data_root, T=4.0, alpha=0.9, base_dir=base_dir, layout=layout
    )
    teacher = dataclasses.replace(teacher, variant="val_baseline")
    epochs = profile.recipe_for(student)["epochs"]
    for T in temperatures:  # every student setting checked before the teacher trains
        for alpha in alphas:
            student_config = dataclasses.replace(teacher, model=student, epochs=epochs, seed=seed)
            dataclasses.replace(student_config, kd_T=T, kd_alpha=alpha).validate()
    full = load_dataset(dataset, data_root)
    val = validation_split(full, val_fraction=0.2, seed=seed)
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
    if config.threads:
        torch.set_num_threads(config.threads)
    folder = RunFolder(config.run_dir())
    if not folder.is_current(config):
        signal = TeacherSignal(teacher_dir) if teacher_dir else None
        train(config, teacher=signal, dataset=split)
        folder = RunFolder(config.run_dir())
    state = folder.model_state(expected_model=config.model)
    model = model_from_state(state)
    size = tuple(state["config"]["input_size"])
    q = extract_embeddings(model, split.query, size)
    g = extract_embeddings(model, split.gallery, size)
    scores = score_embeddings(q, g, split_labels(split.query, split.gallery))
    training = state.get("training", {})
    return {
        "val_rank1": 100 * scores["rank1"],
        "val_mAP": 100 * scores["mAP"],
        "train_min": training.get("seconds", float("nan")) / 60,
        "train_acc": 100 * training.get("accuracy", float("nan")),
    }


# ---------------------------------------------------------------------------------------------
def _train_student(args: argparse.Namespace) -> str:
    """``train``: one student distilled from a trained teacher, with the profile's recipe."""
    profile = PROFILES[args.profile]
    teacher_dir = Path(args.teacher)
    teacher_weights(teacher_dir)  # fail before building anything
    config = TrainConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        runs_dir=str(layout_from_args(args).root),
        **profile.recipe_for(args.student),
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
    return run_one(config, str(teacher_dir))


def _sweep_alpha(text: str) -> float:
    """argparse type of ``sweep --alphas``: in (0, 1]; alpha 0 (the student alone) always runs."""
    value = fraction(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0 (alpha 0, the student alone, always runs)")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Dataset, profile, T / alpha and worker flags (every command, ``compare.distillation``)."""
    parser.add_argument("--dataset", default="synthetic", help="dataset layout (default synthetic)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the layout's)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="quick", help="study size (default quick)"
    )
    parser.add_argument(
        "--T", type=positive_float, default=None, help="temperature > 0 (default: the profile's)"
    )
    parser.add_argument(
        "--alpha",
        type=fraction,
        default=None,
        help="soft-target weight in [0, 1] (default: the profile's)",
    )
    parser.add_argument(
        "--jobs", type=positive_int, default=2, help="parallel worker processes (default 2)"
    )
    add_runs_dir_argument(parser)


def add_teacher_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher-model",
        choices=list_models(),
        metavar="MODEL",
        default=None,
        help="teacher architecture (default: the profile's: resnet18 quick, resnet50 full)",
    )


def add_subset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--students`` / ``--seeds``: run part of a profile (``run``, ``compare.distillation``)."""
    parser.add_argument(
        "--students", nargs="+", choices=list_models(), metavar="MODEL",
        help="subset of the profile's",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", nargs="+", type=non_negative_int, default=None, help="subset of its seeds"
    )


def study_options(args: argparse.Namespace) -> dict:
    """:func:`run_study`'s keyword arguments from the flags of :func:`add_common_arguments`,
    :func:`add_subset_arguments` and :func:`add_teacher_model_argument`."""
    return dict(
        jobs=args.jobs,
        T=args.T,
        alpha=args.alpha,
        students=tuple(args.students) if args.students else None,
        seeds=tuple(args.seeds) if args.seeds else None,
        teacher_model=args.teacher_model,
        layout=layout_from_args(args),
    )


def _parser() -> argparse.ArgumentParser:
    """The ``run`` / ``train`` / ``sweep`` command lines; argparse checks every value."""
    parser = argparse.ArgumentParser(description="Knowledge distillation (make distill)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="teacher + students with and without distillation")
    p_train = sub.add_parser("train", help="train one student with a trained teacher")
    p_sweep = sub.add_parser("sweep", help="T x alpha grid on a validation split")
    models = list_models()
    for p in (p_run, p_train, p_sweep):
        add_common_arguments(p)
    p_train.add_argument("--teacher", required=True, help="run folder of the trained teacher")
    p_train.add_argument(
        "--student", required=True, choices=models, metavar="MODEL", help="student architecture"
    )
    p_train.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p_train.add_argument(
        "--feature-weight",
        type=non_negative_float,
        default=0.0,
        help="weight of the embedding-level term (0 = Hinton KD only)",
    )
    p_sweep.add_argument(
        "--student",
        choices=models,
        metavar="MODEL",
        default="mobilenet_v1_0.25",
        help="student architecture (default mobilenet_v1_0.25)",
    )
    p_sweep.add_argument(
        "--temperatures",
        nargs="+",
        type=positive_float,
        default=[2.0, 4.0, 8.0],
        help="temperatures tried (default 2 4 8)",
    )
    p_sweep.add_argument(
        "--alphas",
        nargs="+",
        type=_sweep_alpha,
        default=[0.5, 0.9],
        help="soft-target weights tried, in (0, 1] (default 0.5 0.9; alpha 0 always runs)",
    )
    for p in (p_run, p_sweep):
        add_teacher_model_argument(p)
    add_subset_arguments(p_run)
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "run":
        run_study(args.profile, args.dataset, args.data_root, **study_options(args))
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
            layout=layout_from_args(args),
        )
    else:
        print(_train_student(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
