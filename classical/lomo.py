"""LOMO features (Liao et al., CVPR 2015) with numba kernels.

Local Maximal Occurrence: joint HSV histograms (8x8x8) and two SILTP texture histograms
(radius 3 and 5) over 10x10 windows with step 5, maximised over each horizontal row of windows,
on a 3-level pyramid; ``log(1 + x)`` and L2 normalisation of each of the three parts. 26,960
dimensions for 128x48 and 128x64 images. The arithmetic follows the authors' reference
implementation as written in ``shared/lomo_xqda_spec.md`` (colour conversion, quantisation, grey
rounding, SILTP trit order, pooling order), so that with ``retinex=False`` the features match it
to floating-point rounding and the integer max-occurrence counts are identical.

Speed: one numba kernel per batch, parallel over images (``prange``), integer histograms, all work
buffers allocated once per batch chunk, and only the bins a window touches are compared with the
running row maximum (100 updates per window instead of 512).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from classical.retinex import msrcr

SIXTH, THIRD, TWO_THIRDS = 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0
GREY_R, GREY_G, GREY_B = 0.298936021293775, 0.587043074451121, 0.114020904255103
SILTP_BINS = 81
#: Images per kernel call: bounds the work buffers (about 60 kB per 128x64 image).
CHUNK = 512

RetinexArg = bool | Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LomoLayout:
    """Where each scale's windows land in the feature vector, for a given image size."""

    height: int
    width: int
    window_rows: tuple[int, ...]  # per scale, colour branch
    texture_rows: tuple[tuple[int, ...], ...]  # per radius, per scale (scales may be skipped)
    colour_bins: int

    @property
    def colour_dim(self) -> int:
        return sum(self.window_rows) * self.colour_bins

    @property
    def texture_dims(self) -> tuple[int, ...]:
        return tuple(sum(rows) * SILTP_BINS for rows in self.texture_rows)

    @property
    def dim(self) -> int:
        return self.colour_dim + sum(self.texture_dims)


def layout(
    height: int,
    width: int,
    *,
    num_scales: int = 3,
    block_size: int = 10,
    block_step: int = 5,
    hsv_bins: tuple[int, int, int] = (8, 8, 8),
    radii: tuple[int, ...] = (3, 5),
) -> LomoLayout:
    """Feature layout (and dimension) for images of ``height x width``."""
    rows, texture = [], []
    h, w = height, width
    for scale in range(num_scales):
        if scale:
            h, w = h // 2, w // 2
        rows.append(_windows(h, block_size, block_step) if w >= block_size else 0)
    for radius in radii:
        per_scale = []
        h, w = height, width
        for scale in range(num_scales):
            if scale:
                h, w = h // 2, w // 2
            if w < 2 * radius + 1:
                break  # the reference skips this scale and all later ones
            per_scale.append(_windows(h, block_size, block_step) if w >= block_size else 0)
        texture.append(tuple(per_scale))
    colour_bins = hsv_bins[0] * hsv_bins[1] * hsv_bins[2]
    return LomoLayout(height, width, tuple(rows), tuple(texture), colour_bins)


def _windows(size: int, block: int, step: int) -> int:
    return 0 if size < block else (size - block) // step + 1


# ---------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _quantise(value, n_bins):
    q = int(np.floor(value * n_bins))
    return q if q < n_bins else n_bins - 1


@numba.njit(cache=True)
def _hsv_maps(image, qh, qs, qv, bins_h, bins_s, bins_v):  # pragma: no cover - compiled
    h, w = image.shape[0], image.shape[1]
    for y in range(h):
        for x in range(w):
            r = image[y, x, 0] / 255.0
            g = image[y, x, 1] / 255.0
            b = image[y, x, 2] / 255.0
            v = max(r, max(g, b))
            mn = min(r, min(g, b))
            if mn == v:
                hue = 0.0
                sat = 0.0
            else:
                sat = 1.0 - mn / v
                delta = v - mn
                if r == v:
                    hue = (SIXTH * (g - b)) / delta
                elif g == v:
                    hue = THIRD + (SIXTH * (b - r)) / delta
                else:
                    hue = TWO_THIRDS + (SIXTH * (r - g)) / delta
                if hue < 0.0:
                    hue += 1.0
            qh[y, x] = _quantise(hue, bins_h)
            qs[y, x] = _quantise(sat, bins_s)
            qv[y, x] = _quantise(v, bins_v)


