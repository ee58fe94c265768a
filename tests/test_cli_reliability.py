"""Command lines: every flag has a help text, and every bad value stops the run before any work.

Issue items 14 and 12. The parsers are captured without running anything (``parse_args`` is
replaced by a recorder); the bad-value probes run each ``main`` in-process with tripwires on
every piece of real work (dataset generation, training, export, measuring, the report), so a
value that slips through fails the test at once instead of starting a study.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import classical.pipeline
import compare.distillation
import compare.lomo_xqda
import compare.measure
import compare.tradeoff
import data.synthetic
import deep.distill
import deep.export
import deep.pretrain
import deep.quantize
import deep.train
from data.cli import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from tests.builders import BENCH_SCRIPTS, bench_module, captured_parser, flags_without_help

REPO = Path(__file__).resolve().parents[1]
MODULES = {
    "classical.pipeline": classical.pipeline,
    "compare.lomo_xqda": compare.lomo_xqda,
    "compare.measure": compare.measure,
    "compare.distillation": compare.distillation,
    "compare.tradeoff": compare.tradeoff,
    "deep.train": deep.train,
    "deep.distill": deep.distill,
    "deep.export": deep.export,
    "deep.quantize": deep.quantize,
    "deep.pretrain": deep.pretrain,
    "data.synthetic": data.synthetic,
}


# ---------------------------------------------------------------------------------------------
# Item 14: a help text for every flag
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_flag_of_every_command_line_has_a_help_text(name, monkeypatch):
    parser = captured_parser(MODULES[name].main, monkeypatch)
    assert len(parser._actions) > 1
    assert flags_without_help(parser) == []


@pytest.mark.parametrize("name", BENCH_SCRIPTS)
def test_every_flag_of_every_bench_script_has_a_help_text(name, monkeypatch):
    if "ArgumentParser" not in (REPO / "bench" / name).read_text():
        pytest.skip(f"{name} takes no arguments")
    parser = captured_parser(bench_module(name).main, monkeypatch)
    assert flags_without_help(parser) == []


def test_the_help_checker_sees_a_missing_help_in_a_subcommand():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ok", help="documented")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="a command").add_argument("--jobs")
    sub.add_parser("bare")
    assert flags_without_help(parser) == ["run --jobs", "bare (subcommand)"]


# ---------------------------------------------------------------------------------------------
# Item 12: every value checked before any work, the message naming the flag
# ---------------------------------------------------------------------------------------------
class _WorkStarted(BaseException):
    """A tripwire went off: the command line started real work with a bad value."""


#: (module, attribute) of every piece of real work the command lines start.
WORK = [
    (data.synthetic, "ensure_synthetic"),
    (data.synthetic, "generate"),
    (data.synthetic, "contact_sheet"),
    (classical.pipeline, "_run_market"),
    (classical.pipeline, "_run_trials"),
    (deep.train, "train"),
    (deep.train, "open_teacher"),
    (deep.distill, "worker_pool"),
    (deep.distill, "run_one"),
    (deep.distill, "train"),
    (deep.pretrain, "worker_pool"),
    (deep.pretrain, "pretrain_one"),
    (deep.export, "export_run"),
    (deep.quantize, "quantize_run"),
    (compare.measure, "measure_run"),
    (compare.distillation, "run_study"),
    (compare.distillation, "measure_runs"),
    (compare.tradeoff, "ensure_runs"),
    (compare.tradeoff, "ensure_engine_rows"),
    (compare.tradeoff, "ensure_rerank_rows"),
    (compare.tradeoff, "build_report"),
]


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Tripwires on every piece of work, and the runs folder moved under ``tmp_path``."""

    def tripwire(name):
        def started(*args, **kwargs):
            raise _WorkStarted(name)

        return started

    for module, name in WORK:
        monkeypatch.setattr(module, name, tripwire(f"{module.__name__}.{name}"))
    monkeypatch.setenv("REID_RUNS_DIR", str(tmp_path / "runs"))  # read when arguments are parsed
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def _exit_code(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _refused(main, argv, flags, capsys) -> str:
    code = _exit_code(main, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err
    message = err[err.index("error:") :]  # not the usage line, which names every flag
    for flag in flags:
        assert flag in message, err
    return message


def _case_id(case) -> str:
    return " ".join(case) if isinstance(case, list) else None


CLASSICAL_CASES = [
    (["--reg", "0"], ["--reg"]),
    (["--reg", "-1"], ["--reg"]),
    (["--reg", "nan"], ["--reg"]),
    (["--n-components", "0"], ["--n-components"]),
    (["--trials", "0"], ["--trials"]),
    (["--size", "0x10"], ["--size"]),
    (["--size", "abc"], ["--size"]),
    (["--size", "4x4"], ["--size"]),
    (["--split-seed", "-1"], ["--split-seed"]),
    (["--solver", "qr"], ["--solver"]),
]
TIMING_CASES = [
    (["--threads", "0"], ["--threads"]),
    (["--threads", "-1"], ["--threads"]),
    (["--num-timed-queries", "0"], ["--num-timed-queries"]),
]


@pytest.mark.parametrize(
    ("name", "argv", "flags"),
    [("classical.pipeline", a, f) for a, f in CLASSICAL_CASES]
    + [("compare.lomo_xqda", a, f) for a, f in CLASSICAL_CASES + TIMING_CASES]
    + [("classical.pipeline", a, ["unrecognized arguments"]) for a, _ in TIMING_CASES[:1]],
    ids=_case_id,
)
def test_classical_command_lines_refuse_bad_values_before_any_work(
    name, argv, flags, no_work, tmp_path, capsys
):
    runs = tmp_path / "classical_runs"
    base = ["--data-root", str(no_work), "--runs-dir", str(runs)]
    _refused(MODULES[name].main, base + argv, flags, capsys)
    assert not any(no_work.iterdir()), "the dataset was generated"
    assert not runs.exists(), "a run folder or cache was written"


TRAIN_CASES = [
    (["--instances", "0"], ["--instances"]),
    (["--epochs", "1"], ["--warmup-epochs", "--epochs"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--threads", "-1"], ["--threads"]),
    (["--batch-size", "1"], ["--batch-size"]),
    (["--lr", "0"], ["--lr"]),
    (["--input-size", "8x8"], ["--input-size"]),
    (["--input-size", "abc"], ["--input-size"]),
    (["--seed", "-1"], ["--seed"]),
    (["--last-stride", "3"], ["--last-stride"]),
    (["--momentum", "-1"], ["--momentum"]),
    (["--gamma", "0"], ["--gamma"]),
    (["--triplet-weight", "-1"], ["--triplet-weight"]),
    (["--triplet-margin", "-1"], ["--triplet-margin"]),
    (["--colour-jitter", "-1"], ["--colour-jitter"]),
    (["--kd-feature-weight", "-1"], ["--kd-feature-weight"]),
    (["--kd-feature-kind", "l1"], ["--kd-feature-kind"]),
    (["--stop-after-steps", "0"], ["--stop-after-steps"]),
    (["--milestones", "0"], ["--milestones"]),
    (["--kd-T", "0"], ["--kd-T"]),
    (["--kd-alpha", "2"], ["--kd-alpha"]),
    (["--model", "resnet9"], ["--model"]),
]


@pytest.mark.parametrize(("argv", "flags"), TRAIN_CASES, ids=_case_id)
def test_deep_train_refuses_bad_values_before_any_work(argv, flags, no_work, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--data-root", str(no_work), "--out", str(out), "--init", "scratch"]
    _refused(deep.train.main, base + argv, flags, capsys)
    assert not any(no_work.iterdir()), "the dataset was generated"
    assert not out.exists()


DISTILL_CASES = [
    (["run", "--jobs", "0"], ["--jobs"]),
    (["run", "--jobs", "-1"], ["--jobs"]),
    (["run", "--T", "0"], ["--T"]),
    (["run", "--alpha", "2"], ["--alpha"]),
    (["run", "--seeds", "-1"], ["--seeds"]),
    (["run", "--students", "resnet9"], ["--students"]),
    (["run", "--teacher-model", "resnet9"], ["--teacher-model"]),
    (["sweep", "--jobs", "0"], ["--jobs"]),
    (["sweep", "--temperatures", "0"], ["--temperatures"]),
    (["sweep", "--alphas", "2"], ["--alphas"]),
    (["sweep", "--alphas", "0"], ["--alphas"]),
    (["sweep", "--student", "resnet9"], ["--student"]),
    (["train", "--teacher", "t", "--student", "resnet9"], ["--student"]),
    (["train", "--teacher", "t", "--student", "resnet18", "--seed", "-1"], ["--seed"]),
    (["train", "--teacher", "t", "--student", "resnet18", "--feature-weight", "-1"], ["--feature"]),
]


@pytest.mark.parametrize(("argv", "flags"), DISTILL_CASES, ids=_case_id)
def test_deep_distill_refuses_bad_values_before_any_work(argv, flags, no_work, tmp_path, capsys):
    _refused(deep.distill.main, [*argv, "--data-root", str(no_work)], flags, capsys)
    assert not any(no_work.iterdir()), "the dataset was generated"
    assert not (tmp_path / "runs" / "synthetic" / "sweep").exists()


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--jobs", "0"], ["--jobs"]),
        (["--T", "0"], ["--T"]),
        (["--T", "nan"], ["--T"]),
        (["--alpha", "2"], ["--alpha"]),
        (["--seeds", "-1"], ["--seeds"]),
        (["--students", "resnet9"], ["--students"]),
        (["--teacher-model", "resnet9"], ["--teacher-model"]),
    ],
    ids=_case_id,
)
def test_compare_distillation_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    _refused(compare.distillation.main, [*argv, "--data-root", str(no_work)], flags, capsys)
    assert not any(no_work.iterdir())


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--threads", "0"], ["--threads"]),
        (["--jobs", "0"], ["--jobs"]),
        (["--jobs", "-1"], ["--jobs"]),
        (["--profile", "huge"], ["--profile"]),
    ],
    ids=_case_id,
)
def test_compare_tradeoff_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    _refused(compare.tradeoff.main, [*argv, "--data-root", str(no_work)], flags, capsys)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--threads", "-1"], ["--threads"]),
        (["--threads", "0"], ["--threads"]),
        (["--num-timed-queries", "0"], ["--num-timed-queries"]),
    ],
    ids=_case_id,
)
def test_compare_measure_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    _refused(compare.measure.main, [str(no_work), *argv], flags, capsys)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--num-images", "0"], ["--num-images"]),
        (["--seed", "-1"], ["--seed"]),
        (["--method", "kl"], ["--method"]),
        (["--preset", "fast"], ["--preset"]),
        (["--engines", "openvino"], ["--engines"]),
    ],
    ids=_case_id,
)
def test_deep_quantize_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    _refused(deep.quantize.main, [str(no_work), *argv], flags, capsys)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--jobs", "0"], ["--jobs"]),
        (["--jobs", "-1"], ["--jobs"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--seed", "-1"], ["--seed"]),
        (["--models", "resnet9"], ["--models"]),
    ],
    ids=_case_id,
)
def test_deep_pretrain_refuses_bad_values_before_any_work(argv, flags, no_work, tmp_path, capsys):
    out = tmp_path / "weights"
    _refused(
        deep.pretrain.main, [*argv, "--data-root", str(no_work), "--out", str(out)], flags, capsys
    )
    assert not any(no_work.iterdir()), "the dataset was generated"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--opset", "0"], ["--opset"]),
        (["--opset", "16"], ["--opset"]),
        (["--opset", "999"], ["--opset"]),
        (["--opset", "abc"], ["--opset"]),
        (["--atol", "0"], ["--atol"]),
        (["--atol", "-1"], ["--atol"]),
        (["--atol", "nan"], ["--atol"]),
    ],
    ids=_case_id,
)
def test_deep_export_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    _refused(deep.export.main, [str(no_work), *argv], flags, capsys)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--seed", "-1"], ["--seed"]),
        (["--seed", "x"], ["--seed"]),
        (["--num-train-ids", "0"], ["--num-train-ids"]),
        (["--num-test-ids", "-3"], ["--num-test-ids"]),
        (["--num-junk", "-1"], ["--num-junk"]),
        (["--num-distractors", "-1"], ["--num-distractors"]),
        (["--height", "0"], ["--height"]),
        (["--difficulty", "2"], ["--difficulty"]),
        (["--occlusion", "1.5"], ["--occlusion"]),
        (["--preset", "huge"], ["--preset"]),
    ],
    ids=_case_id,
)
def test_data_synthetic_refuses_bad_values_before_any_work(argv, flags, no_work, capsys):
    out = no_work / "synthetic"
    _refused(data.synthetic.main, ["--out", str(out), *argv], flags, capsys)
    assert not out.exists()


