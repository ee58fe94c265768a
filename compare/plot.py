"""The trade-off picture: accuracy against milliseconds per query, and its markdown table.

Points are aggregated over seeds (mean, with the standard deviation as error bars on both axes).
A CNN timed on several inference engines (the results table's ``engine`` column: eager
``torch``, ``onnxruntime``, ``openvino``) is drawn once, at its fastest engine
(:func:`fastest_engines`); the subtitle names the engines and, when they differ between CNNs,
each label carries its engine in brackets. A CNN also timed on int8 engines (``onnxruntime-int8``,
``openvino-int8``: the model quantised by :mod:`deep.quantize`, its own accuracy) gets an X at its
fastest int8 engine, joined to its float point by a dotted line; the Pareto front is the float
points'. The markdown table lists every engine, :func:`int8_markdown` the int8 speed-ups and
accuracy changes. One marker per
family (each pipeline's adapter, :mod:`compare.pipelines`, styles its families: classical,
ResNet, MobileNet v1, MobileNet v2), hollow for networks
trained alone and filled for distilled students, with an arrow from each student's baseline to
its distilled version; the Pareto front (fastest way to reach a given accuracy) is a step line.
An optional third panel shows matching time against gallery size for each feature dimension,
with the extraction time of each network as a horizontal reference: where a curve crosses a
reference line, matching starts to dominate that pipeline's cost.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from compare.pareto import pareto_front
from compare.pipelines import (
    derived_rows,
    family_style,
    family_styles,
    pipeline,
    rows_where,
    variant_of,
    variants,
)
from compare.reranking import ONLINE
from compare.results import fill_defaults
from data.io import atomic_path
from deep.export import INT8_BASE, INT8_ENGINES

#: Columns identifying one point of the plot (seeds are aggregated, the fastest engine is kept).
GROUP = ["pipeline", "model", "variant", "input_size", "init", "rerank"]
#: Columns the plot and the table need from a results table (``engine`` and ``init`` are filled
#: in when absent, see :func:`compare.results.fill_defaults`).
NEEDED = ("pipeline", "model", "variant", "input_size", "seed", "rank1", "mAP", "ms_query")
#: Short engine names for labels.
ENGINE_TAGS = {
    "torch": "eager",
    "onnxruntime": "ORT",
    "openvino": "OV",
    "numba": "numba",
    "onnxruntime-int8": "ORT int8",
    "openvino-int8": "OV int8",
}
#: Engine names for captions.
ENGINE_NAMES = {
    "torch": "PyTorch eager",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "numba": "numba",
    "onnxruntime-int8": "ONNX Runtime int8",
    "openvino-int8": "OpenVINO int8",
}
#: Marker of an int8 point (any family), joined to its float point by a dotted line.
INT8_MARKER = "X"
#: mAP points an int8 model may lose before the table flags it.
INT8_MAP_LOSS = 1.0
#: Short initialisation names for labels (scratch, the default, gets none).
INIT_TAGS = {"scratch": "", "pretrained": "pre", "imagenet": "IN", "n/a": ""}
FRONT_COLOR = "#ff7f0e"
#: Label suffix of re-ranked points (:mod:`compare.reranking`).
RERANK_SUFFIX = " +RR"
_MEAN_COLUMNS = (
    "rank1",
    "rank5",
    "rank10",
    "mAP",
    "mAP_torchreid",
    "ms_extract",
    "ms_match",
    "ms_query",
    "ms_query_p90",
)


def family(pipeline_name: str, model: str) -> str:
    """Family of a model of a pipeline, from the pipeline's adapter (:mod:`compare.pipelines`):
    classical, ResNet, MobileNet v1, MobileNet v2, or other for the CNNs."""
    return pipeline(pipeline_name).family(model)


def short_name(pipeline_name: str, model: str) -> str:
    """Label for a model of a pipeline, from its adapter: ``lomo_xqda`` -> LOMO+XQDA, a CNN by
    the model registry's short name (``resnet50`` -> R50); unknown names unchanged."""
    return pipeline(pipeline_name).short_name(model)


def _multi_engine(df: pd.DataFrame) -> pd.Series:
    """Rows of pipelines timed on several engines (shown at their fastest, engines tagged)."""
    return rows_where(df, lambda p: p.multi_engine)


def _with_init(df: pd.DataFrame) -> pd.Series:
    """Rows of pipelines whose ``init`` says how the model was initialised."""
    return rows_where(df, lambda p: p.reports_init)


def plain_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without re-ranking (``rerank`` not online; tables without the column are plain)."""
    df = fill_defaults(df)
    return df[df.rerank.astype(str) != ONLINE]


def _check(df: pd.DataFrame) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of results, got {type(df).__name__}")
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"the results table lacks columns {missing}")
    if df.empty:
        raise ValueError("the results table is empty: nothing to plot")


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (pipeline, model, variant, input size, init,
    engine).

    Returns one row per point and engine with ``<col>`` (mean) and ``<col>_std`` (0 for a single
    seed) for the accuracy and timing columns present, plus ``seeds`` (number of seeds),
    ``family``, ``label`` (without the engine) and the first value of params, gflops,
    embedding_dim and threads.
    """
    _check(df)
    df = fill_defaults(df)
    means = [c for c in _MEAN_COLUMNS if c in df.columns]
    spec: dict[str, tuple[str, str]] = {}
    for c in means:
        spec[c] = (c, "mean")
        spec[f"{c}_std"] = (c, "std")
    for c in ("params", "gflops", "embedding_dim", "threads", "device"):
        if c in df.columns:
            spec[c] = (c, "first")
    spec["seeds"] = ("seed", "nunique")
    agg = df.groupby([*GROUP, "engine"], sort=False, dropna=False).agg(**spec).reset_index()
    agg = agg.fillna({f"{c}_std": 0.0 for c in means})
    agg["family"] = [family(p, m) for p, m in zip(agg.pipeline, agg.model, strict=True)]
    sizes_per_model = agg.groupby("model").input_size.nunique()
    deep_inits = set(agg[_with_init(agg)].init)
    labels = []
    for r in agg.itertuples():
        text = short_name(r.pipeline, r.model)
        if sizes_per_model[r.model] > 1:
            text += f" {r.input_size}"
        text += variant_of(r.pipeline, r.variant).suffix
        tag = INIT_TAGS.get(r.init, r.init)
        if len(deep_inits) > 1 and tag:  # say which CNNs started from pretrained weights
            text += f" {tag}"
        labels.append(text + (RERANK_SUFFIX if r.rerank == ONLINE else ""))
    agg["label"] = labels
    return agg