@numba.njit(cache=True)
def _grey_map(image, grey):  # pragma: no cover - compiled
    h, w = image.shape[0], image.shape[1]
    for y in range(h):
        for x in range(w):
            r = image[y, x, 0] / 255.0
            g = image[y, x, 1] / 255.0
            b = image[y, x, 2] / 255.0
            scaled = ((r * GREY_R + g * GREY_G) + b * GREY_B) * 255.0
            level = np.floor(scaled)
            if scaled - level >= 0.5:  # round halves away from zero, as the reference
                level += 1.0
            grey[y, x] = level / 255.0


@numba.njit(cache=True)
def _siltp_codes(grey, h, w, radius, tau, codes):  # pragma: no cover - compiled
    lo_factor = 1.0 - tau
    hi_factor = 1.0 + tau
    for y in range(h):
        up = max(y - radius, 0)
        down = min(y + radius, h - 1)
        for x in range(w):
            centre = grey[y, x]
            lo = lo_factor * centre
            hi = hi_factor * centre
            code = 0
            n = grey[y, min(x + radius, w - 1)]  # right
            code += 1 if n < lo else (2 if n > hi else 0)
            n = grey[up, x]  # up
            code += 3 if n < lo else (6 if n > hi else 0)
            n = grey[y, max(x - radius, 0)]  # left
            code += 9 if n < lo else (18 if n > hi else 0)
            n = grey[down, x]  # down
            code += 27 if n < lo else (54 if n > hi else 0)
            codes[y, x] = code


@numba.njit(cache=True)
def _max_occurrence(codes, h, w, block, step, hist, out, offset, n_bins):  # pragma: no cover
    """Per window row, the bin-wise max of the window histograms, into out[offset:]."""
    n_rows = (h - block) // step + 1 if h >= block else 0
    n_cols = (w - block) // step + 1 if w >= block else 0
    for i in range(n_rows):
        base = offset + i * n_bins
        y0 = i * step
        for j in range(n_cols):
            x0 = j * step
            for y in range(y0, y0 + block):
                for x in range(x0, x0 + block):
                    hist[codes[y, x]] += 1
            # Only bins present in this window can raise the row maximum; reset them as we go.
            for y in range(y0, y0 + block):
                for x in range(x0, x0 + block):
                    c = codes[y, x]
                    count = hist[c]
                    if count:
                        if count > out[base + c]:
                            out[base + c] = count
                        hist[c] = 0
    return offset + n_rows * n_bins


