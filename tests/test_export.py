"""deep.export and per-engine evaluation: faithful ONNX export, engine selection, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compare.timing import time_engine_queries
from deep import export
from deep.export import EngineNotInstalled, ExportError, load_engine
from tests.builders import (
    TINY_MODEL,
    TINY_SIZE,
    calibrated_model,
    make_run,
    write_tiny_market,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = calibrated_model()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    diff = export.export_onnx(model, path, TINY_SIZE)
    return model, path, diff


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_tiny_market(tmp_path_factory.mktemp("tiny") / "market")


def test_export_equals_pytorch_on_every_engine(exported):
    model, path, diff = exported
    assert diff is not None and diff <= 1e-4
    assert not model.training  # the exported copy, not the model, went through the exporter
    x = torch.randn(5, 3, *TINY_SIZE)  # a batch size the export was not traced with
    reference = load_engine(model, "torch", input_size=TINY_SIZE)(x)
    assert np.abs(reference).max() > 1e-3  # a meaningful comparison, not zeros against zeros
    for name in ("onnxruntime", "openvino"):
        engine = load_engine(path, name, threads=1, input_size=TINY_SIZE)
        out = engine(x)
        assert out.shape == reference.shape == (5, model.embedding_dim)
        np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)
    # decoded images go through the same preprocessing on every engine
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 64, 3), dtype=np.uint8)
    from deep.loader import preprocess_image

    expected = np.concatenate(
        [model.extract(preprocess_image(im, TINY_SIZE)).detach().numpy() for im in images]
    )
    ort = load_engine(path, "onnxruntime", threads=1, input_size=TINY_SIZE)
    np.testing.assert_allclose(ort(images), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ort(images[0]), expected[:1], atol=1e-4, rtol=0)


def test_export_leaves_the_model_untouched(tmp_path):
    model = calibrated_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export.export_onnx(model, tmp_path / "m.onnx", TINY_SIZE)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_engine_options_follow_the_thread_count(exported):
    _, path, _ = exported
    ort = load_engine(path, "onnxruntime", threads=2, input_size=TINY_SIZE)
    assert ort.options["intra_op_num_threads"] == 2 and ort.options["inter_op_num_threads"] == 1
    assert ort.options["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert ort.options["execution_mode"] == "ORT_SEQUENTIAL"
    ov = load_engine(path, "openvino", threads=1, input_size=TINY_SIZE)
    assert ov.options["INFERENCE_NUM_THREADS"] == 1
    assert ov.options["reported_INFERENCE_NUM_THREADS"] == "1"
    assert ov.options["reported_INFERENCE_PRECISION_HINT"] in ("f32", "float32")
    assert load_engine(calibrated_model(), "torch", threads=3).options["threads"] == 3


def test_timing_records_the_engine_and_refuses_other_thread_counts(exported):
    model, path, _ = exported
    images = [np.zeros((128, 64, 3), np.uint8)] * 2
    gallery = np.random.default_rng(0).normal(size=(10, model.embedding_dim)).astype(np.float32)

    def match(feature):
        return np.argsort(((gallery - feature) ** 2).sum(1))[:3]

    for name, source in (("torch", model), ("onnxruntime", path), ("openvino", path)):
        engine = load_engine(source, name, threads=1, input_size=TINY_SIZE)
        result = time_engine_queries(engine, match, images, num_queries=3, warmup=1, threads=1)
        assert result.engine == name and result.engine_options["threads"] == 1
        assert result.as_dict()["engine_options"] == engine.options and result.ms_extract > 0
    two = load_engine(path, "onnxruntime", threads=2, input_size=TINY_SIZE)
    with pytest.raises(ValueError, match=r"onnxruntime is set to 2 thread\(s\).*uses 1"):
        time_engine_queries(two, match, images, num_queries=1, threads=1)


def test_a_faithless_export_is_a_clear_error(exported, tmp_path, monkeypatch):
    _, path, _ = exported
    other = calibrated_model(seed=1)  # different weights: the file does not compute this model
    with pytest.raises(ExportError, match=r"differs from PyTorch's by up to .*tolerance 0\.0001"):
        export.check_onnx(other, path, TINY_SIZE)

    def failing_check(*args, **kwargs):
        raise ExportError("differs")

    monkeypatch.setattr(export, "check_onnx", failing_check)
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError):
        export.export_onnx(other, target, TINY_SIZE)
    assert not target.exists() and not list(target.parent.iterdir())  # nothing left behind
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export.export_onnx(other, target, TINY_SIZE, opset=13)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_missing_engine_is_a_clear_error(exported, monkeypatch, engine):
    _, path, _ = exported
    monkeypatch.setitem(sys.modules, engine, None)  # import fails as if not installed
    with pytest.raises(EngineNotInstalled, match=f"{engine}.*pip install {engine}"):
        load_engine(path, engine, threads=1)
    with pytest.raises(EngineNotInstalled, match=f"pip install {engine}"):
        export.check_engines(["torch", engine])
    assert engine not in export.available_engines() and "torch" in export.available_engines()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_corrupt_or_missing_file_is_a_clear_error(exported, tmp_path, engine):
    _, path, _ = exported
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ExportError, match=f"{bad.name} cannot be loaded by {engine}"):
            load_engine(bad, engine, threads=1)
    with pytest.raises(FileNotFoundError, match=r"nothing\.onnx"):
        load_engine(tmp_path / "nothing.onnx", engine, threads=1)


def test_engine_selection_errors(exported):
    model, path, _ = exported
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        load_engine(path, "tensorrt")
    with pytest.raises(ValueError, match="unknown engine"):
        export.check_engines(["torch", "tensorrt"])
    with pytest.raises(TypeError, match="export it first"):
        load_engine(model, "onnxruntime")
    with pytest.raises(TypeError, match="engine 'torch' runs a model"):
        load_engine(path, "torch")
    with pytest.raises(ValueError, match="thread count"):
        load_engine(path, "onnxruntime", threads=0)
    with pytest.raises(ValueError, match="got shape"):
        load_engine(model, "torch")(np.zeros((3, 3), np.float32))


def test_export_run_reuses_and_reexports(tmp_path, data_root, capsys):
    run = make_run(tmp_path / "run", data_root)
    first = export.export_run(run)
    assert not first.reused and first.path == run / "model.onnx"
    record = json.loads((run / "model.onnx.json").read_text())
    assert record["opset"] == 17 and record["input_size"] == list(TINY_SIZE)
    assert record["check"]["max_abs_diff"] <= 1e-4
    assert export.export_run(run).reused
    first.path.write_bytes(first.path.read_bytes()[:100])  # corrupted: exported again
    again = export.export_run(run)
    assert not again.reused and export.load_engine(again.path, "onnxruntime")
    make_run(run, data_root, seed=1)  # retrained: new weights, new export
    assert not export.export_run(run).reused
    assert export.main([str(run)]) == 0
    assert "reused (weights unchanged): " in capsys.readouterr().out
    assert export.main([str(run), "--force", "--format", "onnx"]) == 0
    assert "exported: " in capsys.readouterr().out
    assert export.main([str(tmp_path / "nothing")]) == 2
    assert str(tmp_path / "nothing" / "model.pt") in capsys.readouterr().err


def test_measure_run_writes_one_row_per_engine(tmp_path, data_root, monkeypatch):
    from compare import measure as deep_evaluate
    from compare.results import read_results
    from data.runs import RunsLayout

    layout = RunsLayout(tmp_path / "runs")
    table = layout.results_table("market1501")
    run = make_run(layout.cnn_run("market1501", TINY_MODEL, "baseline", 0), data_root)
    summary = deep_evaluate.measure_run(run, layout=layout, num_timed_queries=3)
    df = read_results(table)
    assert sorted(df.engine) == ["onnxruntime", "openvino", "torch"]
    assert set(df.init) == {"scratch"}  # a config without `init` is from scratch
    assert df.rank1.nunique() == 1 and df.mAP.nunique() == 1  # same accuracy on every engine
    assert summary["engines"]["torch"]["timing"] == summary["timing"]  # PyTorch at the top
    for engine in ("onnxruntime", "openvino"):
        extra = json.loads(df[df.engine == engine].extra.iloc[0])
        assert extra["engine_options"]["threads"] == 1
        assert extra["vs_torch"]["rank1_diff"] == 0.0 and extra["vs_torch"]["max_abs_diff"] < 1e-4
        assert extra["vs_torch"]["queries_with_other_top1"] == 0
    assert (run / "model.onnx").is_file()
    # the rows are rebuilt from the summary, as deep.distill does for a reused run
    rows = deep_evaluate.rows_from_summary(json.loads((run / "summary.json").read_text()), run)
    assert [r.engine for r in rows] == ["torch", "onnxruntime", "openvino"]

    pretrained = make_run(tmp_path / "elsewhere", data_root, init="pretrained")
    deep_evaluate.measure_run(
        pretrained, layout=layout, num_timed_queries=2, table=True, engines=["torch"]
    )
    new = read_results(table)
    assert len(new) == 4 and new[new.init == "pretrained"].engine.tolist() == ["torch"]


def test_measure_run_engine_choice(tmp_path, data_root, monkeypatch):
    from compare import measure as deep_evaluate
    from data.runs import RunsLayout

    run = make_run(tmp_path / "run", data_root)
    layout = RunsLayout(tmp_path / "runs")
    monkeypatch.setitem(sys.modules, "openvino", None)
    summary = deep_evaluate.measure_run(run, layout=layout, num_timed_queries=2, table=False)
    assert list(summary["engines"]) == ["torch", "onnxruntime"]  # what is installed
    with pytest.raises(EngineNotInstalled, match="pip install openvino"):
        deep_evaluate.measure_run(run, layout=layout, table=False, engines=["openvino"])
    # torch as the reference only: its earlier timing is kept
    again = deep_evaluate.measure_run(
        run, layout=layout, num_timed_queries=2, table=False, engines=["torch"]
    )
    assert again["engines"]["onnxruntime"] == summary["engines"]["onnxruntime"]
    later = deep_evaluate.measure_run(
        run, layout=layout, num_timed_queries=2, table=False, engines=["onnxruntime"]
    )
    assert later["timing"] == again["timing"]
    assert later["engines"]["onnxruntime"]["timing"]["num_queries"] == 2
