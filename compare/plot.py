"""The trade-off picture: accuracy against milliseconds per query, and its table."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from compare.pareto import pareto_front

FAMILY_STYLE = {
    "classical": dict(marker="s", color="#444444"),
    "ResNet": dict(marker="o", color="#1f77b4"),
    "MobileNet v1": dict(marker="^", color="#d62728"),
    "MobileNet v2": dict(marker="D", color="#2ca02c"),
    "other": dict(marker="x", color="#9467bd"),
}
GROUP = ["pipeline", "model", "variant", "input_size"]


def family(model: str) -> str:
    if model.startswith("lomo"):
        return "classical"
    if model.startswith("resnet"):
        return "ResNet"
    if model.startswith("mobilenet_v1"):
        return "MobileNet v1"
    if model.startswith("mobilenet_v2"):
        return "MobileNet v2"
    return "other"


def short_name(model: str) -> str:
    if model == "lomo_xqda":
        return "LOMO+XQDA"
    if model.startswith("resnet"):
        return "R" + model[len("resnet") :]
    if model.startswith("mobilenet_v1_"):
        return "MNv1 " + model.rsplit("_", 1)[1]
    if model.startswith("mobilenet_v2_"):
        return "MNv2 " + model.rsplit("_", 1)[1]
    return model


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of accuracy and ms/query per (pipeline, model, variant, size)."""
    if df.empty:
        raise ValueError("the results table is empty: nothing to plot")
    stats = df.groupby(GROUP, sort=False).agg(
        rank1=("rank1", "mean"),
        rank1_std=("rank1", "std"),
        mAP=("mAP", "mean"),
        mAP_std=("mAP", "std"),
        mAP_torchreid=("mAP_torchreid", "mean"),
        ms_query=("ms_query", "mean"),
        ms_query_std=("ms_query", "std"),
        ms_extract=("ms_extract", "mean"),
        ms_match=("ms_match", "mean"),
        params=("params", "first"),
        gflops=("gflops", "first"),
        embedding_dim=("embedding_dim", "first"),
        threads=("threads", "first"),
        seeds=("seed", "nunique"),
    )
    return stats.reset_index().fillna({"rank1_std": 0.0, "mAP_std": 0.0, "ms_query_std": 0.0})


def plot_tradeoff(
    df: pd.DataFrame,
    out_png: Path | str,
    out_svg: Path | str | None = None,
    *,
    title: str = "Speed/accuracy trade-off",
) -> pd.DataFrame:
    """Two panels (rank-1, mAP) against ms/query on a log axis; returns the aggregated table."""
    agg = aggregate(df)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharex=True)
    for ax, metric, label in ((axes[0], "rank1", "rank-1 (%)"), (axes[1], "mAP", "mAP (%)")):
        seen = set()
        for _, r in agg.iterrows():
            fam = family(r.model)
            style = FAMILY_STYLE[fam]
            distilled = r.variant == "distilled"
            ax.errorbar(
                r.ms_query,
                r[metric],
                xerr=r.ms_query_std or None,
                yerr=r[f"{metric}_std"] or None,
                marker=style["marker"],
                color=style["color"],
                markersize=8,
                markerfacecolor=style["color"] if distilled or fam == "classical" else "white",
                linestyle="none",
                capsize=3,
                zorder=3,
                label=fam if fam not in seen else None,
            )
            seen.add(fam)
            text = short_name(r.model) + (" (KD)" if distilled else "")
            ax.annotate(
                text,
                (r.ms_query, r[metric]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
                color=style["color"],
            )
        # Arrows from each student's baseline to its distilled version.
        for (model, size), sub in agg.groupby(["model", "input_size"]):
            base = sub[sub.variant == "baseline"]
            dist = sub[sub.variant == "distilled"]
            if len(base) and len(dist):
                b, d = base.iloc[0], dist.iloc[0]
                ax.annotate(
                    "",
                    xy=(d.ms_query, d[metric]),
                    xytext=(b.ms_query, b[metric]),
                    arrowprops=dict(
                        arrowstyle="->",
                        color=FAMILY_STYLE[family(model)]["color"],
                        lw=1.2,
                        alpha=0.8,
                    ),
                    zorder=2,
                )
        front = pareto_front(agg.ms_query.to_numpy(), agg[metric].to_numpy())
        if len(front):
            xs, ys = agg.ms_query.to_numpy()[front], agg[metric].to_numpy()[front]
            ax.step(
                xs,
                ys,
                where="post",
                color="#ff7f0e",
                lw=1.5,
                alpha=0.7,
                zorder=1,
                label="Pareto front",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(
            matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""
            )
        )
        ax.margins(x=0.12, y=0.08)
        ax.set_xlabel("milliseconds per query (extraction + matching, log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(
        plt.Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="none")
    )
    labels.append("hollow: trained alone, filled: distilled")
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=130)
    if out_svg is not None:
        fig.savefig(out_svg)
    plt.close(fig)
    return agg


def results_markdown(df: pd.DataFrame) -> str:
    """Markdown table aggregated over seeds (mean ± std), fastest first."""
    agg = aggregate(df).sort_values("ms_query")

    def pm(mean: float, std: float, digits: int = 1) -> str:
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std > 0 else "")

    lines = [
        "| pipeline | model | variant | input | params (M) | GFLOPs | dim | rank-1 (%) | mAP (%) | "
        "ms extract | ms match | ms/query | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in agg.iterrows():
        gflops = "-" if pd.isna(r.gflops) else f"{r.gflops:.3f}"
        lines.append(
            f"| {r.pipeline} | {short_name(r.model)} | {r.variant} | {r.input_size} | "
            f"{r.params / 1e6:.2f} | {gflops} | {int(r.embedding_dim)} | {pm(r.rank1, r.rank1_std)} | "
            f"{pm(r.mAP, r.mAP_std)} | {r.ms_extract:.2f} | {r.ms_match:.3f} | "
            f"{pm(r.ms_query, r.ms_query_std, 2)} | {int(r.seeds)} |"
        )
    return "\n".join(lines)
