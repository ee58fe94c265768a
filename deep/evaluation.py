"""Batched embedding extraction for evaluation and gallery indexing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from data.layouts import Record
from deep.data import load_records, normalise
from deep.models import ReIDNet


@torch.inference_mode()
def extract_embeddings(
    model: ReIDNet,
    records: Sequence[Record],
    input_size: tuple[int, int],
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Test-time embeddings (n, dim) float32 of the images of ``records``."""
    model.eval()
    images = load_records(records, input_size)
    out = []
    for start in range(0, len(images), batch_size):
        batch = normalise(images[start : start + batch_size]).to(device)
        out.append(model.extract(batch).float().cpu().numpy())
    return np.concatenate(out)
