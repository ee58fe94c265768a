"""Identity-clustered distractor embeddings fitted to real embeddings, to grow a gallery.

Large re-ID galleries are built by adding distractor identities to a real gallery (Market-1501's
500k distractor set). When not enough images exist to embed, this module draws distractors that
follow the statistics of real embeddings:

* identity centres from a Gaussian with the mean and covariance of the real identities' mean
  embeddings (between-identity spread);
* each item = a drawn centre + a *real* within-identity residual (an embedding minus its
  identity's mean, scaled by ``sqrt(n / (n - 1))`` to undo the shrinkage of an ``n``-image mean),
  picked at random;
* images per identity drawn from the real identities' counts.

The between-identity distribution is Gaussian (an approximation); the within-identity structure
is the real one. ANN indexes are sensitive to both (random vectors are their worst case), which
is why the distractors are not plain random vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdentityStatistics:
    """What :func:`sample_distractors` draws from (fitted by :func:`fit_identity_statistics`)."""

    mean: np.ndarray  # (d,) mean of the identity centres
    centre_factor: np.ndarray  # (d, d): centres = mean + z @ centre_factor.T, z ~ N(0, I)
    residuals: np.ndarray  # (n_res, d) real within-identity residuals, shrinkage undone
    images_per_id: np.ndarray  # (n_ids,) real image counts per identity
    num_identities: int


def fit_identity_statistics(embeddings: np.ndarray, labels: np.ndarray) -> IdentityStatistics:
    """Fit the centre distribution and collect residuals from labelled real embeddings.

    Identities with one image give a centre but no residual; at least two identities with two
    or more images are needed. Labels < 0 (junk / unlabelled) are ignored.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(labels) != len(x):
        raise ValueError(f"need (n, d) embeddings and n labels, got {x.shape} and {labels.shape}")
    keep = labels >= 0
    x, labels = x[keep], labels[keep]
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if np.sum(counts >= 2) < 2:
        raise ValueError("need at least two identities with two or more embeddings each")
    centres = np.zeros((len(ids), x.shape[1]))
    np.add.at(centres, inverse, x)
    centres /= counts[:, None]
    n_of = counts[inverse]
    multi = n_of >= 2
    residuals = (x - centres[inverse])[multi] * np.sqrt(n_of[multi] / (n_of[multi] - 1))[:, None]
    cov = np.cov(centres, rowvar=False).reshape(x.shape[1], x.shape[1])
    eigvals, eigvecs = np.linalg.eigh(cov)
    factor = eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))
    return IdentityStatistics(
        mean=centres.mean(axis=0),
        centre_factor=factor,
        residuals=residuals.astype(np.float32),
        images_per_id=counts,
        num_identities=len(ids),
    )


def sample_distractors(
    stats: IdentityStatistics, n: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distractor embeddings (float32) and their identity numbers (0, 1, ...)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    dim = len(stats.mean)
    # enough identities to reach n items (counts drawn from the real ones)
    per_id = rng.choice(stats.images_per_id, size=max(1, n // 2 + 1))
    while per_id.sum() < n:
        per_id = np.concatenate([per_id, rng.choice(stats.images_per_id, size=len(per_id))])
    labels = np.repeat(np.arange(len(per_id)), per_id)[:n]
    n_ids = int(labels[-1]) + 1 if n else 0
    centres = stats.mean + rng.standard_normal((n_ids, dim)) @ stats.centre_factor.T
    out = centres.astype(np.float32)[labels]
    out += stats.residuals[rng.integers(0, len(stats.residuals), size=n)]
    return out, labels
