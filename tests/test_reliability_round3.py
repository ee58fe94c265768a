"""Issue 22 (reliability, third round): nothing overwritten that is not ours, no silent wrong
result, no traceback, no leftovers. One section per family; each case failed before its fix."""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
import torchvision

import compare.lomo_xqda
from compare import measure, results
from data import benchmarks
from data.benchmarks import load_benchmark
from data.images import load_image
from data.io import atomic_write_text
from data.layouts import load_dataset
from data.runs import RunsLayout
from deep import export
from deep import train as deep_train
from deep.config import TrainConfig, config_from_args, config_parser
from deep.models import build_model
from tests import test_benchmarks
from tests.builders import (
    BENCH_SCRIPTS,
    bench_module,
    captured_parser,
    flags_without_help,
    make_run,
    make_viper,
    result_row,
    write_new_protocol,
    write_tiny_market,
)

MARKER_NAME = ".reid-run.json"  # data.ownership.MARKER_NAME (spelled out: main lacks it)


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory) -> Path:
    return write_tiny_market(tmp_path_factory.mktemp("round3") / "market")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _train_args(data_root: Path, out: Path) -> list[str]:
    return [
        "--model", "mobilenet_v1_0.25", "--dataset", "market1501", "--data-root", str(data_root),
        "--input-size", "32x16", "--epochs", "1", "--batch-size", "4", "--warmup-epochs", "0",
        "--threads", "1", "--checkpoint-every", "0", "--init", "scratch", "--out", str(out),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Data loss (items 1-3): a command writes only into a new or empty folder or a run of its own
# kind, and ``--out`` for a file never replaces a file the command did not write (``--force``).
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_export_out_never_overwrites_the_runs_own_weights(tiny_market, tmp_path, force, capsys):
    run = make_run(tmp_path / "run", tiny_market)
    (run / "config.json").write_text('{"mine": 1}')
    before = _files(run)
    for target in ("model.pt", "config.json"):
        argv = [str(run), "--out", str(run / target)]
        if force and target == "model.pt":  # even --force never replaces the input weights
            argv.append("--force")
        assert export.main(argv) == 2
        assert "error:" in capsys.readouterr().err
    assert _files(run) == before


def test_export_out_replaces_only_its_own_export_unless_forced(tiny_market, tmp_path, capsys):
    run = make_run(tmp_path / "run", tiny_market)
    user_file = tmp_path / "model.onnx"
    user_file.write_bytes(b"user data")
    assert export.main([str(run), "--out", str(user_file)]) == 2
    assert "--force" in capsys.readouterr().err
    assert user_file.read_bytes() == b"user data"
    assert export.main([str(run), "--out", str(user_file), "--force"]) == 0
    exported = user_file.read_bytes()
    assert exported != b"user data"
    # its own earlier export (recorded in the sidecar) is reused, no --force needed
    assert export.main([str(run), "--out", str(user_file)]) == 0
    assert "reused" in capsys.readouterr().out
    assert user_file.read_bytes() == exported


def test_lomo_xqda_refuses_a_finished_cnn_run_folder(tiny_market, tmp_path, capsys):
    run = make_run(tmp_path / "cnn", tiny_market)
    (run / "summary.json").write_text(json.dumps({"engines": {"torch": {"ms_query": 1.0}}}))
    before = _files(run)
    argv = ["--dataset", "market1501", "--data-root", str(tiny_market), "--out", str(run)]
    assert compare.lomo_xqda.main([*argv, "--size", "32x16"]) == 2
    assert "refusing to write into" in capsys.readouterr().err
    assert _files(run) == before  # no xqda.npz added, summary.json kept


@pytest.mark.parametrize("kind", ["user files", "classical run"])
def test_deep_train_refuses_a_folder_that_is_not_its_run(tiny_market, tmp_path, kind, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')
    if kind == "classical run":
        (out / MARKER_NAME).write_text('{"kind": "classical"}')
    before = _files(out)
    assert deep_train.main(_train_args(tiny_market, out)) == 2
    err = capsys.readouterr().err
    assert "refusing to write into" in err and str(out) in err
    assert _files(out) == before  # config.json kept, no model.pt / checkpoint.pt beside it


def test_deep_train_marks_its_run_and_takes_empty_and_legacy_folders(tiny_market, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert deep_train.check_deep_run_folder(empty) == empty
    legacy = make_run(tmp_path / "legacy", tiny_market)  # a run from before markers
    assert deep_train.check_deep_run_folder(legacy) == legacy
    assert deep_train.main(_train_args(tiny_market, empty)) == 0
    assert json.loads((empty / MARKER_NAME).read_text()) == {"kind": "deep"}


# ---------------------------------------------------------------------------------------------
# Silent wrong results (items 4, 6-11): refused or reported, never a quietly different result.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def foreign_weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    files = {"resnet18": folder / "resnet18.pth", "mobilenet_v2_1.0": folder / "mnv2.pth"}
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), files["resnet18"])
    torch.save(
        torchvision.models.mobilenet_v2(weights=None).state_dict(), files["mobilenet_v2_1.0"]
    )
    return files


@pytest.mark.parametrize(
    "model, source",
    [("mobilenet_v1_0.25", "resnet18"), ("mobilenet_v2_1.0", "resnet18"),
     ("resnet18", "mobilenet_v2_1.0"), ("mobilenet_v1_0.25", "another run's model.pt")],
)  # fmt: skip
def test_weights_of_another_architecture_are_refused(foreign_weights, tiny_market, tmp_path,
                                                     model, source):  # fmt: skip
    if source == "another run's model.pt":
        path = make_run(tmp_path / "other", tiny_market) / "model.pt"
    else:
        path = foreign_weights[source]
    with pytest.raises(ValueError, match=r"do not fit|not a state dict"):
        build_model(model, 3, weights=path)


def test_weights_that_fit_load_every_backbone_tensor(foreign_weights):
    reference = torchvision.models.mobilenet_v2(weights=None)
    reference.load_state_dict(torch.load(foreign_weights["mobilenet_v2_1.0"], weights_only=True))
    model = build_model("mobilenet_v2_1.0", 3, weights=foreign_weights["mobilenet_v2_1.0"])
    ours = model.backbone.state_dict()
    theirs = {k[len("features.") :]: v for k, v in reference.state_dict().items()}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_deep_train_with_foreign_weights_fails_instead_of_training_from_scratch(
    foreign_weights, tiny_market, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = _train_args(tiny_market, out)
    argv[argv.index("scratch")] = "pretrained"
    assert deep_train.main([*argv, "--weights", str(foreign_weights["resnet18"])]) == 2
    err = capsys.readouterr().err
    assert "do not fit mobilenet_v1_0.25" in err and "0 of its" in err
    assert not (out / "model.pt").exists()


def test_viper_pairs_by_person_number_and_refuses_unpaired_images(tmp_path):
    root = make_viper(tmp_path / "VIPeR", persons=8)
    (root / "cam_a" / "006_45.bmp").unlink()  # person 6 lost in camera A, person 12 in B
    (root / "cam_b" / "012_90.bmp").unlink()
    with pytest.raises(ValueError, match=r"only in cam_a: \['012'\], only in cam_b: \['006'\]"):
        load_benchmark("viper", root)
    (root / "cam_b" / "006_90.bmp").unlink()
    (root / "cam_a" / "012_45.bmp").unlink()
    bench = load_benchmark("viper", root)  # 6 complete persons, each paired with its own
    assert len(bench.persons) == 6
    for person in bench.persons:
        assert person.gallery[0].name.split("_")[0] == person.probe[0].name.split("_")[0]


@pytest.fixture
def cuhk03_new(tmp_path, monkeypatch) -> Path:
    """The CUHK03 fixture of test_benchmarks with a new-protocol config (5 train persons)."""
    monkeypatch.setenv("REID_DATASETS_DIR", str(tmp_path / "datasets"))  # read when used
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    test_benchmarks.write_cuhk03_mat(
        root / "cuhk03_release" / "cuhk-03.mat",
        test_benchmarks.PERSONS,
        test_benchmarks.TESTSETS,
        empty=test_benchmarks.EMPTY,
    )
    write_new_protocol(root)
    return root


def _rewrite_config(root: Path, **changes) -> None:
    path = root / "cuhk03_new_protocol_config_labeled.mat"
    config = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    config.update(changes)
    scipy.io.savemat(path, config)


def _config(root: Path) -> dict:
    return scipy.io.loadmat(root / "cuhk03_new_protocol_config_labeled.mat")


def test_cuhk03_new_refuses_test_images_in_the_training_set(cuhk03_new):
    config = _config(cuhk03_new)
    for key in ("query_idx", "gallery_idx"):
        write_new_protocol(cuhk03_new)
        train = np.concatenate([config["train_idx"], config[key][:2]])
        _rewrite_config(cuhk03_new, train_idx=train)
        with pytest.raises(ValueError, match=rf"2 image\(s\) are in both train_idx and {key}"):
            load_dataset("cuhk03-new", cuhk03_new)


def test_cuhk03_new_refuses_fractional_indices(cuhk03_new):
    query = _config(cuhk03_new)["query_idx"].astype(float)
    query[0] += 0.5
    _rewrite_config(cuhk03_new, query_idx=query)
    with pytest.raises(ValueError, match="query_idx holds non-integer indices"):
        load_dataset("cuhk03-new", cuhk03_new)


def test_a_skipped_dangling_image_link_is_reported_with_its_count(tiny_market, tmp_path, caplog):
    root = tmp_path / "market"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir(parents=True)
        for image in (tiny_market / folder).iterdir():
            (root / folder / image.name).write_bytes(image.read_bytes())
    os.symlink(tmp_path / "gone.jpg", root / "query" / "0001_c1s1_000009_01.jpg")
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset("market1501", root)
    assert len(dataset.query) == 4
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("skipped 1 entry" in m and "0001_c1s1_000009_01.jpg" in m for m in said)


def _jpeg_with_orientation(image_bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment holding only the orientation tag (written by hand)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0" * 4
    app1 = b"Exif\0\0" + b"MM\0\x2a\0\0\0\x08" + ifd
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def test_exif_orientation_is_applied_as_image_viewers_do(tmp_path):
    image = np.zeros((40, 16, 3), np.uint8)
    image[:8] = (0, 0, 255)  # a red band along the top (BGR)
    path = tmp_path / "sideways.jpg"
    path.write_bytes(_jpeg_with_orientation(image, 6))  # 6: rotate 90 degrees clockwise
    loaded = load_image(path)
    assert loaded.shape == (16, 40, 3)
    expected = np.rot90(image[:, :, ::-1], k=-1)  # independent: numpy's rotation, as RGB
    assert np.abs(loaded.astype(int) - expected).mean() < 4
    assert loaded[:, -8:, 0].mean() > 200 and loaded[:, :8, 0].mean() < 30


@pytest.mark.parametrize(
    "values, expected",
    [(np.array([[0, 100, 255]]), np.array([[0, 100, 255]])),  # 8-bit values in 16 bits: kept
     (np.array([[0, 257 * 100, 65535]]), np.array([[0, 100, 255]])),  # full range: / 257
     (np.array([[0, 300, 1000]]), np.array([[0, 1, 4]]))],  # mixed: the 16-bit scale
)  # fmt: skip
def test_sixteen_bit_images_are_scaled_by_their_actual_range(tmp_path, values, expected):
    path = tmp_path / "deep.png"
    ok, buf = cv2.imencode(".png", values.astype(np.uint16))
    assert ok
    path.write_bytes(buf.tobytes())
    loaded = load_image(path)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[:, :, 0], expected)
    np.testing.assert_array_equal(loaded[:, :, 0], loaded[:, :, 2])


@pytest.mark.parametrize("name", BENCH_SCRIPTS)
@pytest.mark.parametrize("argv", [["--help"], ["--no-such-flag"]])
def test_bench_scripts_parse_their_arguments_before_running(name, argv, tmp_path, monkeypatch):
    module = bench_module(name)
    monkeypatch.setenv("REID_RUNS_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == (0 if argv == ["--help"] else 2)
    assert not any(tmp_path.iterdir())  # nothing measured, no report written


# ---------------------------------------------------------------------------------------------
# Tracebacks and unclear messages (items 12-15): one line naming the file, exit code 2.
# ---------------------------------------------------------------------------------------------
def test_weights_holding_code_are_refused_in_one_line(tiny_market, tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": argparse.Namespace(run="code")}, evil)
    argv = _train_args(tiny_market, tmp_path / "run")
    argv[argv.index("scratch")] = "pretrained"
    assert deep_train.main([*argv, "--weights", str(evil)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "could run code" in err and str(evil) in err
    assert "weights_only=False" not in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["deep.train", "compare.lomo_xqda"])
@pytest.mark.parametrize(
    "content", [b"", b"\0" * 200, b"not a MATLAB file\n" * 10], ids=["empty", "zeros", "text"]
)
def test_a_cuhk03_new_config_that_is_not_a_mat_file_is_one_line(
    cuhk03_new, command, content, capsys
):
    config = cuhk03_new / "cuhk03_new_protocol_config_labeled.mat"
    config.write_bytes(content)
    common = ["--dataset", "cuhk03-new", "--data-root", str(cuhk03_new)]
    if command == "deep.train":
        argv = _train_args(cuhk03_new, cuhk03_new.parent / "run")
        argv[argv.index("market1501")] = "cuhk03-new"
        assert deep_train.main(argv) == 2
    else:
        out = ["--out", str(cuhk03_new.parent / "run")]
        assert compare.lomo_xqda.main([*common, *out]) == 2
    err = capsys.readouterr().err
    assert f"{config} is not a readable MATLAB v5 file" in err


def test_a_cuhk03_new_config_with_one_label_names_the_config(cuhk03_new):
    labels = _config(cuhk03_new)["labels"]
    _rewrite_config(cuhk03_new, labels=np.full_like(labels, 11))
    with pytest.raises(ValueError) as caught:
        load_dataset("cuhk03-new", cuhk03_new)
    assert "cuhk03_new_protocol_config_labeled.mat" in str(caught.value)
    assert "bounding_box_train" not in str(caught.value)


def test_every_argument_of_data_benchmarks_has_a_help_text(monkeypatch):
    assert flags_without_help(captured_parser(benchmarks.main, monkeypatch)) == []


# ---------------------------------------------------------------------------------------------
# Leftovers (item 16): what a writer killed outright (kill -9) left is removed by the next
# command that touches that folder; a live writer's temporary (it holds a lock) is never.
# ---------------------------------------------------------------------------------------------
def _plant(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    planted = [folder / name for name in names]
    for path in planted:
        path.write_bytes(b"half-written")
    return planted


KILLED_EXPORT = (".model.onnx.k1ll3d_9.onnx", ".model.onnx.json.k1ll3d_9")


@pytest.mark.parametrize("export_twice", [False, True])
def test_export_removes_what_a_killed_export_left(tiny_market, tmp_path, export_twice):
    run = make_run(tmp_path / "run", tiny_market)
    if export_twice:  # the second export reuses the first: the clean-up must not depend on it
        assert export.main([str(run)]) == 0
    planted = _plant(run, *KILLED_EXPORT)
    assert export.main([str(run)]) == 0
    assert not any(p.exists() for p in planted)
    assert (run / "model.onnx").is_file()


def test_measure_removes_what_a_killed_export_left(tiny_market, tmp_path):
    run = make_run(tmp_path / "run", tiny_market)
    planted = _plant(run, *KILLED_EXPORT, ".summary.json.abcd_123")
    layout = RunsLayout(tmp_path / "runs")
    measure.measure_run(run, layout=layout, engines=["torch"], num_timed_queries=2, table=False)
    assert not any(p.exists() for p in planted)


def test_results_table_rewrites_remove_a_killed_rewrites_temporary(tmp_path):
    table = tmp_path / "synthetic" / "results.csv"
    results.upsert_rows(table, [result_row()])
    planted = _plant(table.parent, ".results.csv.x7k2m9q1")
    results.check_table(table)  # the start-of-run check of every command that writes rows
    assert not planted[0].exists()
    planted = _plant(table.parent, ".results.csv.a1b2c3d4")
    results.upsert_rows(table, [result_row(seed=1)])
    assert not planted[0].exists()
    assert len(results.read_results(table)) == 2


@pytest.mark.parametrize(
    "name, temporary",
    [("resnet18.pt", ".resnet18.pt.q0w9e8r7"), ("tradeoff.png", ".tradeoff.png.zz11yy22.png"),
     ("teacher_cache.npz", ".teacher_cache.npz.mm33nn44")],
)  # fmt: skip
def test_every_atomic_write_removes_its_targets_orphans(tmp_path, name, temporary):
    (orphan,) = _plant(tmp_path / "anywhere", temporary)
    neighbour = _plant(tmp_path / "anywhere", ".other.pt.q0w9e8r7", "notes.txt")
    atomic_write_text(tmp_path / "anywhere" / name, "new")
    assert not orphan.exists()
    assert all(p.exists() for p in neighbour)  # another file's temporary, a user's file


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    (busy,) = _plant(tmp_path, ".results.csv.l1v3_w1t")
    with open(busy, "rb") as held:  # another process writing: it holds the lock
        fcntl.flock(held, fcntl.LOCK_EX)
        results.check_table(tmp_path / "results.csv")
        atomic_write_text(tmp_path / "results.csv", "a\n1\n")
        assert busy.exists()


# ---------------------------------------------------------------------------------------------
# Threads: a default that degrades gracefully on a shared machine (bench/bench_threads.py: on
# a shared 2-core VM, 1 thread ~220 images/s, 2 spinning threads 6-18, 2 passive ones ~100).
# ---------------------------------------------------------------------------------------------
def test_deep_train_defaults_to_one_thread():
    assert TrainConfig().threads == 1
    args = config_parser("train").parse_args(["--model", "resnet18"])
    assert config_from_args(args).threads == 1


@pytest.mark.parametrize("package", ["deep", "compare", "classical"])
@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_the_openmp_wait_policy_is_passive_unless_the_user_set_one(package, preset):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    probe = f"import sys; import {package}; import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    probe += "; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=Path(__file__).parents[1],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out[0] == (preset or "PASSIVE")
    assert out[1] == "False"  # set before torch (which reads it once, when it loads)
