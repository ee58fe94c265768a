"""Shared fixtures: tiny datasets written by hand in the real layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (32, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture
def market_root(tmp_path: Path) -> Path:
    """A tiny Market-1501-named dataset: 3 train ids, 2 test ids, a distractor and a junk box."""
    rng = np.random.default_rng(0)
    root = tmp_path / "market"
    names = {
        "bounding_box_train": [
            "0002_c1s1_000451_03.jpg",
            "0002_c2s1_000551_01.jpg",
            "0007_c1s1_000001_01.jpg",
            "0007_c3s1_000101_01.jpg",
            "0010_c2s2_000021_02.jpg",
            "0010_c4s1_000001_01.jpg",
        ],
        "query": ["0003_c1s1_000001_00.jpg", "0005_c2s1_000002_00.jpg"],
        "bounding_box_test": [
            "0003_c2s1_000011_01.jpg",
            "0003_c1s1_000021_01.jpg",
            "0005_c3s1_000031_01.jpg",
            "0000_c1s1_000041_01.jpg",
            "-1_c2s1_000051_01.jpg",
        ],
    }
    for folder, files in names.items():
        for name in files:
            write_jpeg(root / folder / name, rng)
    return root
