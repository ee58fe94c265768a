"""One CNN run folder and the one rule for "is this run finished and current?".

:class:`RunFolder` owns the files a run folder holds: ``model.pt`` (the finished weights),
``checkpoint.pt`` (a run under way), ``teacher.json`` (which teacher a distilled run learned
from) and ``summary.json`` (what ``compare.measure`` measured). It reads each at most once (a
file written through the object replaces its cached copy) and answers
:meth:`RunFolder.is_current` with one rule, used by training, distillation, pretraining and
measurement alike:

    the folder holds a ``model.pt`` of ``config``'s architecture and recipe (the runtime
    settings of :data:`RUNTIME_FIELDS` and the teacher's path aside), started from the backbone
    ``backbone`` names (when given), and learned from the teacher whose weights have the
    fingerprint ``teacher`` (when given; the path of a teacher may move, its weights may not).
"""

from __future__ import annotations

import json
from pathlib import Path

from data.io import atomic_write_text
from deep.checkpoint import CheckpointError, load_checkpoint, weights_hash
from deep.config import TrainConfig
from deep.pretrained import PretrainedWeightsError, read_metadata

#: Config fields that change how a run is computed, not what it computes; ``out``: where it is.
RUNTIME_FIELDS = ("threads", "device", "checkpoint_every", "stop_after_steps", "out")
#: Ignored by the rule too: a teacher is identified by its weights' fingerprint, not its path.
IDENTITY_FREE_FIELDS = (*RUNTIME_FIELDS, "teacher")


def shipped_backbone(config: TrainConfig) -> str | None:
    """The sha256 of the shipped backbone a run of ``config`` starts from, or None when it
    starts from something else (scratch, ``--weights``, torchvision's file) or none is shipped
    (training it would stop with the clear error; there is nothing to compare)."""
    if config.init != "pretrained" or config.weights or config.pretrained:
        return None
    try:
        return read_metadata(config.model)["sha256"]
    except PretrainedWeightsError:
        return None


class RunFolder:
    """The files of one CNN run folder, each read at most once (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._state: dict | None = None
        self._weights: str | None = None
        self._summary: dict | None = None
        self._summary_read = False

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def teacher_record_path(self) -> Path:
        return self.path / "teacher.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def model_state(self, expected_model: str | None = None) -> dict:
        """``model.pt``, loaded once (CheckpointError when absent, unreadable or of another
        architecture than ``expected_model``)."""
        if self._state is None:
            self._state = load_checkpoint(self.model_path)
        if expected_model is not None and self._state["model_name"] != expected_model:
            raise CheckpointError(
                f"checkpoint {self.model_path} holds a {self._state['model_name']!r} model but "
                f"{expected_model!r} was requested"
            )
        return self._state

    def weights_sha256(self) -> str:
        """:func:`deep.checkpoint.weights_hash` of ``model.pt``'s weights, computed once."""
        if self._weights is None:
            self._weights = weights_hash(self.model_state()["model"])
        return self._weights

    def teacher_fingerprint(self) -> str | None:
        """The recorded fingerprint of the teacher the run learned from (None: no record)."""
        try:
            return json.loads(self.teacher_record_path.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            return None

    def record_teacher(self, teacher_dir: str, fingerprint: str) -> None:
        """Written once the run is complete: an interrupted run is never taken for finished."""
        record = {"teacher": str(teacher_dir), "fingerprint": fingerprint}
        atomic_write_text(self.teacher_record_path, json.dumps(record))

    def summary(self) -> dict | None:
        """``summary.json`` as written by ``compare.measure`` (None: absent or unreadable)."""
        if not self._summary_read:
            try:
                value = json.loads(self.summary_path.read_text())
            except (OSError, ValueError):
                value = None
            self._summary = value if isinstance(value, dict) else None
            self._summary_read = True
        return self._summary

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, default=str))
        self._summary, self._summary_read = json.loads(json.dumps(summary, default=str)), True

    def current_summary(self) -> dict | None:
        """The summary when it was measured on the weights in ``model.pt`` now (a retrained
        run's old summary does not count)."""
        summary = self.summary()
        try:
            current = summary is not None and summary.get("weights_sha256") == self.weights_sha256()
        except CheckpointError:
            return None
        return summary if current else None

    def holds_recipe(self, config: TrainConfig) -> bool:
        """Whether ``model.pt`` holds ``config``'s architecture and recipe (the first half of
        the rule; CheckpointError when it is unreadable)."""
        state = self.model_state(expected_model=config.model)
        return config.same_recipe(state["config"], ignore=IDENTITY_FREE_FIELDS)

    def is_current(
        self, config: TrainConfig, teacher: str | None = None, backbone: str | None = None
    ) -> bool:
        """The rule of the module docstring; any unreadable file means "not current"."""
        if not self.has_model():
            return False
        try:
            if not self.holds_recipe(config):
                return False
            init = self.model_state().get("init", {})
        except (CheckpointError, KeyError, ValueError):
            return False
        if backbone is not None and init.get("sha256") != backbone:
            return False
        return teacher is None or self.teacher_fingerprint() == teacher
