"""Pretraining: a disjoint pretraining set, shipped backbones that verify, and init selection."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data._synth_draw import draw_identity
from data.runs import RunsLayout
from data.synthetic import PRESETS, STREAM_TAG, SyntheticConfig, generate, plan
from deep import pretrained
from deep.checkpoint import load_checkpoint, save_checkpoint
from deep.config import TrainConfig
from deep.models import build_model
from deep.pretrain import backbone_bytes, export_backbone, main, pretrain_config
from deep.pretrained import PretrainedWeightsError, initialise, verified_path
from deep.train import build_initialised, train

SHIPPED = pretrained.available()


def _appearances(config: SyntheticConfig, seed: int, ids: range) -> set[tuple]:
    # Colours are arrays: compare every drawn value through its repr.
    return {
        repr(dataclasses.astuple(draw_identity(config.rng(seed, 1, pid), config.palette_size)))
        for pid in ids
    }


@pytest.mark.slow
def test_pretraining_identities_never_recur_in_study_datasets():
    pre = PRESETS["pretrain"]
    assert pre.stream != 0 and pre.num_train_ids >= 1000
    pretrain_looks = _appearances(pre, 0, range(1, pre.num_train_ids + pre.num_test_ids + 1))
    assert len(pretrain_looks) == pre.num_train_ids + pre.num_test_ids  # no repeats inside it
    for name in ("default", "large", "small"):
        study = PRESETS[name]
        for seed in range(4):
            ids = range(1, study.num_train_ids + study.num_test_ids + study.num_distractors + 1)
            assert not pretrain_looks & _appearances(study, seed, ids), (name, seed)


def test_stream_zero_keeps_the_study_keys_and_other_streams_differ():
    study, other = SyntheticConfig(), SyntheticConfig(stream=1)
    expected = np.random.default_rng([5, 1, 7]).random(4)
    np.testing.assert_array_equal(study.rng(5, 1, 7).random(4), expected)
    assert not np.array_equal(other.rng(5, 1, 7).random(4), expected)
    # The tag cannot be a camera or image index of a study key.
    assert STREAM_TAG > 10**6


def test_pretrain_preset_sees_every_identity_in_every_camera():
    pre = dataclasses.replace(PRESETS["pretrain"], num_train_ids=20, num_test_ids=2)
    items = [it for it in plan(pre) if it.split == "train"]
    cams: dict[int, set[int]] = {}
    for it in items:
        cams.setdefault(it.number, set()).add(it.camera)
    assert all(c == set(range(pre.num_cameras)) for c in cams.values())


# ---- shipped weights ---------------------------------------------------------------------


@pytest.mark.skipif(not SHIPPED, reason="no shipped backbones in deep/weights")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_backbones_verify_and_load(name):
    path, record = verified_path(name)
    assert record["model"] == name and record["dtype"] == "float16"
    model = build_model(name, 3, bn_neck=False)
    info = initialise(model, name, "pretrained")
    assert info["sha256"] == record["sha256"]
    stored = torch.load(path, weights_only=True)["backbone"]
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, stored[key].to(value.dtype), rtol=0, atol=0)


def test_shipped_weights_fit_the_size_budget():
    total = sum(pretrained.weights_path(n).stat().st_size for n in SHIPPED)
    assert total <= 60e6


@pytest.fixture
def fake_weights(tmp_path):
    """A weights folder with one backbone written exactly as deep.pretrain writes it."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v1_0.25", 5, bn_neck=False)
    data = backbone_bytes("mobilenet_v1_0.25", model.state_dict())
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mobilenet_v1_0.25.pt").write_bytes(data)
    import hashlib

    record = {"model": "mobilenet_v1_0.25", "input_size": [64, 32],
              "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
    (folder / "mobilenet_v1_0.25.json").write_text(json.dumps(record))
    return folder, model


def test_backbone_bytes_are_half_precision_without_classifier_and_deterministic(fake_weights):
    _, model = fake_weights
    a = backbone_bytes("mobilenet_v1_0.25", model.state_dict())
    assert a == backbone_bytes("mobilenet_v1_0.25", model.state_dict())
    state = torch.load(__import__("io").BytesIO(a), weights_only=True)
    assert state["format"] == pretrained.FORMAT
    assert not any("classifier" in k for k in state["backbone"])
    assert {v.dtype for v in state["backbone"].values() if v.is_floating_point()} == {torch.float16}


def test_corrupted_backbone_gets_a_clear_error(fake_weights):
    folder, _ = fake_weights
    path = folder / "mobilenet_v1_0.25.pt"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    model = build_model("mobilenet_v1_0.25", 3, bn_neck=False)
    with pytest.raises(PretrainedWeightsError, match=r"sha256.*make pretrain"):
        initialise(model, "mobilenet_v1_0.25", "pretrained", weights_dir=folder)


def test_missing_backbone_names_make_pretrain(fake_weights):
    folder, _ = fake_weights
    model = build_model("mobilenet_v1_0.5", 3, bn_neck=False)
    with pytest.raises(PretrainedWeightsError, match=r"make pretrain MODELS=mobilenet_v1_0\.5"):
        initialise(model, "mobilenet_v1_0.5", "pretrained", weights_dir=folder)
    (folder / "mobilenet_v1_0.25.pt").unlink()
    with pytest.raises(PretrainedWeightsError, match=r"missing.*make pretrain"):
        initialise(build_model("mobilenet_v1_0.25", 3), "mobilenet_v1_0.25", "pretrained",
                   weights_dir=folder)  # fmt: skip


def test_wrong_architecture_is_refused(fake_weights):
    folder, _ = fake_weights
    model = build_model("mobilenet_v1_0.5", 3, bn_neck=False)
    with pytest.raises(PretrainedWeightsError, match=r"mobilenet_v1_0\.25"):
        initialise(model, "mobilenet_v1_0.5", "pretrained",
                   weights=folder / "mobilenet_v1_0.25.pt")  # fmt: skip


def test_verify_command(fake_weights, capsys):
    folder, _ = fake_weights
    assert main(["--verify", "--out", str(folder)]) == 0
    (folder / "mobilenet_v1_0.25.pt").write_bytes(b"not a torch file")
    assert main(["--verify", "--out", str(folder)]) == 2
    assert "make pretrain" in capsys.readouterr().err


# ---- init selection ------------------------------------------------------------------------


def _config(**changes) -> TrainConfig:
    return TrainConfig(model="mobilenet_v1_0.25", input_size=(32, 16), bn_neck=False, **changes)


def test_init_selection(fake_weights, monkeypatch):
    folder, source = fake_weights
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    expected = {k: v.half().float() for k, v in source.backbone.state_dict().items()}

    model, record = build_initialised(_config(init="pretrained"), 4)
    assert record["init"] == "pretrained" and record["sha256"]
    for key, value in model.backbone.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)

    scratch, record = build_initialised(_config(init="scratch"), 4)
    assert record == {"init": "scratch", "weights": None, "sha256": None}
    first = next(iter(scratch.backbone.parameters()))
    assert not torch.equal(first, next(iter(model.backbone.parameters())))

    # --weights PATH: a deep.pretrain file anywhere, or a torchvision-style state dict.
    copy = folder.parent / "mine.pt"
    shutil.copy(folder / "mobilenet_v1_0.25.pt", copy)
    _, record = build_initialised(_config(init="pretrained", weights=str(copy)), 4)
    assert record["weights"] == str(copy)
    tv = folder.parent / "tv.pt"
    torch.save({f"features.{k}": v for k, v in source.backbone.state_dict().items()}, tv)
    tv_model, record = build_initialised(_config(init="pretrained", weights=str(tv)), 4)
    assert record["weights"] == str(tv)
    torch.testing.assert_close(
        next(iter(tv_model.backbone.parameters())), next(iter(source.backbone.parameters()))
    )


