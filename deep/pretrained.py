"""Pretrained backbones: the shipped files, their verification, and loading them into a model.

``make pretrain`` (:mod:`deep.pretrain`) trains each CNN of the quick profile as an identity
classifier on a large synthetic set whose identities are disjoint from every study split, and
writes the backbone (no classifier) in half precision to ``deep/weights/<model>.pt`` beside a
metadata record ``deep/weights/<model>.json``::

    {"model": ..., "input_size": [64, 32], "epochs": ..., "seed": 0, "data": {...},
     "recipe": {...}, "training": {...}, "pretrain_eval": {...}, "sha256": "<of the .pt file>"}

The files are committed, so a fresh clone fine-tunes without paying the pretraining.
:func:`load_backbone` checks the file's sha256 against its record before ``torch.load(...,
weights_only=True)``; an absent, altered or unreadable file gets an error that names the file and
``make pretrain``.

Initialisations (``TrainConfig.init``):

* ``"scratch"``: random initialisation (the seed decides it);
* ``"pretrained"``: the shipped backbone of the model, or ``weights=PATH``: a file written by
  ``deep.pretrain``, a plain backbone state dict, or a torchvision (ImageNet) state dict;
* ``"imagenet"``: ImageNet weights found on this machine (:mod:`deep.imagenet`: the file of
  ``make imagenet-weights``, or torchvision's in the torch cache), every backbone tensor loaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from deep.checkpoint import file_sha256
from deep.imagenet import load_imagenet
from deep.safe_load import load_tensors

log = logging.getLogger("deep.pretrained")

#: Where the shipped backbones live (inside the package, committed).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
INITS = ("pretrained", "scratch", "imagenet")
#: Marks a state dict written by ``deep.pretrain`` (backbone only).
FORMAT = "reid-tradeoff-backbone-v1"


class PretrainedWeightsError(ValueError):
    """Pretrained weights are absent, altered, unreadable or do not fit the model."""


def weights_path(model: str, weights_dir: Path | str | None = None) -> Path:
    """The shipped backbone file of ``model``."""
    return Path(weights_dir or WEIGHTS_DIR) / f"{model}.pt"


def metadata_path(model: str, weights_dir: Path | str | None = None) -> Path:
    return Path(weights_dir or WEIGHTS_DIR) / f"{model}.json"


def read_metadata(model: str, weights_dir: Path | str | None = None) -> dict:
    """The metadata record of a shipped backbone (clear error when absent or unreadable)."""
    path = metadata_path(model, weights_dir)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"no pretrained backbone for {model!r}: {path} is missing. Run `make pretrain "
            f"MODELS={model}` to create it, or train with --init scratch"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PretrainedWeightsError(
            f"{path} cannot be read ({err}); regenerate it with `make pretrain MODELS={model}`"
        ) from err
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise PretrainedWeightsError(f"{path} has no sha256 record; run `make pretrain`")
    return record


def available(weights_dir: Path | str | None = None) -> list[str]:
    """Models that have a shipped backbone (a metadata record and its weights file)."""
    folder = Path(weights_dir or WEIGHTS_DIR)
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.pt").is_file())


def verified_path(model: str, weights_dir: Path | str | None = None) -> tuple[Path, dict]:
    """The shipped backbone file of ``model`` and its record, after checking its sha256."""
    record = read_metadata(model, weights_dir)
    path = weights_path(model, weights_dir)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained backbone {path} is missing (its record {metadata_path(model, weights_dir)}"
            f" exists). Run `make pretrain MODELS={model}` to regenerate it"
        )
    found = file_sha256(path)
    if found != record["sha256"]:
        raise PretrainedWeightsError(
            f"pretrained backbone {path} does not match its recorded sha256 "
            f"({found[:12]}... != {record['sha256'][:12]}...): the file is corrupt or was "
            f"replaced. Run `make pretrain MODELS={model}` to regenerate it"
        )
    return path, record


def _read_state(path: Path) -> dict:
    state = load_tensors(path, PretrainedWeightsError, what="weights file")
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path} does not hold a state dict")
    return state


def backbone_state(path: Path | str) -> tuple[dict[str, Tensor], str | None]:
    """A backbone state dict from a ``deep.pretrain`` file or a plain backbone state dict.

    Returns the float32 state dict and the model name recorded in the file (None for a plain
    state dict).
    """
    path = Path(path)
    state = _read_state(path)
    if state.get("format") == FORMAT:
        tensors, name = state["backbone"], state.get("model")
    else:
        tensors, name = state, None
    if not all(isinstance(v, Tensor) for v in tensors.values()):
        raise PretrainedWeightsError(f"{path} is not a backbone state dict")
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, name


def load_into(backbone: nn.Module, model: str, path: Path | str) -> None:
    """Load a backbone file into ``backbone`` (strict: every parameter must be there)."""
    tensors, recorded = backbone_state(path)
    if recorded is not None and recorded != model:
        raise PretrainedWeightsError(
            f"{path} holds a {recorded!r} backbone but {model!r} was requested"
        )
    try:
        backbone.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise PretrainedWeightsError(f"weights in {path} do not fit {model}: {first}") from err


def is_backbone_file(path: Path | str) -> bool:
    """Whether ``path`` was written by ``deep.pretrain`` (else: a torchvision state dict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not ours (or unreadable: the torchvision loader reports it)
        return False
    return isinstance(state, dict) and state.get("format") == FORMAT


def initialise(
    model: nn.Module,
    name: str,
    init: str,
    *,
    weights: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
    weights_dir: Path | str | None = None,
) -> dict:
    """Initialise ``model.backbone`` as ``init`` says and return a record of what was loaded.

    Parameters
    ----------
    model : ReIDNet
        A freshly built model (random initialisation).
    name : str
        Its registry name.
    init : {"pretrained", "scratch", "imagenet"}
    weights : path, optional
        With ``init="pretrained"``: a file written by ``deep.pretrain`` or a plain backbone state
        dict (a torchvision/ImageNet file is handled by :func:`deep.models.build_model`).
        Default: the shipped backbone of ``name``, verified against its sha256.
    input_size : (H, W), optional
        The training input size; a warning when it differs from the pretraining size.

    Returns
    -------
    dict
        ``{"init": ..., "weights": path or None, "sha256": ... or None}``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "scratch":
        if weights is not None:
            raise ValueError("weights=PATH needs init='pretrained' (it was 'scratch')")
        return {"init": "scratch", "weights": None, "sha256": None}
    if init == "imagenet":
        if weights is not None:
            raise ValueError("weights=PATH needs init='pretrained' (it was 'imagenet')")
        return load_imagenet(model.backbone, name)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        load_into(model.backbone, name, path)
        return {"init": "pretrained", "weights": str(path), "sha256": file_sha256(path)}
    path, record = verified_path(name, weights_dir)
    load_into(model.backbone, name, path)
    trained_at = tuple(record.get("input_size", ()))
    if input_size is not None and trained_at and tuple(input_size) != trained_at:
        log.warning(
            "%s was pretrained at %dx%d and is fine-tuned at %dx%d",
            name,
            *trained_at,
            *input_size,
        )
    return {"init": "pretrained", "weights": _display(path), "sha256": record["sha256"]}


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(WEIGHTS_DIR.parents[1]))
    except ValueError:
        return str(path)
