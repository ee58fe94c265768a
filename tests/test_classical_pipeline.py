"""The LOMO feature cache and the LOMO + XQDA pipeline end to end on a tiny dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classical.features import cache_key, extract_split, lomo_params
from classical.lomo import lomo
from classical.pipeline import ClassicalConfig, XQDAMatcher, main, run
from classical.xqda import XQDA
from data.images import load_image
from data.layouts import Record, load_dataset


def _records(root: Path) -> list[Record]:
    return load_dataset("market1501", root).train


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
    model = XQDA().fit(X, y, cams)
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
        num_timed_queries=100,
        run_root=str(root),
        progress=False,
    )
    summary = run(config)
    out = capsys.readouterr().out
    assert "LOMO + XQDA on market1501" in out and "ms/query" in out
    saved = json.loads((root / "classical" / "lomo_xqda" / "summary.json").read_text())
    assert saved["feature_dim"] == 26960 == summary["feature_dim"]
    assert saved["num_queries"] == 2 and saved["timing"]["num_queries"] == 100
    assert saved["timing"]["threads"] == 1
    assert 0 <= saved["rank1"] <= 1 and 0 <= saved["mAP"] <= 1
    assert saved["xqda_qr_reduced"] is True  # 6 training images, 26,960 dimensions
    model = np.load(root / "classical" / "lomo_xqda" / "xqda.npz")
    assert model["components"].shape == (26960, saved["xqda_dim"])
    table = pd.read_csv(root / "results.csv")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.pipeline, row.model, row.variant, row.input_size) == (
        "classical",
        "lomo_xqda",
        "classical",
        "128x48",
    )
    assert row.ms_query >= row.ms_extract > 0 and row.threads == 1
    assert json.loads(row.extra)["feature_dim"] == 26960
    # A second run reuses the cached features and replaces (not duplicates) the row.
    entries = sorted(p.name for p in (root / "cache" / "lomo").iterdir())
    run(config)
    assert sorted(p.name for p in (root / "cache" / "lomo").iterdir()) == entries
    assert len(pd.read_csv(root / "results.csv")) == 1


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