def test_weights_with_scratch_is_a_config_error():
    with pytest.raises(ValueError, match="need --init pretrained"):
        _config(init="scratch", weights="x.pt").validate()
    with pytest.raises(ValueError, match="init must be one of"):
        _config(init="random").validate()


def test_training_records_its_initialisation(fake_weights, monkeypatch, tmp_path):
    folder, _ = fake_weights
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    root = generate(tmp_path / "data", config=PRESETS["small"])
    config = _config(init="pretrained", dataset="market1501", data_root=str(root), epochs=1,
                     batch_size=8, warmup_epochs=0, threads=1,
                     checkpoint_every=0, out=str(tmp_path / "run"))  # fmt: skip
    state = load_checkpoint(train(config) / "model.pt")
    assert state["init"]["init"] == "pretrained"
    assert state["config"]["init"] == "pretrained"


def test_pretrain_writes_a_verified_backbone_bit_for_bit(tmp_path, monkeypatch):
    """A tiny pretraining run, twice: the same bytes, and a record that verifies."""
    root = generate(tmp_path / "data", config=PRESETS["small"])
    config = pretrain_config("mobilenet_v1_0.25", dataset="market1501", data_root=str(root),
                             epochs=2, layout=RunsLayout(tmp_path / "runs"))  # fmt: skip
    config = dataclasses.replace(config, batch_size=8, input_size=(32, 16))
    digests = []
    for k in range(2):
        run = dataclasses.replace(config, out=str(tmp_path / f"run{k}"))
        train(run)
        record = export_backbone(Path(run.out), tmp_path / f"w{k}")
        digests.append(record["sha256"])
        assert record["input_size"] == [32, 16] and record["epochs"] == 2
        path, _ = verified_path("mobilenet_v1_0.25", tmp_path / f"w{k}")
        assert path.stat().st_size == record["bytes"]
    assert digests[0] == digests[1]


def test_a_regenerated_backbone_invalidates_finished_fine_tuned_runs(fake_weights, monkeypatch,
                                                                     tmp_path):  # fmt: skip
    from deep import distill

    folder, _ = fake_weights
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    config = _config(init="pretrained", out=str(tmp_path / "run"))
    run_dir = config.run_dir()
    run_dir.mkdir()
    shipped = pretrained.read_metadata("mobilenet_v1_0.25")["sha256"]

    def finished_run(cfg, init: dict) -> None:  # what deep.train leaves: model.pt
        state = {"model_name": cfg.model, "model": {}, "config": cfg.as_dict(), "init": init}
        save_checkpoint(run_dir / "model.pt", state)

    finished_run(config, {"sha256": shipped})
    assert distill.finished(config)
    finished_run(config, {"sha256": "0" * 64})  # started from an older backbone
    assert not distill.finished(config)
    scratch = dataclasses.replace(config, init="scratch")
    finished_run(scratch, {"init": "scratch"})
    assert distill.finished(scratch)  # scratch runs do not depend on the backbones
