"""Multi-scale Retinex with colour restoration (MSRCR), as LOMO's colour pre-processing.

Liao et al. (CVPR 2015) enhance the colour branch of LOMO with a multi-scale Retinex with two
Gaussian scales (sigma 5 and 20). The authors' own Retinex was only released as a closed binary,
so this is an approximation written from the published description of MSRCR (Jobson, Rahman &
Woodell, 1997): features computed with it are close to, but not identical with, the authors'.
Use ``lomo(..., retinex=False)`` for the exactly reproducible variant.

For each channel ``I_c`` (shifted by 1 to avoid log 0)::

    R_c = mean_s [log I_c - log(G_s * I_c)]                      (multi-scale Retinex)
    C_c = beta * [log(alpha * I_c) - log(sum_c I_c)]              (colour restoration)
    out_c = stretch(R_c * C_c)                                    (gain/offset to 0..255)

where ``stretch`` maps the 1st..99th percentile of each channel linearly onto 0..255.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_SIGMAS = (5.0, 20.0)


def msrcr(
    image: np.ndarray,
    *,
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS,
    alpha: float = 125.0,
    beta: float = 46.0,
    low_clip: float = 1.0,
    high_clip: float = 99.0,
) -> np.ndarray:
    """Enhance one RGB uint8 image; returns an RGB uint8 image of the same shape.

    Parameters
    ----------
    image : ndarray of uint8, shape (height, width, 3)
    sigmas : tuple of float
        Gaussian scales of the multi-scale Retinex (the paper's 5 and 20).
    alpha, beta : float
        Colour-restoration constants of Jobson et al.
    low_clip, high_clip : float
        Percentiles mapped to 0 and 255 by the final gain/offset.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"msrcr expects an RGB uint8 image (height, width, 3), got {image.dtype} {image.shape}"
        )
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"sigmas must be positive, got {sigmas}")
    img = image.astype(np.float64) + 1.0
    log_img = np.log(img)
    retinex = np.zeros_like(img)
    for sigma in sigmas:
        blurred = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        retinex += log_img - np.log(blurred)
    retinex /= len(sigmas)
    restoration = beta * (np.log(alpha * img) - np.log(img.sum(axis=2, keepdims=True)))
    enhanced = retinex * restoration
    out = np.empty_like(image)
    for c in range(3):
        channel = enhanced[:, :, c]
        lo, hi = np.percentile(channel, [low_clip, high_clip])
        if hi - lo < 1e-12:
            out[:, :, c] = 128  # a flat channel carries no contrast to stretch
            continue
        out[:, :, c] = (
            np.clip((channel - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
        )
    return out
