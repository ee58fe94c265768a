"""What defines a training run: :class:`TrainConfig`, its validation and its command line.

Every field is one flag of ``python -m deep.train`` (and of the profiles' recipes), with the
help text of :data:`FIELD_HELP`. The config is saved as ``config.json`` and inside every
checkpoint; :meth:`TrainConfig.same_recipe` compares a saved one with the current one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from data.cli import image_size
from data.runs import RunsLayout
from deep.models import list_models
from deep.pretrained import INITS

#: Where the run lives, not what it is: never saved (config.json, checkpoints), so a runs tree
#: can be moved or copied and its runs stay reusable.
LOCATION_FIELDS = ("runs_dir",)
#: Fields that older runs saved but that no longer change what is trained (``evaluate``: runs
#: are measured by ``compare`` now; ``extra``: never used). Ignored when comparing recipes, so
#: that finished runs stay reusable.
RETIRED_FIELDS = ("evaluate", "extra")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json and in checkpoints)."""

    model: str = "resnet50"
    dataset: str = "synthetic"
    data_root: str | None = None
    out: str | None = None  # run folder; default: the layout's cnn_run (data.runs)
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
    threads: int | None = 1  # None: torch's default (every core); see the field's help
    # Distillation (used when a teacher is given): Hinton soft targets, optional embedding term.
    kd_T: float = 4.0
    kd_alpha: float = 0.9
    kd_feature_weight: float = 0.0
    kd_feature_kind: str = "cosine"
    teacher: str | None = None
    runs_dir: str | None = None  # root of the runs tree (None: $REID_RUNS_DIR, else runs/)

    def layout(self) -> RunsLayout:
        return RunsLayout.at(self.runs_dir)

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return self.layout().cnn_run(self.dataset, self.model, self.variant, self.seed)

    def as_dict(self) -> dict:
        """The recipe as saved (``config.json``, checkpoints): every field but the location."""
        saved = json.loads(json.dumps(dataclasses.asdict(self)))
        return {k: v for k, v in saved.items() if k not in LOCATION_FIELDS}

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """The config of a saved ``as_dict`` (retired fields dropped, lists back to tuples)."""
        values = {k: v for k, v in saved.items() if k not in (*RETIRED_FIELDS, *LOCATION_FIELDS)}
        for name in ("input_size", "milestones"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def same_recipe(self, saved: dict, *, ignore: tuple[str, ...] = ()) -> bool:
        """Whether a saved config (``as_dict`` of an earlier run) describes this same run,
        the fields in ``ignore`` (and the retired ones) aside."""
        skip = (*RETIRED_FIELDS, *ignore)
        mine = {k: v for k, v in self.as_dict().items() if k not in skip}
        return {k: v for k, v in saved.items() if k not in skip} == mine

    def validate(self) -> None:
        """Raise a ValueError naming the first setting that is out of range or inconsistent."""
        for ok, message in self._checks() + self._range_checks():
            if not ok:
                raise ValueError(message)

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (
                self.model in list_models(),
                f"--model: unknown model {self.model!r}; known models: {list_models()}",
            ),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.instances >= 1, f"--instances must be >= 1, got {self.instances}"),
            (self.pad >= 0, f"--pad must be >= 0, got {self.pad}"),
            (
                self.checkpoint_every >= 0,
                f"--checkpoint-every must be >= 0, got {self.checkpoint_every}",
            ),
            (self.batch_size >= 2, f"--batch-size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (
                self.optimizer in ("sgd", "adam"),
                f"--optimizer must be sgd or adam: {self.optimizer!r}",
            ),
            (
                self.scheduler in ("cosine", "step"),
                f"--scheduler must be cosine or step: {self.scheduler!r}",
            ),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"--warmup-epochs ({self.warmup_epochs}) must be in [0, --epochs) = "
                f"[0, {self.epochs}): lower --warmup-epochs or raise --epochs",
            ),
            (
                0.0 <= self.label_smoothing < 1.0,
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (0.0 <= self.erasing <= 1.0, f"--erasing must be in [0, 1], got {self.erasing}"),
            (
                self.sampler in ("random", "identity"),
                f"--sampler must be random or identity: {self.sampler!r}",
            ),
            (self.init in INITS, f"--init must be one of {INITS}, got {self.init!r}"),
            (
                self.init == "pretrained" or not (self.pretrained or self.weights),
                "--weights / --pretrained load weights: they need --init pretrained",
            ),
            (
                len(self.input_size) == 2 and min(self.input_size) >= 16,
                f"--input-size must be HxW with both >= 16, got {self.input_size}",
            ),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"--device must be auto, cpu or cuda: {self.device!r}",
            ),
            (
                self.threads is None or self.threads >= 1,
                f"--threads must be >= 1, got {self.threads}",
            ),
            (self.kd_T > 0, f"--kd-T must be > 0, got {self.kd_T}"),
            (0.0 <= self.kd_alpha <= 1.0, f"--kd-alpha must be in [0, 1], got {self.kd_alpha}"),
        ]

    def _range_checks(self) -> list[tuple[bool, str]]:
        stride, stop = self.last_stride, self.stop_after_steps
        return [
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}"),
            (self.gamma > 0, f"--gamma must be > 0, got {self.gamma}"),
            (
                all(m >= 1 for m in self.milestones),
                f"--milestones must be epochs >= 1, got {list(self.milestones)}",
            ),
            (self.triplet_weight >= 0, f"--triplet-weight must be >= 0, got {self.triplet_weight}"),
            (self.triplet_margin >= 0, f"--triplet-margin must be >= 0, got {self.triplet_margin}"),
            (self.colour_jitter >= 0, f"--colour-jitter must be >= 0, got {self.colour_jitter}"),
            (stride in (None, 1, 2), f"--last-stride must be 1 or 2, got {stride}"),
            (stop is None or stop >= 1, f"--stop-after-steps must be >= 1, got {stop}"),
            (
                self.kd_feature_weight >= 0,
                f"--kd-feature-weight must be >= 0, got {self.kd_feature_weight}",
            ),
            (
                self.kd_feature_kind in ("cosine", "mse"),
                f"--kd-feature-kind must be cosine or mse: {self.kd_feature_kind!r}",
            ),
        ]


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

