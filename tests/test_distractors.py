"""Identity-clustered distractors fitted to labelled embeddings (data.distractors)."""

from __future__ import annotations

import numpy as np
import pytest

from data.distractors import fit_identity_statistics, sample_distractors


def labelled(seed: int, n_ids: int = 400, per_id: int = 4, dim: int = 6):
    """Centres N(mu, 4 I), items = centre + N(0, 0.25 I): known between / within spread."""
    rng = np.random.default_rng(seed)
    mu = np.arange(dim, dtype=float)
    centres = mu + 2.0 * rng.standard_normal((n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    x = centres[labels] + 0.5 * rng.standard_normal((len(labels), dim))
    return x, labels, mu


def test_distractors_follow_the_fitted_spread():
    x, labels, mu = labelled(0)
    stats = fit_identity_statistics(x, labels)
    assert stats.num_identities == 400
    # residuals are rescaled by sqrt(n/(n-1)): their variance estimates the within spread 0.25
    assert stats.residuals.var(axis=0).mean() == pytest.approx(0.25, rel=0.1)
    out, ids = sample_distractors(stats, 20_000, seed=1)
    assert out.shape == (20_000, 6) and out.dtype == np.float32
    centres = np.array([out[ids == i].mean(axis=0) for i in range(ids.max() + 1)])
    within = out - centres[ids]
    counts = np.bincount(ids)
    # items of one drawn identity scatter like the real within-identity spread
    n = counts[ids][:, None]
    assert (within**2 * n / (n - 1)).mean() == pytest.approx(0.25, rel=0.1)
    # drawn identity centres: the real mean and between-identity spread (4 + 0.25 / 4 per dim)
    np.testing.assert_allclose(stats.mean, mu, atol=0.5)  # 5 sigma of a 400-identity mean
    np.testing.assert_allclose(centres.mean(axis=0), stats.mean, atol=0.15)
    assert centres.var(axis=0).mean() == pytest.approx(4.0 + 0.25 / 4, rel=0.15)
    assert set(np.unique(counts)) == {4}  # image counts per identity drawn from the real ones


def test_junk_labels_ignored_and_seeded():
    x, labels, _ = labelled(1, n_ids=20)
    labels = labels.copy()
    labels[:8] = -1
    stats = fit_identity_statistics(x, labels)
    assert stats.num_identities == 18
    a = sample_distractors(stats, 50, seed=3)[0]
    np.testing.assert_array_equal(a, sample_distractors(stats, 50, seed=3)[0])
    assert not np.array_equal(a, sample_distractors(stats, 50, seed=4)[0])
    assert sample_distractors(stats, 0)[0].shape == (0, 6)


def test_bad_input():
    x, labels, _ = labelled(2, n_ids=5, per_id=1)
    with pytest.raises(ValueError, match="at least two identities"):
        fit_identity_statistics(x, labels)
    with pytest.raises(ValueError, match="n labels"):
        fit_identity_statistics(x, labels[:-1])
    x, labels, _ = labelled(2, n_ids=5)
    with pytest.raises(ValueError, match="n must be >= 0"):
        sample_distractors(fit_identity_statistics(x, labels), -1)
