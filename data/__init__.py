"""Datasets: Market-1501 / DukeMTMC-reID / generic layouts, image loading and the synthetic set."""

from data.layouts import Record, ReidDataset, list_layouts, load_dataset, register_layout

__all__ = ["Record", "ReidDataset", "list_layouts", "load_dataset", "register_layout"]
