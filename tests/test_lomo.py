"""LOMO (numba) against the NumPy reference (classical.lomo_reference), worked cases, invariants."""

from __future__ import annotations

import dataclasses
import inspect
import math
from fractions import Fraction

import numba
import numpy as np
import pytest

import classical.lomo_reference as oracle
from classical import _lomo_kernels as kernels
from classical.lomo import DEFAULT_PARAMS, DEFAULTS, LOMO, LomoParams, layout, lomo, lomo_counts


def _images(n, h=128, w=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    # Structure the noise: flat grey areas, ties between channels, saturated and black stripes,
    # smooth gradients (long runs of one code).
    images[:, :20, :20] = 128
    images[:, 30:45, :, 1] = images[:, 30:45, :, 0]
    images[:, 50:60, :, 2] = 255
    images[:, 60:64] = 0
    images[:, 70:90] = np.linspace(0, 255, w, dtype=np.uint8)[None, None, :, None]
    return images


def _counts_equal(images, **params):
    fast = lomo_counts(images, retinex=False, **params)
    for image, counts in zip(images, fast, strict=True):
        np.testing.assert_array_equal(counts, np.concatenate(oracle.lomo_counts(image, **params)))


@pytest.mark.parametrize(("h", "w"), [(128, 48), (128, 64), (97, 41)])
def test_matches_numpy_oracle(h, w):
    images = _images(3, h, w, seed=h + w)
    _counts_equal(images)
    fast = lomo(images, retinex=False, dtype=np.float64)
    np.testing.assert_allclose(fast, oracle.lomo_numpy(images), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "params",
    [
        {"block_size": 10, "block_step": 3},  # not a multiple: per-window counting
        {"block_size": 12, "block_step": 4},  # 3 x 3 cells per window
        {"num_scales": 4, "radii": (2, 3, 5)},  # a narrow last scale: skipped for R = 5
        {"hsv_bins": (4, 6, 8), "tau": 0.1},
        # 256 pixels a window: 16-bit histograms (a second compilation of the kernels: slow).
        pytest.param({"block_size": 16, "block_step": 8}, marks=pytest.mark.slow),
    ],
)
def test_matches_oracle_with_other_parameters(params):
    images = _images(2, 128, 48, seed=7)
    _counts_equal(images, **params)
    expected = oracle.lomo_numpy_batched(images, **params)
    np.testing.assert_allclose(
        lomo(images, retinex=False, dtype=np.float64, **params), expected, rtol=1e-12, atol=1e-15
    )


def test_batched_oracle_equals_plain_oracle():
    images = _images(2, seed=5)
    np.testing.assert_allclose(
        oracle.lomo_numpy_batched(images), oracle.lomo_numpy(images), rtol=1e-13, atol=1e-15
    )


def test_dimensions_and_part_norms():
    for h, w in [(128, 48), (128, 64)]:
        lay = layout(h, w)
        assert lay.dim == 26960
        assert lay.window_rows == (24, 11, 5)
        assert (lay.colour_dim, *lay.texture_dims) == (20480, 3240, 3240)
        features = lomo(_images(2, h, w), retinex=False, dtype=np.float64)
        assert features.shape == (2, 26960)
        assert np.all(features >= 0)
        for part in np.split(features, [20480, 20480 + 3240], axis=1):
            np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), np.sqrt(3), rtol=1e-12)
    assert LOMO().output_dim(128, 64) == 26960


def test_batch_equals_one_by_one_threads_and_dtypes():
    images = _images(5, seed=3)
    batch = lomo(images, retinex=False)
    assert batch.dtype == np.float32
    for i, image in enumerate(images):
        single = lomo(image, retinex=False)
        assert single.shape == (1, 26960)
        np.testing.assert_array_equal(single[0], batch[i])
    full = lomo(images, retinex=False, dtype=np.float64)
    np.testing.assert_array_equal(full.astype(np.float32), batch)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(lomo(images, retinex=False), batch)
    finally:
        numba.set_num_threads(old)


