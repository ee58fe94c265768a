"""numba kernels behind :func:`classical.lomo.lomo` (private; use the functions in ``lomo``).

One call processes a batch, parallel over images (``prange``). Each thread owns a set of work
buffers allocated once per call (indexed by ``numba.get_thread_id()``), so the per-image work
allocates nothing. Histograms are small integers (uint8 while a window holds at most 255 pixels).

Max-occurrence counting, the hot spot, is organised around cells: when the window size is a
multiple of the step (10 = 2 x 5 by default), every window is a k x k grid of step x step cells.
Each pixel is counted once into its cell's histogram ("band" = one row of cells), a window row's
column histograms are the sum of k bands, a window is the sum of k columns, and the bin-wise
running maximum is a vector max. Sums and maxima run over bins laid out contiguously and padded to
a multiple of 32, so LLVM turns them into byte-wide SIMD. With another window/step ratio a direct
per-window count is used instead.

Floating-point arithmetic follows ``docs/lomo_xqda.md`` exactly: no fastmath (no FMA
contraction, no reassociation), the stated evaluation order, and tables holding exactly the values
the per-pixel formulas would compute (``c / 255.0`` and ``(c / 255.0) * weight``).
"""

from __future__ import annotations

import numba
import numpy as np

SIXTH = 1.0 / 6.0
THIRD = 1.0 / 3.0
TWO_THIRDS = 2.0 / 3.0
GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
SILTP_BINS = 81
#: Bin rows are padded to a multiple of this (bytes) so that vector loops have no scalar tail.
LANE = 32

_OPTS = {"cache": True, "nogil": True, "error_model": "numpy", "boundscheck": False}


