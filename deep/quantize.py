"""Post-training static int8 quantisation of an exported CNN, calibrated on training images.

``python -m deep.quantize RUN_DIR... [--engines ...] [--num-images 300] [--method minmax]``
writes, next to the run's fp32 ``model.onnx`` (:func:`deep.export.export_run`):

* ``model.int8.onnx`` for engine ``onnxruntime-int8``: ONNX Runtime's ``quantize_static`` in the
  QDQ format (QuantizeLinear/DequantizeLinear pairs around every Conv, which ONNX Runtime fuses
  into integer kernels), uint8 activations and int8 weights, per output channel by default, after
  its ``quant_pre_process`` (shape inference and graph clean-up);
* ``model.int8.xml`` + ``.bin`` for engine ``openvino-int8``: NNCF's ``quantize`` on the OpenVINO
  model read from the same ONNX file (FakeQuantize operations, int8 weights; the CPU plugin runs
  them as int8 kernels).

Calibration (:func:`calibration_records`) uses a few hundred images drawn, with a fixed seed,
from the dataset's *training* split only (never query or gallery: a dataset whose training files
are also test files is refused), preprocessed exactly as at test time (resize to the run's input
size, ImageNet normalisation; :func:`deep.loader.load_records`, :func:`deep.loader.normalise`).
Each int8 file has a sidecar ``<file>.json`` recording the fp32 file's hash, the settings
(:class:`QuantizeSettings`), the calibration images' hash and the calibration costs; it is reused
while all of them match and re-quantised otherwise. Files are written atomically and a file this
module did not write (no sidecar) is never overwritten without ``force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data.cli import entry_point, non_negative_int, positive_int
from data.io import atomic_path, atomic_write_text
from data.layouts import Record, ReidDataset, load_dataset
from deep.checkpoint import load_checkpoint
from deep.export import (
    INT8_ENGINES,
    ExportResult,
    export_run,
    file_hash,
    import_engine_module,
)
from deep.loader import load_records, normalise

#: Calibration methods: ONNX Runtime's calibrators, and NNCF's activation range estimators.
METHODS = ("minmax", "entropy", "percentile")
#: NNCF presets: symmetric activations (performance) or asymmetric ones (mixed).
PRESETS = ("performance", "mixed")
INT8_NAMES = {"onnxruntime-int8": "model.int8.onnx", "openvino-int8": "model.int8.xml"}


class QuantizeError(ValueError):
    """Quantisation cannot run as asked (bad settings, no usable calibration images)."""


@dataclass(frozen=True)
class QuantizeSettings:
    """How a model is quantised; every field is part of the cache key of the int8 file.

    Attributes
    ----------
    num_images : int
        Training images calibrated on (all of them when the split has fewer).
    seed : int
        Which training images.
    per_channel : bool
        One weight scale per output channel (else one per tensor).
    method : str
        Activation ranges: ``minmax``, ``entropy`` (ONNX Runtime only) or ``percentile``
        (ONNX Runtime's 99.999th percentile, NNCF's mean quantile).
    exclude_first_last : bool
        Keep the first and the last convolution in float (the layers most sensitive to it).
    preset : str
        NNCF preset (``performance``: symmetric activations; ``mixed``: asymmetric).
    """

    num_images: int = 300
    seed: int = 0
    per_channel: bool = True
    method: str = "minmax"
    exclude_first_last: bool = False
    preset: str = "performance"

    def validate(self, engine: str) -> None:
        """:class:`QuantizeError` for settings ``engine`` cannot use."""
        if engine not in INT8_ENGINES:
            raise QuantizeError(f"unknown int8 engine {engine!r}; known: {list(INT8_ENGINES)}")
        if self.num_images < 1:
            raise QuantizeError(f"num_images must be >= 1, got {self.num_images}")
        if self.method not in METHODS:
            raise QuantizeError(f"unknown calibration method {self.method!r}; known: {METHODS}")
        if self.method == "entropy" and engine == "openvino-int8":
            raise QuantizeError(
                "calibration method 'entropy' is ONNX Runtime's only; NNCF (openvino-int8) takes "
                "'minmax' or 'percentile'"
            )
        if self.preset not in PRESETS:
            raise QuantizeError(f"unknown NNCF preset {self.preset!r}; known: {PRESETS}")

    def key(self, engine: str) -> dict:
        """The settings that change ``engine``'s int8 file (the preset is NNCF's only)."""
        out = asdict(self)
        if engine == "onnxruntime-int8":
            out.pop("preset")
        return out


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------
def calibration_records(dataset: ReidDataset, num_images: int, seed: int = 0) -> list[Record]:
    """``num_images`` training records drawn without replacement with ``seed`` (sorted order).

    Only ``dataset.train`` is drawn from; a training file that is also a query or gallery file
    is refused, so test images can never leak into calibration.
    """
    if num_images < 1:
        raise QuantizeError(f"num_images must be >= 1, got {num_images}")
    if not dataset.train:
        raise QuantizeError(
            f"dataset {dataset.name!r} at {dataset.root} has no training images to calibrate on"
        )
    test_files = {os.path.realpath(r.path) for r in (*dataset.query, *dataset.gallery)}
    shared = [r.path for r in dataset.train if os.path.realpath(r.path) in test_files]
    if shared:
        raise QuantizeError(
            f"{len(shared)} training image(s) of {dataset.name!r} are also query/gallery images "
            f"(e.g. {shared[0]}); calibration must not see test images"
        )
    rng = np.random.default_rng(seed)
    n = min(num_images, len(dataset.train))
    chosen = np.sort(rng.choice(len(dataset.train), size=n, replace=False))
    return [dataset.train[i] for i in chosen]


def calibration_inputs(records: list[Record], size: tuple[int, int]) -> list[np.ndarray]:
    """The network inputs of ``records``: one normalised float32 (1, 3, H, W) array each."""
    batch = normalise(load_records(records, size)).numpy()
    return [np.ascontiguousarray(batch[i : i + 1]) for i in range(len(batch))]


def records_hash(records: list[Record]) -> str:
    """SHA-256 (16 hex digits) of the calibration files' names and sizes."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{os.path.basename(r.path)}|{os.path.getsize(r.path)}\n".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Quantisers
