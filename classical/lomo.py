"""LOMO features (Liao et al., CVPR 2015) computed by numba kernels.

Local Maximal Occurrence: joint HSV histograms (8x8x8) and two SILTP texture histograms
(radius 3 and 5, 81 bins) over 10x10 windows with step 5; for each horizontal row of windows, the
bin-wise maximum over its windows; three pyramid scales (2x2 pooling); ``log(1 + x)`` and L2
normalisation of each of the three parts. 26,960 dimensions for 128x48 and 128x64 images.

The arithmetic follows the authors' reference implementation as described in
``docs/lomo_xqda.md`` (HSV formulas and tie order, quantisation, grey rounding, SILTP trit
order and strict inequalities, replicated borders, window layout, pooling order), so with
``retinex=False`` the integer max-occurrence counts are identical and the features agree to
floating-point rounding. Retinex is off by default: the paper pre-processes the colour branch with
it, but our MSRCR (an approximation of the authors' binary-only implementation, see
:mod:`classical.retinex`) lowered LOMO + XQDA accuracy on every set it was measured on;
``retinex=True`` turns it on.

Speed: one parallel kernel per batch (``prange`` over images), per-thread work buffers allocated
once per call, integer (uint8) histograms and SIMD-friendly cell sums; see
:mod:`classical._lomo_kernels`. ``bench/bench_lomo.py`` measures it against a plain NumPy version.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

import numba
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from classical import _lomo_kernels as kernels
from classical.retinex import msrcr

SILTP_BINS = kernels.SILTP_BINS

RetinexArg = bool | Callable[[np.ndarray], np.ndarray] | None


@dataclass(frozen=True)
class LomoParams:
    """Every LOMO parameter with its default: the paper's settings, Retinex off.

    The one place the defaults are written down: :func:`lomo`, :func:`lomo_counts`,
    :func:`layout`, :class:`LOMO`, :data:`DEFAULT_PARAMS` (hence the feature cache of
    :mod:`classical.features`) and the NumPy oracle of the tests take theirs from
    :data:`DEFAULTS`.

    Attributes
    ----------
    retinex : bool or callable
        Pre-processing of the colour branch (see :func:`lomo`).
    num_scales, block_size, block_step : int
        Pyramid scales, window size and step (pixels).
    hsv_bins : (int, int, int)
        Joint HSV histogram bins.
    tau : float
        SILTP scale-invariance tolerance.
    radii : tuple of int
        SILTP radii, one texture part each.
    num_points : int
        SILTP neighbours (only 4 is implemented).
    """

    retinex: RetinexArg = False
    num_scales: int = 3
    block_size: int = 10
    block_step: int = 5
    hsv_bins: tuple[int, int, int] = (8, 8, 8)
    tau: float = 0.3
    radii: tuple[int, ...] = (3, 5)
    num_points: int = 4


#: The paper's LOMO parameters (Retinex off).
DEFAULTS = LomoParams()
#: The same as a read-only mapping name -> default, in signature order.
DEFAULT_PARAMS: Mapping[str, object] = MappingProxyType(
    {field.name: getattr(DEFAULTS, field.name) for field in fields(LomoParams)}
)


@dataclass(frozen=True)
class LomoLayout:
    """Where each part and scale lands in the feature vector, for one image size.

    Attributes
    ----------
    height, width : int
        Image size.
    window_rows : tuple of int
        Window rows per scale of the colour branch (a scale smaller than a block has 0).
    texture_rows : tuple of tuple of int
        Per radius, window rows per computed scale (the reference skips a scale narrower than
        ``2 * radius + 1`` and every later one).
    colour_bins : int
        Joint HSV bins (512 by default).
    """

    height: int
    width: int
    window_rows: tuple[int, ...]
    texture_rows: tuple[tuple[int, ...], ...]
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

    @property
    def part_bounds(self) -> np.ndarray:
        """[0, end of colour, end of radius 1, ...]: the parts normalised separately."""
        return np.cumsum([0, self.colour_dim, *self.texture_dims]).astype(np.int64)

    def texture_offsets(self, num_scales: int) -> np.ndarray:
        """(radii, num_scales) start of each radius/scale block in the vector; -1 if skipped."""
        out = np.full((len(self.texture_rows), num_scales), -1, dtype=np.int64)
        start = self.colour_dim
        for p, rows in enumerate(self.texture_rows):
            for scale, n_rows in enumerate(rows):
                out[p, scale] = start
                start += n_rows * SILTP_BINS
        return out


def _windows(size: int, block: int, step: int) -> int:
    return 0 if size < block else (size - block) // step + 1


@functools.lru_cache(maxsize=64)
def _layout_cached(height, width, num_scales, block_size, block_step, hsv_bins, radii):
    return _layout(height, width, num_scales, block_size, block_step, hsv_bins, radii)


def layout(
    height: int,
    width: int,
    *,
    num_scales: int = DEFAULTS.num_scales,
    block_size: int = DEFAULTS.block_size,
    block_step: int = DEFAULTS.block_step,
    hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
    radii: tuple[int, ...] = DEFAULTS.radii,
) -> LomoLayout:
    """Feature layout (and dimension, ``.dim``) for images of ``height x width``."""
    return _layout_cached(int(height), int(width), int(num_scales), int(block_size),
                          int(block_step), tuple(int(b) for b in hsv_bins),
                          tuple(int(r) for r in radii))  # fmt: skip


def _layout(height, width, num_scales, block_size, block_step, hsv_bins, radii) -> LomoLayout:
    rows, texture = [], []
    h, w = height, width
    for scale in range(num_scales):
        if scale:
            h, w = h // 2, w // 2
        rows.append(_windows(h, block_size, block_step) * (w >= block_size))
    for radius in radii:
        per_scale = []
        h, w = height, width
        for scale in range(num_scales):
            if scale:
                h, w = h // 2, w // 2
            if w < 2 * radius + 1:
                break  # the reference skips this scale; later ones are narrower still
            per_scale.append(_windows(h, block_size, block_step) * (w >= block_size))
        texture.append(tuple(per_scale))
    colour_bins = int(np.prod(hsv_bins))
    return LomoLayout(height, width, tuple(rows), tuple(texture), colour_bins)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_params(
    num_scales: int,
    block_size: int,
    block_step: int,
    hsv_bins: tuple[int, int, int],
    tau: float,
    radii: tuple[int, ...],
    num_points: int,
) -> None:
    if num_points != 4:
        raise ValueError(
            f"num_points={num_points} is not supported: only the reference 4-point SILTP "
            "(right, up, left, down neighbours) is implemented"
        )
    for name, value in (
        ("num_scales", num_scales),
        ("block_size", block_size),
        ("block_step", block_step),
    ):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if block_size > 255:
        raise ValueError(f"block_size must be at most 255, got {block_size}")
    if (
        len(hsv_bins) != 3
        or any(not isinstance(b, int | np.integer) or b < 1 for b in hsv_bins)
        or int(np.prod(hsv_bins)) > 4096
    ):
        raise ValueError(f"hsv_bins must be three positive ints (<= 4096 bins), got {hsv_bins}")
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    if len(radii) == 0 or any(not isinstance(r, int | np.integer) or r < 1 for r in radii):
        raise ValueError(f"radii must be positive integers, got {radii}")


def _check_images(images: np.ndarray, block_size: int) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim == 2 or (images.ndim in (3, 4) and images.shape[-1] == 1):
        raise ValueError(
            f"images look grayscale (shape {images.shape}); LOMO needs RGB images "
            "(height, width, 3): convert them first, e.g. with cv2.COLOR_GRAY2RGB"
        )
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "images must be RGB with shape (n, height, width, 3) or (height, width, 3), got "
            f"shape {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (0 images)")
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
        result = np.asarray(function(image))
        if result.shape != image.shape or result.dtype != np.uint8:
            raise ValueError(
                f"the retinex callable must return a uint8 array of shape {image.shape}, got "
                f"{result.dtype} {result.shape}"
            )
        out[i] = result
    return out


# ---------------------------------------------------------------------------------------------
# kernels' plumbing
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    return kernels.tables()


@functools.lru_cache(maxsize=8)
def _sv_tables(bins_s: int, bins_v: int) -> tuple[np.ndarray, np.ndarray]:
    return kernels.sv_tables(_tables()[0], bins_s, bins_v)


@functools.lru_cache(maxsize=8)
def _log_table(max_count: int) -> np.ndarray:
    """log(1 + c) for every possible count c (the same values as np.log(counts + 1.0))."""
    return np.log(np.arange(max_count + 1, dtype=np.float64) + 1.0)


class _Workspace:
    """Per-thread work buffers for a batch of ``height x width`` images (one slot per thread)."""

    def __init__(self, height: int, width: int, block: int, step: int, colour_bins: int):
        slots = numba.config.NUMBA_NUM_THREADS  # get_thread_id() < this, whatever is set later
        self.count_dtype = np.uint8 if block * block <= 255 else np.uint16
        stride = kernels.padded(max(colour_bins, SILTP_BINS))
        k = block // step if block % step == 0 else 1
        cells = max(width // step + 1, 1)
        self.qmaps = np.empty((slots, 3, height, width), dtype=np.uint8)
        self.grey = np.empty((slots, height, width), dtype=np.float64)
        self.codes = np.empty((slots, height, width), dtype=np.uint16)
        self.bands = np.zeros((slots, k, cells, stride), dtype=self.count_dtype)
        self.columns = np.zeros((slots, cells, stride), dtype=self.count_dtype)
        self.window = np.zeros((slots, cells * stride), dtype=self.count_dtype)
        self.rowmax = np.zeros((slots, stride), dtype=self.count_dtype)
        self.slots = slots

    def common(self) -> tuple:
        return (
            self.qmaps,
            self.grey,
            self.codes,
            self.bands,
            self.columns,
            self.window,
            self.rowmax,
        )


def _run(
    images,
    retinex,
    num_scales,
    block_size,
    block_step,
    hsv_bins,
    tau,
    radii,
    num_points,
    dtype,
    keep_counts,
):
    """Validate, then run the batch kernel: (features or None, counts or None)."""
    _check_params(num_scales, block_size, block_step, hsv_bins, tau, radii, num_points)
    images = _check_images(images, block_size)
    colour_images = _apply_retinex(images, retinex)
    n, height, width = images.shape[:3]
    lay = layout(
        height,
        width,
        num_scales=num_scales,
        block_size=block_size,
        block_step=block_step,
        hsv_bins=hsv_bins,
        radii=radii,
    )
    work = _Workspace(height, width, block_size, block_step, lay.colour_bins)
    unit, grey_table = _tables()
    counts = np.empty((n if keep_counts else work.slots, lay.dim), dtype=work.count_dtype)
    log_table = _log_table(block_size * block_size)
    scaled = np.empty((work.slots, log_table.shape[0]), dtype=np.float64)
    out = np.empty((0 if keep_counts else n, lay.dim), dtype=dtype)
    kernels.batch_lomo(
        images,
        colour_images,
        int(num_scales),
        int(block_size),
        int(block_step),
        int(hsv_bins[0]),
        int(hsv_bins[1]),
        int(hsv_bins[2]),
        float(tau),
        np.asarray(radii, dtype=np.int64),
        lay.texture_offsets(num_scales),
        unit,
        grey_table,
        *_sv_tables(int(hsv_bins[1]), int(hsv_bins[2])),
        *work.common(),
        counts,
        bool(keep_counts),
        lay.part_bounds,
        log_table,
        scaled,
        out,
    )
    return (None, counts) if keep_counts else (out, None)


def lomo_counts(
    images: np.ndarray,
    *,
    retinex: RetinexArg = DEFAULTS.retinex,
    num_scales: int = DEFAULTS.num_scales,
    block_size: int = DEFAULTS.block_size,
    block_step: int = DEFAULTS.block_step,
    hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
    tau: float = DEFAULTS.tau,
    radii: tuple[int, ...] = DEFAULTS.radii,
    num_points: int = DEFAULTS.num_points,
) -> np.ndarray:
    """Raw integer max-occurrence counts (n, d) int32, before ``log`` and normalisation.

    Same parameters and layout as :func:`lomo`; useful to compare with other implementations.
    """
    _, counts = _run(
        images,
        retinex,
        num_scales,
        block_size,
        block_step,
        hsv_bins,
        tau,
        radii,
        num_points,
        np.float64,
        keep_counts=True,
    )
    return counts.astype(np.int32)


def lomo(
    images: np.ndarray,
    *,
    retinex: RetinexArg = DEFAULTS.retinex,
    num_scales: int = DEFAULTS.num_scales,
    block_size: int = DEFAULTS.block_size,
    block_step: int = DEFAULTS.block_step,
    hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
    tau: float = DEFAULTS.tau,
    radii: tuple[int, ...] = DEFAULTS.radii,
    num_points: int = DEFAULTS.num_points,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """LOMO features of a batch of RGB images.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, height, width, 3) or (height, width, 3)
        RGB images of one size (128x48 or 128x64 give 26,960 dimensions). A single image gives
        a (1, d) result.
    retinex : bool or callable
        Colour branch as is (False, the default: exactly the reference algorithm), pre-processed
        with :func:`classical.retinex.msrcr` (True, the paper's setting; it costs accuracy, see
        :mod:`classical.retinex`), or with your own ``f(image) -> image`` (uint8 RGB, same
        shape). The texture branch always sees the original image.
    num_scales, block_size, block_step, hsv_bins, tau, radii
        LOMO hyper-parameters; the defaults are the paper's.
    num_points : int
        SILTP neighbours; only 4 (the reference) is supported.
    dtype : numpy dtype
        float32 (default) or float64 (full precision).

    Returns
    -------
    ndarray of shape (n, d)
        ``[colour ; SILTP radius 1 ; SILTP radius 2]``, each part ``log(1 + count)`` divided by
        its own L2 norm.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    features, _ = _run(
        images,
        retinex,
        num_scales,
        block_size,
        block_step,
        hsv_bins,
        tau,
        radii,
        num_points,
        dtype,
        keep_counts=False,
    )
    return features


