"""compare.tradeoff: report from an existing results table, scaling measurement."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compare import tradeoff
from compare.results import upsert_rows
from tests.test_plot import _table
from tests.test_results import row


def _small(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tradeoff, "run_dir_for", lambda name: tmp_path / name)
    monkeypatch.setattr(tradeoff, "GALLERY_SIZES", (100, 1000))
    monkeypatch.setattr(tradeoff, "SCALING_QUERIES", 3)


def test_report_from_existing_table(tmp_path: Path, monkeypatch):
    _small(monkeypatch, tmp_path)
    out = tmp_path / "d"
    out.mkdir()
    _table().to_csv(out / "results.csv", index=False)
    assert tradeoff.main(["--dataset", "d", "--skip-runs"]) == 0
    for name in ("tradeoff.png", "tradeoff.svg", "tradeoff.md", "scaling.csv"):
        assert (out / name).stat().st_size > 0
    text = (out / "tradeoff.md").read_text()
    assert "LOMO+XQDA" in text and "Machine" in text and "1,000 gallery" in text
    # A second report reuses the cached scaling table.
    stamp = (out / "scaling.csv").stat().st_mtime_ns
    tradeoff.build_report("d")
    assert (out / "scaling.csv").stat().st_mtime_ns == stamp


def test_matching_scaling_grows_with_gallery():
    table = tradeoff.matching_scaling({"x": 64}, sizes=(100, 50_000), queries=5)
    small, large = table.ms_match.tolist()
    assert 0 < small < large


def test_scaling_skips_galleries_too_large(monkeypatch):
    monkeypatch.setattr(tradeoff, "SCALING_MEMORY", 1000)
    table = tradeoff.matching_scaling({"x": 64}, sizes=(100,), queries=2)
    assert pd.isna(table.ms_match.iloc[0]) and "skipped" in table.note.iloc[0]


def test_missing_results_is_a_clear_error(tmp_path: Path, monkeypatch, capsys):
    _small(monkeypatch, tmp_path)
    assert tradeoff.main(["--dataset", "nothing", "--skip-runs"]) == 2
    assert "not found" in capsys.readouterr().err


def test_report_from_upserted_rows(tmp_path: Path, monkeypatch):
    _small(monkeypatch, tmp_path)
    upsert_rows(tmp_path / "e" / "results.csv", [row(dataset="e"), row(dataset="e", seed=1)])
    assert tradeoff.build_report("e") == tmp_path / "e"
    assert "CNN 512-d" in (tmp_path / "e" / "tradeoff.md").read_text()
