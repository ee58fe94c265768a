"""compare.results: upsert semantics, atomic writes, clear errors on bad tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compare.results import (
    RESULT_COLUMNS,
    git_commit,
    now_iso,
    read_results,
    upsert_rows,
)
from tests.builders import result_row


def test_upsert_replaces_same_key(tmp_path: Path):
    path = tmp_path / "results.csv"
    upsert_rows(path, [result_row(), result_row(seed=1)])
    upsert_rows(path, [result_row(rank1=85.0)])
    df = read_results(path)
    assert len(df) == 2
    assert df.loc[df.seed == 0, "rank1"].item() == 85.0
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left behind
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # same permissions as a file written the ordinary way
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


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


def _upsert_seeds(path: str, seeds: list[int]) -> None:
    for seed in seeds:
        upsert_rows(path, [result_row(seed=seed, git_commit="x", date="d")])


def test_concurrent_upserts_lose_no_rows(tmp_path: Path):
    import multiprocessing

    path = tmp_path / "results.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_upsert_seeds, args=(str(path), list(range(i * 6, i * 6 + 6))))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(read_results(path).seed) == list(range(18))


def test_upsert_onto_header_only_table_and_bad_rows(tmp_path: Path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(RESULT_COLUMNS) + "\n")
    assert len(upsert_rows(path, [result_row()])) == 1
    with pytest.raises(ValueError, match="same key passed twice"):
        upsert_rows(path, [result_row(), result_row(rank1=1.0)])
    with pytest.raises(TypeError, match="ResultRow"):
        upsert_rows(path, [{"dataset": "x"}])
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,rank1\nx,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv lacks columns"):
        upsert_rows(bad, [result_row()])


def test_git_commit_and_dates(tmp_path: Path):
    assert git_commit(tmp_path) == "unknown"  # not a repository: no crash
    assert git_commit() != ""
    stamp = now_iso()
    assert stamp[:4].isdigit() and "T" in stamp and stamp.endswith("+00:00")
    assert result_row().git_commit and result_row().date


def test_engine_and_init_columns_and_tables_without_them(tmp_path: Path):
    from compare.results import KEY_COLUMNS

    assert {"engine", "init"} <= set(KEY_COLUMNS)
    assert (result_row().engine, result_row().init) == (
        "torch",
        "scratch",
    )  # a CNN row that names neither
    classical = result_row(pipeline="classical", model="lomo_xqda", variant="classical")
    assert (classical.engine, classical.init) == ("numba", "n/a")
    # a table written before the columns existed: filled in, and new rows replace old ones
    old = tmp_path / "old.csv"
    frame = pd.DataFrame([vars(result_row()), vars(classical)]).drop(columns=["engine", "init"])
    frame.to_csv(old, index=False)
    df = read_results(old)
    assert df.engine.tolist() == ["torch", "numba"] and df.init.tolist() == ["scratch", "n/a"]
    table = upsert_rows(old, [result_row(rank1=81.0), result_row(engine="onnxruntime", rank1=81.0)])
    assert sorted(table.engine) == ["numba", "onnxruntime", "torch"]  # torch replaced, not added
    assert table[table.engine == "torch"].rank1.item() == 81.0
    assert list(table.columns) == list(RESULT_COLUMNS)
    # one run trained from scratch and from pretrained weights: two rows
    table = upsert_rows(old, [result_row(init="pretrained")])
    assert sorted(table[table.engine == "torch"].init) == ["pretrained", "scratch"]
