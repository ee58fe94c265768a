"""What the command lines of every layer share: argparse value types and the entry-point wrapper.

A value out of range is refused by argparse itself, before any work, with a message naming the
flag and exit code 2, e.g. ``error: argument --jobs: must be >= 1, got 0``. A problem found
later (a missing file, a bad dataset, a full disk, a diverged run) is reported the same way by
:func:`entry_point`, which every ``main`` is wrapped in.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable

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


class CommandFailed(Exception):
    """A failure a command reports as one line although it is neither a bad value (ValueError)
    nor a file problem (OSError): a training run that diverged, an inference engine that is not
    installed, a sub-command that failed. Project errors of that kind derive from it."""


#: The one set of exceptions every command line reports as ``error: <message>`` with exit
#: code 2 instead of a traceback:
#:   ValueError     bad input: a dataset, image, checkpoint, results table or argument value
#:                  (DatasetError, ImageLoadError, CheckpointError, ExportError, ...);
#:   OSError        a file or folder that is missing, unreadable or unwritable, a full disk
#:                  (FileNotFoundError, OutputError, ...);
#:   CommandFailed  the rest of what a user can cause or fix (TrainingDiverged,
#:                  EngineNotInstalled, a failed sub-command).
#: Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, CommandFailed)

Main = Callable[[list[str] | None], int]


def entry_point(main: Main) -> Main:
    """Wrap a command line's ``main(argv) -> exit code``: a :data:`USER_ERRORS` exception
    becomes one ``error: ...`` line on stderr and exit code 2."""

    @functools.wraps(main)
    def guarded(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return guarded
