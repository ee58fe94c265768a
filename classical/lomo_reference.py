"""LOMO in plain NumPy: the reference the tests check ``classical.lomo`` against, and the
benchmark's baseline.

Written straight from the paper (Liao et al., "Person Re-identification by Local Maximal
Occurrence Representation and Metric Learning", CVPR 2015, section 3) and ``docs/lomo_xqda.md``
to be obviously correct, not fast: one image at a time, whole-array NumPy operations for the
per-pixel maps and one ``np.bincount`` per window (:func:`lomo_numpy`). ``classical.lomo``
(numba) must agree with it exactly: identical integer max-occurrence counts and features equal
to floating-point rounding.
It lives beside the fast code so that tests and benchmarks import it alike.

:func:`lomo_numpy_batched` is the same algorithm with the window loop vectorised away (all windows
of all images of a batch in one ``np.bincount`` per scale): a stronger NumPy baseline, reported
next to the plain one by ``bench/bench_lomo.py``.

Only the parameters' defaults come from the implementation under test
(:data:`classical.lomo.DEFAULTS`, their one home; ``tests/test_lomo.py`` pins them to the paper's
values); the arithmetic shares nothing with it."""

from __future__ import annotations

import numpy as np

from classical.lomo import DEFAULTS

SIXTH, THIRD, TWO_THIRDS = 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0
GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
SILTP_BINS = 81


