"""Issue 22 (reliability, third round): nothing overwritten that is not ours, no silent wrong
result, no traceback, no leftovers. One section per family; each case failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import compare.lomo_xqda
from deep import export
from deep import train as deep_train
from tests.test_export import make_run, write_tiny_market

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