# ---------------------------------------------------------------------------------------------
def _onnx_convs(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]


def quantize_onnxruntime(
    fp32: Path | str, out: Path | str, inputs: list[np.ndarray], settings: QuantizeSettings
) -> None:
    """``quantize_static`` (QDQ, uint8 activations, int8 weights) of ``fp32`` into ``out``."""
    settings.validate("onnxruntime-int8")
    ort_quant = import_engine_module("onnxruntime-int8", "onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": ort_quant.CalibrationMethod.MinMax,
        "entropy": ort_quant.CalibrationMethod.Entropy,
        "percentile": ort_quant.CalibrationMethod.Percentile,
    }

    class Reader(ort_quant.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {"images": x}

    with tempfile.TemporaryDirectory(prefix="reid-quant-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        convs = _onnx_convs(prepared)
        excluded = [convs[0], convs[-1]] if settings.exclude_first_last and convs else []
        with atomic_path(Path(out), suffix=".onnx") as tmp:
            ort_quant.quantize_static(
                str(prepared),
                str(tmp),
                Reader(),
                quant_format=ort_quant.QuantFormat.QDQ,
                activation_type=ort_quant.QuantType.QUInt8,
                weight_type=ort_quant.QuantType.QInt8,
                per_channel=settings.per_channel,
                calibrate_method=methods[settings.method],
                nodes_to_exclude=excluded,
            )


def quantize_openvino(
    fp32: Path | str, out: Path | str, inputs: list[np.ndarray], settings: QuantizeSettings
) -> None:
    """NNCF ``quantize`` of the OpenVINO model of ``fp32``, saved as ``out`` (.xml) + .bin."""
    settings.validate("openvino-int8")
    ov = import_engine_module("openvino-int8", "openvino")
    nncf = import_engine_module("openvino-int8", "nncf")
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(fp32))
    convs = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    ]
    ignored = None
    if settings.exclude_first_last and convs:
        ignored = nncf.IgnoredScope(names=[convs[0], convs[-1]])
    estimator = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
    }[settings.method]
    advanced = AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(per_channel=settings.per_channel),
        activations_range_estimator_params=estimator,
    )
    quantized = nncf.quantize(
        model,
        nncf.Dataset(inputs),
        preset=nncf.QuantizationPreset(settings.preset),
        subset_size=len(inputs),
        ignored_scope=ignored,
        advanced_parameters=advanced,
    )
    out = Path(out)
    with (
        atomic_path(out, suffix=".xml") as xml,
        atomic_path(out.with_suffix(".bin"), suffix=".bin") as weights,
    ):
        # fp16 compression off: the float parts stay float32, like the fp32 engines
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), weights)  # bin renamed first, then the xml


