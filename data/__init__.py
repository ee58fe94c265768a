"""Datasets: Market-style layouts, Liao's benchmarks (VIPeR, CUHK01, CUHK03), images, synthetic set.

The bottom layer of the toolkit (see the README's "How it fits together"): dataset layouts,
image loading, the synthetic generator, the datasets' scoring protocols (:mod:`data.protocols`),
gallery matching primitives (:mod:`data.matching`) and atomic file writes (:mod:`data.io`).
Importing the package registers every layout: the Market-style ones of :mod:`data.layouts`,
Liao's benchmarks of :mod:`data.benchmarks` (``viper``, ``cuhk01``, ``cuhk03``, ...) and the
generated sets of :mod:`data.synthetic` (``synthetic``, ``synthetic_pretrain``).
"""

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
