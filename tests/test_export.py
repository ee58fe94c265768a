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
from deep.checkpoint import save_checkpoint
from deep.export import EngineNotInstalled, ExportError, load_engine
from deep.models import build_model

SIZE = (64, 32)
NAME = "mobilenet_v1_0.25"


def _calibrated(seed: int = 0):
    """An untrained model whose BN statistics come from data, so activations are not ~0."""
    torch.manual_seed(seed)
    model = build_model(NAME, num_classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, *SIZE))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _calibrated()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    diff = export.export_onnx(model, path, SIZE)
    return model, path, diff


def write_tiny_market(root: Path) -> Path:
    """A Market-1501-named set with 4 queries and a 12-image gallery (ranks 1-10 defined)."""
    from tests.conftest import write_jpeg

    rng = np.random.default_rng(0)
    for folder, n in (("bounding_box_train", 6), ("query", 4), ("bounding_box_test", 12)):
        for i in range(n):
            name = f"{i % 3 + 1:04d}_c{i % 2 + 1 + (folder == 'query')}s1_{i:06d}_01.jpg"
            write_jpeg(root / folder / name, rng, (128, 64))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_tiny_market(tmp_path_factory.mktemp("tiny") / "market")


def make_run(run: Path, data_root: Path, *, seed: int = 0, **config) -> Path:
    """A finished run folder with a hand-made ``model.pt`` (no training needed)."""
    from deep.config import TrainConfig

    cfg = TrainConfig(
        model=NAME, dataset="market1501", data_root=str(data_root), input_size=SIZE
    ).as_dict()
    cfg.pop("init", None)  # as written before initialisations were recorded
    cfg.update(config)
    model = _calibrated(seed)
    state = {"model": model.state_dict(), "model_name": NAME, "num_classes": 3, "config": cfg}
    save_checkpoint(run / "model.pt", state)
    return run


def test_export_equals_pytorch_on_every_engine(exported):
    model, path, diff = exported
    assert diff is not None and diff <= 1e-4
    assert not model.training  # the exported copy, not the model, went through the exporter
    x = torch.randn(5, 3, *SIZE)  # a batch size the export was not traced with
    reference = load_engine(model, "torch", input_size=SIZE)(x)
    assert np.abs(reference).max() > 1e-3  # a meaningful comparison, not zeros against zeros
    for name in ("onnxruntime", "openvino"):
        engine = load_engine(path, name, threads=1, input_size=SIZE)
        out = engine(x)
        assert out.shape == reference.shape == (5, model.embedding_dim)
        np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)
    # decoded images go through the same preprocessing on every engine
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 64, 3), dtype=np.uint8)
    from deep.loader import preprocess_image

    expected = np.concatenate(
        [model.extract(preprocess_image(im, SIZE)).detach().numpy() for im in images]
    )
    ort = load_engine(path, "onnxruntime", threads=1, input_size=SIZE)
    np.testing.assert_allclose(ort(images), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ort(images[0]), expected[:1], atol=1e-4, rtol=0)


def test_export_leaves_the_model_untouched(tmp_path):
    model = _calibrated()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export.export_onnx(model, tmp_path / "m.onnx", SIZE)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_engine_options_follow_the_thread_count(exported):
    _, path, _ = exported
    ort = load_engine(path, "onnxruntime", threads=2, input_size=SIZE)
    assert ort.options["intra_op_num_threads"] == 2 and ort.options["inter_op_num_threads"] == 1
    assert ort.options["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert ort.options["execution_mode"] == "ORT_SEQUENTIAL"
    ov = load_engine(path, "openvino", threads=1, input_size=SIZE)
    assert ov.options["INFERENCE_NUM_THREADS"] == 1
    assert ov.options["reported_INFERENCE_NUM_THREADS"] == "1"
    assert ov.options["reported_INFERENCE_PRECISION_HINT"] in ("f32", "float32")
    assert load_engine(_calibrated(), "torch", threads=3).options["threads"] == 3


def test_timing_records_the_engine_and_refuses_other_thread_counts(exported):
    model, path, _ = exported
    images = [np.zeros((128, 64, 3), np.uint8)] * 2
    gallery = np.random.default_rng(0).normal(size=(10, model.embedding_dim)).astype(np.float32)

    def match(feature):
        return np.argsort(((gallery - feature) ** 2).sum(1))[:3]

    for name, source in (("torch", model), ("onnxruntime", path), ("openvino", path)):
        engine = load_engine(source, name, threads=1, input_size=SIZE)
        result = time_engine_queries(engine, match, images, num_queries=3, warmup=1, threads=1)
        assert result.engine == name and result.engine_options["threads"] == 1
        assert result.as_dict()["engine_options"] == engine.options and result.ms_extract > 0
    two = load_engine(path, "onnxruntime", threads=2, input_size=SIZE)
    with pytest.raises(ValueError, match=r"onnxruntime is set to 2 thread\(s\).*uses 1"):
        time_engine_queries(two, match, images, num_queries=1, threads=1)


def test_a_faithless_export_is_a_clear_error(exported, tmp_path, monkeypatch):
    _, path, _ = exported
    other = _calibrated(seed=1)  # different weights: the file does not compute this model
    with pytest.raises(ExportError, match=r"differs from PyTorch's by up to .*tolerance 0\.0001"):
        export.check_onnx(other, path, SIZE)

    def failing_check(*args, **kwargs):
        raise ExportError("differs")

    monkeypatch.setattr(export, "check_onnx", failing_check)
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError):
        export.export_onnx(other, target, SIZE)
    assert not target.exists() and not list(target.parent.iterdir())  # nothing left behind
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export.export_onnx(other, target, SIZE, opset=13)


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
    assert record["opset"] == 17 and record["input_size"] == list(SIZE)
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
    run = make_run(layout.cnn_run("market1501", NAME, "baseline", 0), data_root)
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