def fastest_engines(agg: pd.DataFrame) -> pd.DataFrame:
    """One row per point of :func:`aggregate`: the engine with the smallest mean ms/query.

    Adds ``engines`` (every engine the point was timed on, fastest first) and ``ms_query_torch``
    (the eager PyTorch time, NaN when not measured), so the speed-up of the chosen engine can be
    shown.
    """
    ranked = agg.assign(_ms=agg.ms_query.astype(float).fillna(np.inf)).sort_values(
        "_ms", kind="stable"
    )
    keys = ranked[GROUP].astype(str).agg("|".join, axis=1)
    engines = ranked.groupby(keys, sort=False).engine.agg(lambda e: ", ".join(map(str, e)))
    torch_ms = ranked[ranked.engine == "torch"].groupby(keys, sort=False).ms_query.first()
    best = ranked[~keys.duplicated()].copy()
    best_keys = keys[~keys.duplicated()]
    best["engines"] = best_keys.map(engines).to_numpy()
    best["ms_query_torch"] = best_keys.map(torch_ms).astype(float).to_numpy()
    # back to the order of agg, which the plot and tables rely on
    return best.drop(columns="_ms").loc[[i for i in agg.index if i in best.index]]


def float_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of float32 engines only: an int8 model is another point, never a point's engine."""
    return df[~df.engine.astype(str).isin(INT8_ENGINES)] if "engine" in df.columns else df


def int8_points(agg: pd.DataFrame) -> pd.DataFrame:
    """Rows of :func:`aggregate` on an int8 engine that have their float32 twin (the same point
    on the same runtime), with the twin's ``ms_query_fp32``, ``rank1_fp32``, ``mAP_fp32`` and
    ``speedup`` (fp32 / int8 ms/query); empty when there are none."""
    rows, index = [], []
    for i, r in agg[agg.engine.astype(str).isin(INT8_ENGINES)].iterrows():
        twin = agg[(agg[GROUP] == r[GROUP]).all(axis=1) & (agg.engine == INT8_BASE[r.engine])]
        if twin.empty:
            continue
        t = twin.iloc[0]
        rows.append(
            {
                **r.to_dict(),
                "ms_query_fp32": t.ms_query,
                "rank1_fp32": t.rank1,
                "mAP_fp32": t.mAP,
                "speedup": t.ms_query / r.ms_query,
            }
        )
        index.append(i)
    columns = [*agg.columns, "ms_query_fp32", "rank1_fp32", "mAP_fp32", "speedup"]
    return pd.DataFrame(rows, columns=columns, index=index)


def _fastest_int8(agg: pd.DataFrame) -> pd.DataFrame:
    """The fastest int8 engine of each point (what the plot draws)."""
    points = int8_points(agg)
    if points.empty:
        return points
    points = points.sort_values("ms_query", kind="stable")
    return points[~points[GROUP].astype(str).agg("|".join, axis=1).duplicated()]


def _engine_caption(best: pd.DataFrame) -> tuple[str, bool]:
    """Subtitle words for the CNNs' engines, and whether labels must carry their engine."""
    cnn = best[_multi_engine(best)]
    engines = list(dict.fromkeys(cnn.engine.astype(str)))
    if not engines:
        return "", False
    if len(engines) == 1:
        name = ENGINE_NAMES.get(engines[0], engines[0])
        timed = sorted({e for es in cnn.engines for e in str(es).split(", ")})
        if timed == [engines[0]]:
            return f"CNNs on {name}", False
        return f"CNNs on their fastest engine, {name}", False
    tags = ", ".join(f"{ENGINE_TAGS.get(e, e)} = {ENGINE_NAMES.get(e, e)}" for e in engines)
    return f"CNNs on their fastest engine [{tags}]", True


def _init_caption(best: pd.DataFrame) -> str:
    inits = sorted(set(best[_with_init(best)].init.astype(str)))
    if not inits:
        return ""
    if len(inits) == 1:
        if inits == ["pretrained"]:
            return "CNNs fine-tuned from pretrained backbones"
        if inits == ["imagenet"]:
            return "CNNs fine-tuned from ImageNet weights"
        return "CNNs trained from scratch" if inits == ["scratch"] else f"CNN init: {inits[0]}"
    tags = ", ".join(f"{INIT_TAGS.get(i) or i} = {i}" for i in inits if INIT_TAGS.get(i, i))
    return f"CNN init: {' and '.join(inits)} ({tags})"


def _log_axis(ax, axis: str = "x", span: float = 10.0) -> None:
    """Plain-number ticks (1, 2, 5, 10, ...) on a log axis instead of 10^k.

    ``span`` (max / min of the data) below about 5 gets denser ticks.
    """
    target = ax.xaxis if axis == "x" else ax.yaxis
    subs = (1.0, 2.0, 5.0) if span > 5 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


