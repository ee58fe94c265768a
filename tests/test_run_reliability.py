"""Training and measuring runs: no silent wrong result, no lost metadata, clear errors.

Issue 15's probes on the deep side: ``--resume`` on a finished run, a refused resume, a
single-identity training set, a class-count mismatch, statistics after a resume in the last
epoch, ``--resume`` without a checkpoint, unsafe or truncated checkpoints, and
``compare.measure`` on a moved dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import shutil

import pytest
import torch

from compare import measure
from deep.checkpoint import CheckpointError, load_checkpoint
from deep.config import TrainConfig
from deep.train import main, train
from tests.builders import make_run, write_tiny_market


def _args(config: TrainConfig, out) -> list[str]:
    return [
        "--model", config.model, "--dataset", config.dataset, "--data-root", config.data_root,
        "--input-size", "32x16", "--epochs", str(config.epochs), "--batch-size", "8",
        "--warmup-epochs", "0", "--lr", "0.05", "--threads", "1", "--no-bn-neck",
        "--erasing", "0", "--checkpoint-every", "0", "--init", "scratch", "--out", str(out),
    ]  # fmt: skip


def test_resume_on_a_finished_run_changes_nothing(tiny_training, tmp_path, capsys):
    config, _ = tiny_training
    out = tmp_path / "done"
    assert main(_args(config, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert load_checkpoint(out / "model.pt")["training"]["accuracy"] >= 0
    capsys.readouterr()
    assert main([*_args(config, out), "--resume"]) == 0
    said = capsys.readouterr().out
    assert "is finished" in said and "compare.measure" in said
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # model.pt keeps its training numbers; nothing rewritten


def test_a_refused_resume_writes_nothing(tiny_training, tmp_path, capsys):
    config, dataset = tiny_training
    run = dataclasses.replace(config, out=str(tmp_path / "r"), stop_after_steps=1)
    train(run, dataset=dataset)
    saved = (tmp_path / "r" / "config.json").read_bytes()
    other = [*_args(dataclasses.replace(config, epochs=5), tmp_path / "r"), "--resume"]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and "epochs: 2 -> 5" in err
    assert (tmp_path / "r" / "config.json").read_bytes() == saved


def test_resume_without_a_checkpoint_is_an_error(tiny_training, tmp_path, capsys):
    config, _ = tiny_training
    assert main([*_args(config, tmp_path / "typo"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_a_single_identity_training_set_is_refused(tiny_training, tmp_path, capsys):
    config, _ = tiny_training
    root = tmp_path / "one"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        shutil.copytree(f"{config.data_root}/{split}", root / split)
    first = sorted((root / "bounding_box_train").iterdir())[0].name[:4]
    for path in (root / "bounding_box_train").iterdir():
        if not path.name.startswith(first):
            path.unlink()
    args = _args(dataclasses.replace(config, data_root=str(root)), tmp_path / "out")
    assert main(args) == 2
    assert "1 identity" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_class_count_mismatch_on_resume_is_a_clear_error(tiny_training, tmp_path):
    config, dataset = tiny_training
    run = dataclasses.replace(config, out=str(tmp_path / "c"), stop_after_steps=1)
    train(run, dataset=dataset)
    state = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    state["num_classes"] += 1
    torch.save(state, tmp_path / "c" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="identities"):
        train(dataclasses.replace(run, stop_after_steps=None), dataset=dataset)


def test_statistics_after_a_resume_in_the_last_epoch_cover_the_whole_epoch(tiny_training, tmp_path):
    config, dataset = tiny_training
    full = dataclasses.replace(config, out=str(tmp_path / "full"))
    train(full, dataset=dataset)
    steps = len(dataset.train) // config.batch_size
    part = dataclasses.replace(config, out=str(tmp_path / "part"), checkpoint_every=1)
    # interrupted two batches into the last epoch, then resumed
    train(dataclasses.replace(part, stop_after_steps=steps + 2), dataset=dataset)
    train(part, dataset=dataset)
    a = load_checkpoint(tmp_path / "full" / "model.pt")["training"]
    b = load_checkpoint(tmp_path / "part" / "model.pt")["training"]
    assert b["epoch"] == a["epoch"] == config.epochs
    assert b["accuracy"] == a["accuracy"]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)


def test_an_unsafe_checkpoint_is_refused_without_advising_weights_only_false(tmp_path):
    path = tmp_path / "model.pt"
    payload = argparse.Namespace(run="code")  # any class outside torch's weights-only allowlist
    torch.save({"model": {}, "model_name": "x", "payload": payload}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "could run code" in str(caught.value)
    assert "weights_only=False" not in str(caught.value)
    path.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_measure_reports_bad_runs_clearly_and_follows_a_moved_dataset(tmp_path, capsys):
    data = write_tiny_market(tmp_path / "market")
    run = make_run(tmp_path / "run", data)
    moved = tmp_path / "moved"
    data.rename(moved)
    args = [str(run), "--engines", "torch", "--num-timed-queries", "2"]
    assert measure.main(args) == 2
    assert str(data) in capsys.readouterr().err  # names the folder that is gone
    assert measure.main([*args, "--data-root", str(moved)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["rank1"] <= 1
    (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:100])  # truncated copy
    assert measure.main(args) == 2
    assert "model.pt" in capsys.readouterr().err


def test_retraining_a_study_run_loses_nothing_finished_until_it_completes(tiny_training, tmp_path):
    from deep.distill import run_one

    config, dataset = tiny_training
    old = dataclasses.replace(config, out=str(tmp_path / "study"))
    train(old, dataset=dataset)
    finished = (tmp_path / "study" / "model.pt").read_bytes()
    # the profile changed (another recipe) and the new training is interrupted
    new = dataclasses.replace(old, epochs=3, checkpoint_every=1)
    run_one(dataclasses.replace(new, stop_after_steps=1))
    assert (tmp_path / "study" / "model.pt").read_bytes() == finished  # still the old run
    assert load_checkpoint(tmp_path / "study" / "checkpoint.pt")["config"]["epochs"] == 3
    run_one(new)  # completes: now the new run replaces it
    assert load_checkpoint(tmp_path / "study" / "model.pt")["config"]["epochs"] == 3
