"""Where generated datasets and runs live by default (all git-ignored, never inside the packages).

Nothing here is read at import: the environment (``REID_DATASETS_DIR``, ``REID_RUNS_DIR``) is
consulted when a command parses its arguments (:func:`datasets_dir`,
:meth:`data.runs.RunsLayout.from_env`), so a test or a caller passes its own folder instead of
patching a module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The environment variables that move the two trees.
DATASETS_ENV = "REID_DATASETS_DIR"
RUNS_ENV = "REID_RUNS_DIR"


def datasets_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Generated datasets (the synthetic sets): ``$REID_DATASETS_DIR``, else ``datasets/``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(DATASETS_ENV) or REPO_ROOT / "datasets")


def runs_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Results, checkpoints and caches: ``$REID_RUNS_DIR``, else ``runs/``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(RUNS_ENV) or REPO_ROOT / "runs")
