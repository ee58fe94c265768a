"""Study profiles: which students, seeds and teacher, and the recipe they train with.

``quick`` is the laptop study of ``make distill`` / ``make tradeoff-plot`` (64x32 inputs, every
CNN fine-tuned from its shipped backbone); ``cuhk03`` the study on real images (CUHK03 in the
Market-1501 layout, settings chosen on its validation identities); ``full`` is the paper-sized
one (256x128, scratch unless you bring weights). :func:`study_configs` turns a profile into the
teacher's and every student's :class:`~deep.config.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from data.runs import RunsLayout
from deep.config import TrainConfig


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
    #: Per-model recipe fields overriding the shared ones (e.g. ``{"init": "imagenet"}`` for the
    #: one model with ImageNet weights, or its own learning rate).
    overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def recipe_for(self, model: str) -> dict:
        """The recipe ``model`` trains with: the shared one, its own epochs and overrides."""
        own = {"epochs": self.epochs.get(model, self.recipe["epochs"])}
        return {**self.recipe, **own, **self.overrides.get(model, {})}


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
#: Real images (issue 21: CUHK03 labeled in the Market-1501 layout). Every setting was chosen on
#: validation identities (20% of the 743 training ids held out, seed 0) with
#: bench/bench_real_validation.py, MobileNet v1 0.25 from its shipped backbone, 1 thread
#: (validation rank-1 / mAP, %): lr 0.05 21.1 / 19.7 beat 0.01 17.8 / 16.9 at 64x32; 128x64
#: inputs 30.5 / 27.5 beat 64x32 at lr 0.05; random erasing 0.5 lost (14.4 / 16.5 at lr 0.01);
#: BN neck + triplet traded rank-1 for mAP (17.4 / 18.8 at lr 0.01), so it stays off.
CUHK03_RECIPE = dict(
    QUICK_RECIPE,
    input_size=(128, 64),
    epochs=10,
    batch_size=32,
    lr=0.05,
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
    "cuhk03": Profile(
        # MobileNet v1 students fine-tuned from their shipped synthetic backbones (0.5 takes the
        # recipe validated on 0.25; scratch reached 2.5% rank-1 on test in 10 epochs, issue 21)
        students=("mobilenet_v1_0.25", "mobilenet_v1_0.5"),
        seeds=(0, 1, 2),
        # The only model with offline ImageNet weights (make imagenet-weights) teaches: at 64x32
        # and lr 0.01 it beat MobileNet v1 0.25 alone on validation ids (28.9 / 28.0 vs 21.1 /
        # 19.7) and distilling from it helped (23.2 / 24.5); at 128x64 it is not validated yet.
        teacher="mobilenet_v2_1.0",
        recipe=CUHK03_RECIPE,
        T=2.0,
        alpha=0.9,
        overrides={"mobilenet_v2_1.0": {"init": "imagenet", "lr": 0.01}},
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
    layout: RunsLayout | None = None,
):
    runs_dir = None if layout is None else str(layout.root)

    def base(model: str) -> TrainConfig:
        config = TrainConfig(
            dataset=dataset, data_root=data_root, runs_dir=runs_dir, **profile.recipe_for(model)
        )
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


def get_profile(name: str, teacher_model: str | None = None) -> Profile:
    """A profile, with its teacher architecture replaced when ``teacher_model`` is given."""
    profile = PROFILES[name]
    return profile if teacher_model is None else dataclasses.replace(profile, teacher=teacher_model)