class LOMO(TransformerMixin, BaseEstimator):
    """Stateless scikit-learn transformer around :func:`lomo` (``clone``, ``get_params``,
    ``Pipeline`` work as for any estimator).

    Parameters are those of :func:`lomo`; ``fit`` learns nothing and returns ``self``.
    """

    def __init__(
        self,
        *,
        retinex: RetinexArg = DEFAULTS.retinex,
        num_scales: int = DEFAULTS.num_scales,
        block_size: int = DEFAULTS.block_size,
        block_step: int = DEFAULTS.block_step,
        hsv_bins: tuple[int, int, int] = DEFAULTS.hsv_bins,
        tau: float = DEFAULTS.tau,
        radii: tuple[int, ...] = DEFAULTS.radii,
        num_points: int = DEFAULTS.num_points,
        dtype: type | np.dtype = np.float32,
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # nothing to learn: transform works on a fresh instance
        return tags

    def fit(self, images: np.ndarray | None = None, y: np.ndarray | None = None) -> LOMO:
        """No-op (LOMO learns nothing); returns ``self``."""
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """LOMO features (n, d) of ``images``."""
        return lomo(images, **self.get_params())

    def output_dim(self, height: int, width: int) -> int:
        """Feature length for ``height x width`` images."""
        return layout(
            height,
            width,
            num_scales=self.num_scales,
            block_size=self.block_size,
            block_step=self.block_step,
            hsv_bins=self.hsv_bins,
            radii=self.radii,
        ).dim
