"""Image loading: any file OpenCV decodes -> RGB uint8, optionally resized to (height, width)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


class ImageLoadError(ValueError):
    """An image file is missing, empty or cannot be decoded."""


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        # 16-bit PNGs: keep the top 8 bits rather than clipping.
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageLoadError(f"unsupported pixel type {image.dtype} in image {path}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        # Alpha is dropped: re-ID crops are opaque, and compositing would invent a background.
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageLoadError(f"unsupported channel count {channels} in image {path}")


def load_image(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as an (H, W, 3) RGB uint8 array.

    Parameters
    ----------
    path : path
        Image file (JPEG, PNG, BMP, ...). Grayscale and RGBA images become RGB.
    size : (height, width), optional
        Resize with bilinear interpolation (area interpolation when shrinking) to this size.

    Raises
    ------
    ImageLoadError
        If the file is missing, empty or not a decodable image; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"image file not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    if raw.size == 0:
        raise ImageLoadError(f"image file is empty: {path}")
    decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageLoadError(f"image file is corrupt or not an image: {path}")
    image = _to_rgb_uint8(decoded, path)
    if size is not None:
        image = resize(image, size)
    return image


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``size = (height, width)``."""
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be two positive integers (height, width), got {size}")
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def load_images(paths: Sequence[Path | str], size: tuple[int, int] | None = None) -> np.ndarray:
    """Read images into one (n, H, W, 3) uint8 array; without ``size`` they must share a shape."""
    if len(paths) == 0:
        raise ValueError("load_images needs at least one path")
    first = load_image(paths[0], size)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, path in enumerate(paths[1:], start=1):
        image = load_image(path, size)
        if image.shape != first.shape:
            raise ImageLoadError(
                f"image {path} has shape {image.shape} but {paths[0]} has {first.shape}; "
                "pass size=(height, width) to resize them to one size"
            )
        out[i] = image
    return out


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (e.g. ``"128x48"``) as ``(height, width)``; a ValueError naming the text if not."""
    try:
        height, width = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HEIGHTxWIDTH, e.g. 64x32, got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def size_text(size: tuple[int, int] | list[int]) -> str:
    """``(height, width)`` as ``"HxW"``, the inverse of :func:`parse_size` (the results table's
    ``input_size`` column; configs hold the tuple, JSON the list)."""
    height, width = (int(v) for v in size)
    return f"{height}x{width}"
