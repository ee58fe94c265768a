"""Training: loss goes down, resume (mid-epoch) is bit-identical, NaN stops cleanly, DDP works."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deep.checkpoint import CheckpointError, load_checkpoint
from deep.loader import AugmentConfig, DeterministicLoader
from deep.train import TrainingDiverged, main, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tiny_training):
    config, dataset = tiny_training
    return dataclasses.replace(config, epochs=3, erasing=0.3), dataset


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "model.pt")["model"]


def test_batches_are_a_pure_function_of_seed_epoch_index():
    images = torch.randint(0, 255, (20, 3, 16, 8), dtype=torch.uint8)
    labels = torch.arange(20) % 5
    a = DeterministicLoader(images, labels, batch_size=4, seed=1, augment_config=AugmentConfig())
    b = DeterministicLoader(images, labels, batch_size=4, seed=1, augment_config=AugmentConfig())
    torch.testing.assert_close(a.batch(2, 3).images, b.batch(2, 3).images, rtol=0, atol=0)
    assert not torch.equal(a.batch(2, 3).images, a.batch(1, 3).images)
    pk = DeterministicLoader(images, labels, batch_size=8, seed=0, sampler="identity", instances=4)
    batch = pk.batch(0, 0)
    assert sorted(torch.bincount(batch.labels).tolist())[-2:] == [4, 4]


def test_colour_jitter_casts_colours_and_leaves_other_configs_alone():
    from deep.loader import IMAGENET_MEAN, IMAGENET_STD, augment, normalise

    images = normalise(torch.randint(0, 255, (64, 3, 16, 8), dtype=torch.uint8))
    plain = AugmentConfig(flip=True, pad=0, erasing=0.0)
    jitter = AugmentConfig(flip=False, pad=0, erasing=0.0, colour=0.4)
    # Disabled jitter draws no random numbers: the flip mask is the generator's first draw.
    flip = torch.rand(64, generator=torch.Generator().manual_seed(5)) < 0.5
    expected = images.clone()
    expected[flip] = expected[flip].flip(-1)
    out = augment(images, plain, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # Enabled: deterministic, still valid pixels, and a per-image colour cast.
    a = augment(images, jitter, torch.Generator().manual_seed(7))
    b = augment(images, jitter, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    rgb = a * IMAGENET_STD + IMAGENET_MEAN
    assert rgb.min() >= -1e-6 and rgb.max() <= 1 + 1e-6
    before = (images * IMAGENET_STD + IMAGENET_MEAN).mean((2, 3))
    ratio = rgb.mean((2, 3)) / before
    assert (ratio[:, 0] - ratio[:, 1]).abs().max() > 0.05  # channels scaled differently


def test_loss_goes_down(tiny, tmp_path):
    config, dataset = tiny
    run = train(dataclasses.replace(config, out=str(tmp_path / "r"), epochs=4), dataset=dataset)
    log = (run / "train.log").read_text().splitlines()
    losses = [float(line.split(" loss ")[1].split()[0]) for line in log if " loss " in line]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # The last epoch's numbers travel with the weights (and into summary.json).
    training = load_checkpoint(run / "model.pt")["training"]
    assert training["epoch"] == 4 and training["loss"] == pytest.approx(losses[-1], abs=1e-4)
    assert 0.0 <= training["accuracy"] <= 1.0 and training["seconds"] > 0


def test_resume_mid_epoch_is_bit_identical(tiny, tmp_path):
    config, dataset = tiny
    full = dataclasses.replace(config, out=str(tmp_path / "full"))
    train(full, dataset=dataset)
    steps_per_epoch = len(dataset.train) // config.batch_size
    part = dataclasses.replace(config, out=str(tmp_path / "part"), checkpoint_every=1)
    train(dataclasses.replace(part, stop_after_steps=steps_per_epoch + 2), dataset=dataset)
    state = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 2)  # interrupted inside the second epoch
    assert not (tmp_path / "part" / "model.pt").exists()
    train(part, dataset=dataset)  # resumes from the checkpoint
    # Training time accumulates across the interruption.
    assert (
        load_checkpoint(tmp_path / "part" / "model.pt")["training"]["seconds"]
        >= (state["train_seconds"])
    )
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny, tmp_path):
    config, dataset = tiny
    run = dataclasses.replace(config, out=str(tmp_path / "nan"), checkpoint_every=1)
    train(dataclasses.replace(run, stop_after_steps=2), dataset=dataset)
    before = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")

    def poisoned_teacher(batch):
        return torch.full((len(batch.labels), dataset.num_train_pids), float("nan")), None

    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(run, teacher=poisoned_teacher, dataset=dataset)
    after = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert after["step"] == before["step"]


def test_architecture_mismatch_and_bad_arguments(tiny, tmp_path, capsys):
    config, dataset = tiny
    run = dataclasses.replace(config, out=str(tmp_path / "m"), stop_after_steps=1)
    train(run, dataset=dataset)
    with pytest.raises(CheckpointError, match=r"'mobilenet_v1_0\.25'.*'resnet18'"):
        train(dataclasses.replace(run, model="resnet18"), dataset=dataset)
    assert main(["--model", "vgg11"]) == 2
    assert "known models" in capsys.readouterr().err
    assert main(["--model", "resnet18", "--dataset", "market1501", "--out", str(tmp_path / "x"),
                 "--data-root", str(tmp_path / "missing")]) == 2  # fmt: skip
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # no empty run folder left behind


def test_only_runs_in_the_study_tree_enter_the_shared_table(tiny, tmp_path, monkeypatch):
    from compare import measure as deep_evaluate
    from data.runs import RunsLayout

    config, dataset = tiny
    layout = RunsLayout(tmp_path / "runs")
    table = layout.results_table("market1501")
    outside = dataclasses.replace(config, out=str(tmp_path / "experiment"), epochs=1)
    train(outside, dataset=dataset)
    deep_evaluate.measure_run(
        outside.run_dir(), layout=layout, dataset=dataset, num_timed_queries=2
    )
    assert (outside.run_dir() / "summary.json").exists() and not table.exists()
    summary = json.loads((outside.run_dir() / "summary.json").read_text())
    assert summary["training"]["epoch"] == 1
    inside = dataclasses.replace(outside, out=None, runs_dir=str(layout.root))
    assert inside.run_dir() == layout.cnn_run("market1501", config.model, "baseline", config.seed)
    train(inside, dataset=dataset)
    deep_evaluate.measure_run(inside.run_dir(), layout=layout, dataset=dataset, num_timed_queries=2)
    assert table.exists()


@pytest.mark.slow
def test_ddp_two_gloo_processes(tiny, tmp_path):
    config, _ = tiny
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "deep.train", "--model", "mobilenet_v1_0.25", "--dataset", "market1501",
        "--data-root", config.data_root, "--input-size", "32x16", "--epochs", "1",
        "--batch-size", "8", "--warmup-epochs", "0", "--device", "cpu",
        "--threads", "1", "--init", "scratch", "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ddp" / "model.pt").exists()
    assert (tmp_path / "ddp" / "train.log").read_text().count("epoch 1/1") == 1  # rank 0 only
