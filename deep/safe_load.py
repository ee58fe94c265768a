"""``torch.load(..., weights_only=True)`` with one-line errors instead of torch's tracebacks.

A file holding objects other than tensors and plain containers is refused as possibly running
code (torch's own message suggests ``weights_only=False``, which would run it); a truncated or
foreign file is reported as unreadable. Every weights file the toolkit reads goes through here.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


def load_tensors(path: Path | str, error: type[Exception] = ValueError, what: str = "file"):
    """The object in torch file ``path``; ``error`` (one line naming the file) if refused."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():
            raise error(f"{what} {path} cannot be read (truncated or not a torch file)") from err
        raise error(
            f"{what} {path} holds objects other than tensors and plain containers; it was "
            "refused because loading it could run code. Use a file written by this toolkit or "
            "torchvision"
        ) from err
    except Exception as err:  # torch raises several types for corrupt or truncated files
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(
            f"{what} {path} cannot be read (truncated or not a torch file): {first}"
        ) from err