#: Label offsets tried in order (points): right, left, above, below, then diagonals further out.
_OFFSETS = (
    (7, -4, "left"),
    (-7, -4, "right"),
    (0, 8, "center"),
    (0, -16, "center"),
    (7, 6, "left"),
    (7, -14, "left"),
    (-7, 6, "right"),
    (-7, -14, "right"),
    (12, 14, "left"),
    (12, -24, "left"),
    (-12, 14, "right"),
    (-12, -24, "right"),
)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(ax, labels: list[dict], obstacles: list[tuple[float, float]]) -> None:
    """Greedy label placement: each label takes the first offset that overlaps least.

    ``labels`` hold x, y, text, color, bold; ``obstacles`` are data points (markers, arrow
    samples) that labels should not cover. Candidates overlapping earlier labels, markers or
    leaving the axes are penalised; the earliest candidate wins ties, so labels stay to the
    right of their point when there is room.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_px = ax.transData.transform
    scale = fig.dpi / 72.0
    blocks = [
        Bbox.from_extents(px - 6 * scale, py - 6 * scale, px + 6 * scale, py + 6 * scale)
        for px, py in (to_px((x, y)) for x, y in obstacles)
    ]
    placed = []
    for item in labels:
        best = None
        for dx, dy, ha in _OFFSETS:
            text = ax.annotate(
                item["text"],
                (item["x"], item["y"]),
                textcoords="offset points",
                xytext=(dx, dy),
                ha=ha,
                fontsize=8.5,
                color=item["color"],
                fontweight="bold" if item["bold"] else "normal",
                zorder=5,
            )
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            score = sum(_overlap(box, b) for b in placed) * 3 + sum(
                _overlap(box, b) for b in blocks
            )
            outside = box.width * box.height - _overlap(box, frame)
            score += 5 * outside
            if best is None or score < best[0] - 1e-9:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if score == 0:
                break
        placed.append(best[2])


def _draw_pareto_front(ax, x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Draw the Pareto front of the valid points as a step line; return their indices."""
    front = np.flatnonzero(ok)[pareto_front(x[ok], y[ok])] if ok.any() else np.array([], int)
    if len(front):
        fx, fy = x[front], y[front]
        right = x[ok].max() * 1.6
        ax.step(
            np.append(fx, right),
            np.append(fy, fy[-1]),
            where="post",
            color=FRONT_COLOR,
            lw=2.2,
            alpha=0.45,
            zorder=1,
            solid_capstyle="round",
        )
    return front


def _draw_distillation_arrows(ax, agg: pd.DataFrame, metric: str) -> list[tuple[tuple, tuple]]:
    """Arrow from each point of a derived variant's origin to the derived point (a student's
    baseline to its distilled version, :attr:`Variant.derived_from`); return (start, end)
    pairs."""
    arrows = []
    derived = [v for v in variants() if v.derived_from]
    plain = agg[agg.rerank != ONLINE]
    for (_key, sub), v in product(
        plain.groupby(["model", "input_size", "init"], sort=False), derived
    ):
        base = sub[sub.variant == v.derived_from]
        dist = sub[sub.variant == v.name]
        if len(base) and len(dist):
            b, d = base.iloc[0], dist.iloc[0]
            arrows.append(((b.ms_query, b[metric]), (d.ms_query, d[metric])))
            ax.annotate(
                "",
                xy=(d.ms_query, d[metric]),
                xytext=(b.ms_query, b[metric]),
                arrowprops=dict(
                    arrowstyle="-|>",
                    color=family_style(b.family).color,
                    lw=1.3,
                    alpha=0.9,
                    shrinkA=5,
                    shrinkB=5,
                    mutation_scale=12,
                ),
                zorder=2,
            )
    return arrows


def _draw_rerank_links(ax, agg: pd.DataFrame, metric: str) -> list[tuple[tuple, tuple]]:
    """A dotted line from each plain point to its re-ranked twin; return (start, end) pairs."""
    links = []
    key = [c for c in GROUP if c != "rerank"]
    for _key, sub in agg.groupby(key, sort=False):
        plain, twin = sub[sub.rerank != ONLINE], sub[sub.rerank == ONLINE]
        if not (len(plain) and len(twin)):
            continue
        a, b = plain.iloc[0], twin.iloc[0]
        links.append(((a.ms_query, a[metric]), (b.ms_query, b[metric])))
        ax.plot(
            [a.ms_query, b.ms_query],
            [a[metric], b[metric]],
            ls=":",
            lw=1.4,
            color=family_style(a.family).color,
            alpha=0.9,
            zorder=2,
        )
    return links


def _draw_points(
    ax, agg: pd.DataFrame, metric: str, ok: np.ndarray, front: np.ndarray
) -> list[dict]:
    """One marker with error bars per valid point; return the labels to place next to them.

    Baselines are hollow, front points sit on top and get bold labels. Re-ranked points are
    drawn translucent with a black edge, and labelled only on the front.
    """
    labels = []
    for i, r in enumerate(agg.itertuples()):
        if not ok[i]:
            continue
        style = family_style(r.family)
        hollow = variant_of(r.pipeline, r.variant).hollow
        reranked = r.rerank == ONLINE
        ax.errorbar(
            r.ms_query,
            getattr(r, metric),
            xerr=r.ms_query_std if r.ms_query_std > 0 else None,
            yerr=getattr(r, f"{metric}_std") or None,
            fmt=style.marker,
            color=style.color,
            markersize=style.markersize,
            markerfacecolor="white" if hollow else style.color,
            markeredgewidth=1.0 if reranked else 1.6,
            markeredgecolor="black" if reranked else style.color,
            alpha=0.6 if reranked else 1.0,
            elinewidth=1.0,
            capsize=2.5,
            zorder=4 if i in front else 3,
        )
        if reranked and i not in front:
            continue
        labels.append(
            dict(
                x=r.ms_query,
                y=getattr(r, metric),
                text=r.label,
                color=style.color,
                bold=i in front,
            )
        )
    return labels


