"""argparse value types shared by the command lines of every layer.

A value out of range is refused by argparse itself, before any work, with a message naming the
flag and exit code 2, e.g. ``error: argument --jobs: must be >= 1, got 0``.
"""

from __future__ import annotations

import argparse
import math

from data.images import parse_size


def _parse(text: str, kind: type, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (worker processes, threads, counts)."""
    value = _parse(text, int, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    value = _parse(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (temperatures, tolerances)."""
    value = _parse(text, float, "a number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (loss weights)."""
    value = _parse(text, float, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (weights of a mix, probabilities)."""
    value = _parse(text, float, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """An image size ``HxW`` (e.g. ``128x48``), as ``(height, width)``."""
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