def int8_operations(path: Path | str) -> dict[str, int]:
    """How many quantisation operations an int8 file holds (0 everywhere: not quantised).

    ONNX: QuantizeLinear / DequantizeLinear nodes and int8 initialisers; OpenVINO IR:
    FakeQuantize operations and int8 / uint8 constants.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        ops = Counter(n.op_type for n in graph.node)
        int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
        return {
            "QuantizeLinear": ops["QuantizeLinear"],
            "DequantizeLinear": ops["DequantizeLinear"],
            "int8_initializers": sum(t.data_type in int8 for t in graph.initializer),
        }
    ov = import_engine_module("openvino-int8", "openvino")
    model = ov.Core().read_model(str(path))
    ops = Counter(op.get_type_name() for op in model.get_ops())
    int8_constants = sum(
        op.get_type_name() == "Constant"
        and op.get_output_element_type(0).get_type_name() in ("i8", "u8")
        for op in model.get_ops()
    )
    return {"FakeQuantize": ops["FakeQuantize"], "int8_constants": int8_constants}


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizeResult:
    """An int8 file of a run: where, whether an earlier one was reused, and its record."""

    path: Path
    reused: bool
    record: dict


def int8_files(path: Path) -> list[Path]:
    """The files an int8 model consists of (the .bin beside an OpenVINO .xml)."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _files_hash(path: Path) -> str:
    return "+".join(file_hash(p) for p in int8_files(path))


def _reusable(path: Path, sidecar: Path, wanted: dict, force: bool) -> dict | None:
    """The sidecar record of a valid earlier int8 file, None to quantise (again)."""
    exists = [p for p in int8_files(path) if p.exists()]
    if not exists:
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("int8_sha256") is None:
        if force:
            return None
        raise QuantizeError(
            f"{exists[0]} exists but was not written by deep.quantize (no valid {sidecar.name}); "
            "move it away or pass force=True / --force to overwrite it"
        )
    if force or any(record.get(k) != v for k, v in wanted.items()):
        return None
    try:
        return record if record["int8_sha256"] == _files_hash(path) else None
    except OSError:
        return None