def _label_obstacles(
    labels: list[dict], arrows: list[tuple[tuple, tuple]]
) -> list[tuple[float, float]]:
    """Points labels should not cover: the markers and samples along the arrows' shafts."""
    obstacles = [(item["x"], item["y"]) for item in labels]
    for b, d in arrows:
        for t in np.linspace(0.25, 0.75, 3):  # keep labels off the arrows' shafts
            obstacles.append((b[0] ** (1 - t) * d[0] ** t, b[1] + t * (d[1] - b[1])))
    return obstacles


def _accuracy_axes(ax, x: np.ndarray, y: np.ndarray, ok: np.ndarray, ylabel: str) -> None:
    """Log ms/query axis with room for labels on the right, padded accuracy axis, grid."""
    ax.set_xscale("log")
    lo, hi = x[ok].min(), x[ok].max()
    _log_axis(ax, "x", span=hi / lo)
    ax.set_xlim(lo / 1.5, hi * 2.2)  # room for the labels on the right of the points
    ylo, yhi = np.nanmin(y[ok]), np.nanmax(y[ok])
    pad = max(2.0, 0.08 * (yhi - ylo))
    ax.set_ylim(max(0.0, ylo - pad), min(100.0, yhi + pad) if yhi <= 100 else yhi + pad)
    ax.set_xlabel("milliseconds per query: extraction + matching (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)


def _draw_int8(ax, agg: pd.DataFrame, int8: pd.DataFrame, metric: str) -> list[tuple]:
    """An X per int8 point (hollow / filled as its float point), a dotted line to its float
    point as plotted; return their positions."""
    out = []
    for _, q in int8.iterrows():
        style = family_style(q.family)
        hollow = variant_of(q.pipeline, q.variant).hollow
        x, y = float(q.ms_query), float(q[metric])
        if not (np.isfinite(x) and np.isfinite(y) and x > 0):
            continue
        base = agg[(agg[GROUP] == q[GROUP]).all(axis=1)]
        if len(base):
            b = base.iloc[0]
            ax.plot([b.ms_query, x], [b[metric], y], ls=":", color=style.color, lw=1.3, zorder=2)
        ax.plot(
            x,
            y,
            ls="none",
            marker=INT8_MARKER,
            color=style.color,
            markersize=8,
            markerfacecolor="white" if hollow else style.color,
            markeredgewidth=1.4,
            zorder=3,
        )
        out.append((x, y))
    return out


def _accuracy_panel(
    ax, agg: pd.DataFrame, metric: str, ylabel: str, int8: pd.DataFrame | None = None
) -> None:
    """``metric`` against ms/query: Pareto front (float points), distillation arrows, points,
    int8 points and labels."""
    x = agg.ms_query.to_numpy(dtype=float)
    y = agg[metric].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    front = _draw_pareto_front(ax, x, y, ok)
    # arrows first so the markers sit on top of their ends
    arrows = _draw_distillation_arrows(ax, agg, metric) + _draw_rerank_links(ax, agg, metric)
    labels = _draw_points(ax, agg, metric, ok, front)
    quantized = _draw_int8(ax, agg, int8, metric) if int8 is not None else []
    obstacles = _label_obstacles(labels, arrows) + quantized
    if quantized:  # the axes hold the int8 points too
        qx, qy = np.array(quantized).T
        x, y, ok = np.append(x, qx), np.append(y, qy), np.append(ok, np.ones(len(qx), bool))
    _accuracy_axes(ax, x, y, ok, ylabel)
    # front points first: their labels get the best places
    labels.sort(key=lambda item: not item["bold"])
    _place_labels(ax, labels, obstacles)


def _spread(values: list[float], min_gap: float) -> list[float]:
    """Shift sorted positions apart so neighbours are at least ``min_gap`` apart (1-D)."""
    order = np.argsort(values)
    out = np.asarray(values, dtype=float)[order].copy()
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + min_gap)
    # centre the shifted block on the original positions
    out -= (out - np.asarray(values, dtype=float)[order]).mean() / 2
    result = np.empty_like(out)
    result[order] = out
    return result.tolist()


#: Colours of the approximate-search curves (apart from the purples and the family colours).
ANN_COLORS = {"hnsw": "#1b9e77", "ivfpq": "#d95f02", "ivfpq+refine": "#b8860b"}
ANN_STYLES = ("-", "--", ":", "-.")


def _ann_curves(ax, ann: pd.DataFrame) -> list[tuple[float, str, object]]:
    """Per embedding and index: ms/query against gallery size, each point labelled with its
    recall@10; returns the curve ends for the labels at the right."""
    ends = []
    indexes = ann[ann.label.isin(list(ANN_COLORS))]
    for i, source in enumerate(dict.fromkeys(indexes.source)):
        for label, color in ANN_COLORS.items():
            sub = indexes[(indexes.source == source) & (indexes.label == label)]
            if sub.empty:
                continue
            sub = sub.sort_values("gallery_size")
            style = ANN_STYLES[i % len(ANN_STYLES)]
            ax.plot(
                sub.gallery_size, sub.ms_match, marker="^", ms=3.5, color=color, lw=1.3, ls=style
            )
            for r in sub.itertuples():
                ax.annotate(
                    f"r{r.recall10:.2f}".replace("r0.", "r."),
                    (r.gallery_size, r.ms_match),
                    xytext=(3, -7),
                    textcoords="offset points",
                    fontsize=6,
                    color=color,
                )
            ends.append((float(sub.ms_match.iloc[-1]), f"{label.upper()} {source}", color))
    return ends


