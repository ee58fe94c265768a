"""The plot and markdown tables from a small hand-made results table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compare.plot import (
    aggregate,
    distillation_markdown,
    family,
    plot_tradeoff,
    results_markdown,
    short_name,
)
from tests.builders import results_table

PNG = b"\x89PNG\r\n\x1a\n"


def _scaling() -> pd.DataFrame:
    rows = [
        dict(dim=d, gallery_size=n, ms_match=n * d * 1e-6, label=f"{d}-d")
        for d in (205, 256, 2048)
        for n in (1000, 10000)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("scaling", [None, _scaling()])
def test_plot_files(tmp_path: Path, scaling):
    agg = plot_tradeoff(
        results_table(),
        tmp_path / "out" / "t.png",
        tmp_path / "t.svg",
        title="test",
        scaling=scaling,
    )
    assert (tmp_path / "out" / "t.png").read_bytes()[:8] == PNG
    assert (tmp_path / "out" / "t.png").stat().st_size > 20_000
    svg = (tmp_path / "t.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "MNv1 0.25 KD" in svg and "LOMO+XQDA" in svg
    mn = agg[(agg.model == "mobilenet_v1_0.25") & (agg.variant == "distilled")].iloc[0]
    assert mn.rank1 == pytest.approx(69.0) and mn.seeds == 2 and mn.rank1_std > 0
    assert mn.label == "MNv1 0.25 KD" and mn.family == "MobileNet v1"


def test_markdown_aggregates_seeds_and_marks_front():
    text = results_markdown(results_table())
    lines = text.splitlines()
    assert len(lines) == 2 + 5  # header, separator, 5 aggregated points
    assert "69.0 ± 1.4" in text and "LOMO+XQDA" in text
    # fastest first: the distilled MNv1 0.25 (3.05 ms on average) before its baseline (3.1 ms)
    assert lines[2].startswith("| MNv1 0.25 | distilled") and lines[2].endswith("| * |")
    # dominated: the baseline by its distilled version, LOMO+XQDA (20 ms) by MNv2 (8 ms)
    assert lines[3].startswith("| MNv1 0.25 | baseline") and lines[3].endswith("|  |")
    lomo = next(line for line in lines if "LOMO+XQDA" in line)
    assert lomo.endswith("|  |")
    assert next(line for line in lines if line.startswith("| R50")).endswith("| * |")


def test_distillation_markdown():
    text = distillation_markdown(results_table())
    assert text.count("\n") == 2  # only MobileNet v1 0.25 has both variants
    assert "| MNv1 0.25 | 64x32 | 2/2 | 61.0 ± 1.4 | 69.0 ± 1.4 | +8.0 |" in text
    assert distillation_markdown(results_table()[lambda d: d.variant != "distilled"]) == ""


def test_names_and_families():
    assert family("classical", "lomo_xqda") == "classical"
    assert family("deep", "resnet18") == "ResNet" and family("deep", "osnet_x1_0") == "other"
    assert family("deep", "mobilenet_v2_1.0") == "MobileNet v2" and family("deep", "vit") == "other"
    assert short_name("deep", "mobilenet_v1_0.25") == "MNv1 0.25"
    assert short_name("deep", "resnet50") == "R50" and short_name("deep", "mobilenet_v2_1.0") == (
        "MNv2 1.0"
    )
    assert short_name("classical", "lomo_xqda") == "LOMO+XQDA"
    with pytest.raises(ValueError, match="unknown pipeline 'toy'"):
        family("toy", "anything")


def test_two_input_sizes_get_distinct_labels():
    df = results_table()
    extra = df[df.model == "resnet50"].assign(input_size="128x64", ms_query=90.0)
    agg = aggregate(pd.concat([df, extra]))
    assert {"R50 64x32", "R50 128x64"} <= set(agg.label)


def test_bad_tables_are_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="empty"):
        aggregate(results_table().iloc[0:0])
    with pytest.raises(ValueError, match=r"lacks columns \['mAP'\]"):
        plot_tradeoff(results_table().drop(columns="mAP"), tmp_path / "x.png")
    with pytest.raises(TypeError, match="DataFrame"):
        results_markdown([1, 2])


def _with_engines(fast: dict[str, float]) -> pd.DataFrame:
    """``results_table()`` plus ONNX Runtime / OpenVINO rows per CNN row at ``fast[engine]`` x."""
    df = results_table()
    deep = df[df.pipeline == "deep"]
    extra = [
        deep.assign(engine=engine, ms_query=deep.ms_query * factor, ms_extract=deep.ms_extract)
        for engine, factor in fast.items()
    ]
    return pd.concat([df, *extra], ignore_index=True)


def test_plot_and_tables_use_the_fastest_engine(tmp_path: Path):
    from compare.plot import engines_markdown, fastest_engines

    df = _with_engines({"onnxruntime": 0.2, "openvino": 0.3})
    best = fastest_engines(aggregate(df))
    assert len(best) == 5  # one point per pipeline, not per engine
    assert set(best[best.pipeline == "deep"].engine) == {"onnxruntime"}
    assert best[best.pipeline == "classical"].engine.item() == "numba"
    r50 = best[best.model == "resnet50"].iloc[0]
    assert r50.ms_query == pytest.approx(8.0) and r50.ms_query_torch == pytest.approx(40.0)
    assert r50.engines == "onnxruntime, openvino, torch"
    agg = plot_tradeoff(df, tmp_path / "t.png", tmp_path / "t.svg")
    assert len(agg) == 5 and "MNv1 0.25 KD" in set(agg.label)  # one engine: no tags
    svg = (tmp_path / "t.svg").read_text()
    assert "CNNs on their fastest engine, ONNX Runtime" in svg
    text = results_markdown(df)
    assert len(text.splitlines()) == 2 + 5 + 2 * 4  # every engine of every CNN point listed
    assert text.count("**onnxruntime**") == 4 and "**torch**" not in text
    front = [line for line in text.splitlines() if line.endswith("| * |")]
    assert front and all("**onnxruntime**" in line for line in front)
    engines = engines_markdown(df)
    assert "| R50 | baseline | scratch | 64x32 | 40.00 | 8.00 | 12.00 | ONNX Runtime | 5.0x |" in (
        engines
    )
    assert "ORT +0.0 / +0.0" in engines
    assert engines_markdown(results_table()) == ""  # one engine only: no engine table


def test_mixed_engines_and_inits_are_marked(tmp_path: Path):
    df = _with_engines({"onnxruntime": 0.5})
    mn = df.model == "mobilenet_v1_0.25"
    df.loc[mn & (df.engine == "onnxruntime"), "ms_query"] = 99.0  # eager is fastest here
    df.loc[df.model == "mobilenet_v2_1.0", "init"] = "pretrained"
    agg = plot_tradeoff(df, tmp_path / "t.png", tmp_path / "t.svg")
    labels = set(agg.label)
    assert {"MNv1 0.25 [eager]", "MNv1 0.25 KD [eager]", "R50 [ORT]", "MNv2 1.0 pre [ORT]"} <= (
        labels
    )
    assert "LOMO+XQDA" in labels  # the classical pipeline has no engine tag
    svg = (tmp_path / "t.svg").read_text()
    assert "eager = PyTorch eager" in svg and "pre = pretrained" in svg
    assert "| MNv2 1.0 | baseline | **onnxruntime** | pretrained |" in results_markdown(df)


def test_imagenet_init_is_marked_in_labels_and_caption(tmp_path: Path):
    df = results_table()
    df.loc[df.model == "mobilenet_v2_1.0", "init"] = "imagenet"
    df.loc[df.model == "mobilenet_v1_0.25", "init"] = "pretrained"
    agg = plot_tradeoff(df, tmp_path / "t.png", tmp_path / "t.svg")
    assert "MNv2 1.0 IN" in set(agg.label)
    svg = (tmp_path / "t.svg").read_text()
    assert "IN = imagenet" in svg and "pre = pretrained" in svg
    only = df[(df.pipeline == "classical") | (df.model == "mobilenet_v2_1.0")]
    plot_tradeoff(only, tmp_path / "o.png", tmp_path / "o.svg")
    assert "CNNs fine-tuned from ImageNet weights" in (tmp_path / "o.svg").read_text()


def test_int8_points_sit_beside_their_float_points(tmp_path: Path):
    from compare.plot import distillation_markdown, engines_markdown, int8_markdown, int8_points

    df = _with_engines({"onnxruntime": 0.2, "onnxruntime-int8": 0.1})
    int8 = df.engine == "onnxruntime-int8"
    df.loc[int8, "mAP"] -= 0.5
    df.loc[int8 & (df.model == "resnet50"), "mAP"] -= 2.0  # R50 loses 2.5 points
    points = int8_points(aggregate(df))
    assert len(points) == 4 and set(points.engine) == {"onnxruntime-int8"}
    r50 = points[points.model == "resnet50"].iloc[0]
    assert r50.speedup == pytest.approx(2.0) and r50.mAP_fp32 == pytest.approx(70.0)
    agg = plot_tradeoff(df, tmp_path / "t.png", tmp_path / "t.svg")
    # the float points stay at their fastest float engine; the int8 one is not a point's engine
    assert set(agg[agg.pipeline == "deep"].engine) == {"onnxruntime"} and len(agg) == 5
    assert "<!-- int8 -->" in (tmp_path / "t.svg").read_text()  # its legend entry
    table = int8_markdown(df)
    assert "| R50 | baseline | scratch | 64x32 | ONNX Runtime int8 | 1 | 8.00 | 4.00 | 2.00x |" in (
        table
    )
    assert "70.0 → 67.5 (-2.5) | **loses 2.5 mAP points** |" in table
    assert table.count("loses") == 1  # 0.5 points is not flagged
    assert "int8" not in engines_markdown(df)  # the engine table compares float engines
    assert distillation_markdown(df) == distillation_markdown(_with_engines({"onnxruntime": 0.2}))
    text = results_markdown(df)
    assert text.count("**onnxruntime-int8**") == 4  # every int8 point is plotted
    assert int8_markdown(_with_engines({"onnxruntime": 0.2})) == ""
