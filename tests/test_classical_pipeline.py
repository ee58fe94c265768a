"""The LOMO feature cache and the LOMO + XQDA pipeline end to end on a tiny dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classical.features import cache_key, extract_split, lomo_params
from classical.lomo import DEFAULT_PARAMS, LOMO, lomo
from classical.pipeline import (
    ClassicalConfig,
    resolve_protocol,
    run_name,
    study_run_name,
)
from classical.xqda import XQDA, XQDAMatcher
from compare.lomo_xqda import main, measure
from data.benchmarks import load_benchmark
from data.images import load_image, load_images
from data.layouts import Record, load_dataset
from data.protocols import two_view_cmc
from tests.builders import PERSONS, TESTSETS, make_cuhk01, make_viper, write_cuhk03_mat


def _records(root: Path) -> list[Record]:
    return load_dataset("market1501", root).train


@pytest.mark.slow
def test_extract_split_matches_lomo_and_is_cached(market_root, tmp_path):
    records = _records(market_root)
    cache = tmp_path / "cache"
    feats = extract_split(
        records, cache, size=(128, 48), params={"retinex": False}, chunk=4, progress=False
    )
    assert isinstance(feats, np.memmap) and feats.dtype == np.float32
    expected = lomo(np.stack([load_image(r.path, (128, 48)) for r in records]), retinex=False)
    np.testing.assert_array_equal(np.asarray(feats), expected)
    entries = [p for p in cache.iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["shape"] == [len(records), 26960]

    def failing_loader(path, size):
        raise AssertionError("a cached entry must not read images again")

    again = extract_split(
        records,
        cache,
        size=(128, 48),
        params={"retinex": False},
        loader=failing_loader,
        progress=False,
    )
    np.testing.assert_array_equal(np.asarray(again), expected)


def test_cache_key_follows_parameters_and_files(market_root):
    records = _records(market_root)
    params = lomo_params({"retinex": False})
    key = cache_key(records, (128, 48), params)
    assert cache_key(records, (128, 48), dict(params)) == key
    assert cache_key(records, (128, 64), params) != key
    assert cache_key(records, (128, 48), lomo_params({"retinex": True})) != key
    assert cache_key(records[::-1], (128, 48), params) != key
    assert cache_key(records[:-1], (128, 48), params) != key
    stat = records[0].path.stat()
    os.utime(records[0].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache_key(records, (128, 48), params) != key
    with pytest.raises(ValueError, match="unknown LOMO parameters"):
        lomo_params({"bins": 8})


def test_interrupted_extraction_leaves_no_entry(market_root, tmp_path):
    records = _records(market_root)
    cache = tmp_path / "cache"
    calls = []

    def flaky_loader(path, size):
        calls.append(path)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return load_image(path, size)

    with pytest.raises(KeyboardInterrupt):
        extract_split(
            records, cache, params={"retinex": False}, chunk=2, loader=flaky_loader, progress=False
        )
    assert list(cache.iterdir()) == []  # neither an entry nor a temporary folder
    feats = extract_split(records, cache, params={"retinex": False}, progress=False)
    assert feats.shape == (len(records), 26960)


def test_extract_split_errors(tmp_path, market_root):
    with pytest.raises(ValueError, match="no images"):
        extract_split([], tmp_path)
    missing = [Record(path=market_root / "nope.jpg", pid=1, camid=0)]
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        extract_split(missing, tmp_path)


def test_matcher_equals_xqda_distances():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y, cams = np.arange(40) // 4, np.arange(40) % 3
    model = XQDA().fit(X, y, cams=cams)
    q, g = model.transform(X[:7]), model.transform(X)
    expected = model.projected_distances(q, g)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        matcher = XQDAMatcher(model, g, k=5, dtype=dtype)
        dist = matcher.distance_matrix(q, block=3)
        np.testing.assert_allclose(dist, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        np.testing.assert_allclose(matcher.distances(q[2]), dist[2], rtol=1e-6, atol=1e-6)
    top = XQDAMatcher(model, g, k=5, dtype=np.float64).match(q[2])
    np.testing.assert_array_equal(top, np.argsort(expected[2], kind="stable")[:5])


@pytest.mark.slow
def test_pipeline_end_to_end(market_root, tmp_path, capsys):
    root = tmp_path / "runs"
    config = ClassicalConfig(
        dataset="market1501",
        data_root=str(market_root),
        retinex=True,
        runs_dir=str(root),
        progress=False,
    )
    args = ["--dataset", "market1501", "--data-root", str(market_root), "--retinex"]
    assert main([*args, "--runs-dir", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(
        (root / "market1501" / "classical" / run_name(config) / "summary.json").read_text()
    )
    assert "LOMO + XQDA on market1501" in out and "ms/query" in out and "Retinex on" in out
    name = "lomo_xqda_market_128x48_retinex-on_reg0.001_svd"
    assert run_name(config) == name == summary["run_name"]
    saved = json.loads((root / "market1501" / "classical" / name / "summary.json").read_text())
    assert saved["feature_dim"] == 26960 == summary["feature_dim"]
    assert saved["num_queries"] == 2 and saved["timing"]["num_queries"] == 100
    assert saved["timing"]["threads"] == 1
    assert 0 <= saved["rank1"] <= 1 and 0 <= saved["mAP"] <= 1
    assert saved["xqda_reduction"] == "qr"  # 6 training images, 26,960 dimensions
    model = np.load(root / "market1501" / "classical" / name / "xqda.npz")
    assert model["components"].shape == (26960, saved["xqda_dim"])
    table = pd.read_csv(root / "market1501" / "results.csv")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.pipeline, row.model, row.variant, row.input_size) == (
        "classical",
        name,
        "classical",
        "128x48",
    )
    assert row.ms_query >= row.ms_extract > 0 and row.threads == 1
    extra = json.loads(row.extra)
    assert extra["feature_dim"] == 26960 and extra["retinex"] is True
    assert extra["protocol"] == "market"
    # A second run reuses the cached features and replaces (not duplicates) the row.
    entries = sorted(p.name for p in (root / "market1501" / "cache" / "lomo").iterdir())
    measure(config)
    assert sorted(p.name for p in (root / "market1501" / "cache" / "lomo").iterdir()) == entries
    assert len(pd.read_csv(root / "market1501" / "results.csv")) == 1
    # A run configured differently (Retinex off, the default) gets its own folder and row.
    default = ClassicalConfig(
        dataset="market1501", data_root=str(market_root), runs_dir=str(root), progress=False
    )
    measure(default)
    other = "lomo_xqda_market_128x48_retinex-off_reg0.001_svd"
    assert (root / "market1501" / "classical" / other / "summary.json").is_file()
    assert (root / "market1501" / "classical" / name / "summary.json").is_file()
    table = pd.read_csv(root / "market1501" / "results.csv")
    assert sorted(table.model) == [other, name]
    assert table.set_index("model").loc[other, "rank1"] >= 0


def test_cli_reports_bad_dataset_clearly(tmp_path, capsys):
    code = main(
        [
            "--dataset",
            "market1501",
            "--data-root",
            str(tmp_path / "missing"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_retinex_is_off_by_default():
    assert DEFAULT_PARAMS["retinex"] is False and LOMO().retinex is False
    assert ClassicalConfig().retinex is False
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lomo(images), lomo(images, retinex=False))
    assert not np.array_equal(lomo(images), lomo(images, retinex=True))


def test_run_names_hold_every_setting_that_changes_the_numbers():
    base = ClassicalConfig(dataset="market1501")
    assert run_name(base) == "lomo_xqda_market_128x48_retinex-off_reg0.001_svd"
    assert study_run_name("synthetic") == run_name(base)
    assert study_run_name("viper") == run_name(base)  # market protocol, whatever the dataset
    variants = [
        ClassicalConfig(dataset="market1501", retinex=True),
        ClassicalConfig(dataset="market1501", input_size=(128, 64)),
        ClassicalConfig(dataset="market1501", reg=0.01),
        ClassicalConfig(dataset="market1501", solver="eig"),
        ClassicalConfig(dataset="market1501", n_components=32),
        ClassicalConfig(dataset="viper"),
        ClassicalConfig(dataset="viper", protocol="multi-shot"),
        ClassicalConfig(dataset="viper", num_trials=3),
        ClassicalConfig(dataset="viper", split_seed=4),
        ClassicalConfig(dataset="viper", protocol="market", split_seed=4),
    ]
    names = [run_name(c) for c in variants]
    assert len(set(names)) == len(names) and run_name(base) not in names
    assert names[5] == "lomo_xqda_single-shot_128x48_retinex-off_reg0.001_svd"
    assert names[7] == "lomo_xqda_single-shot-3trials_128x48_retinex-off_reg0.001_svd"
    assert names[8] == "lomo_xqda_single-shot-seed4_128x48_retinex-off_reg0.001_svd"


def test_protocols():
    assert resolve_protocol("synthetic") == "market"
    assert resolve_protocol("viper") == "single-shot"
    assert resolve_protocol("CUHK01") == "multi-shot"
    assert resolve_protocol("cuhk03") == resolve_protocol("cuhk03-detected") == "single-shot"
    assert resolve_protocol("cuhk03-new") == "market"
    assert resolve_protocol("cuhk01", "single-shot") == "single-shot"
    assert resolve_protocol("cuhk01", "market") == "market"
    with pytest.raises(ValueError, match="needs one of Liao's two-view benchmarks"):
        resolve_protocol("market1501", "single-shot")
    with pytest.raises(ValueError, match="protocol must be one of"):
        resolve_protocol("viper", "two-shot")


def test_cli_rejects_trial_options_where_they_do_not_apply(market_root, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    args = ["--dataset", "market1501", "--data-root", str(market_root), "--runs-dir", runs]
    assert main([*args, "--trials", "2"]) == 2
    assert "two-view protocols only" in capsys.readouterr().err
    assert main([*args, "--split-seed", "3"]) == 2
    assert "two-view benchmarks only" in capsys.readouterr().err
    assert main([*args, "--protocol", "single-shot"]) == 2
    assert "two-view benchmarks" in capsys.readouterr().err


@pytest.mark.slow
def test_viper_trials_end_to_end(tmp_path, capsys):
    data = make_viper(tmp_path / "VIPeR")
    root = tmp_path / "runs"
    args = ["--dataset", "viper", "--data-root", str(data), "--trials", "2", "--split-seed", "3"]
    common = ["--runs-dir", str(root), "--no-progress", "--num-timed-queries", "5"]
    assert main([*args, *common]) == 0
    out = capsys.readouterr().out
    assert "LOMO + XQDA on viper, single-shot: mean CMC over 2 trial(s) of 6 test persons" in out
    assert "Liao et al. CVPR 2015: 40.00% (not comparable: 12 persons here" in out
    for k in (1, 5, 10, 20):
        assert f"rank-{k} " in out
    name = "lomo_xqda_single-shot-2trials-seed3_128x48_retinex-off_reg0.001_svd"
    folder = root / "viper" / "classical" / name
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["run_name"] == name and (folder / "xqda.npz").is_file()
    assert saved["num_trials"] == 2 and len(saved["trials"]) == 2
    assert saved["published"] == {
        "rank1": 40.0,
        "source": "Liao et al. CVPR 2015, VIPeR 316 test persons, single-shot",
        "comparable": False,
    }
    # the mean of the trials' CMCs; with 6 gallery persons rank 10 and 20 are 100%
    rank1s = [t["rank1"] for t in saved["trials"]]
    assert saved["rank1"] == pytest.approx(np.mean(rank1s))
    assert saved["rank10"] == saved["rank20"] == 1.0 and len(saved["cmc"]) == 6
    splits = json.loads((folder / "trials.json").read_text())["trials"]
    assert [t["seed"] for t in splits] == [3, 4]
    assert splits[0]["probe_images"][0].startswith("cam_b/")
    assert splits[0]["gallery_images"][0].startswith("cam_a/")

    # trial 0 recomputed by hand: LOMO, XQDA.fit_views (camera A gallery view), CMC
    bench = load_benchmark("viper", data, num_trials=2, seed=3)
    trial = bench.trials[0]
    assert list(trial.test_pids) == splits[0]["test_pids"]

    def features(records):
        return lomo(load_images([r.path for r in records], (128, 48)))

    train = bench.train_images(trial)
    view_a = [r for r in train if r.camid == 0]
    view_b = [r for r in train if r.camid == 1]
    model = XQDA().fit_views(
        features(view_a), [r.pid for r in view_a], features(view_b), [r.pid for r in view_b]
    )
    probes, gallery = bench.test_images(trial, "single-shot")
    matcher = XQDAMatcher(model, model.transform(features(gallery), dtype=np.float32), k=5)
    dist = matcher.distance_matrix(model.transform(features(probes), dtype=np.float32))
    cmc = two_view_cmc(dist, [r.pid for r in probes], [r.pid for r in gallery])
    assert saved["trials"][0]["rank1"] == pytest.approx(cmc[0])

    row = pd.read_csv(root / "viper" / "results.csv").iloc[0]
    assert (row.pipeline, row.model, row.variant) == ("classical", name, "classical")
    assert row.rank1 == pytest.approx(100 * saved["rank1"]) and np.isnan(row.mAP)
    extra = json.loads(row.extra)
    assert extra["protocol"] == "single-shot" and extra["trials"] == 2
    assert extra["published_rank1"] == 40.0


@pytest.mark.slow
def test_cuhk01_and_cuhk03_from_the_command_line(tmp_path, capsys, monkeypatch):

    monkeypatch.setenv("REID_DATASETS_DIR", str(tmp_path / "datasets"))  # read when used
    runs = str(tmp_path / "runs")
    data = make_cuhk01(tmp_path / "CUHK01")
    common = ["--runs-dir", runs, "--no-progress", "--num-timed-queries", "5"]
    assert main(["--dataset", "cuhk01", "--data-root", str(data), "--trials", "2", *common]) == 0
    out = capsys.readouterr().out
    assert "LOMO + XQDA on cuhk01, multi-shot: mean CMC over 2 trial(s) of 5 test persons" in out
    assert "Liao et al. CVPR 2015: 63.21%" in out
    args = ["--dataset", "cuhk01", "--data-root", str(data), "--protocol", "single-shot"]
    assert main([*args, "--trials", "1", *common]) == 0
    assert "no published figure for this protocol (Liao et al. CVPR 2015: 63.21% multi-shot)" in (
        capsys.readouterr().out
    )

    cuhk03 = tmp_path / "cuhk03"
    cuhk03.mkdir()
    write_cuhk03_mat(cuhk03 / "cuhk-03.mat", PERSONS, TESTSETS)
    assert main(["--dataset", "cuhk03", "--data-root", str(cuhk03), *common]) == 0
    out = capsys.readouterr().out
    assert "LOMO + XQDA on cuhk03, single-shot: mean CMC over 2 trial(s) of 3 test persons" in out
    assert "Liao et al. CVPR 2015: 52.20%" in out
    args = ["--dataset", "cuhk03", "--data-root", str(cuhk03), "--protocol", "market"]
    assert main([*args, *common]) == 0
    assert "LOMO + XQDA on cuhk03: rank-1" in capsys.readouterr().out
    table = pd.concat(
        pd.read_csv(tmp_path / "runs" / d / "results.csv") for d in ("cuhk01", "cuhk03")
    )
    assert sorted(table.model) == [
        "lomo_xqda_market_128x48_retinex-off_reg0.001_svd",
        "lomo_xqda_multi-shot-2trials_128x48_retinex-off_reg0.001_svd",
        "lomo_xqda_single-shot-1trials_128x48_retinex-off_reg0.001_svd",
        "lomo_xqda_single-shot_128x48_retinex-off_reg0.001_svd",
    ]


@pytest.mark.slow
def test_a_run_with_out_elsewhere_never_enters_the_results_table(market_root, tmp_path, capsys):
    runs, elsewhere = tmp_path / "runs", tmp_path / "mine"
    args = ["--dataset", "market1501", "--data-root", str(market_root), "--no-progress"]
    assert main([*args, "--runs-dir", str(runs), "--out", str(elsewhere)]) == 0
    assert "not added" in capsys.readouterr().out
    assert (elsewhere / "summary.json").is_file() and (elsewhere / "xqda.npz").is_file()
    assert not (runs / "market1501" / "results.csv").exists()
    assert main([*args, "--runs-dir", str(runs)]) == 0  # the default folder: a row
    assert len(pd.read_csv(runs / "market1501" / "results.csv")) == 1
