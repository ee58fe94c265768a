"""compare.pipelines: the registry, and a third pipeline added by one module (this one).

``RawPixels`` (resized raw pixels, Euclidean nearest neighbours) is registered here and nowhere
else; the same code that handles LOMO+XQDA and the CNNs times it, writes its results row, measures
its throughput and scaling, plots it and reports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compare import plot, report, scaling, throughput, tradeoff
from compare import study as runner
from compare.pipelines import (
    FamilyStyle,
    Pipeline,
    RunRef,
    Variant,
    cnn,
    family_style,
    pipeline,
    pipelines,
    register,
    time_run_queries,
    unregister,
)
from compare.pipelines import classical as classical_adapter
from compare.results import ResultRow, RowExtra, read_results, upsert_rows
from data.images import parse_size, resize
from data.runs import RunsLayout
from tests.builders import study_table, write_results_table

PIXELS = "8x4"


class RawPixels(Pipeline):
    """Resized pixels in [0, 1] as the feature, Euclidean matching (the default matcher)."""

    name = "raw_pixels"
    label = "raw pixels"
    families = (FamilyStyle("raw pixels", marker="X", color="#8c564b"),)
    variants = (Variant("raw"),)

    def family(self, model: str) -> str:
        return "raw pixels"

    def short_name(self, model: str) -> str:
        return f"pixels {model}"

    def batch_extractor(self, run: RunRef, threads: int):
        size = parse_size(run.input_size)

        def extract(images: np.ndarray) -> np.ndarray:
            return np.stack([resize(im, size).astype(np.float32).ravel() / 255 for im in images])

        return extract


@pytest.fixture
def raw_pixels():
    adapter = register(RawPixels())
    yield adapter
    unregister(adapter.name)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch) -> Path:
    """Results under tmp_path (passed as the runs layout), tiny scaling galleries."""
    monkeypatch.setattr(scaling, "GALLERY_SIZES", (100, 1000))
    monkeypatch.setattr(cnn, "CNN_DIMS", (32,))
    monkeypatch.setattr(classical_adapter, "LOMO_DIM", 64)
    return tmp_path


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 16, 3), dtype=np.uint8)


def test_registry_is_typed_and_duplicate_checked(raw_pixels):
    assert [p.name for p in pipelines()] == ["classical", "deep", "raw_pixels"]
    assert pipeline("raw_pixels") is raw_pixels
    assert family_style("raw pixels").marker == "X" and family_style("ResNet").marker == "o"
    with pytest.raises(ValueError, match="already registered"):
        register(RawPixels())

    class Clash(RawPixels):
        name = "other_pixels"

    with pytest.raises(ValueError, match=r"families \['raw pixels'\] are already registered"):
        register(Clash())
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        pipeline("nope")


def test_the_default_matcher_is_euclidean_top_k(raw_pixels):
    rng = np.random.default_rng(1)
    gallery = rng.standard_normal((40, 6)).astype(np.float32)
    query = rng.standard_normal(6).astype(np.float32)
    expected = np.argsort(((gallery - query) ** 2).sum(axis=1), kind="stable")[:5]
    np.testing.assert_array_equal(raw_pixels.matcher(gallery, 5)(query), expected)


def _toy_row(dataset: str) -> ResultRow:
    """The toy's results row: its queries timed through its adapter, accuracy made up."""
    run = RunRef(pipeline="raw_pixels", model="raw", input_size=PIXELS)
    timing = time_run_queries(run, list(_images(4, 2)), _images(30, 3), threads=1, num_queries=5)
    assert timing.threads == 1 and timing.ms_extract > 0 and timing.ms_match > 0
    return ResultRow(
        dataset=dataset,
        pipeline="raw_pixels",
        model="raw",
        variant="raw",
        seed=0,
        input_size=PIXELS,
        params=0,
        gflops=0.0,
        embedding_dim=8 * 4 * 3,
        rank1=12.0,
        rank5=20.0,
        rank10=30.0,
        mAP=5.0,
        mAP_torchreid=5.5,
        ms_extract=timing.ms_extract,
        ms_match=timing.ms_match,
        ms_query=timing.ms_query,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        engine="numpy",
        init="none",  # "n/a" reads back as NaN (pandas), then as the default of the pipeline
    )


