"""ANN scaling measurements (compare.ann_scaling): recall, growth of the gallery, caching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compare.ann_scaling import (
    AnnPoint,
    EmbeddingSet,
    ann_markdown,
    ann_runs,
    ann_scaling,
    ann_table,
    when_index_pays,
)
from compare.plot import plot_tradeoff
from data.ann import MatchingConfig
from data.distractors import fit_identity_statistics
from tests.builders import results_table
from tests.test_plot import PNG, _scaling

pytest.importorskip("faiss")


def embedding_set() -> EmbeddingSet:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, 16))
    labels = np.repeat(np.arange(60), 5)
    real = (centres[labels] + 0.2 * rng.standard_normal((300, 16))).astype(np.float32)
    stats = fit_identity_statistics(real, labels)
    queries = real[::5][:30] + np.float32(0.01)
    return EmbeddingSet("toy", queries, real, stats, seed=0)


def test_gallery_grows_with_distractors_after_the_real_items():
    emb = embedding_set()
    small, real = emb.grown_gallery(100)
    assert small.shape == (100, 16) and real == 100
    big, real = emb.grown_gallery(1_000)
    assert big.shape == (1_000, 16) and real == 300
    np.testing.assert_array_equal(big[:300], emb.gallery)
    np.testing.assert_array_equal(big, emb.grown_gallery(1_000)[0])  # seeded


def test_scaling_points_and_cache(tmp_path):
    emb = embedding_set()
    configs = [MatchingConfig("exact"), MatchingConfig("faiss-flat"), MatchingConfig("hnsw")]
    cache = tmp_path / "ann.json"
    logged: list[str] = []
    points = ann_scaling(
        emb, [200, 800], configs, cache_path=cache, log=logged.append, target_seconds=0.01
    )
    assert len(points) == 6 and len(logged) == 6
    assert all(isinstance(p, AnnPoint) for p in points)
    by = {(p.gallery_size, p.method): p for p in points}
    for n in (200, 800):
        assert by[(n, "exact")].recall50 == pytest.approx(1.0)
        assert by[(n, "faiss-flat")].recall10 == pytest.approx(1.0)
        assert by[(n, "hnsw")].recall10 >= 0.9
        assert by[(n, "exact")].ms_match > 0 and by[(n, "hnsw")].index_mb > 0
    assert by[(800, "exact")].real_items == 300
    logged.clear()
    again = ann_scaling(
        emb, [200, 800], configs, cache_path=cache, log=logged.append, target_seconds=0.01
    )
    assert again == points and logged == []  # read from the cache, nothing measured
    ann_scaling(
        emb,
        [200],
        configs[:1],
        cache_path=cache,
        log=logged.append,
        refresh=True,
        target_seconds=0.01,
    )
    assert len(logged) == 1


def _ann_points() -> pd.DataFrame:
    """Hand-made points: HNSW pays from 100k for A (fast and accurate), never for B."""
    rows = []
    for source, hnsw_ms, hnsw_recall in (("A 129-d", 0.2, 0.98), ("B 256-d", 0.9, 0.80)):
        for n, exact_ms in ((10_000, 0.5), (100_000, 5.0)):
            rows.append(dict(source=source, gallery_size=n, label="exact", method="exact",
                             ms_match=exact_ms, recall10=1.0, recall50=1.0, build_seconds=0.0,
                             index_mb=n / 1e3))  # fmt: skip
            rows.append(dict(source=source, gallery_size=n, label="hnsw", method="hnsw",
                             ms_match=hnsw_ms if n == 100_000 else 0.6, recall10=hnsw_recall,
                             recall50=0.9, build_seconds=3.0, index_mb=n / 900))  # fmt: skip
    return pd.DataFrame(rows)


def test_when_index_pays_reads_the_measurements():
    lines = when_index_pays(_ann_points())
    assert lines[0].startswith("A 129-d: from 100,000 items, hnsw answers in 0.2 ms instead of 5")
    assert "(25x) at recall@10 0.980" in lines[0]
    assert lines[1] == (
        "B 256-d: no index beat exact search at recall@10 >= 0.95 up to 100,000 items."
    )
    # a lower recall requirement lets B's index count
    assert "B 256-d: from 100,000 items" in when_index_pays(_ann_points(), min_recall=0.8)[1]
    table = ann_markdown(_ann_points())
    assert table.count("\n") == 2 + 8 - 1 and "| A 129-d | 100,000 | hnsw | 0.2 | 0.980 |" in table


def test_plot_draws_ann_curves(tmp_path):
    plot_tradeoff(
        results_table(),
        tmp_path / "t.png",
        tmp_path / "t.svg",
        scaling=_scaling(),
        ann=_ann_points(),
    )
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    svg = (tmp_path / "t.svg").read_text()
    assert "HNSW A 129-d" in svg and "r.98" in svg and "recall@10 against exact" in svg


def test_ann_runs_pick_each_pipelines_fastest_plain_run():
    df = pd.DataFrame(
        [
            dict(pipeline="classical", model="lomo_xqda", variant="classical", seed=0,
                 ms_query=20.0, run_dir="runs/s/classical/x", input_size="128x48"),
            dict(pipeline="deep", model="resnet18", variant="baseline", seed=0, ms_query=9.0,
                 run_dir="runs/s/deep/r18", input_size="64x32"),
            dict(pipeline="deep", model="mobilenet_v1_0.25", variant="distilled", seed=0,
                 ms_query=1.0, run_dir="runs/s/deep/kd", input_size="64x32"),
            dict(pipeline="deep", model="mobilenet_v1_0.25", variant="baseline", seed=1,
                 ms_query=2.0, run_dir="runs/s/deep/mn", input_size="64x32"),
        ]
    )  # fmt: skip
    runs = ann_runs(df)
    assert [(r.pipeline, r.run_dir) for r in runs] == [
        ("classical", "runs/s/classical/x"),
        ("deep", "runs/s/deep/mn"),  # the distilled run derives from a baseline: skipped
    ]


def test_ann_table_measures_each_run_and_notes_failures(tmp_path, monkeypatch):
    df = pd.DataFrame(
        [
            dict(pipeline="classical", model="lomo_xqda", variant="classical", seed=0,
                 ms_query=20.0, run_dir="runs/s/classical/x", input_size="128x48"),
            dict(pipeline="deep", model="mobilenet_v1_0.25", variant="baseline", seed=0,
                 ms_query=2.0, run_dir="runs/s/deep/mn", input_size="64x32"),
        ]
    )  # fmt: skip

    def fake_set(run, dataset, threads):
        if run.pipeline == "deep":
            raise FileNotFoundError("no model.pt in runs/s/deep/mn")
        return embedding_set()

    monkeypatch.setattr("compare.ann_scaling.embedding_set", fake_set)
    loads, notes = [], []
    table = ann_table(
        df, lambda: loads.append(1) or "dataset", threads=1, sizes=[400],
        cache_path=tmp_path / "c.json", notes=notes,
    )  # fmt: skip
    assert loads == [1]  # the dataset is loaded once, on demand
    assert set(table.label) == {"exact", "faiss-flat", "hnsw", "ivfpq", "ivfpq+refine"}
    assert (table.source == "toy").all() and (table.gallery_size == 400).all()
    assert notes == [
        "approximate search not measured for mobilenet_v1_0.25: no model.pt in runs/s/deep/mn"
    ]