def _label_lines(ax, ends: list, refs: list, x_range: tuple, y_range: tuple) -> None:
    """Curve names at their right end, reference names at the left, spread in log space."""
    (x_min, x_max), (lo, hi) = x_range, y_range
    span = np.log10(hi * 1.6) - np.log10(lo / 1.6)
    if ends:  # curve names right of the last point, joined to it by a thin leader line
        ys = _spread([np.log10(v) for v, _, _ in ends], 0.045 * span)
        for (v, text, color), y in zip(ends, ys, strict=True):
            ax.annotate(
                text,
                (x_max, v),
                xytext=(x_max * 1.25, 10**y),
                textcoords="data",
                ha="left",
                va="center",
                fontsize=7.5,
                color=color,
                arrowprops=dict(arrowstyle="-", lw=0.6, color=color, shrinkA=1, shrinkB=2),
            )
    if refs:  # reference names in the left margin, before the smallest gallery
        ys = _spread([np.log10(v) for v, _, _ in refs], 0.045 * span)
        for (v, text, color), y in zip(refs, ys, strict=True):
            ax.annotate(
                text,
                (x_min / 1.1, v),
                xytext=(x_min / 1.25, 10**y),
                textcoords="data",
                ha="right",
                va="center",
                fontsize=7.5,
                color=color,
                bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none"),
                arrowprops=dict(arrowstyle="-", lw=0.6, color=color, shrinkA=1, shrinkB=0),
            )


def _scaling_panel(
    ax, scaling: pd.DataFrame, agg: pd.DataFrame, ann: pd.DataFrame | None = None
) -> None:
    dims = sorted(int(d) for d in scaling.dim.unique())
    # purples: distinct from the family colours of the dashed extraction references
    ramp = plt.get_cmap("Purples")
    colors = {d: ramp(0.45 + 0.55 * i / max(1, len(dims) - 1)) for i, d in enumerate(dims)}
    x_min, x_max = scaling.gallery_size.min(), scaling.gallery_size.max()
    ends = []
    for d in dims:
        sub = scaling[scaling.dim == d].sort_values("gallery_size")
        ax.plot(sub.gallery_size, sub.ms_match, marker="o", markersize=3, color=colors[d], lw=1.6)
        label = str(sub.label.iloc[0]) if "label" in sub.columns else f"{d}-d"
        ends.append((float(sub.ms_match.iloc[-1]), label, colors[d]))
    with_ann = ann is not None and not ann.empty
    if with_ann:
        ends += _ann_curves(ax, ann)
        x_min = min(x_min, ann.gallery_size.min())
        x_max = max(x_max, ann.gallery_size.max())
    refs = []
    # extraction time per architecture (baseline and distilled share it): the reference lines
    plain = agg[agg.rerank != ONLINE]
    for r in plain[~derived_rows(plain)].drop_duplicates(["model", "input_size"]).itertuples():
        if np.isfinite(r.ms_extract) and r.ms_extract > 0:
            color = family_style(r.family).color
            ax.axhline(r.ms_extract, color=color, lw=1.0, ls="--", alpha=0.75, zorder=1)
            dim = "" if pd.isna(r.embedding_dim) else f", {int(r.embedding_dim)}-d"
            name = short_name(r.pipeline, r.model)
            refs.append((float(r.ms_extract), f"extract {name}{dim}", color))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    # room for the reference labels on the left and the curve labels on the right
    ax.set_xlim(x_min / 4.5, x_max * 3.2)
    sizes = sorted(
        {int(n) for n in scaling.gallery_size} | ({*ann.gallery_size} if with_ann else set())
    )
    ax.set_xticks(sizes, [f"{n / 1000:g}k" if n >= 1000 else str(n) for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    measured = pd.concat([scaling.ms_match, ann.ms_match]) if with_ann else scaling.ms_match
    positive = measured[measured > 0]
    values = [v for v, _, _ in refs] + positive.tolist()
    lo, hi = min(values), max(values)
    ax.set_ylim(lo / 1.6, hi * 1.6)
    _label_lines(ax, ends, refs, (x_min, x_max), (lo, hi))
    ax.set_xlabel("gallery size (items, log scale)")
    ax.set_ylabel("ms per query (log scale)")
    title = (
        "Matching one query (GEMV + top-50) vs gallery size, random features of each "
        "pipeline's dimension; dashed: feature extraction per query"
    )
    if with_ann:
        title += (
            "\ntriangles: FAISS indexes on each pipeline's own embeddings (real gallery + "
            "fitted distractors), labelled with recall@10 against exact search"
        )
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def _tag_engines(agg: pd.DataFrame) -> None:
    """Append each CNN's engine tag to its label, in place: ``R50 [ORT]``."""
    tagged = _multi_engine(agg).to_numpy()
    agg["label"] = [
        f"{r.label} [{ENGINE_TAGS.get(r.engine, r.engine)}]" if tag else r.label
        for r, tag in zip(agg.itertuples(), tagged, strict=True)
    ]


def _figure_layout(with_scaling: bool) -> tuple[Figure, list[Axes], Axes | None]:
    """The figure, its two accuracy axes and the scaling axes (None without scaling).

    The layout is fixed before drawing: label placement works in display coordinates.
    """
    if with_scaling:
        fig = plt.figure(figsize=(14, 10.5))
        grid = fig.add_gridspec(
            2,
            2,
            height_ratios=(1.25, 1.0),
            hspace=0.3,
            wspace=0.14,
            top=0.895,
            bottom=0.055,
            left=0.055,
            right=0.985,
        )
        axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
        return fig, axes, fig.add_subplot(grid[1, :])
    fig = plt.figure(figsize=(14, 6))
    grid = fig.add_gridspec(1, 2, wspace=0.14, top=0.82, bottom=0.1, left=0.055, right=0.985)
    return fig, [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])], None