def test_counts_are_bounded_by_window_size():
    counts = lomo_counts(_images(2, seed=11), retinex=False)
    assert counts.min() >= 0 and counts.max() <= 100
    # A constant image: every window holds one code 100 times, at every scale.
    flat = np.full((1, 128, 48, 3), 77, dtype=np.uint8)
    c = lomo_counts(flat, retinex=False)[0]
    assert np.count_nonzero(c) == 40 * 3 and set(np.unique(c)) == {0, 100}


# ---------------------------------------------------------------------------------------------
# SILTP, worked by hand
# ---------------------------------------------------------------------------------------------
def test_siltp_hand_worked_patch_and_strict_inequalities():
    # Centre 0.5 -> bounds 0.35 and 0.65 (both exact in binary at this precision: 0.7 * 0.5 and
    # 1.3 * 0.5 round to the literals). right 0.7 (> upper: 2), up 0.3 (< lower: 1), left 0.5
    # (0), down 0.65 (equal to the bound, not strictly above: 0). Code 2 + 3 * 1 = 5.
    grey = np.full((3, 3), 0.5)
    grey[1, 2], grey[0, 1], grey[1, 0], grey[2, 1] = 0.7, 0.3, 0.5, 0.65
    assert 1.3 * 0.5 == 0.65  # the tie is real
    codes = np.zeros((3, 3), dtype=np.uint16)
    kernels.siltp_codes(grey, 3, 3, 1, 0.3, codes)
    assert codes[1, 1] == 5 == oracle.siltp(grey, 1, 0.3)[1, 1]
    # Corner (0, 0) with replicated borders: right (0, 1) = 0.3 < 0.35 -> 1; up = itself -> 0;
    # left = itself -> 0; down (1, 0) = 0.5 -> 0.
    assert codes[0, 0] == 1 == oracle.siltp(grey, 1, 0.3)[0, 0]


def test_siltp_codes_of_a_vertical_edge():
    """Bright (200) columns 0-9, dark (50) columns 10-19; radius 3, through lomo_counts.

    Bright pixels in columns 7-9 see a dark right neighbour (t_right = 1, code 1); dark pixels in
    columns 10-12 see a bright left neighbour (t_left = 2, code 18); all others code 0. Windows
    at columns 0, 5, 10 hold (code 0, 1, 18) = (70, 30, 0), (40, 30, 30), (70, 0, 30); the row
    maximum is (70, 30, 30) in each of the 3 window rows.
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


def test_siltp_codes_of_a_horizontal_edge():
    """Dark (40) rows 0-9, bright (160) rows 10-19; radius 2.

    Dark pixels in rows 8-9 see a bright neighbour below (t_down = 2, code 54); bright pixels in
    rows 10-11 see a dark one above (t_up = 1, code 3). Window rows start at 0, 5, 10: rows 0-9
    hold codes 0 (80 px) and 54 (20 px) in every window; rows 5-14: 0 (60), 54 (20), 3 (20);
    rows 10-19: 0 (80), 3 (20).
    """
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[:10] = 40
    image[10:] = 160
    counts = lomo_counts(image, retinex=False, num_scales=1, radii=(2,))[0]
    texture = counts[-3 * 81 :].reshape(3, 81)
    expected = np.zeros((3, 81), dtype=np.int64)
    expected[0, [0, 54]] = [80, 20]
    expected[1, [0, 54, 3]] = [60, 20, 20]
    expected[2, [0, 3]] = [80, 20]
    np.testing.assert_array_equal(texture, expected)


# ---------------------------------------------------------------------------------------------
# HSV, worked by hand and at bin edges
# ---------------------------------------------------------------------------------------------
def _kernel_hsv(pixels: np.ndarray, bins=(8, 8, 8)):
    image = np.ascontiguousarray(pixels.reshape(1, -1, 3))
    q = [np.empty(image.shape[:2], dtype=np.uint8) for _ in range(3)]
    unit = kernels.tables()[0]
    kernels.hsv_quantise(image, unit, *kernels.sv_tables(unit, bins[1], bins[2]), bins[0], *q)
    return tuple(x.ravel().astype(int) for x in q)


def spec_hsv(r8: int, g8: int, b8: int, bins=(8, 8, 8)) -> tuple[int, int, int]:
    """The spec's colour step 1-2, line by line in Python floats (independent of both codes)."""
    r, g, b = r8 / 255, g8 / 255, b8 / 255
    v, mn = max(r, g, b), min(r, g, b)
    if mn == v:
        h = s = 0.0
    else:
        s = 1 - mn / v
        if r == v:
            h = ((1 / 6) * (g - b)) / (v - mn)
        elif g == v:
            h = 1 / 3 + ((1 / 6) * (b - r)) / (v - mn)
        else:
            h = 2 / 3 + ((1 / 6) * (r - g)) / (v - mn)
        if h < 0:
            h += 1
    return tuple(min(math.floor(c * n), n - 1) for c, n in zip((h, s, v), bins, strict=True))


