"""Datasets: Market-style layouts, Liao's benchmarks (VIPeR, CUHK01, CUHK03), images, synthetic set.

The bottom layer of the toolkit (see the README's "How it fits together"): dataset layouts,
image loading, the synthetic generator, the datasets' scoring protocols (:mod:`data.protocols`),
gallery matching primitives (:mod:`data.matching`) and atomic file writes (:mod:`data.io`).
Importing the package registers every layout: the Market-style ones of :mod:`data.layouts`,
Liao's benchmarks of :mod:`data.benchmarks` (``viper``, ``cuhk01``, ``cuhk03``, ...) and the
generated sets of :mod:`data.synthetic` (``synthetic``, ``synthetic_pretrain``).

Importing it also sets the OpenMP wait policy to ``PASSIVE`` unless the environment already
names one: OpenMP reads it once, when torch (or numba's OpenMP layer) loads, so every package
imports :mod:`data` first. A spinning (``ACTIVE``) thread team collapses when the cores are
shared: deep.train with 2 threads fell from 236 to 6-18 images/s on a shared 2-core machine,
and kept 90-119 with ``PASSIVE`` (README, Reliability).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# isort: split

from data import benchmarks as _benchmarks  # noqa: F401
from data import synthetic as _synthetic  # noqa: F401
from data.layouts import (
    DatasetError,
    Record,
    ReidDataset,
    TrainingSetError,
    check_training_set,
    list_layouts,
    load_dataset,
    record_arrays,
    register_layout,
)

__all__ = [
    "DatasetError",
    "Record",
    "ReidDataset",
    "TrainingSetError",
    "check_training_set",
    "list_layouts",
    "load_dataset",
    "record_arrays",
    "register_layout",
]
