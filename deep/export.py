"""Export a trained model to ONNX and run its embedding on a chosen CPU inference engine.

``python -m deep.export RUN_DIR [--format onnx] [--out PATH] [--force]`` writes
``RUN_DIR/model.onnx``: the test-time embedding (``ReIDNet.extract``: backbone + global average
pooling, no classifier) with a dynamic batch axis, input ``images`` (n, 3, H, W) normalised
float32 at the run's input size, output ``embedding`` (n, dim). It uses torch's TorchScript-based
exporter at opset 17 (the dynamo exporter failed on ResNet-50 at 256x128 in its opset
converter), then checks that ONNX Runtime's output equals PyTorch's within ``1e-4`` (absolute) on
random inputs of batch sizes 1 and 3; otherwise a clear error, and nothing is written. A sidecar
``model.onnx.json`` records the hash of the weights it was exported from and of the file itself,
so :func:`export_run` reuses an export while both match and re-exports otherwise.

Engines (:data:`ENGINES`), loaded with :func:`load_engine`:

* ``torch``: the PyTorch model, eager, under ``torch.inference_mode``; its threads are torch's
  (:func:`compare.timing.thread_limit` sets them while timing);
* ``onnxruntime``: an ``InferenceSession`` on the ONNX file, CPU provider, ``intra_op_num_threads
  = threads``, ``inter_op_num_threads = 1``, sequential execution, ``ORT_ENABLE_ALL`` graph
  optimisations;
* ``openvino``: the ONNX file compiled for the ``CPU`` device with ``INFERENCE_NUM_THREADS =
  threads``, ``PERFORMANCE_HINT = LATENCY``, ``NUM_STREAMS = 1`` and ``INFERENCE_PRECISION_HINT
  = f32`` (OpenVINO would otherwise run in bfloat16 on CPUs that support it, which changes the
  embeddings).

Every engine takes the same input (:meth:`Engine.__call__`): decoded uint8 images are resized and
normalised by the same code (:func:`deep.loader.normalise`) whatever the engine, so only the
network's execution differs. :attr:`Engine.options` is the dict of settings recorded with every
timing.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from data.cli import CommandFailed, entry_point, positive_float
from data.images import resize
from data.io import atomic_path, atomic_write_text, remove_orphan_temporaries
from data.ownership import NotOurFolderError, check_output_file
from deep.checkpoint import (
    file_sha256,
    load_checkpoint,
    model_from_state,
    weights_hash,
)
from deep.loader import normalise
from deep.models import ReIDNet

#: Float32 inference engines, in the order they are timed and reported.
ENGINES = ("torch", "onnxruntime", "openvino")
#: Int8 engines (deep.quantize): each runs its quantised file on the runtime of :data:`INT8_BASE`.
INT8_ENGINES = ("onnxruntime-int8", "openvino-int8")
INT8_BASE = {"onnxruntime-int8": "onnxruntime", "openvino-int8": "openvino"}
ALL_ENGINES = ENGINES + INT8_ENGINES
#: The pip package that provides each engine's Python module.
ENGINE_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
#: Python modules each engine needs (the int8 ones also their quantiser), by pip package.
ENGINE_MODULES = {
    "onnxruntime": {"onnxruntime": "onnxruntime"},
    "openvino": {"openvino": "openvino"},
    "onnxruntime-int8": {"onnxruntime": "onnxruntime", "onnxruntime.quantization": "onnxruntime"},
    "openvino-int8": {"openvino": "openvino", "nncf": "nncf"},
}
#: Lowest ONNX opset accepted (the one the exporter is tested with).
MIN_OPSET = 17
#: Highest opset this torch's exporter writes (its own constant; only MIN_OPSET if it moved).
MAX_OPSET = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", MIN_OPSET)
#: Largest absolute difference between ONNX Runtime's and PyTorch's embedding accepted on export.
EXPORT_ATOL = 1e-4
ONNX_NAME = "model.onnx"
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"


class EngineNotInstalled(CommandFailed, ImportError):
    """An inference engine's Python package is not installed."""


