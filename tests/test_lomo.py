"""LOMO (numba) against the NumPy oracle in bench/, hand-worked SILTP and HSV cases, invariants."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import numpy_lomo as oracle

from classical.lomo import LOMO, layout, lomo, lomo_counts


def _images(n, h=128, w=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    # Structure the random noise: flat grey areas, ties between channels, saturated colours.
    images[:, :20, :20] = 128
    images[:, 30:45, :, 1] = images[:, 30:45, :, 0]
    images[:, 50:60, :, 2] = 255
    images[:, 60:64] = 0
    return images


@pytest.mark.parametrize(("h", "w"), [(128, 48), (128, 64), (96, 40)])
def test_matches_numpy_oracle(h, w):
    images = _images(3, h, w, seed=h + w)
    fast = lomo(images, retinex=False, dtype=np.float64)
    slow = oracle.lomo_numpy(images)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)
    for image, counts in zip(images, lomo_counts(images, retinex=False), strict=True):
        np.testing.assert_array_equal(counts, np.concatenate(oracle.lomo_counts(image)))


def test_dimensions_and_part_norms():
    for h, w in [(128, 48), (128, 64)]:
        assert layout(h, w).dim == 26960
        features = lomo(_images(2, h, w), retinex=False, dtype=np.float64)
        assert features.shape == (2, 26960)
        parts = np.split(features, [20480, 20480 + 3240], axis=1)
        for part in parts:
            np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, rtol=1e-12)


def test_batch_equals_one_by_one_and_dtype():
    images = _images(4, seed=3)
    batch = lomo(images, retinex=False)
    assert batch.dtype == np.float32
    for i, image in enumerate(images):
        np.testing.assert_array_equal(lomo(image, retinex=False)[0], batch[i])


def test_siltp_hand_worked_patch():
    # Centre 0.5 -> bounds 0.35 and 0.65. right 0.7 (> upper: 2), up 0.3 (< lower: 1),
    # left 0.5 (equal: 0), down 0.65 (exactly the bound, not strictly above: 0).
    grey = np.full((3, 3), 0.5)
    grey[1, 2], grey[0, 1], grey[1, 0], grey[2, 1] = 0.7, 0.3, 0.5, 0.65
    code = oracle.siltp(grey, radius=1, tau=0.3)[1, 1]
    assert code == 2 * 1 + 1 * 3 + 0 * 9 + 0 * 27


def test_siltp_codes_through_lomo_counts():
    """A vertical edge, worked by hand: bright (200) columns 0-9, dark (50) columns 10-19.

    Radius 3: bright pixels in columns 7-9 see a dark right neighbour (t_right = 1, code 1);
    dark pixels in columns 10-12 see a bright left neighbour (t_left = 2, code 18); all others
    code 0. Windows at columns 0, 5, 10 hold (code 0, 1, 18) = (70, 30, 0), (40, 30, 30),
    (70, 0, 30); the row maximum is (70, 30, 30) in each of the 3 window rows.
    """
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[:, :10] = 200
    image[:, 10:] = 50
    counts = lomo_counts(image, retinex=False, num_scales=1, radii=(3,))[0]
    texture = counts[-3 * 81 :].reshape(3, 81)
    expected = np.zeros(81, dtype=np.int64)
    expected[[0, 1, 18]] = [70, 30, 30]
    for row in texture:
        np.testing.assert_array_equal(row, expected)


def test_hsv_arithmetic_hand_worked():
    pixels = np.array(
        [[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [255, 255, 0]]], dtype=np.uint8
    )
    qh, qs, qv = oracle.hsv_quantised(pixels)
    # red h=0; green h=1/3 -> floor(8/3)=2; blue h=2/3 -> 5; grey h=s=0; yellow: r and g tie,
    # red wins the tie: h = (1/6)(g - b)/(v - mn) = 1/6 -> 1.
    assert qh.tolist() == [[0, 2, 5, 0, 1]]
    assert qs.tolist() == [[7, 7, 7, 0, 7]]
    assert qv.tolist() == [[7, 7, 7, 4, 7]]


def test_retinex_changes_only_colour_part():
    images = _images(2, seed=9)
    plain = lomo(images, retinex=False)
    enhanced = lomo(images, retinex=True)
    assert not np.allclose(plain[:, :20480], enhanced[:, :20480])
    np.testing.assert_array_equal(plain[:, 20480:], enhanced[:, 20480:])
    custom = lomo(images, retinex=lambda im: 255 - im)
    assert custom.shape == plain.shape


def test_transformer_is_stateless():
    images = _images(2, seed=4)
    model = LOMO(retinex=False)
    assert model.fit(images) is model
    np.testing.assert_array_equal(model.transform(images), lomo(images, retinex=False))
    assert model.get_params()["radii"] == (3, 5)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 128, 48, 3), dtype=np.float32), "uint8"),
        (np.zeros((128, 48), dtype=np.uint8), "grayscale"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "smaller than one"),
        (np.zeros((0, 128, 48, 3), dtype=np.uint8), "empty"),
    ],
)
def test_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        lomo(images, retinex=False)


def test_bad_parameters():
    images = _images(1)
    with pytest.raises(ValueError, match="num_points"):
        lomo(images, num_points=8)
    with pytest.raises(ValueError, match="tau"):
        lomo(images, tau=1.5)
    with pytest.raises(TypeError, match="numpy array"):
        lomo([[1, 2, 3]])
