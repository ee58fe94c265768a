"""data.images: RGB uint8 out of any decodable image, resizing, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data.images import ImageLoadError, load_image, load_images


def _write(path: Path, array: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, array)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_channel_order_is_rgb(tmp_path: Path):
    bgr = np.zeros((4, 3, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    image = load_image(_write(tmp_path / "b.png", bgr))
    assert image.dtype == np.uint8 and image.shape == (4, 3, 3)
    assert image[0, 0].tolist() == [0, 0, 255]


def test_grayscale_and_rgba_become_rgb(tmp_path: Path):
    gray = np.full((5, 4), 77, np.uint8)
    assert load_image(_write(tmp_path / "g.png", gray))[2, 2].tolist() == [77, 77, 77]
    bgra = np.zeros((5, 4, 4), np.uint8)
    bgra[..., 2] = 200
    bgra[..., 3] = 10
    assert load_image(_write(tmp_path / "a.png", bgra))[0, 0].tolist() == [200, 0, 0]


def test_resize_to_height_width(tmp_path: Path):
    path = _write(tmp_path / "x.png", np.zeros((40, 20, 3), np.uint8))
    assert load_image(path, size=(128, 64)).shape == (128, 64, 3)
    assert load_image(path, size=(10, 5)).shape == (10, 5, 3)
    with pytest.raises(ValueError, match="positive"):
        load_image(path, size=(0, 5))


def test_bad_files_name_the_path(tmp_path: Path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty.*empty\.jpg"):
        load_image(empty)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageLoadError, match=r"corrupt\.jpg"):
        load_image(corrupt)


def test_load_images_batches_and_checks_shapes(tmp_path: Path):
    a = _write(tmp_path / "a.png", np.zeros((8, 4, 3), np.uint8))
    b = _write(tmp_path / "b.png", np.zeros((6, 4, 3), np.uint8))
    assert load_images([a, b], size=(8, 4)).shape == (2, 8, 4, 3)
    with pytest.raises(ImageLoadError, match="size="):
        load_images([a, b])
    with pytest.raises(ValueError, match="at least one"):
        load_images([])
