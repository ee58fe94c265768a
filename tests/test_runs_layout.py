"""The runs tree (data.runs), the run-folder rule (deep.run_folder), and measurements keyed by
the test data they were made on (compare.measure, issue 22 item 5)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.layouts import load_dataset
from data.paths import datasets_dir, runs_dir
from data.runs import RunsLayout
from deep.config import TrainConfig
from deep.run_folder import RunFolder
from tests.builders import TINY_MODEL, make_run, write_image, write_tiny_market


def test_layout_names_paths_without_creating_anything(tmp_path: Path):
    layout = RunsLayout(tmp_path / "runs")
    paths = [
        layout.results_table("d"),
        layout.classical_run("d", "lomo"),
        layout.cnn_run("d", "resnet18", "baseline", 3),
        layout.teacher_cache("d", "seed0_x.pt"),
        layout.lomo_cache("d"),
        layout.throughput_cache("d"),
        layout.scaling_cache(),
        layout.sweep_dir("d"),
        layout.report("d", "tradeoff.md"),
    ]
    assert all(p.is_relative_to(tmp_path / "runs") for p in paths)
    assert paths[2] == tmp_path / "runs" / "d" / "deep" / "resnet18" / "baseline_seed3"
    assert len(set(paths)) == len(paths)
    assert not (tmp_path / "runs").exists()  # naming is pure
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.root = tmp_path  # type: ignore[misc]


def test_environment_is_read_when_asked_not_at_import(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REID_RUNS_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("REID_DATASETS_DIR", str(tmp_path / "d"))
    assert RunsLayout.from_env().root == runs_dir() == tmp_path / "a"
    assert datasets_dir() == tmp_path / "d"
    assert RunsLayout.from_env({"REID_RUNS_DIR": str(tmp_path / "b")}).root == tmp_path / "b"
    assert RunsLayout.at(tmp_path / "c").root == tmp_path / "c"
    # the config resolves its runs tree when the command line is parsed, and never saves it
    from deep.config import config_from_args, config_parser

    args = config_parser("t").parse_args(["--model", TINY_MODEL])
    config = config_from_args(args)
    assert config.runs_dir == str(tmp_path / "a")
    assert "runs_dir" not in config.as_dict()
    assert TrainConfig.from_dict({**config.as_dict(), "runs_dir": "x"}).runs_dir is None


def test_one_rule_for_a_finished_and_current_run(tmp_path: Path):
    data = write_tiny_market(tmp_path / "market")
    run = make_run(tmp_path / "run", data, init="scratch")
    cfg = TrainConfig.from_dict(json.loads(json.dumps(_saved_config(run))))
    folder = RunFolder(run)
    assert folder.is_current(cfg)
    # runtime settings and the teacher's path are not part of what a run is
    assert folder.is_current(dataclasses.replace(cfg, threads=7, out="elsewhere", teacher="t"))
    assert not folder.is_current(dataclasses.replace(cfg, epochs=cfg.epochs + 1))
    assert not folder.is_current(dataclasses.replace(cfg, model="resnet18"))  # no exception
    assert not folder.is_current(cfg, backbone="another backbone's sha256")
    assert not folder.is_current(cfg, teacher="abc")  # no record of its teacher
    folder.record_teacher("teacher/dir", "abc")
    assert folder.is_current(cfg, teacher="abc") and not folder.is_current(cfg, teacher="xyz")
    assert not RunFolder(tmp_path / "nothing").is_current(cfg)
    (run / "model.pt").write_bytes(b"cut off")
    assert not RunFolder(run).is_current(cfg)  # unreadable: not current, never a traceback


def _saved_config(run: Path) -> dict:
    return RunFolder(run).model_state()["config"]


def _other_dataset(root: Path) -> Path:
    """Same layout and file names as write_tiny_market, other images (other byte sizes)."""
    write_tiny_market(root)
    rng = np.random.default_rng(7)
    for folder in ("query", "bounding_box_test"):
        for path in sorted((root / folder).glob("*.jpg")):
            write_image(path, rng, (96, 48))
    return root


def test_measuring_on_other_data_never_replaces_the_studys_rows(tmp_path: Path, capsys):
    """Issue 22 item 5: ``compare.measure RUN --data-root <another dataset>`` used to replace
    the study's row of that run (for the engines measured only) with numbers from another
    test set. Now the measurement goes to RUN/other_data/<fingerprint>/."""
    from compare import measure

    layout = RunsLayout(tmp_path / "runs")
    own = write_tiny_market(tmp_path / "market")
    other = _other_dataset(tmp_path / "other")
    run = make_run(layout.cnn_run("market1501", TINY_MODEL, "baseline", 0), own)
    args = [str(run), "--engines", "torch", "--num-timed-queries", "2"]
    # named as deep.train names it (make train), found through the layout
    named = ["--model", TINY_MODEL, "--dataset", "market1501", "--seed", "0", *args[1:]]
    assert measure.main([*named, "--runs-dir", str(layout.root)]) == 0
    table = layout.results_table("market1501")
    before_rows = pd.read_csv(table)
    before_summary = (run / "summary.json").read_text()

    assert measure.main([*args, "--runs-dir", str(layout.root), "--data-root", str(other)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(table), before_rows)  # the study's rows stand
    assert (run / "summary.json").read_text() == before_summary
    fingerprint = load_dataset("market1501", other).test_fingerprint()
    assert fingerprint != json.loads(before_summary)["test_data"]
    elsewhere = run / "other_data" / fingerprint
    assert json.loads((elsewhere / "summary.json").read_text())["test_data"] == fingerprint
    assert len(pd.read_csv(elsewhere / "results.csv")) == 1
    assert str(elsewhere) in capsys.readouterr().out

    # a moved copy of the run's own data is the same data: measured as usual, into the study
    moved = shutil.copytree(own, tmp_path / "moved")
    assert measure.main([*args, "--runs-dir", str(layout.root), "--data-root", str(moved)]) == 0
    assert len(list((run / "other_data").iterdir())) == 1
    assert (
        json.loads((run / "summary.json").read_text())["test_data"]
        == (json.loads(before_summary)["test_data"])
    )


def _v1_summary() -> dict:
    """A summary.json as every version before the typed record wrote it (no ``schema``)."""
    timing = {"ms_extract": 2.0, "ms_match": 0.5, "ms_query": 2.5, "ms_query_p90": 3.0,
              "threads": 1}  # fmt: skip
    entry = {"engine": "torch", "rank1": 0.5, "rank5": 0.75, "rank10": 1.0, "mAP": 0.4,
             "mAP_torchreid": 0.45, "cosine": {"rank1": 0.5, "mAP": 0.4}, "embedding_dim": 8,
             "timing": timing}  # fmt: skip
    config = TrainConfig(
        model=TINY_MODEL, dataset="market1501", variant="distilled", seed=2
    ).as_dict()
    return {"run_dir": "r", "model": TINY_MODEL, "variant": "distilled", "seed": 2,
            "dataset": "market1501", "input_size": [64, 32], "init": "pretrained", **entry,
            "params": 1000, "gflops": 0.01, "engines": {"torch": entry},
            "weights_sha256": "ab", "config": config, "device": "cpu",
            "training": {"accuracy": 0.9, "seconds": 120.0}}  # fmt: skip


def test_summary_records_read_every_schema_and_refuse_newer_ones(tmp_path: Path):
    from compare.cnn_summary import SCHEMA, CnnSummary, SummaryError
    from compare.measure import row_from_summary, rows_from_summary

    old = _v1_summary()
    record = CnnSummary.from_json(old)
    assert record.schema == 1 and record.test_data is None and record.input_size == (64, 32)
    row = row_from_summary(old, tmp_path)
    assert (row.rank1, row.mAP, row.input_size, row.init) == (50.0, 40.0, "64x32", "pretrained")
    assert json.loads(row.extra)["T"] == 4.0 and json.loads(row.extra)["train_min"] == 2.0
    # written again, it is schema 2 and the same row
    again = CnnSummary.from_json(json.loads(json.dumps(record.to_json())))
    assert again.to_json()["schema"] == SCHEMA == 2
    assert dataclasses.replace(row_from_summary(again, tmp_path), date=row.date) == row
    # the oldest summaries, before engines were recorded: PyTorch's numbers at the top level
    oldest = {k: v for k, v in old.items() if k != "engines"}
    assert [r.engine for r in rows_from_summary(oldest, tmp_path)] == ["torch"]
    with pytest.raises(SummaryError, match=r"x/summary.json has summary schema 3"):
        CnnSummary.from_json({**old, "schema": 3}, "x/summary.json")
    with pytest.raises(SummaryError, match="not a complete run summary"):
        CnnSummary.from_json({k: v for k, v in old.items() if k != "params"})


def test_row_extra_is_typed():
    from compare.results import RowExtra

    extra = RowExtra.parse('{"feature_dim": "26960", "xqda_dim": 20, "retinex": true, "T": 4}')
    assert (extra.feature_dim, extra.xqda_dim, extra.retinex) == (26960, 20, True)
    assert extra.engine_options is None
    options = {"threads": 1, "graph_optimization": "all"}
    assert RowExtra.parse(json.dumps({"engine_options": options})).engine_options == options
    for broken in ("nan", "not json", "[1, 2]", float("nan")):
        assert RowExtra.parse(broken) == RowExtra()


def test_the_lomo_cache_of_a_classical_run_is_its_trees():
    layout = RunsLayout(Path("/r"))
    run = layout.classical_run("market1501", "lomo_xqda_market")
    assert RunsLayout.lomo_cache_of(run) == layout.lomo_cache("market1501")
