"""Distillation end to end on a tiny dataset: teacher cache soundness, clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from compare import distillation
from data.runs import RunsLayout
from deep import distill, profiles
from deep import teacher as teacher_signal
from deep.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deep.run_folder import RunFolder
from deep.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_training, tmp_path_factory):
    base, dataset = tiny_training
    out = tmp_path_factory.mktemp("runs")
    base = dataclasses.replace(base, runs_dir=str(out))
    train(dataclasses.replace(base, out=str(out / "teacher")))  # the teacher of every test
    return base, out, dataset


def test_cached_teacher_gives_the_same_student(tiny, monkeypatch, tmp_path):
    base, out, dataset = tiny
    teacher_dir = out / "teacher"
    student = dataclasses.replace(base, model="mobilenet_v1_0.5", variant="distilled", seed=3,
                                  kd_T=4.0, kd_alpha=0.9)  # fmt: skip
    online = dataclasses.replace(student, out=str(tmp_path / "online"))
    train(online, teacher=teacher_signal.TeacherSignal(teacher_dir), dataset=dataset)
    cache = tmp_path / "cache.pt"
    teacher_signal.precompute_teacher(teacher_dir, student, cache, dataset=dataset)
    assert cache.exists()
    cached_signal = teacher_signal.TeacherSignal(teacher_dir, cache_path=cache)
    assert len(cached_signal.cache) == 2 * (len(dataset.train) // 8)
    # A longer schedule extends the cache (same file) with the missing epochs only.
    longer = dataclasses.replace(student, epochs=3)
    teacher_signal.precompute_teacher(teacher_dir, longer, cache, dataset=dataset)
    extended = teacher_signal.TeacherSignal(teacher_dir, cache_path=cache).cache
    assert len(extended) == 3 * (len(dataset.train) // 8)
    for key, entry in cached_signal.cache.items():
        assert torch.equal(extended[key]["logits"], entry["logits"])
    cached = dataclasses.replace(student, out=str(tmp_path / "cached"))
    train(cached, teacher=cached_signal, dataset=dataset)
    a = load_checkpoint(tmp_path / "online" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "cached" / "model.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_distillation_changes_training_and_alpha_zero_does_not(tiny, tmp_path):
    base, out, dataset = tiny
    signal = teacher_signal.TeacherSignal(out / "teacher")
    runs = {}
    for name, alpha in [("plain", None), ("alpha0", 0.0), ("kd", 0.9)]:
        cfg = dataclasses.replace(base, model="mobilenet_v1_0.5", out=str(tmp_path / name),
                                  kd_alpha=alpha if alpha is not None else 0.9)  # fmt: skip
        train(cfg, teacher=None if alpha is None else signal, dataset=dataset)
        runs[name] = load_checkpoint(tmp_path / name / "model.pt")["model"]
    key = "classifier.weight"
    torch.testing.assert_close(runs["plain"][key], runs["alpha0"][key], rtol=0, atol=0)
    assert not torch.equal(runs["plain"][key], runs["kd"][key])


def test_feature_distillation_runs(tiny, tmp_path):
    base, out, dataset = tiny
    cfg = dataclasses.replace(base, out=str(tmp_path / "feat"), kd_feature_weight=1.0, epochs=1)
    signal = teacher_signal.TeacherSignal(out / "teacher", need_embedding=True)
    train(cfg, teacher=signal, teacher_dim=signal.embedding_dim, dataset=dataset)
    assert "feature_kd" in load_checkpoint(tmp_path / "feat" / "checkpoint.pt")


def test_missing_and_incompatible_teacher(tiny, tmp_path, capsys):
    base, out, _ = tiny
    code = distill.main(["train", "--teacher", str(tmp_path / "nope"), "--student", "resnet18"])
    assert code == 2 and "no trained teacher" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"mobilenet_v1_0\.25"):
        load_checkpoint(out / "teacher" / "model.pt", expected_model="resnet50")
    other = dataclasses.replace(base, dataset="synthetic", data_root=None)
    signal = teacher_signal.TeacherSignal(out / "teacher")
    with pytest.raises(ValueError, match="share the training identities"):
        teacher_signal._check_teacher_fits(signal, other)


def test_train_cli_uses_the_teacher(tiny, tmp_path):
    from deep.train import main as train_main

    base, out, dataset = tiny
    cfg = dataclasses.replace(base, model="mobilenet_v1_0.5", epochs=1, variant="distilled",
                              kd_T=4.0, kd_alpha=0.9, out=str(tmp_path / "api"))  # fmt: skip
    train(cfg, teacher=teacher_signal.TeacherSignal(out / "teacher"), dataset=dataset)
    args = [
        "--model", "mobilenet_v1_0.5", "--dataset", "market1501", "--data-root", base.data_root,
        "--input-size", "32x16", "--epochs", "1", "--batch-size", "8", "--warmup-epochs", "0",
        "--lr", "0.05", "--threads", "1", "--no-bn-neck", "--erasing", "0",
        "--checkpoint-every", "0", "--variant", "distilled", "--kd-T", "4", "--kd-alpha", "0.9",
        "--init", "scratch",
    ]  # fmt: skip
    assert (
        train_main([*args, "--teacher", str(out / "teacher"), "--out", str(tmp_path / "cli")]) == 0
    )
    assert train_main([*args, "--out", str(tmp_path / "alone")]) == 0
    api, cli, alone = (
        load_checkpoint(tmp_path / n / "model.pt")["model"] for n in ("api", "cli", "alone")
    )
    torch.testing.assert_close(api["classifier.weight"], cli["classifier.weight"], rtol=0, atol=0)
    assert not torch.equal(cli["classifier.weight"], alone["classifier.weight"])
    assert (
        train_main([*args, "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    )


def test_distilled_run_is_reused_only_with_the_same_teacher(tiny, tmp_path):
    import shutil

    base, out, _ = tiny
    teacher_dir = tmp_path / "teacher"
    shutil.copytree(out / "teacher", teacher_dir)
    student = dataclasses.replace(base, variant="distilled", out=str(tmp_path / "student"))
    run_dir = student.run_dir()
    run_dir.mkdir(parents=True)
    marker = {"model_name": student.model, "model": {}, "config": student.as_dict()}
    save_checkpoint(run_dir / "model.pt", marker)
    assert distill.finished(student)
    fingerprint = teacher_signal.weights_fingerprint(teacher_dir)
    assert not distill.finished(student, fingerprint)  # no record of its teacher
    RunFolder(run_dir).record_teacher(str(teacher_dir), fingerprint)
    assert distill.finished(student, fingerprint)
    moved = dataclasses.replace(student, teacher=str(tmp_path / "elsewhere" / "teacher"))
    assert distill.finished(moved, fingerprint)  # same teacher weights, another path
    state = load_checkpoint(teacher_dir / "model.pt")
    state["model"]["classifier.weight"] += 1  # "retrained" teacher
    torch.save(state, teacher_dir / "model.pt")
    assert not distill.finished(student, teacher_signal.weights_fingerprint(teacher_dir))


@pytest.mark.slow
def test_sweep_compares_settings_on_held_out_training_ids(tiny, tmp_path, monkeypatch):
    base, _, _ = tiny
    recipe = dict(input_size=(32, 16), epochs=1, batch_size=8, warmup_epochs=0, lr=0.05,
                  threads=1, bn_neck=False, erasing=0.0, checkpoint_every=0,
                  init="scratch")  # fmt: skip
    profile = profiles.Profile(students=("mobilenet_v1_0.25",), seeds=(0,),
                              teacher="resnet18", recipe=recipe,
                              epochs={"mobilenet_v1_0.25": 2})  # fmt: skip
    monkeypatch.setitem(profiles.PROFILES, "tiny", profile)
    table = distill.run_sweep(
        "market1501", base.data_root, student="mobilenet_v1_0.25", profile_name="tiny",
        temperatures=(4.0,), alphas=(0.9,), jobs=1, teacher_model="mobilenet_v1_0.5",
        layout=RunsLayout(tmp_path),
    )  # fmt: skip
    assert list(table.alpha) == [0.0, 0.9]
    assert list(table.teacher) == ["-", "mobilenet_v1_0.5"]
    assert ((table.val_rank1 >= 0) & (table.val_rank1 <= 100)).all()
    sweep_dir = tmp_path / "market1501" / "sweep"
    assert (sweep_dir / "mobilenet_v1_0.25_from_mobilenet_v1_0.5.csv").exists()
    student_dir = sweep_dir / "mobilenet_v1_0.25"
    assert (student_dir / "val_baseline" / "model.pt").exists()
    assert (student_dir / "val_mobilenet_v1_0.5_T4_a0.9" / "model.pt").exists()
    # Student and teacher train with their own epochs from the profile.
    assert load_checkpoint(student_dir / "val_baseline" / "model.pt")["config"]["epochs"] == 2
    teacher_state = load_checkpoint(sweep_dir / "mobilenet_v1_0.5" / "baseline_seed0" / "model.pt")
    assert teacher_state["config"]["epochs"] == 1


def test_study_configs_pair_every_student_and_add_reference_models(tmp_path):
    profile = dataclasses.replace(
        profiles.PROFILES["quick"], reference_models=("resnet50",), teacher="resnet18"
    )
    teacher, runs = profiles.study_configs(profile, "synthetic", None, T=4.0, alpha=0.9,
                                          base_dir=tmp_path)  # fmt: skip
    assert teacher.model == "resnet18" and teacher.variant == "baseline"
    pairs = {(r.model, r.variant, r.seed) for r in runs}
    for student in profile.students:
        for seed in profile.seeds:
            assert {(student, "baseline", seed), (student, "distilled", seed)} <= pairs
    assert ("resnet50", "baseline", profile.seeds[0]) in pairs
    assert ("resnet50", "distilled", profile.seeds[0]) not in pairs
    # Same recipe for a student alone and taught: only variant (and the teacher) differ.
    by_key = {(r.model, r.variant, r.seed): r for r in runs}
    alone, taught = (
        by_key["mobilenet_v1_0.5", "baseline", 1],
        by_key["mobilenet_v1_0.5", "distilled", 1],
    )
    diff = {k for k, v in alone.as_dict().items() if taught.as_dict()[k] != v}
    assert diff <= {"variant", "out", "teacher"}
    # Per-model epochs reach the student (both variants), the rest keep the recipe's.
    epochs = {(r.model, r.variant): r.epochs for r in runs}
    for model in profile.students + profile.reference_models:
        wanted = profile.epochs.get(model, profile.recipe["epochs"])
        assert {e for (m, _), e in epochs.items() if m == model} == {wanted}, model
    assert teacher.epochs == profile.epochs.get("resnet18", profile.recipe["epochs"])


def test_every_schedule_field_reaches_the_batches_or_the_cache_key(tiny, tmp_path, monkeypatch):
    from deep.config import SCHEDULE_FIELDS
    from deep.loader import training_loader

    base, out, _ = tiny
    images = torch.randint(0, 255, (16, 3, 32, 16), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    plain = training_loader(base, images, labels).batch(0, 0).images
    jittered = dataclasses.replace(base, colour_jitter=0.3)
    assert not torch.equal(plain, training_loader(jittered, images, labels).batch(0, 0).images)
    # A different schedule never shares the teacher cache.
    changes = {"seed": 5, "batch_size": 4, "flip": False, "pad": 2, "erasing": 0.5,
               "colour_jitter": 0.3, "sampler": "identity", "instances": 2, "input_size": (64, 32),
               "data_root": "elsewhere", "dataset": "dukemtmcreid"}  # fmt: skip
    assert set(changes) == set(SCHEDULE_FIELDS)
    fingerprint = teacher_signal.weights_fingerprint(out / "teacher")
    paths = {teacher_signal.teacher_cache_path("d", fingerprint, base)}
    for field_name, value in changes.items():
        changed = dataclasses.replace(base, **{field_name: value})
        paths.add(teacher_signal.teacher_cache_path("d", fingerprint, changed))
    assert len(paths) == len(changes) + 1


def test_schedules_of_different_lengths_share_batches_and_the_teacher_cache(tiny, tmp_path):
    """Students with more epochs see the same batch at every (epoch, index) as shorter ones, so
    one cache filled for the longest schedule serves all of them (per-model epochs)."""
    from deep.loader import training_loader

    base, out, _ = tiny
    images = torch.randint(0, 255, (16, 3, 32, 16), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    short = dataclasses.replace(base, epochs=2)
    long = dataclasses.replace(base, epochs=5)
    for epoch in range(2):
        a = list(training_loader(short, images, labels).epoch(epoch))
        b = list(training_loader(long, images, labels).epoch(epoch))
        assert all(torch.equal(x.images, y.images) for x, y in zip(a, b, strict=True))
    fingerprint = teacher_signal.weights_fingerprint(out / "teacher")
    assert teacher_signal.teacher_cache_path(
        "d", fingerprint, short
    ) == teacher_signal.teacher_cache_path("d", fingerprint, long)


def test_gain_table():
    import pandas as pd

    table = pd.DataFrame([{
        "model": "m", "params_M": 0.2, "ms_query": 3.0, "rank1_baseline": 50.0,
        "rank1_baseline_std": 1.0, "rank1_distilled": 55.0, "rank1_distilled_std": 2.0,
        "mAP_baseline": 30.0, "mAP_baseline_std": 0.5, "mAP_distilled": 34.0,
        "mAP_distilled_std": float("nan"), "gain_rank1": 5.0, "gain_mAP": 4.0,
    }])  # fmt: skip
    text = distillation.gain_markdown(table)
    assert "50.0 ± 1.0" in text and "+4.0" in text and "34.0 |" in text
    assert json.dumps(profiles.PROFILES["quick"].recipe, default=str)
