"""Datasets: Market-style layouts, Liao's benchmarks (VIPeR, CUHK01, CUHK03), images, synthetic set.

Importing :mod:`data.benchmarks` registers its layouts (``viper``, ``cuhk01``, ``cuhk03``, ...)
next to the Market-style ones of :mod:`data.layouts`.
"""

from data import benchmarks as _benchmarks  # noqa: F401
from data.layouts import Record, ReidDataset, list_layouts, load_dataset, register_layout

__all__ = ["Record", "ReidDataset", "list_layouts", "load_dataset", "register_layout"]