#: One help text per :class:`TrainConfig` field (``--help``).
FIELD_HELP = {
    "model": f"architecture from the registry: {', '.join(list_models())}",
    "dataset": "dataset layout (synthetic, market1501, dukemtmc, generic, ...)",
    "data_root": "dataset folder (default: the layout's; the synthetic set is generated there)",
    "out": "run folder (default: <runs-dir>/<dataset>/deep/<model>/<variant>_seed<seed>)",
    "variant": "run label: baseline or distilled (part of the default run folder)",
    "seed": "random seed: weights, batch order and augmentation are a function of it",
    "input_size": "input HxW the images are resized to, e.g. 64x32",
    "epochs": "training epochs",
    "batch_size": "images per batch (>= 2)",
    "optimizer": "sgd (Nesterov momentum) or adam",
    "lr": "peak learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay",
    "scheduler": "cosine (after warm-up) or step (at --milestones)",
    "warmup_epochs": "linear warm-up epochs (< --epochs)",
    "milestones": "epochs where the step scheduler multiplies the lr by --gamma",
    "gamma": "step scheduler factor",
    "label_smoothing": "cross-entropy label smoothing in [0, 1)",
    "triplet_weight": "weight of the batch-hard triplet loss (0 = identity loss only)",
    "triplet_margin": "margin of the triplet loss",
    "sampler": "random batches, or identity (P identities x --instances images)",
    "instances": "images per identity in a batch of the identity sampler",
    "flip": "random horizontal flips",
    "pad": "random-crop padding in pixels (0 = no crop)",
    "erasing": "random-erasing probability",
    "colour_jitter": "colour-jitter strength (0 = none)",
    "bn_neck": "BatchNorm neck before the classifier",
    "last_stride": "stride of the last stage, 1 or 2 (default: the model's, see the registry)",
    "zero_init_residual": "zero-initialise the last BN of every residual block",
    "init": "pretrained (the shipped backbone, or --weights PATH), scratch, or imagenet (make "
    "imagenet-weights, or torchvision's file in the torch cache)",
    "pretrained": "start from torchvision's cached ImageNet weights (never downloaded)",
    "weights": "weights file to start from (deep.pretrain file, backbone state dict, torchvision)",
    "checkpoint_every": "steps between checkpoints (0 = at the end of each epoch only)",
    "stop_after_steps": "stop after this many steps, as if interrupted (debugging, tests)",
    "device": "auto, cpu or cuda",
    "threads": "torch CPU threads (default 1: a shared machine slows it down gracefully and "
    "the weights do not depend on the core count; more threads only on a dedicated machine)",
    "kd_T": "distillation temperature",
    "kd_alpha": "weight of the soft-target term (1 - alpha for the labels)",
    "kd_feature_weight": "weight of the embedding distillation term (0 = Hinton KD only)",
    "kd_feature_kind": "embedding distillation distance: cosine or mse",
    "teacher": "run folder of a trained teacher: train this model distilled from it",
    "runs_dir": "root of the runs tree: run folders, results tables, caches "
    "(default: $REID_RUNS_DIR, else runs/)",
}


def config_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field (shared with deep.distill)."""
    parser = argparse.ArgumentParser(description=description)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = "" if default is None or isinstance(default, bool) else f" (default: {default})"
        kwargs: dict = {"default": None, "help": FIELD_HELP[f.name] + shown}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "init":
            kwargs["choices"] = INITS
        elif f.name == "input_size":
            kwargs["type"] = image_size
        elif f.name == "milestones":
            kwargs.update(type=int, nargs="*")
        elif isinstance(default, float):
            kwargs["type"] = float
        elif isinstance(default, int) or f.name in ("last_stride", "stop_after_steps", "threads"):
            kwargs["type"] = int
        parser.add_argument(flag, **kwargs)
    return parser


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with every flag that was given."""
    base = base or TrainConfig()
    updates = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            updates[f.name] = tuple(value) if f.name == "milestones" else value
    if updates.get("runs_dir") is None and base.runs_dir is None:
        # the environment is read here, once, when the command line is parsed
        updates["runs_dir"] = str(RunsLayout.from_env().root)
    return dataclasses.replace(base, **updates)
