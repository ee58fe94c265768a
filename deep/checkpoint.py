"""Atomic, ``weights_only``-loadable training checkpoints.

A checkpoint holds the model, optimiser and scheduler state, the position in training
(epoch, batch in epoch, global step), the torch RNG state and the run's config (a plain dict),
so ``torch.load(path, weights_only=True)`` reads it and ``--resume`` continues exactly where the
run stopped. It is written to a temporary file in the same folder and renamed, so a crash while
saving never corrupts the last good checkpoint.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import Tensor

from data.io import atomic_path
from deep.models import ReIDNet, build_model


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the requested model."""


def save_checkpoint(path: Path | str, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def file_sha256(path: Path | str) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: Path | str, *, expected_model: str | None = None) -> dict:
    """Load with ``weights_only=True``; an architecture mismatch names both models."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():
            raise CheckpointError(
                f"checkpoint {path} cannot be read (truncated or not a torch checkpoint)"
            ) from err
        # torch's own message suggests weights_only=False, which would run the file's code
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain containers; it was "
            "refused because loading it could run code. Use a checkpoint written by this toolkit"
        ) from err
    except Exception as err:  # torch raises several types for corrupt or truncated files
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or not a torch file): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(state, dict) or "model" not in state or "model_name" not in state:
        raise CheckpointError(f"{path} is not a reid-tradeoff training checkpoint")
    if expected_model is not None and state["model_name"] != expected_model:
        raise CheckpointError(
            f"checkpoint {path} holds a {state['model_name']!r} model but {expected_model!r} was "
            "requested"
        )
    return state


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


def load_trained(run_dir: Path | str, *, expected_model: str | None = None) -> tuple[ReIDNet, dict]:
    """(model in eval mode, config dict) of a finished run folder."""
    state = load_checkpoint(Path(run_dir) / "model.pt", expected_model=expected_model)
    return model_from_state(state), state["config"]


def weights_hash(state_dict: dict[str, Tensor]) -> str:
    """SHA-256 (16 hex digits) of a state dict's names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
