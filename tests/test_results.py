"""compare.results: upsert semantics, atomic writes, clear errors on bad tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compare.results import RESULT_COLUMNS, ResultRow, read_results, upsert_rows


def row(**overrides) -> ResultRow:
    values = dict(
        dataset="synthetic",
        pipeline="deep",
        model="resnet18",
        variant="baseline",
        seed=0,
        input_size="64x32",
        params=11_000_000,
        gflops=0.25,
        embedding_dim=512,
        rank1=80.0,
        rank5=90.0,
        rank10=95.0,
        mAP=60.0,
        mAP_torchreid=61.0,
        ms_extract=5.0,
        ms_match=0.2,
        ms_query=5.2,
        ms_query_p90=6.0,
        threads=1,
    )
    values.update(overrides)
    return ResultRow(**values)


def test_upsert_replaces_same_key(tmp_path: Path):
    path = tmp_path / "results.csv"
    upsert_rows(path, [row(), row(seed=1)])
    upsert_rows(path, [row(rank1=85.0)])
    df = read_results(path)
    assert len(df) == 2
    assert df.loc[df.seed == 0, "rank1"].item() == 85.0
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left behind


def test_read_results_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_results(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_results(empty)
    partial = tmp_path / "partial.csv"
    pd.DataFrame({"dataset": ["x"], "rank1": [1.0]}).to_csv(partial, index=False)
    with pytest.raises(ValueError, match="lacks columns"):
        read_results(partial)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(RESULT_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="no rows"):
        read_results(header_only)
    with pytest.raises(ValueError, match="at least one"):
        upsert_rows(tmp_path / "x.csv", [])