def _legend_handles(agg: pd.DataFrame, with_int8: bool = False) -> list[Line2D]:
    """Legend entries: the families present, hollow/filled variants, the arrow, int8 and the
    front."""
    present = [s for s in family_styles() if s.name in set(agg.family)]
    handles = [
        Line2D([], [], ls="none", marker=s.marker, color=s.color, markersize=8, label=s.name)
        for s in present
    ]
    shown = set(agg.variant)
    grey = dict(ls="none", marker="o", color="#555555", markersize=8)
    for v in variants():
        if v.legend and v.name in shown:
            face = dict(markerfacecolor="white") if v.hollow else {}
            handles.append(Line2D([], [], label=v.legend, **face, **grey))
    for v in variants():
        if v.arrow_legend and {v.name, v.derived_from} <= shown:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#555555",
                    marker=r"$\rightarrow$",
                    ls="none",
                    markersize=14,
                    label=v.arrow_legend,
                )
            )
    if with_int8:
        handles.append(
            Line2D([], [], ls=":", marker=INT8_MARKER, color="#555555", markersize=8, label="int8")
        )
    if (agg.rerank == ONLINE).any():
        handles.append(
            Line2D(
                [],
                [],
                ls=":",
                marker="o",
                color="#555555",
                markeredgecolor="black",
                alpha=0.7,
                markersize=8,
                label="re-ranked (k-reciprocal, online; dotted to plain)",
            )
        )
    handles.append(
        Line2D([], [], color=FRONT_COLOR, lw=2.2, alpha=0.6, label="Pareto front (bold labels)")
    )
    return handles


def _subtitle(agg: pd.DataFrame, engine_caption: str) -> str:
    """Seeds, threads, batch size, the CNNs' engines and initialisation."""
    seeds = int(agg.seeds.max())
    threads = sorted({int(t) for t in agg.threads.dropna()}) if "threads" in agg else []
    sub = (
        f"mean over {seeds} seeds, error bars = std over seeds; " if seeds > 1 else "1 seed; "
    ) + f"CPU, {'/'.join(map(str, threads)) or '?'} thread(s), batch size 1"
    details = [c for c in (engine_caption, _init_caption(agg)) if c]
    if details:
        sub += "; " + "; ".join(details)
    return sub


def _add_legend_and_titles(
    fig: Figure, handles: list[Line2D], title: str, sub: str, with_scaling: bool
) -> None:
    """Legend in one row under the title, then the title and the subtitle."""
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 0.955 if with_scaling else 0.915),
        handletextpad=0.3,
        columnspacing=1.2,
    )
    top = 0.995 if with_scaling else 0.99
    fig.suptitle(title, fontsize=13, y=top, va="top")
    fig.text(
        0.5,
        top - (0.028 if with_scaling else 0.05),
        sub,
        ha="center",
        va="top",
        fontsize=9,
        color="#444444",
    )


