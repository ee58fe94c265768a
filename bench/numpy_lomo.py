"""A plain, vectorised NumPy LOMO: the benchmark baseline and the tests' oracle.

Written straight from ``shared/lomo_xqda_spec.md`` for clarity, not speed: one image at a time,
whole-array NumPy operations, explicit window loops. ``classical.lomo`` (numba) must agree with it
exactly (integer max-occurrence counts identical, features to float rounding).
"""

from __future__ import annotations

import numpy as np

SIXTH, THIRD, TWO_THIRDS = 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0
GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def hsv_quantised(image: np.ndarray, bins=(8, 8, 8)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantised (qH, qS, qV) maps of an RGB uint8 image, per the spec's exact arithmetic."""
    rgb = image.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=2)
    mn = rgb.min(axis=2)
    delta = v - mn
    grey = mn == v
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(grey, 0.0, 1.0 - mn / v)
        h_red = (SIXTH * (g - b)) / delta
        h_green = THIRD + (SIXTH * (b - r)) / delta
        h_blue = TWO_THIRDS + (SIXTH * (r - g)) / delta
    h = np.where(r == v, h_red, np.where(g == v, h_green, h_blue))
    h = np.where(grey, 0.0, h)
    h = np.where(h < 0, h + 1.0, h)
    quantised = []
    for channel, n in zip((h, s, v), bins, strict=True):
        quantised.append(np.minimum(np.floor(channel * n), n - 1).astype(np.int64))
    return quantised[0], quantised[1], quantised[2]


def grey_image(image: np.ndarray) -> np.ndarray:
    """Grey level I in [0, 1] (float64), rounded through uint8 as the reference does."""
    rgb = image.astype(np.float64) / 255.0
    y = (rgb[..., 0] * GREY_WEIGHTS[0] + rgb[..., 1] * GREY_WEIGHTS[1]) + rgb[
        ..., 2
    ] * GREY_WEIGHTS[2]
    scaled = y * 255.0
    floor = np.floor(scaled)
    rounded = np.where(scaled - floor >= 0.5, floor + 1.0, floor)  # halves away from zero
    return rounded.astype(np.uint8).astype(np.float64) / 255.0


def siltp(grey: np.ndarray, radius: int, tau: float) -> np.ndarray:
    """SILTP codes (0..80) with 4 neighbours, replicated border, trits right/up/left/down."""
    padded = np.pad(grey, radius, mode="edge")
    h, w = grey.shape
    centre = padded[radius : radius + h, radius : radius + w]
    neighbours = [
        padded[radius : radius + h, 2 * radius : 2 * radius + w],  # right
        padded[0:h, radius : radius + w],  # up
        padded[radius : radius + h, 0:w],  # left
        padded[2 * radius : 2 * radius + h, radius : radius + w],  # down
    ]
    lower, upper = (1 - tau) * centre, (1 + tau) * centre
    code = np.zeros((h, w), dtype=np.int64)
    for weight, n in zip((1, 3, 9, 27), neighbours, strict=True):
        trit = np.where(n < lower, 1, np.where(n > upper, 2, 0))
        code += weight * trit
    return code


def max_occurrence(codes: np.ndarray, n_bins: int, block: int, step: int) -> np.ndarray:
    """(window_rows, n_bins) integer counts: per window row, the bin-wise max over its windows."""
    h, w = codes.shape
    rows = range(0, h - block + 1, step)
    cols = range(0, w - block + 1, step)
    out = np.zeros((len(rows), n_bins), dtype=np.int64)
    for i, y in enumerate(rows):
        for x in cols:
            hist = np.bincount(codes[y : y + block, x : x + block].ravel(), minlength=n_bins)
            out[i] = np.maximum(out[i], hist)
    return out


def pool_quantised(q: np.ndarray) -> np.ndarray:
    h, w = (q.shape[0] // 2) * 2, (q.shape[1] // 2) * 2
    q = q[:h, :w]
    return (q[0::2, 0::2] + q[1::2, 0::2] + q[0::2, 1::2] + q[1::2, 1::2]) // 4


def pool_grey(grey: np.ndarray) -> np.ndarray:
    h, w = (grey.shape[0] // 2) * 2, (grey.shape[1] // 2) * 2
    g = grey[:h, :w]
    return (((g[0::2, 0::2] + g[1::2, 0::2]) + g[0::2, 1::2]) + g[1::2, 1::2]) / 4


def lomo_counts(
    image: np.ndarray,
    *,
    colour_image: np.ndarray | None = None,
    num_scales: int = 3,
    block_size: int = 10,
    block_step: int = 5,
    hsv_bins=(8, 8, 8),
    tau: float = 0.3,
    radii=(3, 5),
) -> list[np.ndarray]:
    """The three parts' raw max-occurrence counts (before log and normalisation), flattened."""
    source = image if colour_image is None else colour_image
    qh, qs, qv = hsv_quantised(source, hsv_bins)
    n_colour = hsv_bins[0] * hsv_bins[1] * hsv_bins[2]
    colour = []
    for scale in range(num_scales):
        if scale:
            qh, qs, qv = pool_quantised(qh), pool_quantised(qs), pool_quantised(qv)
        code = qv * (hsv_bins[1] * hsv_bins[0]) + qs * hsv_bins[0] + qh
        colour.append(max_occurrence(code, n_colour, block_size, block_step).ravel())
    parts = [np.concatenate(colour)]
    for radius in radii:
        grey = grey_image(image)
        texture = []
        for scale in range(num_scales):
            if scale:
                grey = pool_grey(grey)
            if grey.shape[1] < 2 * radius + 1:
                break
            texture.append(
                max_occurrence(siltp(grey, radius, tau), 81, block_size, block_step).ravel()
            )
        parts.append(np.concatenate(texture))
    return parts


def lomo_numpy(images: np.ndarray, **kwargs) -> np.ndarray:
    """LOMO of a batch (n, h, w, 3) uint8 (Retinex off), float64 (n, d)."""
    if images.ndim == 3:
        images = images[None]
    features = []
    for image in images:
        parts = []
        for counts in lomo_counts(image, **kwargs):
            logged = np.log(counts.astype(np.float64) + 1.0)
            parts.append(logged / np.linalg.norm(logged))
        features.append(np.concatenate(parts))
    return np.stack(features)
