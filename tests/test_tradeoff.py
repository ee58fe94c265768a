"""compare.tradeoff: what runs, the report from an existing table, caches, clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from compare import report, scaling, throughput, tradeoff
from compare import study as runner
from compare.pipelines import classical as classical_adapter
from compare.pipelines import cnn
from compare.results import upsert_rows
from data.runs import RunsLayout
from tests.builders import (
    make_run,
    result_row,
    results_table,
    study_table,
    write_results_table,
    write_tiny_market,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch) -> Path:
    """Results under tmp_path (passed as the runs layout), tiny scaling galleries."""
    monkeypatch.setattr(scaling, "GALLERY_SIZES", (100, 1000))
    monkeypatch.setattr(cnn, "CNN_DIMS", (32,))
    monkeypatch.setattr(classical_adapter, "LOMO_DIM", 64)
    return tmp_path


def test_report_from_existing_table(runs: Path, monkeypatch):
    df = study_table().assign(extra='{"feature_dim": 64}')
    out = write_results_table(runs, df)
    assert (
        tradeoff.main(["--dataset", "d", "--skip-runs", "--no-throughput", "--runs-dir", str(runs)])
        == 0
    )
    assert (out / "tradeoff.png").read_bytes()[:8] == PNG
    assert (out / "tradeoff.svg").stat().st_size > 1000
    text = (out / "tradeoff.md").read_text()
    for needle in (
        "LOMO+XQDA",
        "## Machine",
        "| 1,000 |",
        "64-d (raw LOMO)",
        "205-d (XQDA)",
        "256-d (MNv1 0.25)",
        "Where matching starts to dominate",
        "students alone vs taught",
    ):
        assert needle in text, needle
    # a second report measures nothing: every scaling point comes from the cache
    monkeypatch.setattr(
        "compare.timing.time_gallery_matching",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("measured again")),
    )
    cached = scaling.scaling_table(scaling.scaling_dims(df), threads=1, layout=RunsLayout(runs))
    assert len(cached) == 6 * 2 and (cached.ms_match > 0).all()


def test_missing_runs_and_what_gets_called(runs: Path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_module", lambda args: calls.append(args[0]))
    expected = {
        ("mobilenet_v1_0.25", v, s, "64x32", "scratch")
        for v in ("baseline", "distilled")
        for s in (0, 1)
    }
    monkeypatch.setattr(cnn, "expected_deep_rows", lambda dataset, profile: expected)
    assert runner.ensure_runs("d", None, "quick", None, layout=RunsLayout(runs)) == [
        "classical",
        "deep",
    ]
    assert calls == ["compare.lomo_xqda", "compare.distillation"]
    df = study_table()
    assert runner.missing_runs(df, "d", "quick") == []  # all four MNv1 0.25 rows exist
    assert runner.missing_runs(df[df.seed == 0], "d", "quick") == ["deep"]
    assert runner.missing_runs(df[df.pipeline == "deep"], "d", "quick") == ["classical"]
    assert runner.missing_runs(df, "other", "quick") == ["classical", "deep"]
    # Scratch rows do not stand in for the runs of a profile that fine-tunes.
    assert runner.missing_runs(df.assign(init="pretrained"), "d", "quick") == ["deep"]
    write_results_table(runs, df)
    calls.clear()
    assert (
        runner.ensure_runs("d", None, "quick", None, layout=RunsLayout(runs)) == [] and calls == []
    )


def test_missing_runs_without_a_known_profile(monkeypatch):
    monkeypatch.setattr(cnn, "expected_deep_rows", lambda dataset, profile: None)
    df = study_table()
    assert runner.missing_runs(df, "d", "quick") == []
    assert runner.missing_runs(df[df.variant != "distilled"], "d", "quick") == ["deep"]


def test_only_the_study_configuration_of_lomo_xqda_is_plotted():
    from classical.pipeline import ClassicalConfig, run_name

    study = study_table()
    retinex = study[study.pipeline == "classical"].assign(
        model=run_name(ClassicalConfig(retinex=True)), rank1=99.0
    )
    old = study[study.pipeline == "classical"].assign(model="lomo_xqda", rank1=98.0)
    df = pd.concat([study, retinex, old], ignore_index=True)
    rows, notes = report.plotted_rows(df, "d")
    classical = rows[rows.pipeline == "classical"]
    assert len(classical) == 1 and classical.model.iloc[0] == "lomo_xqda"  # labelled LOMO+XQDA
    assert classical.rank1.iloc[0] == study[study.pipeline == "classical"].rank1.iloc[0]
    assert any("2 LOMO+XQDA row(s) with other settings" in n for n in notes)
    # a table with only other configurations still lacks the study's classical run
    others = pd.concat([study[study.pipeline == "deep"], retinex, old], ignore_index=True)
    assert "classical" in runner.missing_runs(others, "d", "quick")


def test_failed_pipeline_is_a_clear_error(runs: Path, monkeypatch, capsys):
    monkeypatch.setattr(cnn, "expected_deep_rows", lambda dataset, profile: None)
    monkeypatch.setattr(runner.sys, "executable", "false")  # every subprocess fails
    assert tradeoff.main(["--dataset", "d", "--runs-dir", str(runs)]) == 2
    assert "compare.lomo_xqda" in capsys.readouterr().err


def test_crossover_interpolates_in_log_space():
    table = pd.DataFrame(
        dict(dim=[8, 8, 8], gallery_size=[1000, 10000, 100000], ms_match=[0.1, 1.0, 10.0])
    )
    assert scaling.crossover(table, 8, 3.1622776) == pytest.approx(31622.776, rel=1e-4)
    assert scaling.crossover(table, 8, 0.05) == 0.0
    assert scaling.crossover(table, 8, 50.0) is None
    assert scaling.crossover(table, 16, 1.0) is None


def test_scaling_dims_from_rows():
    df = results_table().assign(extra='{"feature_dim": 26960, "xqda_dim": 205}')
    dims = scaling.scaling_dims(df)
    assert dims[26960] == "26960-d (raw LOMO)" and dims[205] == "205-d (XQDA)"
    assert dims[2048] == "2048-d (R50)" and dims[1280] == "1280-d (MNv2 1.0)"
    assert dims[512] == "512-d"


def test_clear_errors(runs: Path, capsys):
    assert tradeoff.main(["--dataset", "nothing", "--skip-runs", "--runs-dir", str(runs)]) == 2
    assert "not found" in capsys.readouterr().err
    upsert_rows(runs / "e" / "results.csv", [result_row(dataset="other")])
    assert tradeoff.main(["--dataset", "e", "--skip-runs", "--runs-dir", str(runs)]) == 2
    assert "no rows for dataset 'e'" in capsys.readouterr().err
    (runs / "f").mkdir()
    (runs / "f" / "results.csv").write_text("dataset,rank1\nf,1\n")
    assert tradeoff.main(["--dataset", "f", "--skip-runs", "--runs-dir", str(runs)]) == 2
    assert "lacks columns" in capsys.readouterr().err


def test_throughput_table_caches_and_reports_failures(runs: Path, monkeypatch):
    import numpy as np

    calls = []

    def fake_one(row, images, threads):
        calls.append(row.model)
        if row.model == "resnet50":
            raise FileNotFoundError("no checkpoint")
        return 100.0

    monkeypatch.setattr(throughput, "_throughput_one", fake_one)
    monkeypatch.setattr(throughput, "_throughput_images", lambda d, r: np.zeros((2, 8, 4, 3)))
    table = throughput.throughput_table(
        results_table(), "d", None, threads=1, layout=RunsLayout(runs)
    )
    assert sorted(calls) == sorted(set(results_table().model))  # one measurement per architecture
    r50 = table[table.model == "resnet50"].iloc[0]
    assert np.isnan(r50.images_per_s) and "no checkpoint" in r50.note
    assert (table[table.model != "resnet50"].images_per_s == 100.0).all()
    text = throughput.throughput_markdown(table)
    assert "| R50 | 64x32 | torch | - (not measured: no checkpoint) |" in text
    calls.clear()
    throughput.throughput_table(results_table(), "d", None, threads=1, layout=RunsLayout(runs))
    assert calls == []  # cached


def test_teachers_are_read_from_the_distilled_runs(tmp_path: Path):
    from compare.report import teachers_used

    deep = RunsLayout(tmp_path).deep_dir("d")
    assert teachers_used(deep) == []
    for student, teacher in [("mobilenet_v1_0.25", "resnet18"), ("resnet18", "resnet18")]:
        run = deep / student / "distilled_seed0"
        run.mkdir(parents=True)
        teacher_dir = deep / teacher / "baseline_seed0"
        (run / "config.json").write_text(json.dumps({"teacher": str(teacher_dir)}))
    (deep / "resnet18" / "baseline_seed0").mkdir(parents=True, exist_ok=True)
    (deep / "resnet18" / "baseline_seed0" / "config.json").write_text("{}")
    assert teachers_used(deep) == ["resnet18"]


def test_missing_engines_per_run_folder():
    df = results_table().assign(
        run_dir=lambda d: "runs/d/deep/" + d.model + "/s" + d.seed.astype(str)
    )
    df.loc[df.pipeline == "classical", "run_dir"] = "runs/d/classical"
    ort = df[df.model == "resnet50"].assign(engine="onnxruntime")
    todo = runner.missing_engines(pd.concat([df, ort]), "d", ["torch", "onnxruntime"])
    assert "runs/d/classical" not in todo  # LOMO+XQDA stays on numba
    assert "runs/d/deep/resnet50/s0" not in todo
    assert todo["runs/d/deep/mobilenet_v1_0.25/s1"] == ["onnxruntime"]
    assert runner.missing_engines(None, "d", ["torch"]) == {}
    assert runner.missing_engines(df, "other", ["onnxruntime"]) == {}


def test_every_cnn_run_gets_a_row_per_engine(runs: Path, monkeypatch, capsys):
    from compare import measure as deep_evaluate
    from compare.measure import rows_from_summary
    from compare.results import read_results

    root = write_tiny_market(runs / "market")
    run = make_run(runs / "market1501" / "deep" / "mobilenet_v1_0.25" / "baseline_seed0", root)
    layout = RunsLayout(runs)
    summary = deep_evaluate.measure_run(
        run, layout=layout, num_timed_queries=2, table=False, engines=["torch"]
    )
    results = runs / "market1501" / "results.csv"
    upsert_rows(results, rows_from_summary(summary, run))
    gone = make_run(runs / "gone", root)
    upsert_rows(results, [replace(r, seed=5) for r in rows_from_summary(summary, gone)])
    (gone / "model.pt").unlink()
    assert runner.ensure_engine_rows("market1501", str(root), layout=layout) == [str(run)]
    assert f"{gone}: no model.pt" in capsys.readouterr().out
    df = read_results(results)
    mine = df[df.run_dir == str(run)]
    assert sorted(mine.engine) == [
        "onnxruntime",
        "onnxruntime-int8",
        "openvino",
        "openvino-int8",
        "torch",
    ]  # the int8 engines too, calibrated on the run's training images
    assert mine.threads.tolist() == [1] * 5
    assert mine[mine.engine.isin(["torch", "onnxruntime", "openvino"])].rank1.nunique() == 1
    assert (run / "model.int8.onnx").is_file() and (run / "model.int8.xml").is_file()
    assert (
        runner.ensure_engine_rows("market1501", str(root), layout=layout) == []
    )  # nothing missing
    # a lost row comes back from summary.json without measuring anything
    df[df.engine != "openvino"].to_csv(results, index=False)

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(cnn, "measure_run", no_measuring)
    assert runner.ensure_engine_rows("market1501", str(root), layout=layout) == [str(run)]
    assert "restored ['openvino'] from summary.json" in capsys.readouterr().out
    assert len(read_results(results)) == len(df)
