"""Where generated data, runs and caches live (all git-ignored, never inside the packages)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Generated datasets (the synthetic set by default). Override with REID_DATASETS_DIR.
DATASETS_DIR = Path(os.environ.get("REID_DATASETS_DIR", REPO_ROOT / "datasets"))
#: Results, checkpoints and feature caches. Override with REID_RUNS_DIR.
RUNS_DIR = Path(os.environ.get("REID_RUNS_DIR", REPO_ROOT / "runs"))


def run_dir_for(dataset_name: str) -> Path:
    """Return ``runs/<dataset_name>``, creating it if needed."""
    path = RUNS_DIR / dataset_name
    path.mkdir(parents=True, exist_ok=True)
    return path