def quantize_run(
    run_dir: Path | str,
    engine: str,
    *,
    dataset: ReidDataset | None = None,
    settings: QuantizeSettings | None = None,
    state: dict | None = None,
    exported: ExportResult | None = None,
    out: Path | str | None = None,
    force: bool = False,
) -> QuantizeResult:
    """The int8 file of ``run_dir``'s exported model for ``engine`` (quantised or reused).

    ``dataset`` is the run's dataset (default: loaded from its config); calibration draws from
    its training split. ``state`` / ``exported`` are the already loaded ``model.pt`` and its
    export. ``out`` replaces ``RUN_DIR/model.int8.onnx`` / ``.xml``.
    """
    settings = settings or QuantizeSettings()
    settings.validate(engine)
    run_dir = Path(run_dir)
    if state is None:
        state = load_checkpoint(run_dir / "model.pt")
    cfg = state["config"]
    if exported is None:
        exported = export_run(run_dir, state=state)
    if dataset is None:
        dataset = load_dataset(cfg["dataset"], cfg["data_root"])
    size = (int(cfg["input_size"][0]), int(cfg["input_size"][1]))
    path = Path(out) if out is not None else run_dir / INT8_NAMES[engine]
    sidecar = path.with_name(path.name + ".json")
    start = time.perf_counter()
    records = calibration_records(dataset, settings.num_images, settings.seed)
    wanted = {
        "engine": engine,
        "fp32_sha256": file_hash(exported.path),
        "settings": settings.key(engine),
        "calibration_sha256": records_hash(records),
    }
    record = _reusable(path, sidecar, wanted, force)
    if record is not None:
        return QuantizeResult(path, True, record)
    inputs = calibration_inputs(records, size)
    loaded = time.perf_counter()
    quantizer = quantize_onnxruntime if engine == "onnxruntime-int8" else quantize_openvino
    quantizer(exported.path, path, inputs, settings)
    done = time.perf_counter()
    record = {
        **wanted,
        "int8_sha256": _files_hash(path),
        "fp32_path": exported.path.name,
        "calibration": {
            "split": "train",
            "dataset": dataset.name,
            "num_images": len(records),
            "input_size": list(size),
        },
        "seconds": {"load_images": loaded - start, "quantize": done - loaded},
        "operations": int8_operations(path),
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2))
    return QuantizeResult(path, False, record)


def engine_file(run_dir: Path | str, engine: str, *, dataset: ReidDataset | None = None) -> Path:
    """The file ``engine`` runs for ``run_dir``: its ONNX export, or for an int8 engine its
    int8 file with the default settings. An int8 file quantised from the current export is
    reused as it is (the dataset is not needed then); otherwise it is quantised on ``dataset``
    (default: the run's, from its config)."""
    exported = export_run(run_dir)
    if engine not in INT8_ENGINES:
        return exported.path
    path = Path(run_dir) / INT8_NAMES[engine]
    wanted = {
        "engine": engine,
        "fp32_sha256": file_hash(exported.path),
        "settings": QuantizeSettings().key(engine),
    }
    if _reusable(path, path.with_name(path.name + ".json"), wanted, False) is not None:
        return path
    return quantize_run(run_dir, engine, dataset=dataset, exported=exported).path


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m deep.quantize RUN_DIR...``: int8 files of trained runs, calibrated on training
    images."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders holding model.pt")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=INT8_ENGINES,
        default=list(INT8_ENGINES),
        help="int8 engines",
    )
    defaults = QuantizeSettings()
    parser.add_argument(
        "--num-images", type=positive_int, default=defaults.num_images, help="calibration images"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=defaults.seed, help="which training images"
    )
    parser.add_argument("--method", choices=METHODS, default=defaults.method, help="calibration")
    parser.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=defaults.per_channel,
        help="one weight scale per output channel",
    )
    parser.add_argument(
        "--exclude-first-last", action="store_true", help="keep the first and last conv in float"
    )
    parser.add_argument("--preset", choices=PRESETS, default=defaults.preset, help="NNCF preset")
    parser.add_argument("--data-root", default=None, help="where the runs' dataset is now")
    parser.add_argument("--force", action="store_true", help="quantise even if a valid one exists")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not (d / "model.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"no model.pt in {', '.join(missing)} (not a finished run)")
    settings = QuantizeSettings(
        args.num_images,
        args.seed,
        args.per_channel,
        args.method,
        args.exclude_first_last,
        args.preset,
    )
    for run_dir in args.run_dirs:
        state = load_checkpoint(run_dir / "model.pt")
        cfg = state["config"]
        dataset = load_dataset(cfg["dataset"], args.data_root or cfg["data_root"])
        for engine in args.engines:
            result = quantize_run(
                run_dir, engine, dataset=dataset, settings=settings, state=state, force=args.force
            )
            how = "reused" if result.reused else "quantised"
            print(f"{how} ({engine}): {result.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