class ExportError(ValueError):
    """An exported model is corrupt, or its output differs from PyTorch's."""


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------
def import_engine_module(engine: str, module: str):
    """``module``, one that ``engine`` needs, or :class:`EngineNotInstalled` naming its package."""
    if engine not in ENGINE_MODULES or module not in ENGINE_MODULES[engine]:
        raise ValueError(f"unknown engine {engine!r}; known engines: {list(ALL_ENGINES)}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = ENGINE_MODULES[engine][module]
        raise EngineNotInstalled(
            f"inference engine {engine!r} is not installed ({err}); install it with "
            f"`pip install {package}` (a dependency of this project: `pip install -e .`)"
        ) from err


def _import_engine(engine: str):
    """The runtime module of ``engine`` (its quantiser too for the int8 ones), or
    :class:`EngineNotInstalled` naming the pip package."""
    if engine not in ENGINE_MODULES:
        raise ValueError(f"unknown engine {engine!r}; known engines: {list(ALL_ENGINES)}")
    modules = [import_engine_module(engine, m) for m in ENGINE_MODULES[engine]]
    return modules[0]


def available_engines(*, int8: bool = False) -> list[str]:
    """The engines of :data:`ENGINES` (and :data:`INT8_ENGINES` with ``int8``) whose packages
    can be imported here (torch always)."""
    found = []
    for engine in ALL_ENGINES if int8 else ENGINES:
        if engine == "torch":
            found.append(engine)
            continue
        try:
            _import_engine(engine)
        except EngineNotInstalled:
            continue
        found.append(engine)
    return found


def check_engines(engines: Sequence[str]) -> list[str]:
    """Validate engine names (unknown: ValueError; not installed: :class:`EngineNotInstalled`)."""
    engines = list(dict.fromkeys(engines))
    unknown = [e for e in engines if e not in ALL_ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown}; known engines: {list(ALL_ENGINES)}")
    for engine in engines:
        if engine != "torch":
            _import_engine(engine)
    return engines


def engine_versions() -> dict[str, str | None]:
    """Installed version of each engine's package (None when not installed), without importing."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"torch": torch.__version__}
    for engine, package in {**ENGINE_PACKAGES, "nncf": "nncf"}.items():
        try:
            out[engine] = version(package)
        except PackageNotFoundError:
            out[engine] = None
    return out


def engine_options(engine: str, threads: int) -> dict:
    """The settings an engine runs with at ``threads`` threads (recorded with every timing)."""
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"thread count must be >= 1, got {threads}")
    if engine in INT8_BASE:  # the same runtime settings as its float32 twin, on the int8 file
        return {**engine_options(INT8_BASE[engine], threads), "precision": "int8"}
    if engine == "torch":
        return {"mode": "eager", "threads": threads, "inference_mode": True}
    if engine == "onnxruntime":
        return {
            "threads": threads,
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "providers": ["CPUExecutionProvider"],
        }
    if engine == "openvino":
        return {
            "threads": threads,
            "device": "CPU",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": "f32",
        }
    raise ValueError(f"unknown engine {engine!r}; known engines: {list(ALL_ENGINES)}")


@dataclass
class Engine:
    """A loaded inference engine: ``engine(batch) -> (n, dim) float32 embeddings``.

    Attributes
    ----------
    name : str
        One of :data:`ENGINES`.
    threads : int
        Threads it computes with (torch: the count :func:`compare.timing.thread_limit` sets).
    options : dict
        Its settings (:func:`engine_options`, plus what the runtime reports back).
    input_size : (int, int) or None
        (height, width) decoded uint8 images are resized to.
    source : str
        The ONNX file, or ``"<in-memory model>"`` for torch.
    """

    name: str
    threads: int
    options: dict
    input_size: tuple[int, int] | None
    source: str
    run: Callable[[Tensor], np.ndarray] = field(repr=False)

    def __call__(self, batch: np.ndarray | Tensor) -> np.ndarray:
        """Embeddings of ``batch``.

        ``batch`` is either decoded images, uint8 (H, W, 3) or (n, H, W, 3) at any size (resized
        to :attr:`input_size`) or (n, 3, H, W) already at it, or a normalised float (n, 3, H, W)
        array or tensor (:func:`deep.loader.preprocess_image`'s output).
        """
        return self.run(to_input(batch, self.input_size))


def to_input(batch: np.ndarray | Tensor, input_size: tuple[int, int] | None) -> Tensor:
    """The network input (n, 3, H, W) float32 of ``batch``: one preprocessing for all engines.

    Decoded images go through :func:`data.images.resize` and :func:`deep.loader.normalise`, as in
    training and :func:`deep.loader.preprocess_image`.
    """
    if isinstance(batch, np.ndarray):
        if batch.dtype == np.uint8 and batch.ndim in (3, 4) and batch.shape[-1] == 3:
            images = batch[None] if batch.ndim == 3 else batch
            if input_size is not None:
                images = np.stack([resize(im, input_size) for im in images])
            batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        else:
            batch = torch.from_numpy(batch)
    if not isinstance(batch, Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = tuple(getattr(batch, "shape", ()))
        raise ValueError(
            "an engine takes uint8 images (H, W, 3) / (n, H, W, 3) or a normalised float batch "
            f"(n, 3, H, W), got shape {shape}"
        )
    if batch.dtype == torch.uint8:
        batch = normalise(batch)
    return batch.float()


def load_engine(
    source: ReIDNet | Path | str,
    engine: str = "torch",
    *,
    threads: int = 1,
    input_size: tuple[int, int] | None = None,
) -> Engine:
    """Load ``source`` on ``engine``.

    Parameters
    ----------
    source : ReIDNet or path
        The torch model (engine ``torch``; it is put in eval mode) or an exported ONNX file
        (``onnxruntime``, ``openvino``).
    engine : str
        One of :data:`ENGINES`.
    threads : int
        Threads the engine computes with; for torch, the count in force when it is called (the
        timing harness sets it), recorded here.
    input_size : (height, width), optional
        Size decoded uint8 images are resized to.

    Raises
    ------
    EngineNotInstalled
        The engine's package is missing (the message names it).
    FileNotFoundError, ExportError
        The ONNX file is missing or cannot be read (the message names it).
    """
    options = engine_options(engine, threads)
    size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
    if engine == "torch":
        if not isinstance(source, nn.Module):
            raise TypeError(
                f"engine 'torch' runs a model, got {type(source).__name__}; the ONNX file runs "
                f"on {[e for e in ENGINES if e != 'torch']}"
            )
        model = source.eval()

        def run_torch(x: Tensor) -> np.ndarray:
            with torch.inference_mode():
                return model.extract(x).float().numpy()

        return Engine("torch", int(threads), options, size, "<in-memory model>", run_torch)
    if isinstance(source, nn.Module):
        raise TypeError(
            f"engine {engine!r} runs an exported ONNX file, not a torch model: export it first "
            "(deep.export.export_run or python -m deep.export RUN_DIR)"
        )
    module = _import_engine(INT8_BASE.get(engine, engine))  # before the file: clearer error first
    path = Path(source)
    if not path.is_file():
        how = "python -m deep.quantize" if engine in INT8_BASE else "python -m deep.export"
        raise FileNotFoundError(f"model file not found: {path} (write it with {how} RUN_DIR)")
    runtime = INT8_BASE.get(engine, engine)
    loader = _onnxruntime_session if runtime == "onnxruntime" else _openvino_model
    run, reported = loader(module, path, options)
    return Engine(engine, int(threads), {**options, **reported}, size, str(path), run)


def _corrupt(path: Path, engine: str, err: Exception) -> ExportError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ExportError(
        f"{path} cannot be loaded by {engine} ({first}): the file is corrupt or not an ONNX "
        "model; re-export it with python -m deep.export RUN_DIR --force"
    )


def _onnxruntime_session(ort, path: Path, options: dict):
    so = ort.SessionOptions()
    so.intra_op_num_threads = options["intra_op_num_threads"]
    so.inter_op_num_threads = options["inter_op_num_threads"]
    so.execution_mode = getattr(ort.ExecutionMode, options["execution_mode"])
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, options["graph_optimization_level"]
    )
    so.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), so, providers=options["providers"])
    except Exception as err:  # onnxruntime raises its own types for unreadable files
        raise _corrupt(path, "onnxruntime", err) from err
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x.numpy())})[0]

    return run, {"onnxruntime": ort.__version__}


def _openvino_model(ov, path: Path, options: dict):
    keys = ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_PRECISION_HINT")
    config = {k: options[k] for k in keys}
    try:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(path)), options["device"], config)
    except Exception as err:  # OpenVINO raises RuntimeError subclasses for unreadable files
        raise _corrupt(path, "openvino", err) from err
    request = compiled.create_infer_request()
    reported = {"openvino": ov.__version__}
    for key in config:  # what the plugin actually uses (e.g. the precision it settled on)
        try:
            value = str(compiled.get_property(key))
        except Exception:  # pragma: no cover - a property this version does not report
            continue
        match = re.fullmatch(r"<Type: '(.*)'>", value)  # element types print as <Type: 'f32'>
        reported[f"reported_{key}"] = match.group(1) if match else value

    def run(x: Tensor) -> np.ndarray:
        batch = np.ascontiguousarray(x.numpy())
        return request.infer({0: batch}, share_inputs=True, share_outputs=False)[0]

    return run, reported


def engine_embeddings(engine: Engine, images: Tensor, *, batch_size: int = 128) -> np.ndarray:
    """Embeddings (n, dim) float32 of uint8 images (n, 3, H, W) already at the input size."""
    if len(images) == 0:
        raise ValueError("no images to embed")
    out = [engine(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
class _Embedding(nn.Module):
    """``model.extract`` as a module's forward, for the exporter."""

    def __init__(self, model: ReIDNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.extract(x)


def file_hash(path: Path | str) -> str:
    """SHA-256 (16 hex digits) of a file's bytes."""
    return file_sha256(path)[:16]


def export_onnx(
    model: ReIDNet,
    path: Path | str,
    input_size: tuple[int, int],
    *,
    opset: int = MIN_OPSET,
    atol: float = EXPORT_ATOL,
    check: bool = True,
) -> float | None:
    """Write ``model``'s embedding to ``path`` as ONNX, checked against PyTorch; atomic.

    The model itself is left untouched (a copy in eval mode is exported). Returns the largest
    absolute difference between ONNX Runtime's and PyTorch's embeddings (None with
    ``check=False``).

    Raises
    ------
    ExportError
        The difference exceeds ``atol`` (nothing is written).
    EngineNotInstalled
        The check needs onnxruntime.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be >= {MIN_OPSET} and <= {MAX_OPSET} (this torch's highest), got {opset}"
        )
    path = Path(path)  # its folder is created by atomic_path (an OutputError if it cannot be)
    wrapper = _Embedding(copy.deepcopy(model)).eval()
    example = torch.zeros(2, 3, *input_size)
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                wrapper,
                (example,),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        diff = check_onnx(wrapper.model, tmp, input_size, atol=atol) if check else None
    return diff


def check_onnx(
    model: ReIDNet,
    path: Path | str,
    input_size: tuple[int, int],
    *,
    atol: float = EXPORT_ATOL,
    batch_sizes: Sequence[int] = (1, 3),
    seed: int = 0,
) -> float:
    """Largest |ONNX Runtime - PyTorch| over random inputs; :class:`ExportError` above ``atol``.

    The inputs are standard-normal (about the range of normalised images), one batch per size
    in ``batch_sizes`` (sizes other than the export's 2 exercise the dynamic batch axis).
    """
    engine = load_engine(path, "onnxruntime", threads=1, input_size=input_size)
    reference = load_engine(model, "torch", input_size=input_size)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, *input_size, generator=generator)
        ours, theirs = reference(x), engine(x)
        if ours.shape != theirs.shape:
            raise ExportError(
                f"{path}: ONNX Runtime returns shape {theirs.shape} for a batch of {n}, PyTorch "
                f"{ours.shape}"
            )
        worst = max(worst, float(np.abs(ours - theirs).max()))
    if not worst <= atol:
        raise ExportError(
            f"{path}: ONNX Runtime's embedding differs from PyTorch's by up to {worst:.3g} "
            f"(tolerance {atol:g}) on random inputs; the export is not faithful"
        )
    return worst


@dataclass(frozen=True)
class ExportResult:
    """An export of a run: where, whether an earlier one was reused, and its record."""

    path: Path
    reused: bool
    record: dict


def export_run(
    run_dir: Path | str,
    *,
    state: dict | None = None,
    out: Path | str | None = None,
    opset: int = MIN_OPSET,
    atol: float = EXPORT_ATOL,
    force: bool = False,
) -> ExportResult:
    """Export ``run_dir/model.pt`` to ``run_dir/model.onnx`` (or ``out``), reusing a valid one.

    An existing export is reused when its sidecar (``<file>.json``) records the same weights
    hash, input size and opset and the file's own hash still matches (so a truncated or
    overwritten file is exported again). ``state`` is the already loaded ``model.pt``.
    An ``out`` file that exists without this exporter's sidecar is refused unless ``force``
    (never the run's own ``model.pt``); a killed export's temporaries are removed first.
    """
    run_dir = Path(run_dir)
    path = Path(out) if out is not None else run_dir / ONNX_NAME
    sidecar = path.with_name(path.name + ".json")
    if out is not None:
        _check_out(run_dir, path, force)
    if state is None:
        state = load_checkpoint(run_dir / "model.pt")
    remove_orphan_temporaries(path.parent, (path.name, sidecar.name))
    size = tuple(int(v) for v in state["config"]["input_size"])
    wanted = {
        "weights_sha256": weights_hash(state["model"]),
        "input_size": list(size),
        "opset": int(opset),
        "model": state["model_name"],
    }
    if not force and path.is_file() and sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text())
            same = all(record.get(k) == v for k, v in wanted.items())
            if same and record.get("onnx_sha256") == file_hash(path):
                return ExportResult(path, True, record)
        except (OSError, ValueError):
            pass  # an unreadable record: export again
    model = model_from_state(state)
    diff = export_onnx(model, path, size, opset=opset, atol=atol)
    versions = engine_versions()
    record = {
        **wanted,
        "onnx_sha256": file_hash(path),
        "run_dir": str(run_dir),
        "exporter": "torch.onnx.export (TorchScript-based, dynamo=False)",
        "torch": torch.__version__,
        "onnxruntime": versions["onnxruntime"],
        "check": {"max_abs_diff": diff, "atol": atol, "batch_sizes": [1, 3], "inputs": "randn"},
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2))
    return ExportResult(path, False, record)


def _check_out(run_dir: Path, path: Path, force: bool) -> None:
    """``--out`` replaces only an export of ours (a file with its sidecar), or any with force."""
    inputs = {run_dir / "model.pt", run_dir / "checkpoint.pt"}
    if any(path.exists() and p.exists() and path.samefile(p) for p in inputs):
        raise NotOurFolderError(f"refusing to write the export over its own input {path}")
    sidecar = path.with_name(path.name + ".json")
    check_output_file(sidecar, lambda p: _export_record(p) is not None, force)
    check_output_file(
        path, lambda p: (_export_record(sidecar) or {}).get("onnx_sha256") == file_hash(p), force
    )


def _export_record(sidecar: Path) -> dict | None:
    """This exporter's record in ``sidecar`` (a JSON object with ``onnx_sha256``), else None."""
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "onnx_sha256" in record else None


def _opset(text: str) -> int:
    """argparse type of ``--opset``: an opset this torch exports and the check accepts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(f"must be in {MIN_OPSET}..{MAX_OPSET}, got {value}")
    return value


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``python -m deep.export RUN_DIR...``: export trained runs (checked against PyTorch)."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders holding model.pt")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (one run; default RUN_DIR/model.onnx); an existing file is replaced "
        "only if it is an earlier export (its .json record matches) or with --force",
    )
    parser.add_argument(
        "--opset",
        type=_opset,
        default=MIN_OPSET,
        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {MIN_OPSET})",
    )
    parser.add_argument(
        "--atol",
        type=positive_float,
        default=EXPORT_ATOL,
        help=f"largest |ONNX Runtime - PyTorch| accepted (default {EXPORT_ATOL:g})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="export even if a valid one exists; let --out replace a file it did not write",
    )
    args = parser.parse_args(argv)
    if args.out is not None and len(args.run_dirs) > 1:
        parser.error("--out takes one run folder")
    for run_dir in args.run_dirs:
        result = export_run(
            run_dir, out=args.out, opset=args.opset, atol=args.atol, force=args.force
        )
        diff = result.record.get("check", {}).get("max_abs_diff")
        how = "reused (weights unchanged)" if result.reused else "exported"
        checked = "" if diff is None else f"; ONNX Runtime vs PyTorch max |diff| {diff:.2g}"
        print(f"{how}: {result.path}{checked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