def test_a_third_pipeline_is_timed_written_plotted_and_reported(runs, raw_pixels, monkeypatch):
    out = write_results_table(runs, study_table().assign(extra='{"feature_dim": 64}'))
    upsert_rows(out / "results.csv", [_toy_row("d")])
    table = read_results(out / "results.csv")
    toy = table[table.pipeline == "raw_pixels"]
    assert len(toy) == 1 and toy.engine.iloc[0] == "numpy"
    assert "raw_pixels" not in runner.missing_runs(table, "d", "quick")  # no study runs

    # throughput through its batch extractor, by the code that measures every pipeline
    monkeypatch.setattr(throughput, "_throughput_images", lambda d, r: _images(8, 4))
    rates = throughput.throughput_table(toy, "d", None, threads=1, layout=RunsLayout(runs))
    assert rates.images_per_s.iloc[0] > 0 and rates.note.iloc[0] == ""
    assert f"| pixels raw | {PIXELS} | numpy | " in throughput.throughput_markdown(rates)

    rows, notes = report.plotted_rows(table, "d")
    assert "raw_pixels" in set(rows.pipeline) and not any("not plotted" in n for n in notes)
    assert scaling.scaling_dims(rows)[96] == "96-d"
    agg = plot.plot_tradeoff(rows, runs / "t.png", None)
    point = agg[agg.pipeline == "raw_pixels"].iloc[0]
    assert point.label == "pixels raw" and point.family == "raw pixels"
    legend = [h.get_label() for h in plot._legend_handles(agg)]
    assert legend.index("raw pixels") > legend.index("classical")  # the registry's order

    assert (
        tradeoff.main(["--dataset", "d", "--skip-runs", "--no-throughput", "--runs-dir", str(runs)])
        == 0
    )
    text = (out / "tradeoff.md").read_text()
    assert "| pixels raw | raw | numpy | none | 8x4 |" in text  # the results table
    assert "| pixels raw | 8x4 | 96 |" in text  # where matching starts to dominate
    assert "96-d" in text  # the scaling table


def test_rows_of_an_unplotted_variant_or_unknown_pipeline_are_noted(raw_pixels):
    df = study_table()
    toy = pd.DataFrame([vars(_toy_row("d"))])
    other = toy.assign(variant="reranked")
    unknown = toy.assign(pipeline="not_registered", variant="raw")
    rows, notes = report.plotted_rows(pd.concat([df, toy, other, unknown]), "d")
    assert len(rows[rows.pipeline == "raw_pixels"]) == 1
    assert "not_registered" not in set(rows.pipeline)
    assert any("1 row(s) with other variants (reranked)" in n for n in notes)
    unknown_note = "1 row(s) of pipelines without an adapter in compare.pipelines (not_registered)"
    assert any(unknown_note in n for n in notes)


def test_classical_throughput_extracts_lomo_through_the_pipeline():
    """The classical adapter's bulk extractor is the per-query path (resize, LOMO, projection)
    batched: the same features as LomoXqda.extract image by image."""
    from classical.lomo import layout
    from classical.pipeline import ClassicalConfig, LomoXqda

    dim = layout(64, 32).dim
    run = RunRef(
        pipeline="classical",
        model="x",
        input_size="64x32",
        embedding_dim=5,
        extra=RowExtra(feature_dim=dim),
    )
    images = _images(3, 5)
    batch = pipeline("classical").batch_extractor(run, threads=1)(images)
    projection = np.random.default_rng(0).standard_normal((dim, 5))
    one = LomoXqda.with_projection(ClassicalConfig(input_size=(64, 32)), projection)
    expected = np.concatenate([one.extract(image).reshape(1, -1) for image in images])
    assert batch.shape == (3, 5) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-5)