def padded(n_bins: int) -> int:
    """Row stride of a histogram with ``n_bins`` bins."""
    return -(-n_bins // LANE) * LANE


def tables() -> tuple[np.ndarray, np.ndarray]:
    """``unit[c] = c / 255`` and ``grey[i, c] = (c / 255) * weight_i``, as the formulas compute."""
    unit = np.arange(256, dtype=np.float64) / 255.0
    grey = np.stack([unit * w for w in GREY_WEIGHTS])
    return unit, grey


# ---------------------------------------------------------------------------------------------
# per-pixel maps
# ---------------------------------------------------------------------------------------------
def sv_tables(unit: np.ndarray, bins_s: int, bins_v: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantised S and V as functions of the pixel's channel bytes: ``qs[min, max]``, ``qv[max]``.

    S = 1 - min/max and V = max depend only on the smallest and largest channel, so the
    per-pixel division of the spec becomes a lookup. The tables are computed with the spec's
    operations on the same float64 operands (``unit[c] = c / 255``), so every entry equals what
    the per-pixel formula gives (checked over all 2^24 colours in the tests).
    """
    lo = np.arange(256)[:, None]
    hi = np.arange(256)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = 1.0 - unit[lo] / unit[hi]
    q_sat = np.minimum(np.floor(sat * bins_s), bins_s - 1)
    q_sat = np.where(lo < hi, q_sat, 0).astype(np.uint8)  # min == max: grey, S = 0
    q_val = np.minimum(np.floor(unit * bins_v), bins_v - 1).astype(np.uint8)
    return np.ascontiguousarray(q_sat), q_val


@numba.njit(**_OPTS)
def hsv_quantise(image, unit, sat_table, val_table, bins_h, qh, qs, qv):  # pragma: no cover
    """Quantised H, S, V maps of an RGB uint8 image (spec, colour branch steps 1-2).

    The maximum and minimum channel are found on the bytes (``unit`` is strictly increasing,
    so the same channel wins, ties included); S and V come from :func:`sv_tables`; H keeps the
    spec's arithmetic: ``base + (1/6)(difference) / (max - min)``, red before green before blue.
    """
    height, width = image.shape[0], image.shape[1]
    for y in range(height):
        row = image[y]
        qh_row = qh[y]
        qs_row = qs[y]
        qv_row = qv[y]
        for x in range(width):
            red = row[x, 0]
            green = row[x, 1]
            blue = row[x, 2]
            hi = max(red, max(green, blue))
            lo = min(red, min(green, blue))
            r = unit[red]
            g = unit[green]
            b = unit[blue]
            if red == hi:  # ties: red before green before blue
                numerator = SIXTH * (g - b)
                base = 0.0  # 0.0 + x == x exactly, so this is the spec's red branch
            elif green == hi:
                numerator = SIXTH * (b - r)
                base = THIRD
            else:
                numerator = SIXTH * (r - g)
                base = TWO_THIRDS
            hue = base + numerator / (unit[hi] - unit[lo])
            if hue < 0.0:
                hue += 1.0
            if lo == hi:  # grey: the division above was 0/0, discard it
                hue = 0.0
            qh_row[x] = min(int(np.floor(hue * bins_h)), bins_h - 1)
            qs_row[x] = sat_table[lo, hi]
            qv_row[x] = val_table[hi]


@numba.njit(**_OPTS)
def joint_codes(qh, qs, qv, height, width, bins_h, bins_s, codes):  # pragma: no cover
    """code = qV * (bins_s * bins_h) + qS * bins_h + qH (H least significant)."""
    for y in range(height):
        for x in range(width):
            codes[y, x] = (np.uint16(qv[y, x]) * bins_s + qs[y, x]) * bins_h + qh[y, x]


@numba.njit(**_OPTS)
def grey_levels(image, unit, grey_table, grey):  # pragma: no cover
    """I = round(255 * ((r wr + g wg) + b wb)) / 255, halves away from zero, in float64."""
    height, width = image.shape[0], image.shape[1]
    for y in range(height):
        for x in range(width):
            scaled = (
                (grey_table[0, image[y, x, 0]] + grey_table[1, image[y, x, 1]])
                + grey_table[2, image[y, x, 2]]
            ) * 255.0
            level = np.floor(scaled)
            if scaled - level >= 0.5:
                level += 1.0
            grey[y, x] = unit[int(level)]


@numba.njit(**_OPTS)
def pool_quantised(q, height, width):  # pragma: no cover
    """In-place 2x2 pooling of a quantised map: floor of the block average."""
    # Output (r, c) reads rows/columns >= (r, c) only, which no earlier output overwrote.
    for r in range(height // 2):
        for c in range(width // 2):
            total = (
                np.int32(q[2 * r, 2 * c])
                + np.int32(q[2 * r + 1, 2 * c])
                + np.int32(q[2 * r, 2 * c + 1])
                + np.int32(q[2 * r + 1, 2 * c + 1])
            )
            q[r, c] = total // 4


@numba.njit(**_OPTS)
def pool_grey(grey, height, width):  # pragma: no cover
    """In-place 2x2 average pooling of the grey map.

    Summed in the order (r, c), (r+1, c), (r, c+1), (r+1, c+1), then divided by 4 (no floor).
    """
    for r in range(height // 2):
        for c in range(width // 2):
            grey[r, c] = (
                ((grey[2 * r, 2 * c] + grey[2 * r + 1, 2 * c]) + grey[2 * r, 2 * c + 1])
                + grey[2 * r + 1, 2 * c + 1]
            ) / 4.0


@numba.njit(inline="always", **_OPTS)
def _trit(neighbour, lo, hi):  # pragma: no cover
    # 1 if strictly below (1 - tau) I, 2 if strictly above (1 + tau) I, else 0; branch-free.
    return np.uint16(neighbour < lo) + np.uint16(2) * np.uint16(neighbour > hi)


@numba.njit(inline="always", **_OPTS)
def _siltp_border(
    row, row_up, row_down, x, width, radius, lo_factor, hi_factor
):  # pragma: no cover
    centre = row[x]
    lo = lo_factor * centre
    hi = hi_factor * centre
    return (
        _trit(row[min(x + radius, width - 1)], lo, hi)
        + np.uint16(3) * _trit(row_up[x], lo, hi)
        + np.uint16(9) * _trit(row[max(x - radius, 0)], lo, hi)
        + np.uint16(27) * _trit(row_down[x], lo, hi)
    )


@numba.njit(**_OPTS)
def siltp_codes(grey, height, width, radius, tau, codes):  # pragma: no cover
    """4-point SILTP codes (0..80), replicated border: t_right + 3 t_up + 9 t_left + 27 t_down."""
    lo_factor = 1.0 - tau
    hi_factor = 1.0 + tau
    inner = max(width - 2 * radius, 0)
    for y in range(height):
        row = grey[y]
        row_up = grey[max(y - radius, 0)]
        row_down = grey[min(y + radius, height - 1)]
        out = codes[y]
        # Border columns: neighbours clamped to the image.
        for x in range(min(radius, width)):
            out[x] = _siltp_border(row, row_up, row_down, x, width, radius, lo_factor, hi_factor)
        for x in range(radius + inner, width):
            out[x] = _siltp_border(row, row_up, row_down, x, width, radius, lo_factor, hi_factor)
        # Interior: shifted views, so every index is a plain non-negative loop counter (SIMD).
        centre_v = row[radius : radius + inner]
        right_v = row[2 * radius : 2 * radius + inner]
        left_v = row[0:inner]
        up_v = row_up[radius : radius + inner]
        down_v = row_down[radius : radius + inner]
        out_v = out[radius : radius + inner]
        for j in range(inner):
            centre = centre_v[j]
            lo = lo_factor * centre
            hi = hi_factor * centre
            out_v[j] = (
                _trit(right_v[j], lo, hi)
                + np.uint16(3) * _trit(up_v[j], lo, hi)
                + np.uint16(9) * _trit(left_v[j], lo, hi)
                + np.uint16(27) * _trit(down_v[j], lo, hi)
            )


# ---------------------------------------------------------------------------------------------
# local maximal occurrence
# ---------------------------------------------------------------------------------------------
@numba.njit(**_OPTS)
def max_occurrence_cells(
    codes, height, width, block, step, n_bins, bands, columns, window, rowmax, counts, offset
):  # pragma: no cover
    """Row-wise maxima of window histograms via step x step cells (block % step == 0).

    Work buffers: bands (k, cells, stride), columns (cells, stride), window (cells * stride,)
    and rowmax (stride,). Writes ``n_rows * n_bins`` counts into ``counts[offset:]`` and returns
    the next offset. Sums run over whole rows of cells as flat arrays (one long SIMD loop each).
    """
    k = block // step
    stride = rowmax.shape[0]
    n_rows = (height - block) // step + 1
    n_cols = (width - block) // step + 1
    n_cells = n_cols + k - 1
    span = n_cells * stride
    wspan = n_cols * stride
    col_flat = columns.reshape(-1)[:span]
    win = window[:wspan]
    for band in range(n_rows + k - 1):
        hist = bands[band % k]
        hist_flat = hist.reshape(-1)[:span]
        for i in range(span):
            hist_flat[i] = 0
        for y in range(band * step, band * step + step):
            for c in range(n_cells):
                for x in range(c * step, c * step + step):
                    hist[c, codes[y, x]] += 1
        if band < k - 1:
            continue
        # Column histograms of window row i: the k bands it spans.
        first = bands[0].reshape(-1)[:span]
        for i in range(span):
            col_flat[i] = first[i]
        for s in range(1, k):
            other = bands[s].reshape(-1)[:span]
            for i in range(span):
                col_flat[i] = col_flat[i] + other[i]
        # Window j = columns j .. j + k - 1: k shifted copies of the flat column array. The sums
        # are stored at the buffers' integer width, which keeps the SIMD byte-wide.
        for i in range(wspan):
            win[i] = col_flat[i]
        for s in range(1, k):
            shifted = col_flat[s * stride : s * stride + wspan]
            for i in range(wspan):
                win[i] = win[i] + shifted[i]
        for b in range(stride):
            rowmax[b] = win[b]
        for j in range(1, n_cols):
            win_j = win[j * stride : (j + 1) * stride]
            for b in range(stride):
                rowmax[b] = max(rowmax[b], win_j[b])
        start = offset + (band - k + 1) * n_bins
        dst = counts[start : start + n_bins]
        for b in range(n_bins):
            dst[b] = rowmax[b]
    return offset + n_rows * n_bins


@numba.njit(**_OPTS)
def max_occurrence_direct(
    codes, height, width, block, step, n_bins, window, rowmax, counts, offset
):  # pragma: no cover
    """Row-wise maxima of window histograms, counting every window (any block/step)."""
    stride = rowmax.shape[0]
    window = window[:stride]
    n_rows = (height - block) // step + 1
    n_cols = (width - block) // step + 1
    for i in range(n_rows):
        for b in range(stride):
            rowmax[b] = 0
        for j in range(n_cols):
            for b in range(stride):
                window[b] = 0
            for y in range(i * step, i * step + block):
                for x in range(j * step, j * step + block):
                    window[codes[y, x]] += 1
            for b in range(stride):
                rowmax[b] = max(rowmax[b], window[b])
        start = offset + i * n_bins
        dst = counts[start : start + n_bins]
        for b in range(n_bins):
            dst[b] = rowmax[b]
    return offset + n_rows * n_bins


@numba.njit(**_OPTS)
def max_occurrence(
    codes, height, width, block, step, n_bins, bands, columns, window, rowmax, counts, offset
):  # pragma: no cover
    if height < block or width < block:
        return offset
    if block % step == 0:
        return max_occurrence_cells(
            codes,
            height,
            width,
            block,
            step,
            n_bins,
            bands,
            columns,
            window,
            rowmax,
            counts,
            offset,
        )
    return max_occurrence_direct(
        codes, height, width, block, step, n_bins, window, rowmax, counts, offset
    )


# ---------------------------------------------------------------------------------------------
# one image, a batch
# ---------------------------------------------------------------------------------------------
@numba.njit(**_OPTS)
def image_counts(
    image,
    colour_image,
    num_scales,
    block,
    step,
    bins_h,
    bins_s,
    bins_v,
    tau,
    radii,
    texture_offsets,
    unit,
    grey_table,
    sat_table,
    val_table,
    qh,
    qs,
    qv,
    grey,
    codes,
    bands,
    columns,
    window,
    rowmax,
    counts,
):  # pragma: no cover
    """Integer max-occurrence counts of one image into ``counts`` (length d).

    texture_offsets[p, s]: where radius p's scale s starts in ``counts`` (-1: scale skipped).
    """
    height, width = image.shape[0], image.shape[1]
    colour_bins = bins_h * bins_s * bins_v
    # Colour branch: quantise once, pool the quantised maps between scales.
    hsv_quantise(colour_image, unit, sat_table, val_table, bins_h, qh, qs, qv)
    h, w = height, width
    offset = 0
    for scale in range(num_scales):
        if scale:
            pool_quantised(qh, h, w)
            pool_quantised(qs, h, w)
            pool_quantised(qv, h, w)
            h, w = h // 2, w // 2
        joint_codes(qh, qs, qv, h, w, bins_h, bins_s, codes)
        offset = max_occurrence(
            codes, h, w, block, step, colour_bins, bands, columns, window, rowmax, counts, offset
        )
    # Texture branch: one grey pyramid shared by all radii.
    grey_levels(image, unit, grey_table, grey)
    h, w = height, width
    for scale in range(num_scales):
        if scale:
            pool_grey(grey, h, w)
            h, w = h // 2, w // 2
        for p in range(radii.shape[0]):
            start = texture_offsets[p, scale]
            if start >= 0:
                siltp_codes(grey, h, w, radii[p], tau, codes)
                max_occurrence(
                    codes,
                    h,
                    w,
                    block,
                    step,
                    SILTP_BINS,
                    bands,
                    columns,
                    window,
                    rowmax,
                    counts,
                    start,
                )


@numba.njit(**_OPTS)
def log_normalise(counts, bounds, log_table, scaled, out):  # pragma: no cover
    """out[p] = log(1 + counts[p]) / ||log(1 + counts[p])|| for each part p = [bounds[p], ...).

    ``scaled`` is a work buffer as long as ``log_table``: the division is done once per distinct
    count value (same operands, hence the same result as dividing every element).
    """
    for p in range(bounds.shape[0] - 1):
        part = counts[bounds[p] : bounds[p + 1]]
        dst = out[bounds[p] : bounds[p + 1]]
        n = part.shape[0]
        if n == 0:
            continue
        # Four partial sums break the add latency chain.
        s0 = s1 = s2 = s3 = 0.0
        quad = n - n % 4
        for i in range(0, quad, 4):
            a = log_table[part[i]]
            b = log_table[part[i + 1]]
            c = log_table[part[i + 2]]
            d = log_table[part[i + 3]]
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
        for i in range(quad, n):
            a = log_table[part[i]]
            s0 += a * a
        norm = np.sqrt((s0 + s1) + (s2 + s3))
        for c in range(log_table.shape[0]):
            scaled[c] = log_table[c] / norm
        for i in range(n):
            dst[i] = scaled[part[i]]


@numba.njit(parallel=True, **_OPTS)
def batch_lomo(
    images,
    colour_images,
    num_scales,
    block,
    step,
    bins_h,
    bins_s,
    bins_v,
    tau,
    radii,
    texture_offsets,
    unit,
    grey_table,
    sat_table,
    val_table,
    qmaps,
    grey,
    codes,
    bands,
    columns,
    window,
    rowmax,
    counts,
    counts_per_image,
    bounds,
    log_table,
    scaled,
    out,
):  # pragma: no cover
    """LOMO of a batch, parallel over images; work buffers have one slot per thread.

    ``counts`` is (threads, d) scratch, or (n, d) to keep every image's raw counts
    (``counts_per_image``). Normalised features go to ``out`` (n, d) unless it has 0 rows.
    One kernel serves both uses, so each output dtype is compiled once.
    """
    for i in numba.prange(images.shape[0]):
        t = numba.get_thread_id()
        slot = np.int64(i) if counts_per_image else np.int64(t)
        image_counts(
            images[i],
            colour_images[i],
            num_scales,
            block,
            step,
            bins_h,
            bins_s,
            bins_v,
            tau,
            radii,
            texture_offsets,
            unit,
            grey_table,
            sat_table,
            val_table,
            qmaps[t, 0],
            qmaps[t, 1],
            qmaps[t, 2],
            grey[t],
            codes[t],
            bands[t],
            columns[t],
            window[t],
            rowmax[t],
            counts[slot],
        )
        if out.shape[0] > 0:
            log_normalise(counts[slot], bounds, log_table, scaled[t], out[i])