def _save(fig: Figure, out_png: Path | str, out_svg: Path | str | None) -> None:
    """Write the PNG (and the SVG unless None), atomically, creating folders (an
    :class:`~data.io.OutputError` naming the file if one cannot be written); close the figure."""
    try:
        with atomic_path(out_png, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        if out_svg is not None:
            with atomic_path(out_svg, suffix=".svg") as tmp:
                fig.savefig(tmp)
    finally:
        plt.close(fig)


def plot_tradeoff(
    results_df: pd.DataFrame,
    out_png: Path | str,
    out_svg: Path | str | None = None,
    *,
    title: str = "Speed/accuracy trade-off",
    scaling: pd.DataFrame | None = None,
    ann: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Draw rank-1 and mAP against ms/query (log) and save it as PNG (and SVG).

    Parameters
    ----------
    results_df : DataFrame
        Rows of a results table (:data:`compare.results.RESULT_COLUMNS`; at least
        :data:`NEEDED`), one per seed.
    out_png, out_svg : path
        Output files (folders are created); ``out_svg=None`` skips the SVG.
    title : str
        Figure title.
    scaling : DataFrame, optional
        Columns ``dim``, ``gallery_size``, ``ms_match``: adds the gallery-size scaling panel.
    ann : DataFrame, optional
        Approximate-search points (:func:`compare.ann_scaling.ann_table`: ``source``,
        ``label``, ``gallery_size``, ``ms_match``, ``recall10``): their index curves are drawn
        in the scaling panel.

    Returns
    -------
    DataFrame
        The plotted float points: :func:`aggregate` at each point's fastest float32 engine
        (:func:`fastest_engines`). A point also timed on int8 engines gets an X at its fastest
        int8 one, joined to it by a dotted line (outside the Pareto front, which is the float
        points').
    """
    points = aggregate(results_df)
    agg = fastest_engines(float_rows(points))
    int8 = _fastest_int8(points[points.rerank.astype(str) != ONLINE])  # plain int8 models
    engine_caption, tag_engines = _engine_caption(agg)
    if tag_engines:
        _tag_engines(agg)
    with_scaling = scaling is not None and len(scaling) > 0
    fig, axes, scale_ax = _figure_layout(with_scaling)
    _accuracy_panel(axes[0], agg, "rank1", "rank-1 (%)", int8)
    _accuracy_panel(axes[1], agg, "mAP", "mAP (%)", int8)
    axes[0].set_title("Rank-1", fontsize=11)
    axes[1].set_title("mAP (Market-1501 official)", fontsize=11)
    if with_scaling:
        _scaling_panel(scale_ax, scaling, agg, ann)
    sub = _subtitle(agg, engine_caption)
    handles = _legend_handles(agg, with_int8=not int8.empty)
    _add_legend_and_titles(fig, handles, title, sub, with_scaling)
    _save(fig, out_png, out_svg)
    return agg


def _pm(mean: float, std: float, digits: int = 1) -> str:
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std > 0 else "")


def results_markdown(df: pd.DataFrame) -> str:
    """Markdown table of the results aggregated over seeds (mean ± std), fastest first.

    Every engine of every point has a line; the engine a point is plotted at (its fastest) is in
    bold. ``*`` marks plotted points on the mAP Pareto front (no other plotted point is both
    faster and better).
    """
    agg = aggregate(df).sort_values(["ms_query", "model"], kind="stable").reset_index(drop=True)
    best = fastest_engines(float_rows(agg))
    bold = _multi_engine(agg).to_numpy()
    plotted = set(best.index) | set(_fastest_int8(agg[agg.rerank.astype(str) != ONLINE]).index)
    ok = np.isfinite(best.ms_query.to_numpy(float)) & np.isfinite(best.mAP.to_numpy(float))
    front_pos = np.flatnonzero(ok)[pareto_front(best.ms_query[ok], best.mAP[ok])]
    front = set(best.index[front_pos].tolist())

    def cell(r, col: str, digits: int = 1) -> str:
        if col not in agg.columns:
            return "-"
        return _pm(getattr(r, col), getattr(r, f"{col}_std", 0.0), digits)

    head = (
        "| model | variant | engine | init | input | params (M) | GFLOPs | dim | seeds | rank-1 | "
        "rank-5 | rank-10 | mAP | mAP (torchreid) | ms extract | ms match | ms/query | p90 | "
        "threads | Pareto |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for i, r in enumerate(agg.itertuples()):
        params = getattr(r, "params", np.nan)
        gflops = getattr(r, "gflops", np.nan)
        dim = getattr(r, "embedding_dim", np.nan)
        threads = getattr(r, "threads", np.nan)
        engine = str(r.engine)
        lines.append(
            "| "
            + " | ".join(
                [
                    short_name(r.pipeline, r.model),
                    r.variant + (" + re-rank" if r.rerank == ONLINE else ""),
                    f"**{engine}**" if i in plotted and bold[i] else engine,
                    str(r.init),
                    str(r.input_size),
                    "-" if pd.isna(params) else f"{float(params) / 1e6:.2f}",
                    "-" if pd.isna(gflops) else f"{float(gflops):.3f}",
                    "-" if pd.isna(dim) else str(int(dim)),
                    str(int(r.seeds)),
                    cell(r, "rank1"),
                    cell(r, "rank5"),
                    cell(r, "rank10"),
                    cell(r, "mAP"),
                    cell(r, "mAP_torchreid"),
                    cell(r, "ms_extract", 2),
                    cell(r, "ms_match", 3),
                    cell(r, "ms_query", 2),
                    cell(r, "ms_query_p90", 2),
                    "-" if pd.isna(threads) else str(int(threads)),
                    "*" if i in front else "",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def engines_markdown(df: pd.DataFrame) -> str:
    """Per CNN point: ms/query on each engine, speed-up over eager PyTorch, accuracy change.

    Accuracy differences are the engine's mean rank-1 / mAP minus eager PyTorch's (0.0: the
    exported model ranks the gallery as PyTorch does). '' when no CNN was timed on more than one
    engine.
    """
    agg = aggregate(float_rows(plain_rows(df)))
    deep = agg[_multi_engine(agg)]
    if deep.empty or deep.groupby(GROUP, sort=False).engine.nunique().max() < 2:
        return ""
    engines = [e for e in ENGINE_TAGS if e in set(deep.engine)]
    engines += sorted(set(deep.engine) - set(engines))
    head = (
        "| model | variant | init | input | "
        + " | ".join(f"ms/query {ENGINE_NAMES.get(e, e)}" for e in engines)
        + " | fastest | speed-up vs eager | rank-1 / mAP change vs eager |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    best = fastest_engines(deep).sort_values("ms_query", kind="stable")
    for b in best.itertuples():
        sub = deep[(deep[GROUP] == pd.Series(b._asdict())[GROUP]).all(axis=1)]
        by_engine = {r.engine: r for r in sub.itertuples()}
        cells = [f"{by_engine[e].ms_query:.2f}" if e in by_engine else "-" for e in engines]
        eager = by_engine.get("torch")
        speedup = "-" if eager is None else f"{eager.ms_query / b.ms_query:.1f}x"
        changes = []
        for e, r in by_engine.items():
            if e != "torch" and eager is not None:
                tag = ENGINE_TAGS.get(e, e)
                changes.append(f"{tag} {r.rank1 - eager.rank1:+.1f} / {r.mAP - eager.mAP:+.1f}")
        lines.append(
            f"| {short_name(b.pipeline, b.model)} | {b.variant} | {b.init} | {b.input_size} | "
            + " | ".join(cells)
            + f" | {ENGINE_NAMES.get(b.engine, b.engine)} | {speedup} | "
            + ("; ".join(changes) or "-")
            + " |"
        )
    return "\n".join(lines)


def distillation_markdown(df: pd.DataFrame) -> str:
    """Baseline vs distilled per student (mean ± std over seeds) and the gain; '' if none.

    Each point at its fastest float32 engine (the engine does not change the accuracy); plain
    rows only.
    """
    agg = fastest_engines(aggregate(float_rows(plain_rows(df))))
    lines = []
    for (model, size, _init), sub in agg.groupby(["model", "input_size", "init"], sort=False):
        base = sub[sub.variant == "baseline"]
        dist = sub[sub.variant == "distilled"]
        if not (len(base) and len(dist)):
            continue
        b, d = base.iloc[0], dist.iloc[0]
        lines.append(
            f"| {short_name(b.pipeline, model)} | {size} | {int(b.seeds)}/{int(d.seeds)} | "
            f"{_pm(b.rank1, b.rank1_std)} | {_pm(d.rank1, d.rank1_std)} | "
            f"{d.rank1 - b.rank1:+.1f} | {_pm(b.mAP, b.mAP_std)} | {_pm(d.mAP, d.mAP_std)} | "
            f"{d.mAP - b.mAP:+.1f} |"
        )
    if not lines:
        return ""
    head = (
        "| student | input | seeds (base/KD) | rank-1 alone | rank-1 KD | gain | mAP alone | "
        "mAP KD | gain |"
    )
    return "\n".join([head, "|---|---|---|---|---|---|---|---|---|", *lines])


def int8_markdown(df: pd.DataFrame) -> str:
    """Per CNN point and int8 engine: ms/query of the float32 and the int8 model on the same
    runtime, the speed-up, and the rank-1 / mAP change (int8 - fp32, points, each measured on
    its own embeddings); a loss of more than :data:`INT8_MAP_LOSS` mAP points is flagged.
    '' when no point has an int8 row."""
    points = int8_points(aggregate(plain_rows(df)))
    if points.empty:
        return ""
    head = (
        "| model | variant | init | input | engine | seeds | ms/query fp32 | ms/query int8 | "
        "speed-up | rank-1 fp32 → int8 | mAP fp32 → int8 | |"
    )
    lines = [head, "|---|---|---|---|---|---:|---:|---:|---:|---|---|---|"]
    for r in points.sort_values(["ms_query_fp32", "engine"], kind="stable").itertuples():
        loss = r.mAP_fp32 - r.mAP
        flag = f"**loses {loss:.1f} mAP points**" if loss > INT8_MAP_LOSS else ""
        lines.append(
            f"| {short_name(r.pipeline, r.model)} | {r.variant} | {r.init} | {r.input_size} | "
            f"{ENGINE_NAMES.get(r.engine, r.engine)} | {int(r.seeds)} | {r.ms_query_fp32:.2f} | "
            f"{r.ms_query:.2f} | {r.speedup:.2f}x | {r.rank1_fp32:.1f} → {r.rank1:.1f} "
            f"({r.rank1 - r.rank1_fp32:+.1f}) | {r.mAP_fp32:.1f} → {r.mAP:.1f} "
            f"({r.mAP - r.mAP_fp32:+.1f}) | {flag} |"
        )
    return "\n".join(lines)


def rerank_markdown(df: pd.DataFrame) -> str:
    """Per re-ranked point (at its plain twin's engine): plain, online and offline rank-1 / mAP,
    matching cost with and without re-ranking, the gallery graph's one-off cost; '' if none."""
    agg = aggregate(df)
    twins = agg[agg.rerank == ONLINE]
    if twins.empty:
        return ""
    key = [c for c in GROUP if c != "rerank"] + ["engine"]
    plain = agg[agg.rerank != ONLINE].set_index(key)
    best = fastest_engines(agg[agg.rerank != ONLINE])
    head = (
        "| model | variant | engine | seeds | rank-1 plain | online | offline | mAP plain | "
        "online | offline | ms match plain | ms match re-ranked | ms/query plain | "
        "ms/query re-ranked | gallery graph (s, once) |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for b in best.sort_values("ms_query", kind="stable").itertuples():
        match = twins[(twins[key] == pd.Series(b._asdict())[key]).all(axis=1)]
        if match.empty:
            continue
        t, p = match.iloc[0], plain.loc[tuple(getattr(b, c) for c in key)]
        offline = _offline_means(df, t)
        lines.append(
            f"| {short_name(b.pipeline, b.model)} | {b.variant} | {b.engine} | {int(t.seeds)} | "
            f"{p.rank1:.1f} | {t.rank1:.1f} ({t.rank1 - p.rank1:+.1f}) | "
            f"{offline['rank1']:.1f} ({offline['rank1'] - p.rank1:+.1f}) | {p.mAP:.1f} | "
            f"{t.mAP:.1f} ({t.mAP - p.mAP:+.1f}) | "
            f"{offline['mAP']:.1f} ({offline['mAP'] - p.mAP:+.1f}) | {p.ms_match:.3f} | "
            f"{t.ms_match:.3f} | {p.ms_query:.2f} | {t.ms_query:.2f} | "
            f"{offline['fit_seconds']:.2f} |"
        )
    return "\n".join(lines)


def _offline_means(df: pd.DataFrame, point: pd.Series) -> dict[str, float]:
    """Mean offline rank-1 / mAP and gallery-graph seconds over the seeds of a re-ranked point
    (from its rows' ``extra``)."""
    df = fill_defaults(df)
    key = [c for c in GROUP if c != "rerank"] + ["engine"]
    rows = df[(df.rerank == ONLINE) & (df[key].astype(str) == point[key].astype(str)).all(axis=1)]
    values = [json.loads(str(e)).get("rerank", {}) for e in rows.extra]
    values = [v for v in values if "offline" in v]
    if not values:
        return {"rank1": np.nan, "mAP": np.nan, "fit_seconds": np.nan}
    return {
        "rank1": float(np.mean([v["offline"]["rank1"] for v in values])),
        "mAP": float(np.mean([v["offline"]["mAP"] for v in values])),
        "fit_seconds": float(np.mean([v["fit_seconds"] for v in values])),
    }