def test_python_m_data_synthetic_runs_and_refuses_a_negative_seed(tmp_path):
    """``python -m data.synthetic`` (``make data``) re-executes the module that the package
    already imported: its layouts must not be registered twice (it crashed with a traceback)."""
    env = {
        **os.environ,
        "REID_RUNS_DIR": str(tmp_path / "runs"),
        "REID_DATASETS_DIR": str(tmp_path / "datasets"),
    }
    command = [sys.executable, "-m", "data.synthetic", "--out", str(tmp_path / "s")]
    bad = subprocess.run(
        [*command, "--seed", "-1"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2, bad.stderr
    assert "--seed" in bad.stderr and "Traceback" not in bad.stderr
    counts = subprocess.run(
        [*command, "--preset", "small", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert counts.returncode == 0, counts.stderr
    assert '"train_images"' in counts.stdout
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (positive_int, {"1": 1, "12": 12}, ["0", "-1", "1.5", "x", ""]),
        (non_negative_int, {"0": 0, "7": 7}, ["-1", "x", "2.0"]),
        (positive_float, {"0.5": 0.5, "3": 3.0}, ["0", "-1", "nan", "inf", "x"]),
        (non_negative_float, {"0": 0.0, "2.5": 2.5}, ["-0.1", "nan", "inf", "x"]),
        (fraction, {"0": 0.0, "1": 1.0, "0.9": 0.9}, ["-0.1", "1.01", "nan", "x"]),
    ],
)
def test_argument_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value and not math.isnan(kind(text))
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)