@numba.njit(cache=True)
def _pool_quantised(q, h, w):  # pragma: no cover - compiled
    # In place: output (r, c) only reads rows/columns >= r, c, which are never written before.
    for r in range(h // 2):
        for c in range(w // 2):
            total = (
                np.int32(q[2 * r, 2 * c])
                + q[2 * r + 1, 2 * c]
                + q[2 * r, 2 * c + 1]
                + q[2 * r + 1, 2 * c + 1]
            )
            q[r, c] = total // 4


@numba.njit(cache=True)
def _pool_grey(grey, h, w):  # pragma: no cover - compiled
    for r in range(h // 2):
        for c in range(w // 2):
            total = ((grey[2 * r, 2 * c] + grey[2 * r + 1, 2 * c]) + grey[2 * r, 2 * c + 1]) + grey[
                2 * r + 1, 2 * c + 1
            ]
            grey[r, c] = total / 4


@numba.njit(cache=True)
def _lomo_one(image, colour_image, num_scales, block, step, bins_h, bins_s, bins_v, tau, radii,
              out, qh, qs, qv, grey, code, hist):  # fmt: skip  # pragma: no cover - compiled
    """Integer max-occurrence counts of one image into ``out`` (work buffers given)."""
    height, width = image.shape[0], image.shape[1]
    colour_bins = bins_h * bins_s * bins_v
    out[:] = 0
    _hsv_maps(colour_image, qh, qs, qv, bins_h, bins_s, bins_v)
    h, w = height, width
    offset = 0
    for scale in range(num_scales):
        if scale:
            _pool_quantised(qh, h, w)
            _pool_quantised(qs, h, w)
            _pool_quantised(qv, h, w)
            h, w = h // 2, w // 2
        for y in range(h):
            for x in range(w):
                code[y, x] = (np.int32(qv[y, x]) * bins_s + qs[y, x]) * bins_h + qh[y, x]
        offset = _max_occurrence(code, h, w, block, step, hist, out, offset, colour_bins)
    for radius in radii:
        _grey_map(image, grey)
        h, w = height, width
        for scale in range(num_scales):
            if scale:
                _pool_grey(grey, h, w)
                h, w = h // 2, w // 2
            if w < 2 * radius + 1:
                break
            _siltp_codes(grey, h, w, radius, tau, code)
            offset = _max_occurrence(code, h, w, block, step, hist, out, offset, SILTP_BINS)


@numba.njit(cache=True, parallel=True)
def _lomo_counts_batch(
    images, colour_images, num_scales, block, step, bins_h, bins_s, bins_v, tau, radii,
    counts, q_buf, grey_buf, code_buf, hist_buf,
):  # fmt: skip  # pragma: no cover - compiled
    """Counts of every image into counts (n, d); the per-image work stays out of the parfor pass."""
    for k in numba.prange(images.shape[0]):
        _lomo_one(images[k], colour_images[k], num_scales, block, step, bins_h, bins_s, bins_v,
                  tau, radii, counts[k], q_buf[k, 0], q_buf[k, 1], q_buf[k, 2], grey_buf[k],
                  code_buf[k], hist_buf[k])  # fmt: skip


@numba.njit(cache=True, parallel=True)
def _log_normalise(counts, bounds, out):  # pragma: no cover - compiled
    """out = per-part L2-normalised log(1 + counts); bounds are the parts' [start, stop) ends."""
    n = counts.shape[0]
    for k in numba.prange(n):
        for p in range(bounds.shape[0] - 1):
            start, stop = bounds[p], bounds[p + 1]
            total = 0.0
            for i in range(start, stop):
                value = np.log(counts[k, i] + 1.0)
                out[k, i] = value
                total += value * value
            norm = np.sqrt(total)
            if norm > 0:
                for i in range(start, stop):
                    out[k, i] = out[k, i] / norm


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------
def _check_images(images: np.ndarray, block_size: int) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "images must be RGB with shape (n, height, width, 3) or (height, width, 3), got "
            f"shape {images.shape}; convert grayscale images to RGB first"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images is empty")
    height, width = images.shape[1:3]
    if height < block_size or width < block_size:
        raise ValueError(
            f"images of {height}x{width} are smaller than one {block_size}x{block_size} block"
        )
    return np.ascontiguousarray(images)


def _apply_retinex(images: np.ndarray, retinex: RetinexArg) -> np.ndarray:
    if retinex is False or retinex is None:
        return images
    function = msrcr if retinex is True else retinex
    if not callable(function):
        raise TypeError(f"retinex must be True, False or a callable, got {retinex!r}")
    out = np.empty_like(images)
    for i, image in enumerate(images):
        result = function(image)
        if result.shape != image.shape or result.dtype != np.uint8:
            raise ValueError(
                f"the retinex callable must return a uint8 array of shape {image.shape}, got "
                f"{result.dtype} {result.shape}"
            )
        out[i] = result
    return out


def lomo_counts(
    images: np.ndarray,
    *,
    retinex: RetinexArg = True,
    num_scales: int = 3,
    block_size: int = 10,
    block_step: int = 5,
    hsv_bins: tuple[int, int, int] = (8, 8, 8),
    tau: float = 0.3,
    radii: tuple[int, ...] = (3, 5),
    num_points: int = 4,
) -> np.ndarray:
    """Raw integer max-occurrence counts (n, d) int32, before log and normalisation."""
    _check_params(num_scales, block_size, block_step, hsv_bins, tau, radii, num_points)
    images = _check_images(images, block_size)
    colour_images = _apply_retinex(images, retinex)
    n, height, width = images.shape[:3]
    lay = layout(height, width, num_scales=num_scales, block_size=block_size,
                 block_step=block_step, hsv_bins=hsv_bins, radii=radii)  # fmt: skip
    counts = np.empty((n, lay.dim), dtype=np.int32)
    hist_size = max(lay.colour_bins, SILTP_BINS)
    radii_arr = np.asarray(radii, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        m = stop - start
        q_buf = np.empty((m, 3, height, width), dtype=np.uint8)
        grey_buf = np.empty((m, height, width), dtype=np.float64)
        code_buf = np.empty((m, height, width), dtype=np.int32)
        hist_buf = np.zeros((m, hist_size), dtype=np.int32)
        _lomo_counts_batch(
            images[start:stop], colour_images[start:stop], num_scales, block_size, block_step,
            hsv_bins[0], hsv_bins[1], hsv_bins[2], float(tau), radii_arr,
            counts[start:stop], q_buf, grey_buf, code_buf, hist_buf,
        )  # fmt: skip
    return counts


def _check_params(num_scales, block_size, block_step, hsv_bins, tau, radii, num_points) -> None:
    if num_points != 4:
        raise ValueError(f"num_points must be 4 (the reference SILTP), got {num_points}")
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}")
    if block_size < 1 or block_step < 1:
        raise ValueError(f"block_size and block_step must be >= 1, got {block_size}, {block_step}")
    if len(hsv_bins) != 3 or min(hsv_bins) < 1 or np.prod(hsv_bins) > 4096:
        raise ValueError(
            f"hsv_bins must be three positive ints (at most 4096 bins), got {hsv_bins}"
        )
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    if len(radii) == 0 or min(radii) < 1:
        raise ValueError(f"radii must be positive integers, got {radii}")


def lomo(
    images: np.ndarray,
    *,
    retinex: RetinexArg = True,
    num_scales: int = 3,
    block_size: int = 10,
    block_step: int = 5,
    hsv_bins: tuple[int, int, int] = (8, 8, 8),
    tau: float = 0.3,
    radii: tuple[int, ...] = (3, 5),
    num_points: int = 4,
    dtype: type = np.float32,
) -> np.ndarray:
    """LOMO features of a batch of RGB images.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, height, width, 3) or (height, width, 3)
        RGB images of one size (128x48 or 128x64 give 26,960 dimensions).
    retinex : bool or callable
        Enhance the colour branch with :func:`classical.retinex.msrcr` (True), not at all
        (False), or with your own ``f(image) -> image`` (uint8 RGB). The texture branch always
        sees the original image.
    num_scales, block_size, block_step, hsv_bins, tau, radii, num_points
        LOMO hyper-parameters (the paper's defaults). Only 4-point SILTP is supported.
    dtype : numpy dtype
        Output precision: float32 (default) or float64 for full precision.

    Returns
    -------
    ndarray of shape (n, d)
        ``[colour ; SILTP radius 3 ; SILTP radius 5]``, each part ``log(1 + count)``, L2-normalised.
    """
    counts = lomo_counts(images, retinex=retinex, num_scales=num_scales, block_size=block_size,
                         block_step=block_step, hsv_bins=hsv_bins, tau=tau, radii=radii,
                         num_points=num_points)  # fmt: skip
    height, width = images.shape[0:2] if images.ndim == 3 else images.shape[1:3]
    lay = layout(height, width, num_scales=num_scales, block_size=block_size,
                 block_step=block_step, hsv_bins=hsv_bins, radii=radii)  # fmt: skip
    bounds = np.cumsum([0, lay.colour_dim, *lay.texture_dims]).astype(np.int64)
    features = np.empty(counts.shape, dtype=np.float64)
    _log_normalise(counts, bounds, features)
    return features if dtype == np.float64 else features.astype(dtype)


class LOMO:
    """Stateless scikit-learn-style transformer around :func:`lomo`.

    Parameters are those of :func:`lomo`; ``fit`` does nothing and returns ``self``.
    """

    def __init__(
        self,
        *,
        retinex: RetinexArg = True,
        num_scales: int = 3,
        block_size: int = 10,
        block_step: int = 5,
        hsv_bins: tuple[int, int, int] = (8, 8, 8),
        tau: float = 0.3,
        radii: tuple[int, ...] = (3, 5),
        num_points: int = 4,
        dtype: type = np.float32,
    ) -> None:
        self.retinex = retinex
        self.num_scales = num_scales
        self.block_size = block_size
        self.block_step = block_step
        self.hsv_bins = hsv_bins
        self.tau = tau
        self.radii = radii
        self.num_points = num_points
        self.dtype = dtype

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in (
            "retinex", "num_scales", "block_size", "block_step", "hsv_bins", "tau", "radii",
            "num_points", "dtype")}  # fmt: skip

    def fit(self, images: np.ndarray | None = None, y: np.ndarray | None = None) -> LOMO:
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        return lomo(images, **self.get_params())

    def fit_transform(self, images: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.transform(images)
