"""The Makefile's defaults work from a fresh clone, and its test targets split as documented."""

from __future__ import annotations

import re
from pathlib import Path

from deep.config import TrainConfig
from deep.models import build_model, list_models
from deep.pretrained import available, initialise

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = (REPO / "Makefile").read_text()


def _default(variable: str) -> str:
    match = re.search(rf"^{variable}\s*\?=\s*(\S*)\s*$", MAKEFILE, re.MULTILINE)
    assert match, f"no `{variable} ?=` in the Makefile"
    return match.group(1)


def _recipe(target: str) -> list[str]:
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE, re.MULTILINE)
    assert match, f"no target {target} in the Makefile"
    return [line.strip() for line in match.group(1).splitlines()]


def test_make_train_default_model_initialises_as_deep_train_does():
    # `make train` passes --model $(MODEL) and leaves --init at deep.train's default.
    model_name, init = _default("MODEL"), TrainConfig().init
    assert model_name in list_models()
    if init == "pretrained":
        assert model_name in available(), f"{model_name} has no shipped backbone in deep/weights"
    record = initialise(build_model(model_name, num_classes=3), model_name, init)
    assert record["init"] == init


def test_test_fast_deselects_the_slow_tests_and_test_runs_everything():
    (fast,) = _recipe("test-fast")
    (full,) = _recipe("test")
    assert '-m "not slow"' in fast
    assert "-m pytest $(PYTEST_ARGS)" in full and "slow" not in full
    assert "slow:" in (REPO / "pyproject.toml").read_text()  # the marker is registered


def test_ci_runs_the_whole_suite():
    assert re.search(r"^make test\s*$", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
