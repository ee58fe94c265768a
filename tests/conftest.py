"""Shared fixtures: tiny datasets written by hand in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.layouts import ReidDataset, load_dataset
from deep.config import TrainConfig
from tests.builders import small_synthetic, tiny_train_config, write_image


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
            write_image(root / folder / name, rng)
    return root


@pytest.fixture(scope="session")
def small_synthetic_root(tmp_path_factory) -> Path:
    """The "small" synthetic preset, generated once per session; tests copy it to change it."""
    return small_synthetic(tmp_path_factory.mktemp("small-synthetic") / "data")


@pytest.fixture(scope="module")
def tiny_training(small_synthetic_root: Path) -> tuple[TrainConfig, ReidDataset]:
    """A tiny training configuration (:func:`tests.builders.tiny_train_config`) and its data."""
    return tiny_train_config(small_synthetic_root), load_dataset("market1501", small_synthetic_root)
