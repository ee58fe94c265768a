"""deep.quantize: int8 files that are really quantised, close to fp32, calibrated on training
images only, cached by the fp32 file and the settings, and clear refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from data.layouts import ReidDataset, load_dataset
from deep import export, quantize
from deep.export import EngineNotInstalled, load_engine
from deep.quantize import QuantizeError, QuantizeSettings, quantize_run
from tests.builders import TINY_SIZE as SIZE
from tests.builders import bench_module, make_run, write_image

#: Cosine similarity every int8 embedding keeps with its fp32 one on the calibration inputs.
MIN_COSINE = 0.98
#: Few images, so the tests stay fast (the default calibrates on 300).
SETTINGS = QuantizeSettings(num_images=16)


def write_market(root: Path, train: int = 24) -> Path:
    """A Market-1501-named set: ``train`` training images, 4 queries, 8 gallery images."""
    rng = np.random.default_rng(0)
    for folder, n in (("bounding_box_train", train), ("query", 4), ("bounding_box_test", 8)):
        for i in range(n):
            name = f"{i % 4 + 1:04d}_c{i % 2 + 1 + (folder == 'query')}s1_{i:06d}_01.jpg"
            write_image(root / folder / name, rng, (128, 64))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("q") / "market")


@pytest.fixture(scope="module")
def dataset(data_root) -> ReidDataset:
    return load_dataset("market1501", str(data_root))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", data_root)


@pytest.fixture(scope="module")
def quantized(run, dataset):
    """Both int8 files of the tiny run, quantised once for the module."""
    engines = export.INT8_ENGINES
    return {e: quantize_run(run, e, dataset=dataset, settings=SETTINGS) for e in engines}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("engine", export.INT8_ENGINES)
def test_int8_engine_is_close_to_fp32_on_the_calibration_inputs(run, dataset, quantized, engine):
    result = quantized[engine]
    assert not result.reused and result.path.parent == run
    assert result.record["calibration"]["num_images"] == 16
    records = quantize.calibration_records(dataset, 16, 0)
    inputs = np.concatenate(quantize.calibration_inputs(records, SIZE))
    fp32 = load_engine(run / "model.onnx", export.INT8_BASE[engine], threads=1)(inputs)
    int8_engine = load_engine(result.path, engine, threads=1, input_size=SIZE)
    assert int8_engine.options["precision"] == "int8" and int8_engine.name == engine
    int8 = int8_engine(inputs)
    assert int8.shape == fp32.shape
    assert _cosines(int8, fp32).min() > MIN_COSINE
    assert not np.array_equal(int8, fp32)  # the int8 model computes something else exactly
    # decoded uint8 images go through the same preprocessing as on the fp32 engines
    images = np.random.default_rng(1).integers(0, 256, (2, 128, 64, 3), dtype=np.uint8)
    assert int8_engine(images).shape == (2, fp32.shape[1])


def test_int8_files_really_are_quantised(run, quantized):
    ops = quantize.int8_operations(quantized["onnxruntime-int8"].path)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert ops["int8_initializers"] > 0  # the weights themselves are int8
    fp32 = quantize.int8_operations(run / "model.onnx")  # the counter is not always positive
    assert fp32 == {"QuantizeLinear": 0, "DequantizeLinear": 0, "int8_initializers": 0}
    ov = quantize.int8_operations(quantized["openvino-int8"].path)
    assert ov["FakeQuantize"] > 0 and ov["int8_constants"] > 0
    assert quantized["openvino-int8"].path.with_suffix(".bin").is_file()
    assert quantized["onnxruntime-int8"].record["operations"] == ops


def test_settings_reach_the_quantiser(run, tmp_path):
    """Per-tensor weights have one scale per conv; excluding first/last convs removes their QDQ."""
    import onnx
    from onnx import numpy_helper

    inputs = [np.random.default_rng(i).standard_normal((1, 3, *SIZE), np.float32) for i in range(4)]
    counts, scales = {}, {}
    for label, settings in {
        "default": QuantizeSettings(),
        "per_tensor": QuantizeSettings(per_channel=False),
        "excluded": QuantizeSettings(exclude_first_last=True),
    }.items():
        out = tmp_path / f"{label}.onnx"
        quantize.quantize_onnxruntime(run / "model.onnx", out, inputs, settings)
        graph = onnx.load(str(out)).graph
        counts[label] = quantize.int8_operations(out)["DequantizeLinear"]
        init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        conv_weights = [n.input[1] for n in graph.node if n.op_type == "Conv"]
        dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
        scales[label] = max(init[dq[w].input[1]].size for w in conv_weights if w in dq)
    assert scales["default"] > 1 and scales["per_tensor"] == 1
    assert counts["excluded"] < counts["default"]


def test_calibration_uses_training_images_only(dataset, data_root):
    records = quantize.calibration_records(dataset, 10, seed=0)
    train = {r.path for r in dataset.train}
    assert len(records) == 10 and {r.path for r in records} <= train
    assert all(Path(r.path).parent.name == "bounding_box_train" for r in records)
    assert records == quantize.calibration_records(dataset, 10, seed=0)  # deterministic
    assert records != quantize.calibration_records(dataset, 10, seed=1)
    assert len(quantize.calibration_records(dataset, 1000)) == len(dataset.train)  # capped
    leaky = ReidDataset(
        "leaky", dataset.root, [*dataset.train, dataset.query[0]], dataset.query, dataset.gallery
    )
    with pytest.raises(QuantizeError, match="also query/gallery images"):
        quantize.calibration_records(leaky, 10)
    empty = ReidDataset("empty", dataset.root, [], dataset.query, dataset.gallery)
    with pytest.raises(QuantizeError, match="no training images"):
        quantize.calibration_records(empty, 10)
    with pytest.raises(QuantizeError, match="num_images must be >= 1"):
        quantize.calibration_records(dataset, 0)


def test_quantize_run_reuses_and_requantises(tmp_path, data_root, dataset):
    run = make_run(tmp_path / "run", data_root)
    engine = "onnxruntime-int8"
    first = quantize_run(run, engine, dataset=dataset, settings=SETTINGS)
    assert quantize_run(run, engine, dataset=dataset, settings=SETTINGS).reused
    other = QuantizeSettings(num_images=8)  # other settings: quantised again
    assert not quantize_run(run, engine, dataset=dataset, settings=other).reused
    first.path.write_bytes(first.path.read_bytes()[:100])  # corrupted: quantised again
    assert not quantize_run(run, engine, dataset=dataset, settings=other).reused
    make_run(run, data_root, seed=1)  # retrained: new fp32 file, new int8 file
    again = quantize_run(run, engine, dataset=dataset, settings=other)
    assert not again.reused and again.record["fp32_sha256"] == export.file_hash(run / "model.onnx")
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_foreign_file_is_never_overwritten(tmp_path, data_root, dataset):
    run = make_run(tmp_path / "run", data_root)
    foreign = run / "model.int8.xml"
    foreign.write_text("<mine/>")
    with pytest.raises(QuantizeError, match=r"model\.int8\.xml exists but was not written"):
        quantize_run(run, "openvino-int8", dataset=dataset, settings=SETTINGS)
    assert foreign.read_text() == "<mine/>"
    forced = quantize_run(run, "openvino-int8", dataset=dataset, settings=SETTINGS, force=True)
    assert not forced.reused and quantize.int8_operations(forced.path)["FakeQuantize"] > 0


def test_refusals_are_clear(run, dataset, tmp_path, monkeypatch):
    with pytest.raises(QuantizeError, match="'entropy' is ONNX Runtime's only"):
        quantize_run(run, "openvino-int8", settings=QuantizeSettings(method="entropy"))
    with pytest.raises(QuantizeError, match="unknown int8 engine 'openvino'"):
        quantize_run(run, "openvino", dataset=dataset)
    with pytest.raises(QuantizeError, match="unknown calibration method 'kl'"):
        quantize_run(run, "onnxruntime-int8", settings=QuantizeSettings(method="kl"))
    with pytest.raises(QuantizeError, match="unknown NNCF preset"):
        quantize_run(run, "openvino-int8", settings=QuantizeSettings(preset="fast"))
    with pytest.raises(FileNotFoundError, match=r"model\.int8\.onnx.*deep\.quantize"):
        load_engine(tmp_path / "model.int8.onnx", "onnxruntime-int8")
    monkeypatch.setitem(sys.modules, "nncf", None)  # import fails as if not installed
    with pytest.raises(EngineNotInstalled, match="pip install nncf"):
        quantize_run(run, "openvino-int8", dataset=dataset, settings=SETTINGS, force=True)
    assert "openvino-int8" not in export.available_engines(int8=True)
    assert "onnxruntime-int8" in export.available_engines(int8=True)
    assert "onnxruntime-int8" not in export.available_engines()  # fp32 ones by default


def test_cli(run, data_root, capsys):
    args = [str(run), "--engines", "onnxruntime-int8", "--num-images", "16"]
    assert quantize.main(args) == 0
    assert "onnxruntime-int8" in capsys.readouterr().out
    assert quantize.main([str(run.parent / "nothing")]) == 2
    assert "error: " in capsys.readouterr().err
    assert quantize.main([*args, "--engines", "openvino-int8", "--method", "entropy"]) == 2
    assert "'entropy' is ONNX Runtime's only" in capsys.readouterr().err


def test_measure_run_measures_the_int8_model_itself(tmp_path, data_root):
    from compare import measure
    from data.runs import RunsLayout

    run = make_run(tmp_path / "run", data_root)
    engines = ["torch", "onnxruntime", "onnxruntime-int8"]
    layout = RunsLayout(tmp_path / "runs")
    summary = measure.measure_run(
        run, layout=layout, num_timed_queries=2, table=False, engines=engines
    )
    entry = summary["engines"]["onnxruntime-int8"]
    assert entry["int8"]["path"] == "model.int8.onnx" and entry["int8"]["operations"]
    assert entry["timing"]["engine"] == "onnxruntime-int8"
    assert entry["vs_torch"]["max_abs_diff"] > 1e-4  # its own embeddings, not fp32's
    record = json.loads((run / "model.int8.onnx.json").read_text())
    assert entry["int8"]["sha256"] == record["int8_sha256"]
    rows = measure.rows_from_summary(summary, run)
    assert [r.engine for r in rows] == engines
    assert json.loads(rows[-1].extra)["int8"]["per_channel"] is True


def test_engine_file_reuses_the_int8_file_without_the_dataset(tmp_path, data_root, dataset):
    run = make_run(tmp_path / "run", data_root)
    assert quantize.engine_file(run, "onnxruntime") == run / "model.onnx"
    first = quantize.engine_file(run, "onnxruntime-int8", dataset=dataset)
    assert first == run / "model.int8.onnx"
    stamp = first.stat().st_mtime_ns
    moved = ReidDataset("moved", dataset.root, [], [], [])  # would refuse to calibrate
    assert quantize.engine_file(run, "onnxruntime-int8", dataset=moved) == first
    assert first.stat().st_mtime_ns == stamp


def test_the_benchmark_writes_its_table(tmp_path):
    bench = bench_module("bench_quantize.py")
    out = tmp_path / "quantize.md"
    args = ["--models", "mobilenet_v1_0.25", "--sizes", "64x32", "--num-images", "4"]
    assert bench.main([*args, "--repeats", "1", "--target-seconds", "0.01", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    rows = [line for line in lines if line.startswith("| mobilenet_v1_0.25 | 64x32 |")]
    assert [r.split(" | ")[2] for r in rows] == ["onnxruntime-int8", "openvino-int8"]
