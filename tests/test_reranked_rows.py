"""Re-ranked rows: compare.reranking, the results column, and the pipelines' --rerank switch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classical.pipeline import FittedRun, study_run_name
from compare.lomo_xqda import main as lomo_main
from compare.lomo_xqda import reranked
from compare.measure import engine_rows, rows_from_summary
from compare.pipelines import FamilyStyle, Pipeline, Variant, register, unregister
from compare.plot import (
    RERANK_SUFFIX,
    distillation_markdown,
    plain_rows,
    plot_tradeoff,
    rerank_markdown,
    results_markdown,
)
from compare.reranking import (
    ONLINE,
    PLAIN,
    RerankOutcome,
    rerank_embeddings,
    rerank_matcher,
    rerank_split,
    reranked_from_entry,
)
from compare.results import ResultRow, read_results, upsert_rows
from compare.study import ensure_rerank_rows, missing_reranks
from compare.timing import TimingResult
from data.matching import pairwise_sq_euclidean
from data.runs import RunsLayout


def clustered(seed=0, ids=12, per_id=6, n_query=20, dim=16, spread=0.9):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    g_ids = np.repeat(np.arange(ids), per_id)
    q_ids = rng.integers(ids, size=n_query)
    g = (centres[g_ids] + spread * rng.normal(size=(len(g_ids), dim))).astype(np.float32)
    q = (centres[q_ids] + spread * rng.normal(size=(n_query, dim))).astype(np.float32)
    labels = (q_ids, g_ids, np.zeros(n_query, np.int64), np.ones(len(g_ids), np.int64))
    return q, g, labels


def timing(ms_match=0.5):
    return TimingResult(1.0, ms_match, 1.0 + ms_match, 1.2, ms_match, 1.3 + ms_match, 10, 1)


def plain_row(**changes):
    values = dict(
        dataset="synthetic",
        pipeline="deep",
        model="mobilenet_v1_0.25",
        variant="baseline",
        seed=0,
        input_size="64x32",
        params=1,
        gflops=0.1,
        embedding_dim=16,
        rank1=50.0,
        rank5=60.0,
        rank10=70.0,
        mAP=40.0,
        mAP_torchreid=41.0,
        ms_extract=1.0,
        ms_match=0.05,
        ms_query=1.05,
        ms_query_p90=1.2,
        threads=1,
        engine="onnxruntime",
        init="pretrained",
        extra=json.dumps({"epochs": 10}),
    )
    values.update(changes)
    return ResultRow(**values)


def test_rerank_split_gains_on_clustered_embeddings_and_round_trips():
    q, g, labels = clustered()
    outcome, reranker = rerank_split(
        pairwise_sq_euclidean(q, g),
        pairwise_sq_euclidean(q, q),
        pairwise_sq_euclidean(g, g),
        labels,
    )
    assert outcome.offline.mAP > outcome.plain.mAP and outcome.online.mAP > outcome.plain.mAP
    assert outcome.fit_seconds > 0 and reranker.n_gallery == len(g)
    assert RerankOutcome.from_dict(json.loads(json.dumps(outcome.as_dict()))) == outcome


def test_rerank_matcher_ranks_by_the_online_distances():
    q, g, labels = clustered(seed=1)
    _, reranker = rerank_split(
        pairwise_sq_euclidean(q, g),
        pairwise_sq_euclidean(q, q),
        pairwise_sq_euclidean(g, g),
        labels,
    )
    match = rerank_matcher(lambda f: pairwise_sq_euclidean(f, g), reranker, k=5)
    rows = reranker.rerank(np.sqrt(pairwise_sq_euclidean(q, g)))
    for i in range(len(q)):
        np.testing.assert_array_equal(match(q[i]), np.argsort(rows[i], kind="stable")[:5])


def test_reranked_row_is_a_marked_twin_with_its_own_timing():
    q, g, labels = clustered(seed=2)
    entry = rerank_embeddings(q, g, labels, lambda match: timing(ms_match=0.7))
    plain = plain_row()
    twin = reranked_from_entry(plain, json.loads(json.dumps(entry)))
    assert (plain.rerank, twin.rerank) == (PLAIN, ONLINE)
    keys = ("dataset", "pipeline", "model", "variant", "seed", "input_size", "engine", "init")
    assert all(getattr(twin, k) == getattr(plain, k) for k in keys)
    online = entry["outcome"]["online"]
    assert (twin.rank1, twin.mAP) == (online["rank1"], online["mAP"])
    assert twin.ms_match == 0.7
    assert twin.ms_query == pytest.approx(plain.ms_query - plain.ms_match + 0.7)
    assert twin.ms_extract == plain.ms_extract and twin.ms_query_p90 == pytest.approx(2.0)
    extra = json.loads(twin.extra)
    assert extra["epochs"] == 10 and extra["rerank"]["k1"] == 20
    assert extra["rerank"]["offline"] == entry["outcome"]["offline"]


def test_plain_and_reranked_rows_share_a_table_and_old_tables_read_as_plain(tmp_path):
    q, g, labels = clustered(seed=3)
    plain = plain_row()
    twin = reranked_from_entry(plain, rerank_embeddings(q, g, labels, lambda m: timing()))
    path = tmp_path / "results.csv"
    upsert_rows(path, [plain, twin])
    upsert_rows(path, [twin])  # replaced, not duplicated
    table = read_results(path)
    assert sorted(table.rerank) == sorted([ONLINE, PLAIN])
    old = tmp_path / "old.csv"
    table.drop(columns=["rerank"]).iloc[:1].to_csv(old, index=False)
    assert read_results(old).rerank.tolist() == [PLAIN]


def test_measure_rebuilds_reranked_rows_from_the_summary(tmp_path):
    q, g, labels = clustered(seed=4)
    entry = {
        "rank1": 0.5,
        "rank5": 0.6,
        "rank10": 0.7,
        "mAP": 0.4,
        "mAP_torchreid": 0.41,
        "embedding_dim": 16,
        "timing": timing().as_dict(),
    }
    summary = {
        "config": {
            "dataset": "synthetic",
            "model": "mobilenet_v1_0.25",
            "variant": "baseline",
            "seed": 0,
            "epochs": 10,
            "lr": 0.01,
            "batch_size": 16,
        },
        "input_size": [64, 32],
        "params": 1,
        "gflops": 0.1,
        "embedding_dim": 16,
        "engines": {
            "torch": entry,
            "onnxruntime": {**entry, "rerank": rerank_embeddings(q, g, labels, lambda m: timing())},
        },
    }
    assert [r.rerank for r in engine_rows(summary, tmp_path, "torch")] == [PLAIN]
    rows = rows_from_summary(summary, tmp_path)
    assert [(r.engine, r.rerank) for r in rows] == [
        ("torch", PLAIN),
        ("onnxruntime", PLAIN),
        ("onnxruntime", ONLINE),
    ]


def test_lomo_xqda_rerank_adds_a_twin_row(market_root, tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["--dataset", "market1501", "--data-root", str(market_root), "--no-progress"]
    assert lomo_main([*args, "--runs-dir", str(root), "--rerank"]) == 0
    out = capsys.readouterr().out
    assert "re-ranking (XQDA distances" in out and "offline rank-1" in out
    table = pd.read_csv(root / "market1501" / "results.csv").set_index("rerank")
    assert sorted(table.index) == sorted([ONLINE, PLAIN])
    twin = table.loc[ONLINE]
    assert twin.model == table.loc[PLAIN].model and twin.ms_match > 0
    assert json.loads(twin.extra)["rerank"]["plain"]["rank1"] == table.loc[PLAIN].rank1


def test_rerank_needs_the_market_evaluation():
    fitted = FittedRun({"protocol": "single-shot"}, None, [], np.zeros((2, 3)), Path("."))
    with pytest.raises(ValueError, match="--rerank needs the Market-1501 evaluation"):
        reranked(fitted, plain_row(), threads=1, num_timed_queries=1)


def study_table(tmp_path):
    """Plain rows of two CNN seeds and LOMO+XQDA, and re-ranked twins of the CNN ones."""
    q, g, labels = clustered(seed=5)
    rows = []
    for seed, r1 in ((0, 50.0), (1, 54.0)):
        plain = plain_row(seed=seed, rank1=r1, run_dir=str(tmp_path / f"run{seed}"))
        entry = rerank_embeddings(q, g, labels, lambda m: timing(ms_match=0.6))
        rows += [plain, reranked_from_entry(plain, entry)]
    rows.append(
        plain_row(
            pipeline="classical",
            model=study_run_name(),
            variant="classical",
            engine="numba",
            init="n/a",
            input_size="128x48",
        )
    )
    return pd.DataFrame([vars(r) for r in rows])


def test_plot_joins_reranked_points_and_the_report_tables_them(tmp_path):
    df = study_table(tmp_path)
    agg = plot_tradeoff(df, tmp_path / "t.png", None)
    assert sorted(agg.rerank) == sorted([PLAIN, ONLINE, PLAIN])
    twin = agg[agg.rerank == ONLINE].iloc[0]
    assert twin.label.endswith(RERANK_SUFFIX) and twin.seeds == 2
    assert (tmp_path / "t.png").stat().st_size > 0
    table = rerank_markdown(df)
    assert table.count("\n") == 2  # the CNN point only: LOMO+XQDA has no twin
    offline = json.loads(df.extra.iloc[1])["rerank"]["offline"]
    assert "| MNv1 0.25 | baseline | onnxruntime | 2 | 52.0 |" in table
    assert f"{offline['mAP']:.1f}" in table
    assert "baseline + re-rank" in results_markdown(df)
    # the distillation and engine tables see plain rows only
    assert distillation_markdown(df) == "" and plain_rows(df).rerank.eq(PLAIN).all()


def test_study_finds_plain_study_rows_without_a_twin(tmp_path):
    df = study_table(tmp_path)
    missing = missing_reranks(df, "synthetic")
    assert missing.pipeline.tolist() == ["classical"]
    assert missing_reranks(df[df.pipeline == "deep"], "synthetic").empty
    assert missing_reranks(None, "synthetic").empty


class Twinned(Pipeline):
    """A toy pipeline whose re-ranked rows are its plain rows marked online, one point up."""

    name = "twinned"
    label = "twinned"
    families = (FamilyStyle("twinned", marker="X", color="#8c564b"),)
    variants = (Variant("raw"),)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def family(self, model: str) -> str:
        return "twinned"

    def short_name(self, model: str) -> str:
        return model

    def batch_extractor(self, run, threads):
        raise NotImplementedError

    def rerank_rows(self, rows: pd.DataFrame, context) -> list[ResultRow]:
        self.calls.append(len(rows))
        context.done.append("twinned")
        return [
            replace(plain_row(pipeline=self.name, variant="raw", seed=int(r.seed)), rerank=ONLINE)
            for r in rows.itertuples()
        ]


def test_ensure_rerank_rows_asks_each_adapter_once_for_the_missing_twins(tmp_path):
    layout = RunsLayout(tmp_path)
    adapter = register(Twinned())
    try:
        path = layout.results_table("synthetic")
        upsert_rows(path, [plain_row(pipeline="twinned", variant="raw", seed=s) for s in (0, 1)])
        assert ensure_rerank_rows("synthetic", None, layout=layout) == ["twinned"]
        assert adapter.calls == [2]
        assert sorted(read_results(path).rerank) == sorted([ONLINE, ONLINE, PLAIN, PLAIN])
        assert ensure_rerank_rows("synthetic", None, layout=layout) == []  # nothing missing
        assert adapter.calls == [2]
    finally:
        unregister(adapter.name)


def test_the_study_reranks_each_point_on_the_engine_the_plot_draws_only(tmp_path):
    """One re-ranked twin per point: on its fastest float32 engine (int8 engines are other
    points); a point twinned on any engine is not re-ranked again."""
    rows = [
        plain_row(engine="torch", ms_query=2.0),
        plain_row(engine="onnxruntime", ms_query=0.5),
        plain_row(engine="openvino", ms_query=0.7),
        plain_row(engine="onnxruntime-int8", ms_query=0.1),
    ]
    df = pd.DataFrame([vars(r) for r in rows])
    missing = missing_reranks(df, "synthetic")
    assert missing.engine.tolist() == ["onnxruntime"]
    twin = pd.DataFrame([vars(replace(rows[2], rerank=ONLINE))])
    assert missing_reranks(pd.concat([df, twin]), "synthetic").empty