def test_hsv_hand_worked_colours_and_ties():
    colours = {
        (255, 0, 0): (0, 7, 7),  # red: h = 0
        (0, 255, 0): (2, 7, 7),  # green: h = 1/3 -> floor(8/3) = 2
        (0, 0, 255): (5, 7, 7),  # blue: h = 2/3 -> 5
        (128, 128, 128): (0, 0, 4),  # grey: h = s = 0; v = 128/255 -> floor(4.016) = 4
        (0, 0, 0): (0, 0, 0),  # black
        (255, 255, 0): (1, 7, 7),  # yellow: r and g tie, red wins: h = 1/6 -> 1
        (0, 255, 255): (4, 7, 7),  # cyan: g and b tie, green wins: h = 1/3 + 1/6 -> 4
        (255, 0, 255): (6, 7, 7),  # magenta: r and b tie, red wins: h = -1/6 + 1 -> 6
        (255, 255, 255): (0, 0, 7),  # white: v = 1 -> min(8, 7)
        # 200/255 is exactly twice 100/255 in floats, so s = 1 - 0.5 = 0.5 -> 4; h = 0.
        (200, 100, 100): (0, 4, 6),
        # green max: h = 1/3 + (1/6)(b - r)/(v - mn) = 1/3 + (1/6)(60/180) = 7/18 -> 3;
        # s = 1 - 60/240 = 0.75 -> 6; v = 240/255 -> 7.
        (60, 240, 120): (3, 6, 7),
    }
    pixels = np.array(list(colours), dtype=np.uint8)
    got = np.stack(_kernel_hsv(pixels), axis=1)
    assert got.tolist() == [list(v) for v in colours.values()]
    assert np.stack(oracle.hsv_quantised(pixels), axis=1).tolist() == got.tolist()