def hsv_quantised(
    image: np.ndarray, bins: tuple[int, int, int] = DEFAULTS.hsv_bins
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantised (qH, qS, qV) maps of RGB uint8 pixels (..., 3), per the spec's arithmetic."""
    rgb = image.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    mn = rgb.min(axis=-1)
    delta = v - mn
    grey = mn == v
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(grey, 0.0, 1.0 - mn / v)
        h_red = (SIXTH * (g - b)) / delta
        h_green = THIRD + (SIXTH * (b - r)) / delta
        h_blue = TWO_THIRDS + (SIXTH * (r - g)) / delta
    h = np.where(r == v, h_red, np.where(g == v, h_green, h_blue))  # ties: red, green, blue
    h = np.where(grey, 0.0, h)
    h = np.where(h < 0, h + 1.0, h)
    return tuple(
        np.minimum(np.floor(channel * n), n - 1).astype(np.int64)
        for channel, n in zip((h, s, v), bins, strict=True)
    )


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
    """SILTP codes (0..80) of the last two axes: 4 neighbours, replicated border.

    Trits (1: neighbour < (1 - tau) I, 2: neighbour > (1 + tau) I, else 0) weigh 1, 3, 9, 27
    for the right, up, left and down neighbour at distance ``radius``.
    """
    pad = [(0, 0)] * (grey.ndim - 2) + [(radius, radius), (radius, radius)]
    padded = np.pad(grey, pad, mode="edge")
    h, w = grey.shape[-2:]
    centre = padded[..., radius : radius + h, radius : radius + w]
    neighbours = [
        padded[..., radius : radius + h, 2 * radius : 2 * radius + w],  # right
        padded[..., 0:h, radius : radius + w],  # up
        padded[..., radius : radius + h, 0:w],  # left
        padded[..., 2 * radius : 2 * radius + h, radius : radius + w],  # down
    ]
    lower, upper = (1 - tau) * centre, (1 + tau) * centre
    code = np.zeros(centre.shape, dtype=np.int64)
    for weight, n in zip((1, 3, 9, 27), neighbours, strict=True):
        code += weight * np.where(n < lower, 1, np.where(n > upper, 2, 0))
    return code


def window_starts(size: int, block: int, step: int) -> range:
    """Top-left coordinates 0, step, 2 step, ... while start + block <= size."""
    return range(0, size - block + 1, step)


def max_occurrence(codes: np.ndarray, n_bins: int, block: int, step: int) -> np.ndarray:
    """(window_rows, n_bins) counts: per row of windows, the bin-wise max of their histograms."""
    h, w = codes.shape
    rows, cols = window_starts(h, block, step), window_starts(w, block, step)
    if len(rows) == 0 or len(cols) == 0:
        return np.zeros((0, n_bins), dtype=np.int64)
    out = np.zeros((len(rows), n_bins), dtype=np.int64)
    for i, y in enumerate(rows):
        for x in cols:
            hist = np.bincount(codes[y : y + block, x : x + block].ravel(), minlength=n_bins)
            out[i] = np.maximum(out[i], hist)
    return out


def pool_quantised(q: np.ndarray) -> np.ndarray:
    """2x2 pooling of a quantised map (last two axes): floor of the block average."""
    h, w = (q.shape[-2] // 2) * 2, (q.shape[-1] // 2) * 2
    q = q[..., :h, :w]
    return (q[..., 0::2, 0::2] + q[..., 1::2, 0::2] + q[..., 0::2, 1::2] + q[..., 1::2, 1::2]) // 4


def pool_grey(grey: np.ndarray) -> np.ndarray:
    """2x2 average pooling (last two axes), summed (r,c), (r+1,c), (r,c+1), (r+1,c+1), / 4."""
    h, w = (grey.shape[-2] // 2) * 2, (grey.shape[-1] // 2) * 2
    g = grey[..., :h, :w]
    return (
        ((g[..., 0::2, 0::2] + g[..., 1::2, 0::2]) + g[..., 0::2, 1::2]) + g[..., 1::2, 1::2]
    ) / 4


def lomo_counts(
    image: np.ndarray,
    *,
    colour_image: np.ndarray | None = None,
    num_scales: int = DEFAULTS.num_scales,
    block_size: int = DEFAULTS.block_size,
    block_step: int = DEFAULTS.block_step,
    hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
    tau: float = DEFAULTS.tau,
    radii: tuple[int, ...] = DEFAULTS.radii,
) -> list[np.ndarray]:
    """The three parts' integer max-occurrence counts (before log and normalisation), flat."""
    source = image if colour_image is None else colour_image
    qh, qs, qv = hsv_quantised(source, hsv_bins)
    n_colour = hsv_bins[0] * hsv_bins[1] * hsv_bins[2]
    colour = []
    for scale in range(num_scales):
        if scale:
            qh, qs, qv = pool_quantised(qh), pool_quantised(qs), pool_quantised(qv)
        code = qv * (hsv_bins[1] * hsv_bins[0]) + qs * hsv_bins[0] + qh
        counts = max_occurrence(code, n_colour, block_size, block_step)
        if len(counts) == 0:
            break  # no window fits: the reference stops here
        colour.append(counts.ravel())
    parts = [np.concatenate(colour) if colour else np.zeros(0, np.int64)]
    for radius in radii:
        grey = grey_image(image)
        texture = []
        for scale in range(num_scales):
            if scale:
                grey = pool_grey(grey)
            if grey.shape[1] < 2 * radius + 1:
                break  # too narrow for this radius; later scales are narrower still
            counts = max_occurrence(siltp(grey, radius, tau), SILTP_BINS, block_size, block_step)
            if len(counts) == 0:
                break
            texture.append(counts.ravel())
        parts.append(np.concatenate(texture) if texture else np.zeros(0, np.int64))
    return parts


def normalise_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate ``log(1 + counts)`` of each part divided by its L2 norm."""
    out = []
    for counts in parts:
        logged = np.log(counts.astype(np.float64) + 1.0)
        out.append(logged / np.linalg.norm(logged) if logged.size else logged)
    return np.concatenate(out)


def lomo_numpy(images: np.ndarray, **kwargs) -> np.ndarray:
    """LOMO of a batch (n, h, w, 3) or one image (h, w, 3) uint8, Retinex off: (n, d) float64."""
    if images.ndim == 3:
        images = images[None]
    return np.stack([normalise_parts(lomo_counts(image, **kwargs)) for image in images])


# ---------------------------------------------------------------------------------------------
# the same, with the window loop vectorised (a stronger baseline for the benchmark)
# ---------------------------------------------------------------------------------------------
def _max_occurrence_batched(codes: np.ndarray, n_bins: int, block: int, step: int) -> np.ndarray:
    """codes (n, h, w) -> (n, window_rows * n_bins) with one bincount for every window."""
    n, h, w = codes.shape
    rows, cols = window_starts(h, block, step), window_starts(w, block, step)
    if len(rows) == 0 or len(cols) == 0:
        return np.zeros((n, 0), dtype=np.int64)
    offsets = (np.arange(block)[:, None] * w + np.arange(block)[None, :]).ravel()
    corners = (np.asarray(rows)[:, None] * w + np.asarray(cols)[None, :]).ravel()
    pixels = corners[:, None] + offsets[None, :]  # (windows, block * block)
    flat = codes.reshape(n, h * w)[:, pixels]  # (n, windows, block * block)
    n_windows = len(corners)
    slot = np.arange(n * n_windows).reshape(n, n_windows, 1) * n_bins
    hist = np.bincount((flat + slot).ravel(), minlength=n * n_windows * n_bins)
    hist = hist.reshape(n, len(rows), len(cols), n_bins).max(axis=2)
    return hist.reshape(n, -1)


def lomo_numpy_batched(
    images: np.ndarray,
    *,
    num_scales: int = DEFAULTS.num_scales,
    block_size: int = DEFAULTS.block_size,
    block_step: int = DEFAULTS.block_step,
    hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
    tau: float = DEFAULTS.tau,
    radii: tuple[int, ...] = DEFAULTS.radii,
) -> np.ndarray:
    """:func:`lomo_numpy` for a whole batch at once (Retinex off), (n, d) float64."""
    if images.ndim == 3:
        images = images[None]
    qh, qs, qv = hsv_quantised(images, hsv_bins)
    n_colour = hsv_bins[0] * hsv_bins[1] * hsv_bins[2]
    colour = []
    for scale in range(num_scales):
        if scale:
            qh, qs, qv = pool_quantised(qh), pool_quantised(qs), pool_quantised(qv)
        code = qv * (hsv_bins[1] * hsv_bins[0]) + qs * hsv_bins[0] + qh
        counts = _max_occurrence_batched(code, n_colour, block_size, block_step)
        if counts.shape[1] == 0:
            break
        colour.append(counts)
    parts = [np.concatenate(colour, axis=1)]
    base = grey_image(images)
    for radius in radii:
        grey = base
        texture = []
        for scale in range(num_scales):
            if scale:
                grey = pool_grey(grey)
            if grey.shape[-1] < 2 * radius + 1:
                break
            counts = _max_occurrence_batched(
                siltp(grey, radius, tau), SILTP_BINS, block_size, block_step
            )
            if counts.shape[1] == 0:
                break
            texture.append(counts)
        parts.append(np.concatenate(texture, axis=1))
    out = []
    for counts in parts:
        logged = np.log(counts.astype(np.float64) + 1.0)
        out.append(logged / np.linalg.norm(logged, axis=1, keepdims=True))
    return np.concatenate(out, axis=1)
