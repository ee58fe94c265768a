"""The plot and markdown table from a small hand-made results table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compare.plot import aggregate, family, plot_tradeoff, results_markdown, short_name
from compare.results import RESULT_COLUMNS


def _table() -> pd.DataFrame:
    rows = []
    specs = [
        ("classical", "lomo_xqda", "classical", 0, 45.0, 30.0, 20.0),
        ("deep", "resnet50", "baseline", 0, 85.0, 70.0, 40.0),
        ("deep", "mobilenet_v1_0.25", "baseline", 0, 60.0, 40.0, 3.0),
        ("deep", "mobilenet_v1_0.25", "baseline", 1, 62.0, 42.0, 3.2),
        ("deep", "mobilenet_v1_0.25", "distilled", 0, 68.0, 47.0, 3.1),
        ("deep", "mobilenet_v1_0.25", "distilled", 1, 70.0, 49.0, 3.0),
        ("deep", "mobilenet_v2_1.0", "baseline", 0, 72.0, 52.0, 8.0),
    ]
    for pipeline, model, variant, seed, r1, mAP, ms in specs:
        row = {c: 0 for c in RESULT_COLUMNS}
        row.update(
            dataset="d",
            pipeline=pipeline,
            model=model,
            variant=variant,
            seed=seed,
            input_size="64x32",
            params=1e6,
            gflops=0.1,
            embedding_dim=256,
            rank1=r1,
            mAP=mAP,
            mAP_torchreid=mAP + 1,
            ms_extract=ms - 0.1,
            ms_match=0.1,
            ms_query=ms,
            ms_query_p90=ms * 1.2,
            threads=1,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def test_plot_and_markdown(tmp_path: Path):
    agg = plot_tradeoff(_table(), tmp_path / "t.png", tmp_path / "t.svg", title="test")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "t.svg").stat().st_size > 1000
    mn = agg[(agg.model == "mobilenet_v1_0.25") & (agg.variant == "distilled")].iloc[0]
    assert mn.rank1 == pytest.approx(69.0) and mn.seeds == 2 and mn.rank1_std > 0
    text = results_markdown(_table())
    assert text.count("\n") == 2 + 4  # header, separator, 5 aggregated rows
    assert "69.0 ± 1.4" in text and "LOMO+XQDA" in text


def test_names_and_families():
    assert family("lomo_xqda") == "classical" and family("resnet18") == "ResNet"
    assert short_name("mobilenet_v1_0.25") == "MNv1 0.25" and short_name("resnet50") == "R50"


def test_empty_table_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        aggregate(_table().iloc[0:0])