@pytest.mark.parametrize("bins", [(8, 8, 8), (16, 4, 5)])
def test_hsv_equals_the_oracle_on_every_colour(bins):
    # All 2^24 RGB triples, in chunks: the S/V lookup tables and the byte-wise max/min must
    # reproduce the spec's per-pixel arithmetic everywhere, not just on sampled colours.
    levels = np.arange(256, dtype=np.uint8)
    for red in range(0, 256, 32):
        block = np.stack(
            np.meshgrid(levels[red : red + 32], levels, levels, indexing="ij"), axis=-1
        ).reshape(-1, 3)
        got = _kernel_hsv(block, bins)
        want = oracle.hsv_quantised(block, bins)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def _edge_colours() -> np.ndarray:
    """Colours whose exact (rational) H or S lies on a bin edge k/8: where float rounding bites.

    Searched among all colours with one channel at 0, 128 or 255 (~600k), with integers:
    h * 6 (v - mn) is an integer numerator N in [0, 6 (v - mn)), on an edge iff 8 N is a
    multiple of 6 (v - mn); s = (v - mn) / v is on an edge iff 8 (v - mn) is a multiple of v.
    """
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    a, b = a.ravel(), b.ravel()
    found = []
    for fixed in (0, 128, 255):
        c = np.full_like(a, fixed)
        for rgb in ((c, a, b), (a, c, b), (a, b, c)):
            r, g, bl = (x.astype(np.int64) for x in rgb)
            v = np.maximum(r, np.maximum(g, bl))
            mn = np.minimum(r, np.minimum(g, bl))
            d = v - mn
            numerator = np.where(r == v, g - bl, np.where(g == v, 2 * d + bl - r, 4 * d + r - g))
            numerator = np.where(numerator < 0, numerator + 6 * d, numerator)
            safe_d, safe_v = np.maximum(d, 1), np.maximum(v, 1)
            # Non-trivial edges only (h = 0 and s = 1 are exact in any arithmetic).
            hue_edge = (numerator > 0) & ((8 * numerator) % (6 * safe_d) == 0)
            sat_edge = (d < v) & ((8 * d) % safe_v == 0)
            edge = (d > 0) & (hue_edge | sat_edge)
            found.append(np.stack([r, g, bl], axis=1)[edge])
    return np.unique(np.concatenate(found), axis=0).astype(np.uint8)


def _exact_hsv(r8: int, g8: int, b8: int) -> tuple[int, int]:
    v, mn = max(r8, g8, b8), min(r8, g8, b8)
    d = v - mn
    if d == 0:
        return 0, 0
    if r8 == v:
        h = Fraction(g8 - b8, 6 * d)
    elif g8 == v:
        h = Fraction(1, 3) + Fraction(b8 - r8, 6 * d)
    else:
        h = Fraction(2, 3) + Fraction(r8 - g8, 6 * d)
    h = h + 1 if h < 0 else h
    return min(math.floor(h * 8), 7), min(math.floor(Fraction(d, v) * 8), 7)


def test_hsv_bin_edges_follow_the_spec_arithmetic():
    pixels = _edge_colours()
    assert len(pixels) > 1000
    colours = [tuple(map(int, p)) for p in pixels]
    got = np.stack(_kernel_hsv(pixels), axis=1)
    expected = np.array([spec_hsv(*c) for c in colours])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.stack(oracle.hsv_quantised(pixels), axis=1), expected)
    # Exact rational arithmetic puts some of them in another bin: the float formulas are
    # load-bearing, not a detail.
    exact = np.array([_exact_hsv(*c) for c in colours])
    assert np.any(exact != expected[:, :2])


def test_hsv_random_colours_match_the_spec():
    rng = np.random.default_rng(12)
    pixels = rng.integers(0, 256, size=(20_000, 3), dtype=np.uint8)
    pixels[::3, 1] = pixels[::3, 0]  # ties
    got = np.stack(_kernel_hsv(pixels), axis=1)
    np.testing.assert_array_equal(got, np.array([spec_hsv(*map(int, p)) for p in pixels]))


def test_grey_rounds_halves_away_from_zero_and_divides():
    # y * 255 = 0; 254.99999999999974 -> 255; 10 wr + 200 wg + 30 wb = 123.82 -> 124;
    # 0.99999999999999 -> 1. I = level / 255 (a division).
    image = np.array([[[0, 0, 0], [255, 255, 255], [10, 200, 30], [1, 1, 1]]], dtype=np.uint8)
    grey = np.empty(image.shape[:2])
    unit, table = kernels.tables()
    kernels.grey_levels(image, unit, table, grey)
    assert grey[0].tolist() == [0 / 255, 255 / 255, 124 / 255, 1 / 255]
    np.testing.assert_array_equal(grey, oracle.grey_image(image))
    # A level that lands on .5 exactly rounds up (away from zero), never to even.
    scaled = np.array([[[2.5, 3.5, 0.49999999999999994]]])
    floor = np.floor(scaled)
    assert np.where(scaled - floor >= 0.5, floor + 1, floor).tolist() == [[[3.0, 4.0, 0.0]]]


