"""``make distill``: train the distillation study, measure every run, print the gain table.

1. :func:`deep.distill.run_study` trains the profile's teacher and every student alone and
   distilled (reusing finished runs);
2. :func:`compare.measure.measure_runs` measures each run on every installed engine (or
   restores its rows from a summary of the same weights) into ``<runs-dir>/<dataset>/results.csv``;
3. the table of baseline vs distilled (mean ± std over seeds, and the gain) is printed and
   written to ``<runs-dir>/<dataset>/distill.md``.

    python -m compare.distillation --dataset synthetic --profile quick [--jobs 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from compare.measure import measure_runs
from compare.pipelines.cnn import CnnPipeline
from compare.results import check_table, read_results
from data.cli import entry_point
from data.io import atomic_write_text
from data.runs import RunsLayout
from deep.distill import (
    add_common_arguments,
    add_subset_arguments,
    add_teacher_model_argument,
    run_study,
    study_options,
)
from deep.profiles import PROFILES, get_profile


def summarise(dataset: str, students, teacher: str, table: Path) -> pd.DataFrame:
    """Baseline vs distilled per student (rows of the results ``table``): mean and std over
    seeds, and the gain."""

    df = read_results(table)
    df = df[df.pipeline == CnnPipeline.name]
    rows = []
    for model in dict.fromkeys([teacher, *students]):
        sub = df[df.model == model]
        if sub.empty:
            continue
        row = {
            "model": model,
            "params_M": sub.params.iloc[0] / 1e6,
            "ms_query": sub.ms_query.median(),
        }
        for variant in ("baseline", "distilled"):
            v = sub[sub.variant == variant]
            for metric in ("rank1", "mAP"):
                row[f"{metric}_{variant}"] = v[metric].mean() if len(v) else np.nan
                row[f"{metric}_{variant}_std"] = v[metric].std(ddof=1) if len(v) > 1 else np.nan
            row[f"seeds_{variant}"] = len(v)
        row["gain_rank1"] = row["rank1_distilled"] - row["rank1_baseline"]
        row["gain_mAP"] = row["mAP_distilled"] - row["mAP_baseline"]
        rows.append(row)
    return pd.DataFrame(rows)


def gain_markdown(table: pd.DataFrame) -> str:
    def pm(mean, std):
        if pd.isna(mean):
            return "-"
        return f"{mean:.1f}" + ("" if pd.isna(std) else f" ± {std:.1f}")

    lines = [
        "| model | params (M) | ms/query | rank-1 alone | rank-1 distilled | mAP alone | "
        "mAP distilled | gain rank-1 | gain mAP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.model} | {r.params_M:.2f} | {r.ms_query:.2f} | "
            f"{pm(r.rank1_baseline, r.rank1_baseline_std)} | "
            f"{pm(r.rank1_distilled, r.rank1_distilled_std)} | "
            f"{pm(r.mAP_baseline, r.mAP_baseline_std)} | "
            f"{pm(r.mAP_distilled, r.mAP_distilled_std)} | "
            f"{'-' if pd.isna(r.gain_rank1) else f'{r.gain_rank1:+.1f}'} | "
            f"{'-' if pd.isna(r.gain_mAP) else f'{r.gain_mAP:+.1f}'} |"
        )
    return "\n".join(lines)


def run(
    dataset: str,
    data_root: str | None,
    profile: str,
    *,
    jobs: int = 2,
    layout: RunsLayout | None = None,
    **options,
) -> pd.DataFrame:
    """Train (what is missing), measure (what is missing), and return the gain table."""
    layout = layout or RunsLayout.from_env()
    results = layout.results_table(dataset)
    check_table(results)  # a broken results table stops us before training
    configs = run_study(profile, dataset, data_root, jobs=jobs, layout=layout, **options)
    measure_runs([c.run_dir() for c in configs], layout, data_root=data_root, jobs=jobs)
    teacher = get_profile(profile, options.get("teacher_model")).teacher
    students = options.get("students") or PROFILES[profile].students
    table = summarise(dataset, students, teacher, results)
    text = gain_markdown(table)
    atomic_write_text(layout.report(dataset, "distill.md"), text + "\n")
    print(text)
    return table


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    add_subset_arguments(parser)
    add_teacher_model_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    run(args.dataset, args.data_root, args.profile, **study_options(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
