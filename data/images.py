"""Image loading: any file OpenCV decodes -> RGB uint8, optionally resized to (height, width).

Decoding rules (every image of every pipeline goes through :func:`load_image`):

* **Orientation**: a JPEG's EXIF orientation tag is applied, as image viewers do (a phone photo
  stored sideways with orientation 6 is read upright).
* **Colour**: grayscale becomes RGB (three equal channels); alpha is dropped (re-ID crops are
  opaque, and compositing would invent a background).
* **Bit depth**: 8-bit images are taken as they are. A 16-bit image is scaled by its actual
  range: if no value exceeds 255 it holds 8-bit values and is taken as is; otherwise it is
  mapped from 0-65535 to 0-255 (value / 257, rounded: the exact inverse of the usual 8-to-16-bit
  expansion). Any other pixel type (float TIFF, ...) is refused, naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


class ImageLoadError(ValueError):
    """An image file is missing, empty or cannot be decoded."""


#: OpenCV decodes to 3 channels (BGR), keeps 16 bits and applies the EXIF orientation (which
#: it skips for IMREAD_UNCHANGED).
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        if image.max(initial=0) <= 255:  # 8-bit values stored in 16 bits
            image = image.astype(np.uint8)
        else:
            image = np.round(image / 257.0).astype(np.uint8)
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
        Image file (JPEG, PNG, BMP, ...), decoded by the module's rules (EXIF orientation
        applied, grayscale and RGBA images become RGB, 16-bit scaled by its actual range).
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
    decoded = cv2.imdecode(raw, _DECODE_FLAGS)
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