# ---------------------------------------------------------------------------------------------
# Retinex, the transformer, bad input
# ---------------------------------------------------------------------------------------------
def test_retinex_changes_only_the_colour_part():
    images = _images(2, seed=9)
    plain = lomo(images, retinex=False)
    enhanced = lomo(images, retinex=True)
    assert not np.allclose(plain[:, :20480], enhanced[:, :20480])
    np.testing.assert_array_equal(plain[:, 20480:], enhanced[:, 20480:])
    inverted = lomo(images, retinex=lambda im: 255 - im)
    np.testing.assert_array_equal(inverted[:, :20480], lomo(255 - images, retinex=False)[:, :20480])
    np.testing.assert_array_equal(inverted[:, 20480:], plain[:, 20480:])


def test_defaults_are_the_papers_and_live_in_one_place():
    # Pinned here on purpose: every signature below (and the oracle's) reads DEFAULTS.
    paper = LomoParams(
        retinex=False,
        num_scales=3,
        block_size=10,
        block_step=5,
        hsv_bins=(8, 8, 8),
        tau=0.3,
        radii=(3, 5),
        num_points=4,
    )
    assert paper == DEFAULTS
    assert dict(DEFAULT_PARAMS) == dataclasses.asdict(DEFAULTS)
    with pytest.raises(TypeError):
        DEFAULT_PARAMS["tau"] = 0.1  # read-only: a caller cannot change everyone's default
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.tau = 0.1
    for function in (lomo, lomo_counts, LOMO, oracle.lomo_counts, oracle.lomo_numpy_batched):
        signature = inspect.signature(function)
        for name, parameter in signature.parameters.items():
            if name in DEFAULT_PARAMS:
                assert parameter.default == DEFAULT_PARAMS[name], (function, name)
    assert LOMO().get_params() == {**DEFAULT_PARAMS, "dtype": np.float32}
    for name, parameter in inspect.signature(layout).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            assert parameter.default == DEFAULT_PARAMS[name]


def test_transformer_is_stateless():
    images = _images(2, seed=4)
    model = LOMO(retinex=False)
    assert model.fit(images) is model
    np.testing.assert_array_equal(model.transform(images), lomo(images, retinex=False))
    np.testing.assert_array_equal(model.fit_transform(images), model.transform(images))
    assert model.get_params()["radii"] == (3, 5)
    assert model.set_params(tau=0.2).tau == 0.2
    with pytest.raises(ValueError, match="bins"):  # scikit-learn names the unknown parameter
        model.set_params(bins=3)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 128, 48, 3), dtype=np.float32), "uint8"),
        (np.zeros((128, 48), dtype=np.uint8), "grayscale"),
        (np.zeros((2, 128, 48, 1), dtype=np.uint8), "grayscale"),
        (np.zeros((2, 128, 48, 4), dtype=np.uint8), "RGB"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "smaller than one"),
        (np.zeros((0, 128, 48, 3), dtype=np.uint8), "empty"),
    ],
)
def test_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        lomo(images, retinex=False)


def test_bad_parameters():
    images = _images(1)
    with pytest.raises(ValueError, match="num_points=8 is not supported"):
        lomo(images, num_points=8)
    with pytest.raises(ValueError, match="tau"):
        lomo(images, tau=1.5)
    with pytest.raises(ValueError, match="radii"):
        lomo(images, radii=(0,))
    with pytest.raises(ValueError, match="block_step"):
        lomo(images, block_step=0)
    with pytest.raises(ValueError, match="dtype"):
        lomo(images, dtype=np.int32)
    with pytest.raises(TypeError, match="numpy array"):
        lomo([[1, 2, 3]])
    with pytest.raises(TypeError, match="retinex"):
        lomo(images, retinex="yes")
    with pytest.raises(ValueError, match="retinex callable"):
        lomo(images, retinex=lambda im: im[:, :, 0])
