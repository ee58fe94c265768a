"""MSRCR Retinex: output format, gain/offset stretch, illumination normalisation, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from classical.retinex import msrcr


def _scene(h=128, w=48, seed=0) -> np.ndarray:
    """A smooth, coloured, textured test image (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [120 + 80 * np.sin(y / 9), 90 + 60 * np.cos(x / 7), 60 + 40 * np.sin((x + y) / 11)], axis=-1
    )
    noisy = base + rng.normal(0, 8, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_output_format_and_full_range():
    image = _scene()
    out = msrcr(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    for c in range(3):
        # 1st/99th percentiles are mapped to 0/255: each channel spans the whole range.
        assert out[:, :, c].min() == 0 and out[:, :, c].max() == 255
        assert np.mean(out[:, :, c] == 0) <= 0.02 and np.mean(out[:, :, c] == 255) <= 0.02
    np.testing.assert_array_equal(msrcr(image), out)  # deterministic


def test_normalises_global_illumination():
    """A dark copy of a scene comes out much closer to the bright one than it went in."""
    bright = _scene(seed=1)
    dark = (bright.astype(np.float64) * 0.35).round().astype(np.uint8)
    before = np.abs(bright.astype(int) - dark.astype(int)).mean()
    after = np.abs(msrcr(bright).astype(int) - msrcr(dark).astype(int)).mean()
    assert after < 0.25 * before


def test_uses_both_scales_and_is_local():
    """Removing a smooth illumination ramp is what the surround (Gaussian) scales do."""
    image = _scene(seed=2)
    ramp = np.linspace(0.4, 1.0, image.shape[1])[None, :, None]
    lit = (image * ramp).round().astype(np.uint8)
    left, right = slice(0, 12), slice(36, 48)
    # Before: the left side is much darker than the right; after Retinex, far less so.
    gap_before = lit[:, right].mean() - lit[:, left].mean()
    out = msrcr(lit).astype(float)
    gap_after = out[:, right].mean() - out[:, left].mean()
    assert abs(gap_after) < 0.5 * gap_before
    small_only = msrcr(lit, sigmas=(5.0,))
    assert not np.array_equal(small_only, msrcr(lit))


def test_flat_channel_maps_to_mid_grey():
    flat = np.full((20, 20, 3), 37, dtype=np.uint8)
    assert np.unique(msrcr(flat)).tolist() == [128]


def test_gaussian_surround_is_opencv_blur():
    # Sanity link to the implementation choice: a constant image stays constant under the blur
    # with replicated borders, so log I - log(G * I) is 0 and nothing but the offset remains.
    img = np.full((16, 16, 3), 9.0, dtype=np.float32)
    blurred = cv2.GaussianBlur(img, (0, 0), 20.0, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(blurred, img, rtol=1e-6)


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), {}, "uint8"),
        (np.zeros((8, 8), dtype=np.uint8), {}, "RGB"),
        (np.zeros((8, 8, 3), dtype=np.uint8), {"sigmas": ()}, "sigmas"),
        (np.zeros((8, 8, 3), dtype=np.uint8), {"sigmas": (5.0, -1.0)}, "sigmas"),
        (np.zeros((8, 8, 3), dtype=np.uint8), {"low_clip": 60.0, "high_clip": 40.0}, "clip"),
    ],
)
def test_bad_input(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        msrcr(image, **kwargs)
