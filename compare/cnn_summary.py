"""The typed, versioned record of a measured CNN run: ``RUN_DIR/summary.json``.

:class:`CnnSummary` is written and read here only (``compare.measure`` writes it, the results
rows are built from it). The JSON keeps the layout every earlier version wrote (PyTorch's
numbers at the top level, every engine's under ``engines``) and adds ``schema``:

* schema 1 (no ``schema`` key): every summary written before this record existed; read as is.
  The oldest ones (before engines were recorded) hold PyTorch's numbers at the top level only.
* schema 2: adds ``schema`` and ``test_data`` (the fingerprint of the test split measured,
  :meth:`data.layouts.ReidDataset.test_fingerprint`). An engine measured with ``--rerank``
  also holds ``rerank`` (:func:`compare.reranking.rerank_embeddings`; optional, so readers of
  schema 2 that predate it simply ignore it).

A summary of a newer schema than :data:`SCHEMA` is refused with a one-line error naming the
file, never half-read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The schema this code writes.
SCHEMA = 2


class SummaryError(ValueError):
    """A summary.json that cannot be read as a :class:`CnnSummary`."""


@dataclass(frozen=True)
class EngineResult:
    """One engine's accuracy on the test split (fractions, not %) and its query timing."""

    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mAP_torchreid: float
    embedding_dim: int
    timing: dict[str, Any]  # compare.timing.QueryTiming.as_dict()
    cosine: dict[str, float] | None = None
    vs_torch: dict[str, Any] | None = None  # how this engine's results differ from PyTorch's
    onnx: dict[str, Any] | None = None  # the exported file the engine ran
    int8: dict[str, Any] | None = None  # the int8 file an int8 engine ran (deep.quantize)
    #: its k-reciprocal re-ranking (compare.reranking.rerank_embeddings), when measured
    rerank: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, entry: dict) -> EngineResult:
        return cls(
            rank1=float(entry["rank1"]),
            rank5=float(entry["rank5"]),
            rank10=float(entry["rank10"]),
            mAP=float(entry["mAP"]),
            mAP_torchreid=float(entry["mAP_torchreid"]),
            embedding_dim=int(entry["embedding_dim"]),
            timing=dict(entry["timing"]),
            cosine=entry.get("cosine"),
            vs_torch=entry.get("vs_torch"),
            onnx=entry.get("onnx"),
            int8=entry.get("int8"),
            rerank=entry.get("rerank"),
        )


@dataclass(frozen=True)
class CnnSummary:
    """What ``compare.measure`` measured of one run (see the module docstring)."""

    model: str
    variant: str
    seed: int
    dataset: str
    input_size: tuple[int, int]
    init: str
    params: int
    gflops: float
    embedding_dim: int
    engines: dict[str, EngineResult]
    config: dict[str, Any]  # the run's TrainConfig.as_dict()
    run_dir: str = ""
    weights_sha256: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # last epoch's loss, accuracy, seconds
    init_weights: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    test_data: str | None = None  # None: schema 1, measured on the run's own data
    engines_failed: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA

    @property
    def reference(self) -> EngineResult:
        """PyTorch's results, the reference every engine is compared with."""
        return self.engines["torch"]

    def to_json(self) -> dict[str, Any]:
        ref = self.reference
        out: dict[str, Any] = {
            "schema": SCHEMA,  # what this code writes, whatever it read
            "run_dir": self.run_dir,
            "model": self.model,
            "variant": self.variant,
            "seed": self.seed,
            "dataset": self.dataset,
            "input_size": list(self.input_size),
            "init": self.init,
            "rank1": ref.rank1,
            "rank5": ref.rank5,
            "rank10": ref.rank10,
            "mAP": ref.mAP,
            "mAP_torchreid": ref.mAP_torchreid,
            "cosine": ref.cosine,
            "params": self.params,
            "gflops": self.gflops,
            "embedding_dim": self.embedding_dim,
            "timing": ref.timing,
            "engines": {name: _engine_json(name, e) for name, e in self.engines.items()},
            "weights_sha256": self.weights_sha256,
            "machine": self.machine,
            "config": self.config,
            "training": self.training,
            "init_weights": self.init_weights,
            "device": self.device,
            "test_data": self.test_data,
        }
        if self.engines_failed:
            out["engines_failed"] = self.engines_failed
        return out

    @classmethod
    def from_json(cls, data: Any, source: Path | str = "summary.json") -> CnnSummary:
        """Read schema 1 or 2; anything else is a :class:`SummaryError` naming ``source``."""
        if not isinstance(data, dict):
            raise SummaryError(f"{source} is not a run summary (not a JSON object)")
        schema = data.get("schema", 1)
        if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
            raise SummaryError(
                f"{source} has summary schema {schema!r}; this version reads 1 to {SCHEMA} "
                "(written by a newer version? measure the run again with this one)"
            )
        try:
            return cls._parse(data, schema)
        except (KeyError, TypeError, ValueError) as err:
            raise SummaryError(f"{source} is not a complete run summary ({err!r})") from None

    @classmethod
    def _parse(cls, data: dict, schema: int) -> CnnSummary:
        cfg = data["config"]
        # summaries from before engines were recorded hold PyTorch's numbers at the top level
        engines = data.get("engines") or {"torch": data}
        size = data["input_size"]
        return cls(
            model=str(cfg["model"]),
            variant=str(cfg["variant"]),
            seed=int(cfg["seed"]),
            dataset=str(cfg["dataset"]),
            input_size=(int(size[0]), int(size[1])),
            init=str(cfg.get("init", "scratch")),
            params=int(data["params"]),
            gflops=float(data["gflops"]),
            embedding_dim=int(data["embedding_dim"]),
            engines={name: EngineResult.from_json(e) for name, e in engines.items()},
            config=cfg,
            run_dir=str(data.get("run_dir", "")),
            weights_sha256=data.get("weights_sha256"),
            machine=data.get("machine", {}),
            training=data.get("training", {}),
            init_weights=data.get("init_weights", {}),
            device=str(data.get("device", "cpu")),
            test_data=data.get("test_data"),
            engines_failed=data.get("engines_failed", {}),
            schema=schema,
        )


def _engine_json(name: str, e: EngineResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "engine": name,
        "rank1": e.rank1,
        "rank5": e.rank5,
        "rank10": e.rank10,
        "mAP": e.mAP,
        "mAP_torchreid": e.mAP_torchreid,
        "cosine": e.cosine,
        "embedding_dim": e.embedding_dim,
        "timing": e.timing,
    }
    for key in ("vs_torch", "onnx", "int8", "rerank"):
        if getattr(e, key) is not None:
            entry[key] = getattr(e, key)
    return entry
