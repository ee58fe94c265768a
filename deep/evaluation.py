"""Accuracy of a CNN's embeddings on a split: batched extraction, Euclidean ranking, CMC / mAP.

Used on the validation split of the training identities (model selection, e.g. the
distillation sweep) and, by ``compare.measure``, on the test split for every inference engine.
The scoring itself is the dataset's protocol (:func:`data.protocols.evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from data.layouts import Record, record_arrays
from data.matching import pairwise_cosine_distance, pairwise_sq_euclidean
from data.protocols import evaluate
from deep.loader import load_records, normalise
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


def split_labels(
    query: Sequence[Record], gallery: Sequence[Record]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(query ids, gallery ids, query cameras, gallery cameras) as int64 arrays."""
    q_ids, q_cams = record_arrays(query)
    g_ids, g_cams = record_arrays(gallery)
    return q_ids, g_ids, q_cams, g_cams


def score_embeddings(q: np.ndarray, g: np.ndarray, labels: tuple) -> dict:
    """Rank-1/5/10 and mAP (both AP definitions) under Euclidean distance, and cosine's
    rank-1 / mAP, of query embeddings ``q`` against gallery embeddings ``g``."""
    euclid = pairwise_sq_euclidean(q, g)
    official = evaluate(euclid, *labels)
    torchreid = evaluate(euclid, *labels, ap="torchreid")
    cosine = evaluate(pairwise_cosine_distance(q, g), *labels)
    # a small validation gallery has fewer than 10 items: the CMC is flat beyond its end
    at = lambda k: float(official.cmc[min(k, len(official.cmc)) - 1])  # noqa: E731
    return {
        "rank1": at(1),
        "rank5": at(5),
        "rank10": at(10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "cosine": {"rank1": cosine.rank(1), "mAP": cosine.mAP},
        "embedding_dim": int(q.shape[1]),
    }
