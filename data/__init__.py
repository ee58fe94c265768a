"""Datasets: Market-style layouts, Liao's benchmarks (VIPeR, CUHK01, CUHK03), images, synthetic set.

Importing :mod:`data.benchmarks` registers its layouts (``viper``, ``cuhk01``, ``cuhk03``, ...)
next to the Market-style ones of :mod:`data.layouts`.
"""

from data import benchmarks as _benchmarks  # noqa: F401
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
